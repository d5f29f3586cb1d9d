"""Checkpoints keyed to their run, completeness, cleanup, and the dvclive log a resumed run continues."""
import json

from norsparse.checkpoints import MARKER, checkpoints, finish_run, prepare_run_dir, trim_live
from norsparse.training import untrained_score


def _checkpoint(run_dir, step, complete=True):
    folder = run_dir / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    (folder / "trainer_state.json").write_text("{}")
    if complete:
        (folder / MARKER).write_text(f"{step}\n")
    return folder


def test_a_half_written_checkpoint_is_removed_and_the_last_complete_one_resumes(tmp_path):
    run_dir = tmp_path / "abc"
    _checkpoint(run_dir, 5)
    _checkpoint(run_dir, 10)
    _checkpoint(run_dir, 15, complete=False)  # the kill came during this save
    found, resume = prepare_run_dir(tmp_path, "abc", {"train": {"seed": 1}})
    assert found == run_dir and resume == run_dir / "checkpoint-10"
    assert not (run_dir / "checkpoint-15").exists()
    assert json.loads((run_dir / "run.json").read_text()) == {"train": {"seed": 1}}


def test_another_run_key_starts_from_scratch_and_a_finished_run_tidies_up(tmp_path):
    _checkpoint(tmp_path / "other", 5)
    run_dir, resume = prepare_run_dir(tmp_path, "mine", {})
    assert resume is None
    for step in (5, 10, 15):
        _checkpoint(run_dir, step)
    finish_run(tmp_path, "mine", keep=1)
    assert [p.name for p in checkpoints(run_dir)] == ["checkpoint-15"]
    assert not (tmp_path / "other").exists()
    finish_run(tmp_path, "mine", keep=0)
    assert checkpoints(run_dir) == [] and (run_dir / "run.json").exists()


def test_trim_live_drops_what_came_after_the_checkpoint_and_step_zero_is_the_untrained_score(tmp_path):
    curve = tmp_path / "plots" / "metrics" / "dev" / "ndcg@10.tsv"
    curve.parent.mkdir(parents=True)
    curve.write_text("timestamp\tstep\tndcg@10\n1\t0\t0.5\n2\t5\t0.6\n3\t10\t0.7\n4\t12\t0.65\n")
    trim_live(tmp_path, 10)
    assert [line.split("\t")[1] for line in curve.read_text().splitlines()[1:]] == ["0", "5", "10"]
    assert untrained_score(tmp_path) == 0.5


def test_trim_live_repairs_files_a_kill_left_empty_so_dvclive_resumes(tmp_path):
    """SIGKILL during dvclive's rewrite of metrics.json left it empty, and the resumed run died parsing it (CI)."""
    from dvclive import Live

    live = tmp_path / "live"
    (live / "plots/metrics/train").mkdir(parents=True)
    (live / "plots/metrics/train/loss.tsv").write_text("timestamp\tstep\tloss\n1\t5\t0.5\n2\t10\t0.4\n")
    (live / "metrics.json").write_text("")
    (live / "params.yaml").write_text("")
    trim_live(live, 5)
    assert json.loads((live / "metrics.json").read_text()) == {"step": 5}
    assert not (live / "params.yaml").exists()
    with Live(str(live), dvcyaml=False, save_dvc_exp=False, resume=True) as resumed:
        assert resumed.step == 6

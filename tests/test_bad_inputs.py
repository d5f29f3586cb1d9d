"""Bad inputs and faults, one table: each fails fast, says what is wrong and where, and loses nothing.

The project is copied into a temporary git + DVC repository whose "earlier outputs" are small fake files,
recorded in dvc.lock with ``dvc commit`` (no stage really runs, so the whole file takes about a minute).
Each case changes one thing (params, an input file, the environment), runs a command and checks:

* the exit status;
* that the message names the key, file, line or column at fault;
* that the failing stage (or command) fails within 3 s of its start: for ``dvc repro`` / ``dvc exp run``
  from the moment DVC starts the stage's command, as DVC's own start-up is not ours;
* that every earlier output (data/prepared, models, metrics, checks, dvc.lock) is byte-identical.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

LIMIT_S = 3.0
OUTPUTS = ("data/prepared", "data/checks", "models", "metrics", "dvc.lock")
SHA = "0123456789abcdef0123456789abcdef01234567"


def env(**extra) -> dict:
    environment = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
                   "DVC_NO_ANALYTICS": "1", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "CUDA_VISIBLE_DEVICES": "-1"}
    environment.pop("PYTHONPATH", None)
    environment.pop("HF_TOKEN", None)
    environment.update(extra)
    return environment


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True, capture_output=True)


def snapshot(repo: Path) -> dict[str, str]:
    found = {}
    for name in OUTPUTS:
        path = repo / name
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file()) if path.exists() else []
        for file in files:
            found[file.relative_to(repo).as_posix()] = hashlib.sha256(file.read_bytes()).hexdigest()
    return found


def fake_pipeline_repo(repo: Path) -> Path:
    """A git + DVC repository holding the project's files as they are now, with small fake outputs of every
    stage recorded in dvc.lock by `dvc commit` (nothing really runs)."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split()
    for name in listed:
        if (ROOT / name).is_file() and name != "dvc.lock":
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, repo / name)
    for name, text in {"data/prepared/train.parquet": "fake parquet", "data/prepared/dev/corpus.jsonl": "{}\n",
                       "data/prepared/test/corpus.jsonl": "{}\n", "models/base/config.json": "{}\n",
                       "models/trained/modules.json": "[]\n", "models/calibrated/modules.json": "[]\n",
                       "models/release/README.md": "# release\n", "metrics/train/metrics.json": "{\"step\": 1}\n",
                       "models/checkpoints/0123456789abcdef/run.json": "{}\n",
                       **{f"data/checks/links/{stage}/index.json": "{}\n" for stage in ("prepare", "patch", "evaluate")}}.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(text)
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "project")
    commit_outputs(repo)
    return repo


def commit_outputs(repo: Path) -> None:
    """Record the workspace as the pipeline's current state (dvc.lock), as if every stage had just run."""
    subprocess.run(["dvc", "commit", "-f", "-q"], cwd=repo, env=env(), check=True, capture_output=True)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "outputs", "--allow-empty")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """The project as it is now, with fake earlier outputs of every stage recorded in dvc.lock."""
    base = tmp_path_factory.mktemp("bad")
    repo = fake_pipeline_repo(base / "repo")
    external = base / "external"  # inputs outside the repository, as a user's own data would be
    external.mkdir()
    return repo, external


def _set(params: dict, key: str, value) -> None:
    node = params
    *parents, last = key.split(".")
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


def beir(folder: Path, corpus: str | bytes | None = None, queries: str | bytes | None = None, qrels: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, default, given in (("corpus.jsonl", '{"_id": "d1", "title": "", "text": "Oslo er hovedstaden."}\n', corpus),
                                 ("queries.jsonl", '{"_id": "q1", "text": "Hva er hovedstaden?"}\n', queries)):
        data = default if given is None else given
        (folder / name).write_bytes(data if isinstance(data, bytes) else data.encode())
    (folder / "qrels").mkdir(exist_ok=True)
    (folder / "qrels" / "test.tsv").write_text(qrels if qrels is not None else "query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    return folder


def parquet(path: Path, columns: dict) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table(columns), path)
    return path


def model_folder(folder: Path, config: str | None = '{"model_type": "bert"}', code: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if config is not None:
        (folder / "config.json").write_text(config)
    if code:
        (folder / "configuration_evil.py").write_text(
            "import pathlib\npathlib.Path(__file__).with_name('RAN').write_text('remote code ran')\n")
    return folder


@dataclass
class Case:
    id: str
    command: list[str]
    expect: list[str]                       # fragments the message must contain
    params: dict = field(default_factory=dict)    # dotted key -> value, applied to params.yaml
    add_source: dict | None = None          # a data.sources entry appended (path relative to the external folder)
    files: callable = None                  # (repo, external) -> None: writes the bad inputs
    raw_params: str | None = None           # params.yaml replaced by this text
    environment: dict = field(default_factory=dict)
    status: int | None = None               # None: any non-zero status
    skip_if: callable = None


def ext_jsonl(text: bytes | str, name="ext.jsonl"):
    def write(repo, external):
        (external / name).write_bytes(text if isinstance(text, bytes) else text.encode())
    return write


GOOD = '{"query": "Hva er hovedstaden?", "positive": "Oslo er hovedstaden."}\n'
REPRO, STAGE = ["dvc", "repro"], [sys.executable, "-m"]
VALIDATE, INPUTS, PREPARE, PATCH = STAGE + ["stages.validate"], STAGE + ["stages.inputs"], STAGE + ["stages.prepare"], STAGE + ["stages.patch"]


CASES = [
    # --- params: dvc repro stops at validate, before DVC deletes any output
    Case("architecture-typo-repro", REPRO, ["model.architecture", "'spalde'", "inference-free-splade", "csr"], {"model.architecture": "spalde"}),
    Case("negative-learning-rate", VALIDATE, ["train.splade.learning_rate", "greater than 0"], {"train.splade.learning_rate": -0.001}),
    Case("batch-size-zero-repro", REPRO, ["train.batch_size", "greater than 0"], {"train.batch_size": 0}),
    Case("unknown-top-level-key-repro", REPRO, ["unknown key 'foo'", "allowed keys here: data, model"], {"foo": 1}),
    Case("unknown-top-level-key-exp-run", ["dvc", "exp", "run", "-S", "+foo=1"], ["unknown key 'foo'", "allowed keys here"]),
    Case("architecture-typo-exp-run", ["dvc", "exp", "run", "-S", "model.architecture=spalde"], ["model.architecture", "'spalde'", "csr"]),
    Case("misspelled-nested-key", VALIDATE, ["unknown key 'calibrate.max_ndgc_drop'", "did you mean 'max_ndcg_drop'"], {"calibrate.max_ndgc_drop": 0.02}),
    Case("precision-fp8", VALIDATE, ["train.precision", "'fp8'", "bf16"], {"train.precision": "fp8"}),
    Case("cuda-on-cpu-host-repro", REPRO, ["train.device", "'cuda'", "no CUDA device", "auto, cuda, mps, cpu"], {"train.device": "cuda"}),
    Case("mps-off-apple", VALIDATE, ["train.device", "'mps'", "Apple silicon"], {"train.device": "mps"},
         skip_if=lambda: sys.platform == "darwin"),
    Case("split-fractions", VALIDATE, ["data.split", "dev + test"], {"data.split.test": 0.95}),
    Case("params-not-yaml", VALIDATE, ["params.yaml", "not valid YAML"], raw_params="data: [unclosed\n"),
    Case("params-not-a-mapping", VALIDATE, ["params.yaml", "mapping"], raw_params="- just\n- a list\n"),
    Case("base-model-missing-folder", VALIDATE, ["model.base_model", "./no/such/model", "neither"], {"model.base_model": "./no/such/model"}),
    # --- remote code only pinned
    Case("hub-id-without-namespace-unpinned", VALIDATE, ["norbert4-base", "model.revision", "40-character commit sha"],
         {"model.base_model": "norbert4-base", "model.trust_remote_code": True}),
    Case("hub-id-branch-not-sha", VALIDATE, ["ltg/norbert4-base", "40-character commit sha", "'main'"],
         {"model.base_model": "ltg/norbert4-base", "model.trust_remote_code": True, "model.revision": "main"}),
    # --- evaluate.tasks
    Case("task-folder-named-test", VALIDATE, ["evaluate.tasks", "'test'", "replace the prepared test split"],
         {"evaluate.tasks": ["data/heldout", "EXT/test"]}, files=lambda r, e: beir(e / "test")),
    Case("task-folders-same-name", VALIDATE, ["share the name 'heldout'"], {"evaluate.tasks": ["data/heldout", "EXT/heldout"]},
         files=lambda r, e: beir(e / "heldout")),
    Case("task-not-beir", INPUTS, ["evaluate.tasks", "not a BEIR folder"], {"evaluate.tasks": ["EXT/plain"]},
         files=lambda r, e: (e / "plain").mkdir(exist_ok=True)),
    Case("task-qrels-score-not-int", INPUTS, ["qrels/test.tsv:2", "score 'high' is not an integer"], {"evaluate.tasks": ["EXT/bad-qrels"]},
         files=lambda r, e: beir(e / "bad-qrels", qrels="query-id\tcorpus-id\tscore\nq1\td1\thigh\n")),
    Case("task-corpus-not-utf8", INPUTS, ["corpus.jsonl:1:", "0xe6", "not valid UTF-8"], {"evaluate.tasks": ["EXT/latin1"]},
         files=lambda r, e: beir(e / "latin1", corpus='{"_id": "d1", "text": "Bl\u00e6r"}\n'.encode("latin-1"))),
    Case("task-queries-empty", INPUTS, ["queries.jsonl", "the file is empty"], {"evaluate.tasks": ["EXT/empty-queries"]},
         files=lambda r, e: beir(e / "empty-queries", queries="")),
    Case("task-unknown-corpus-id", INPUTS, ["qrels/test.tsv", "corpus-id 'd9'", "not in corpus.jsonl"], {"evaluate.tasks": ["EXT/dangling"]},
         files=lambda r, e: beir(e / "dangling", qrels="query-id\tcorpus-id\tscore\nq1\td9\t1\n")),
    # --- data sources (local files outside the repository)
    Case("source-not-utf8-repro", REPRO, ["ext.jsonl:2:", "0xf8", "not valid UTF-8"], add_source={"path": "ext.jsonl"},
         files=ext_jsonl(GOOD.encode() + '{"query": "Hvor ligger Troms\u00f8?", "positive": "I nord."}\n'.encode("latin-1"))),
    Case("source-not-utf8-prepare", PREPARE, ["ext.jsonl:2:", "not valid UTF-8"], add_source={"path": "ext.jsonl"},
         files=ext_jsonl(GOOD.encode() + b'{"query": "\xff"}\n')),
    Case("source-bad-json", INPUTS, ["ext.jsonl:2:", "not valid JSON"], add_source={"path": "ext.jsonl"},
         files=ext_jsonl(GOOD + '{"query": "x", positive: 1}\n')),
    Case("source-empty-file", INPUTS, ["ext.jsonl", "the file is empty"], add_source={"path": "ext.jsonl"}, files=ext_jsonl("")),
    Case("source-blank-lines-only", INPUTS, ["ext.jsonl", "the file is empty"], add_source={"path": "ext.jsonl"}, files=ext_jsonl("\n\n  \n")),
    Case("source-numeric-query-jsonl", INPUTS, ["ext.jsonl:2", "column 'query'", "holds a number (42)"], add_source={"path": "ext.jsonl"},
         files=ext_jsonl(GOOD + '{"query": 42, "positive": "Et svar."}\n')),
    Case("source-not-an-object", INPUTS, ["ext.jsonl:1", "expected a JSON object"], add_source={"path": "ext.jsonl"}, files=ext_jsonl("[1, 2]\n")),
    Case("source-numeric-column-csv", INPUTS, ["ext.csv", "column 'positive'", "holds only numbers"], add_source={"path": "ext.csv"},
         files=lambda r, e: (e / "ext.csv").write_text("query,positive\nHva er svaret?,42\nOg neste?,7.5\n")),
    Case("source-csv-not-utf8", INPUTS, ["ext.csv:3:", "not valid UTF-8"], add_source={"path": "ext.csv"},
         files=lambda r, e: (e / "ext.csv").write_bytes("query,positive\nHva?,Svar.\nHva n\u00e5?,Ja.\n".encode("cp1252"))),
    Case("source-csv-header-only", INPUTS, ["ext.csv", "no rows"], add_source={"path": "ext.csv"},
         files=lambda r, e: (e / "ext.csv").write_text("query,positive\n")),
    Case("source-parquet-list-of-floats", REPRO, ["ext.parquet", "column 'positive'", "list<element: double>"], add_source={"path": "ext.parquet"},
         files=lambda r, e: parquet(e / "ext.parquet", {"query": ["a?", "b?"], "positive": [[0.1, 0.2], [0.3]]})),
    Case("source-parquet-float-column", INPUTS, ["ext.parquet", "column 'query'", "double"], add_source={"path": "ext.parquet"},
         files=lambda r, e: parquet(e / "ext.parquet", {"query": [1.5, 2.5], "positive": ["Svar en.", "Svar to."]})),
    Case("source-parquet-corrupt", INPUTS, ["ext.parquet", "not a readable parquet file"], add_source={"path": "ext.parquet"},
         files=lambda r, e: (e / "ext.parquet").write_bytes(b"PAR1 not really")),
    Case("source-json-list-numeric", INPUTS, ["ext.json: row 1", "column 'positive'", "holds a number"], add_source={"path": "ext.json"},
         files=lambda r, e: (e / "ext.json").write_text('[{"query": "a?", "positive": "Svar."}, {"query": "b?", "positive": 3}]')),
    Case("source-missing-mapped-column", INPUTS, ["column 'question' (for query) not found", "available columns: positive, query"],
         add_source={"path": "ext.jsonl", "columns": {"query": "question", "positive": "positive"}}, files=ext_jsonl(GOOD)),
    Case("source-no-such-path", INPUTS, ["source 'ext'", "neither an existing local file or folder nor a hub dataset id"],
         add_source={"path": "missing.jsonl"}),
    Case("source-unsupported-extension", INPUTS, ["ext.txt", "unsupported extension"], add_source={"path": "ext.txt"},
         files=lambda r, e: (e / "ext.txt").write_text("hei\n")),
    Case("source-beir-bad-hard-negatives", INPUTS, ["hard_negatives.tsv:1", "query-id<TAB>corpus-id"], add_source={"path": "beir-src"},
         files=lambda r, e: (beir(e / "beir-src") / "hard_negatives.tsv").write_text("q\td\n")),
    # --- a local base model folder
    Case("base-model-without-config", PATCH, ["config.json is missing"], {"model.base_model": "EXT/bare-model"},
         files=lambda r, e: model_folder(e / "bare-model", config=None)),
    Case("base-model-broken-config", INPUTS, ["config.json:1:", "not valid JSON"], {"model.base_model": "EXT/broken-model"},
         files=lambda r, e: model_folder(e / "broken-model", config='{"model_type": bert}')),
    Case("base-model-remote-code-untrusted", REPRO, ["ships remote code", "configuration_evil.py", "model.trust_remote_code: true"],
         {"model.base_model": "EXT/code-model"},
         files=lambda r, e: model_folder(e / "code-model", config='{"auto_map": {"AutoConfig": "configuration_evil.EvilConfig"}}', code=True)),
    # --- publishing
    Case("push-without-token-repro", REPRO, ["publish.push is true", "HF_TOKEN"], {"publish.push": True, "publish.repo_id": "me/norsk"},
         environment={"HF_HOME": "HOME/hf"}),
    Case("push-without-token-stage", STAGE + ["stages.publish"], ["HF_TOKEN or run `hf auth login`"],
         {"publish.push": True, "publish.repo_id": "me/norsk"}, environment={"HF_HOME": "HOME/hf"}),
    Case("push-without-repo-id", VALIDATE, ["publish", "repo_id must be a hub repository id"], {"publish.push": True}),
    # --- the CLI runs remote code only when asked
    Case("encode-foreign-folder-with-code", [sys.executable, "-m", "norsparse.cli", "encode", "EXT/code-model2", "hei"],
         ["ships Python code", "--trust-remote-code", "no norsparse_model.json"], status=2,
         files=lambda r, e: model_folder(e / "code-model2", config='{"auto_map": {"AutoConfig": "configuration_evil.EvilConfig"}}', code=True)),
    Case("encode-hub-id-without-flag", [sys.executable, "-m", "norsparse.cli", "encode", "someone/some-model", "hei"],
         ["--trust-remote-code", "hub ids always need the flag"], status=2),
    Case("encode-tampered-norsparse-folder", [sys.executable, "-m", "norsparse.cli", "encode", "EXT/tampered", "hei"],
         ["differ from those recorded in norsparse_model.json", "--trust-remote-code"], status=2,
         files=lambda r, e: _tampered(e / "tampered")),
]


def _tampered(folder: Path) -> None:
    from norsparse.model_io import write_marker

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sparsity_filter.py").write_text("x = 1\n")
    write_marker(folder)
    (folder / "sparsity_filter.py").write_text("import os\nos.system('echo pwned')\n")


def _resolve(value, external: Path, home: Path):
    if isinstance(value, str):
        return value.replace("EXT", str(external)).replace("HOME", str(home))
    if isinstance(value, list):
        return [_resolve(v, external, home) for v in value]
    return value


def run_timed(command: list[str], cwd: Path, environment: dict) -> tuple[int, str, float]:
    """Run; return status, output and the seconds from the start of the command we own to its failure.

    For DVC that start is when DVC announces the stage it runs ("Running stage ..."), not DVC's own start-up."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines, stage_started = [], None
    for line in process.stdout:
        if stage_started is None and line.startswith("Running stage"):
            stage_started = time.perf_counter()
        if line.startswith("Running stage"):
            stage_started = time.perf_counter()  # the last stage DVC started is the one that failed
        lines.append(line)
    status = process.wait(timeout=120)
    ended = time.perf_counter()
    return status, "".join(lines), ended - (stage_started if command[0] == "dvc" and stage_started else started)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_fails_fast_names_it_and_loses_nothing(project, case, tmp_path):
    if case.skip_if and case.skip_if():
        pytest.skip("not meaningful on this host")
    repo, external = project
    params_path = repo / "params.yaml"
    original = params_path.read_text(encoding="utf-8")
    before = snapshot(repo)
    try:
        if case.files:
            case.files(repo, external)
        if case.raw_params is not None:
            params_path.write_text(case.raw_params, encoding="utf-8")
        else:
            params = yaml.safe_load(original)
            for key, value in case.params.items():
                _set(params, key, _resolve(value, external, tmp_path))
            if case.add_source:
                source = {"name": "ext", **case.add_source, "path": str(external / case.add_source["path"])}
                params["data"]["sources"].append(source)
            params_path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
        command = [_resolve(part, external, tmp_path) for part in case.command]
        status, output, seconds = run_timed(command, repo, env(**{k: _resolve(v, external, tmp_path) for k, v in case.environment.items()}))
    finally:
        params_path.write_text(original, encoding="utf-8")
        subprocess.run(["git", "checkout", "-q", "--", "."], cwd=repo)  # what `dvc exp run` may have left
    assert status != 0 if case.status is None else status == case.status, output
    for fragment in case.expect:
        assert fragment in output, f"{fragment!r} not in:\n{output}"
    assert "Traceback" not in output, output
    assert seconds < LIMIT_S, f"took {seconds:.2f} s:\n{output}"
    assert snapshot(repo) == before, "an earlier output changed"
    assert not any(external.rglob("RAN")), "remote code ran"


def test_the_table_covers_at_least_thirty_cases():
    assert len(CASES) >= 30 and len({c.id for c in CASES}) == len(CASES)

"""Host-dependent training choices and the data layout the trainer receives."""
import pandas as pd
import pytest
import torch

from norsparse import training
from norsparse.params import load_params


def test_device_and_precision_on_this_cpu_host():
    assert training.select_device("auto") in ("cuda", "mps", "cpu")
    assert training.select_precision("cpu") == "fp32"
    with pytest.raises(RuntimeError, match="fp16 needs a CUDA device"):
        training.select_precision("cpu", "fp16")


def test_cuda_preferred_with_bf16_or_fp16(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert training.select_device("auto") == "cuda"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert training.select_precision("cuda") == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert training.select_precision("cuda") == "fp16"


def test_mps_when_no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert training.select_device("auto") == "mps"
    monkeypatch.setattr(training, "_mps_bf16", lambda: False)
    assert training.select_precision("mps") == "fp32"


def test_asking_for_a_missing_device_fails(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="no cuda device"):
        training.select_device("cuda")


def test_one_dataset_per_source_split_by_negatives():
    train = pd.DataFrame({
        "anchor": ["a", "b", "c", "d"], "positive": ["pa", "pb", "pc", "pd"],
        "negative": ["na", None, None, "nd"], "source": ["qa", "qa", "nli", "nli"],
    })
    datasets = training.training_datasets(train)
    assert set(datasets) == {"qa+negatives", "qa", "nli+negatives", "nli"}
    assert datasets["qa"].column_names == ["anchor", "positive"]
    assert datasets["qa+negatives"].column_names == ["anchor", "positive", "negative"]
    # gathered across processes: every dataset has the same columns (else the processes' all_gathers do not pair)
    same = training.training_datasets(train, same_columns=True)
    assert set(same) == {"qa", "nli"} and {tuple(d.column_names) for d in same.values()} == {("anchor", "positive")}
    full = training.training_datasets(train.fillna("n"), same_columns=True)
    assert {tuple(d.column_names) for d in full.values()} == {("anchor", "positive", "negative")}


def test_training_arguments_follow_params_and_device(tmp_path):
    params = load_params("params.yaml")
    args = training.training_arguments(params, tmp_path, "mps", "fp32", {})  # bf16 args need a GPU to build
    assert args.dataloader_num_workers == 0 and args.dataloader_pin_memory is False
    assert not args.bf16 and not args.fp16
    assert args.report_to in ([], "none", ["none"])  # dvclive is attached explicitly
    assert args.learning_rate == params.train.splade.learning_rate
    assert args.full_determinism is params.train.deterministic
    assert params.data.sampling in str(args.multi_dataset_batch_sampler).lower()
    cpu = training.training_arguments(params, tmp_path, "cpu", "fp32", {})
    assert cpu.use_cpu and not cpu.dataloader_pin_memory


def test_dvclive_logger_uses_the_trainer_step():
    logged = []

    class FakeLive:
        step = None

        def log_metric(self, name, value):
            logged.append((self.step, name, value))

        def make_summary(self):
            pass

    class State:
        is_world_process_zero = True
        global_step = 40

    logger = training.DvcLiveLogger(FakeLive())
    logger.on_log(None, State(), None, logs={"eval_dev_dot_ndcg@10": 0.5, "eval_dev_corpus_active_dims": 120.0, "epoch": 1})
    assert logged == [(40, "dev/ndcg@10", 0.5), (40, "dev/document_active_dims", 120.0)]


def test_inference_free_static_weights_get_their_own_learning_rate():
    """The learning-rate pattern must match the Router's query weights (and nothing else)."""
    import re

    import yaml

    from conftest import ROOT
    from norsparse.architectures import trainer_options
    from norsparse.params import parse_params

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["model"]["architecture"] = "inference-free-splade"
    params = parse_params(raw)
    (pattern, rate), = trainer_options(params)["learning_rate_mapping"].items()
    names = ["model.0.sub_modules.query.0.weight", "model.0.sub_modules.document.0.model.embedding.word_embedding.weight",
             "model.0.sub_modules.document.0.model.classifier.emb2vocab.weight"]
    assert [n for n in names if re.search(pattern, n)] == names[:1]
    assert rate == params.train.inference_free_splade.static_learning_rate

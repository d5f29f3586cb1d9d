"""The patch stage on GPT-BERT remote code (the layout of ltg/norbert4-*), on BERT-style models, and on the builtin model."""
import json

import pytest
import torch

import fixtures
from norsparse.base_model import gptbert_patch, verify
from norsparse.base_model.builtin import build_builtin_model, lexical_targets, train_tokenizer
from norsparse.base_model.patching import patch_base_model
from norsparse.params import parse_params
from norsparse.stage import StageError

PROBE = "Hva er hovedstaden i Norge? Oslo er den største byen."


def params_for(project_params, base_model, **overrides):
    raw = json.loads(json.dumps(project_params))
    raw["model"].update(base_model=str(base_model), trust_remote_code=True)
    raw["builtin"].update(fixtures.TINY.model_dump())
    raw["patch"]["probe_text"] = PROBE
    for key, value in overrides.items():
        raw["patch"][key] = value
    return parse_params(raw)


def test_published_layout_is_broken_under_installed_transformers(tmp_path):
    """What the patch repairs: wrong (uninitialised) rotary tables after from_pretrained, and save_pretrained failing.

    Run in a fresh process: uninitialised memory can by chance hold the right values in a process that has
    just built the same tables.
    """
    import subprocess
    import sys

    folder = fixtures.gptbert_folder(tmp_path / "norbert4")
    script = f"""
import json, torch
from transformers import AutoConfig, AutoModelForMaskedLM
folder = {str(folder)!r}
loaded = AutoModelForMaskedLM.from_pretrained(folder, trust_remote_code=True)
fresh = AutoModelForMaskedLM.from_config(AutoConfig.from_pretrained(folder, trust_remote_code=True), trust_remote_code=True)
rope = lambda m: m.encoder.layers[0].attention.rope_embedding.cos_matrix
try:
    loaded.save_pretrained({str(tmp_path / "saved")!r}); saved = "ok"
except AttributeError as error:
    saved = str(error)
print(json.dumps({{"rotary_correct": bool(torch.equal(rope(loaded), rope(fresh))), "save": saved}}))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["rotary_correct"] is False
    assert "keys" in out["save"]


@pytest.mark.parametrize("tie_head", [False, True])
def test_patched_gptbert_loads_saves_and_is_sparse(tmp_path, project_params, tie_head):
    source = fixtures.gptbert_folder(tmp_path / "norbert4", tie_head=tie_head)
    out = tmp_path / "base"
    out.mkdir()
    report = patch_base_model(params_for(project_params, source), [], out)

    assert report["soft_cap"] == "removed"
    assert report["code"]["cap_lines"] == ["subword_prediction = 30 * torch.sigmoid(subword_prediction / 7.5)"]
    # before: the cap makes every logit >= 0 and no SPLADE weight exactly zero
    assert report["before"]["min_logit"] >= 0 and report["before"]["splade_zero_fraction"] == 0
    # after: raw logits include negatives, the SPLADE vector has exact zeros
    assert report["after"]["negative_logit_fraction"] > 0.2 and report["after"]["splade_zero_fraction"] > 0.2
    # loads with finite logits equal to a fresh model with the same weights; saves and reloads unchanged
    trip = report["round_trip"]
    assert trip["finite"] and trip["max_abs_diff_vs_fresh"] == 0 and trip["max_abs_diff_after_save_reload"] == 0
    assert trip["weights_missing_from_checkpoint"] == []
    # NorBERT4's BOS row: id 1 is active in the raw SPLADE vector, and it is among the masked special ids
    assert 1 in report["after"]["special_dims_active"]
    assert {0, 1, 2, 3, 4} <= set(json.loads((out / "norsparse_base.json").read_text())["special_token_ids"])
    code = (out / "modeling_gptbert.py").read_text()
    assert "use_reentrant=True" not in code and "use_reentrant=False" in code
    if tie_head:  # a checkpoint without the head weight gets it tied to the input embedding
        assert "'classifier.emb2vocab.weight': 'embedding.word_embedding.weight'" in code


def test_patching_twice_changes_nothing(tmp_path):
    folder = fixtures.gptbert_folder(tmp_path / "norbert4")
    path = folder / "modeling_gptbert.py"
    keys = verify.checkpoint_keys(folder)
    first = gptbert_patch.patch_modeling_file(path, "GptBertForMaskedLM", keys, remove_cap=True)
    once = path.read_text()
    second = gptbert_patch.patch_modeling_file(path, "GptBertForMaskedLM", keys, remove_cap=True)
    assert path.read_text() == once
    assert first.soft_cap == "removed" and second.soft_cap == "already removed"
    assert second.applied == [] and len(second.already) == 2


def test_an_already_patched_model_passes_and_is_reported(tmp_path, project_params):
    folder = fixtures.gptbert_folder(tmp_path / "norbert4")
    gptbert_patch.patch_modeling_file(folder / "modeling_gptbert.py", "GptBertForMaskedLM", verify.checkpoint_keys(folder), remove_cap=True)
    out = tmp_path / "base"
    out.mkdir()
    report = patch_base_model(params_for(project_params, folder), [], out)
    assert report["soft_cap"] == "already removed" and report["verified"]


def test_keeping_the_cap_is_allowed(tmp_path, project_params):
    folder = fixtures.gptbert_folder(tmp_path / "norbert4")
    out = tmp_path / "base"
    out.mkdir()
    report = patch_base_model(params_for(project_params, folder, remove_soft_cap=False), [], out)
    assert report["soft_cap"] == "kept" and report["after"]["splade_zero_fraction"] == 0


def test_unrecognised_cap_stops_with_a_pointer_to_the_threshold(tmp_path, project_params):
    source = (fixtures.REMOTE_CODE / "modeling_gptbert.py").read_text().replace(
        "subword_prediction = 30 * torch.sigmoid(subword_prediction / 7.5)",
        "subword_prediction = subword_prediction.div(7.5).sigmoid().mul(30)")
    folder = fixtures.gptbert_folder(tmp_path / "odd", modeling_source=source)
    out = tmp_path / "base"
    out.mkdir()
    with pytest.raises(StageError, match="patch.remove_soft_cap: false.*calibrated inference threshold"):
        patch_base_model(params_for(project_params, folder), [], out)


def test_remote_code_without_a_cap_passes_through(tmp_path, project_params):
    """NorBERT3-style: remote code, a plain masked-LM head."""
    source = (fixtures.REMOTE_CODE / "modeling_gptbert.py").read_text().replace(
        "        subword_prediction = 30 * torch.sigmoid(subword_prediction / 7.5)\n", "")
    folder = fixtures.gptbert_folder(tmp_path / "norbert3", modeling_source=source)
    out = tmp_path / "base"
    out.mkdir()
    report = patch_base_model(params_for(project_params, folder), [], out)
    assert report["soft_cap"] == "absent" and report["after"]["negative_logit_fraction"] > 0


def test_bert_without_remote_code_passes_through(tmp_path, project_params):
    folder = fixtures.bert_folder(tmp_path / "bert")
    out = tmp_path / "base"
    out.mkdir()
    report = patch_base_model(params_for(project_params, folder), [], out)
    assert report["remote_code"] is None and report["soft_cap"] == "absent" and report["verified"]
    assert not (out / "modeling_gptbert.py").exists()


def test_remote_code_needs_explicit_trust(tmp_path, project_params):
    folder = fixtures.gptbert_folder(tmp_path / "norbert4")
    raw = json.loads(json.dumps(project_params))
    raw["model"].update(base_model=str(folder), trust_remote_code=False)
    out = tmp_path / "base"
    out.mkdir()
    with pytest.raises(StageError, match="ships remote code.*trust_remote_code: true"):
        patch_base_model(parse_params(raw), [], out)


def test_unreachable_hub_model_fails_fast(tmp_path, project_params, monkeypatch):
    import time

    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    raw = json.loads(json.dumps(project_params))
    raw["model"].update(base_model="ltg/norbert4-base", trust_remote_code=True, revision="0" * 40)
    out = tmp_path / "base"
    out.mkdir()
    started = time.perf_counter()
    with pytest.raises(StageError, match="(?s)'ltg/norbert4-base'.*could not be fetched.*model.base_model: builtin"):
        patch_base_model(parse_params(raw), [], out)
    assert time.perf_counter() - started < 5


def test_builtin_tokenizer_is_deterministic_and_norwegian():
    texts = fixtures.NORWEGIAN * 3
    first, second = train_tokenizer(texts, 400, 64), train_tokenizer(texts, 400, 64)
    assert first.get_vocab() == second.get_vocab()
    assert "hovedstad" in first.get_vocab() and "å" in first.get_vocab()
    # stem-aware: inflected forms share the stem token, so an inflected query word matches its passage
    assert first.tokenize("hovedstaden") == ["hovedstad", "##en"]
    assert first.tokenize("fjordene")[0] == first.tokenize("fjorden")[0] == "fjord"
    ids = first("Hva er hovedstaden?")["input_ids"]
    assert ids[0] == 1 and ids[-1] == 2  # <s> ... </s>, NorBERT4's BOS and EOS ids


def test_builtin_model_is_deterministic(tmp_path):
    texts = fixtures.NORWEGIAN * 3
    a = build_builtin_model(texts, fixtures.TINY, tmp_path / "a")
    b = build_builtin_model(texts, fixtures.TINY, tmp_path / "b")
    assert a["loss_end"] == b["loss_end"]
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    assert config["auto_map"]["AutoModelForMaskedLM"] == "modeling_gptbert.GptBertForMaskedLM"
    assert "30 * torch.sigmoid(subword_prediction / 7.5)" in (tmp_path / "a" / "modeling_gptbert.py").read_text()


def test_gradient_checkpointing_trains_through_the_patched_code(tmp_path, project_params):
    """NorBERT4 hard-codes use_reentrant=True, which breaks under DDP; the patched copy checkpoints with False."""
    source = fixtures.gptbert_folder(tmp_path / "norbert4")
    out = tmp_path / "base"
    out.mkdir()
    patch_base_model(params_for(project_params, source), [], out)
    model, tokenizer = verify.load_masked_lm(out, trust_remote_code=True)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    calls = []
    original = torch.utils.checkpoint.checkpoint

    def recording(*args, **kwargs):
        calls.append(kwargs.get("use_reentrant"))
        return original(*args, **kwargs)

    torch.utils.checkpoint.checkpoint = recording
    try:
        encoded = tokenizer(["Oslo er hovedstaden i Norge."], return_tensors="pt")
        loss = model(input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"], labels=encoded["input_ids"]).loss
        loss.backward()
    finally:
        torch.utils.checkpoint.checkpoint = original
    assert calls and set(calls) == {False}
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())
    assert model.classifier.emb2vocab.weight.grad is not None


def test_builtin_head_calibration_keeps_own_tokens(tmp_path):
    """After the output-head calibration a text's uncapped SPLADE vector holds its own tokens
    (the default build: 99.4% of own tokens active, 57 dims per text of 8000)."""
    texts = fixtures.NORWEGIAN * 3
    # a tiny model pre-trained briefly separates a text's tokens from others only weakly: a mild absent_weight
    mild = fixtures.TINY.model_copy(update={"pretrain_epochs": 4, "absent_weight": 1.0})
    assert build_builtin_model(texts, mild, tmp_path / "mild")["own_tokens_active"] > 0.5
    strict = build_builtin_model(texts, fixtures.TINY.model_copy(update={"pretrain_epochs": 4, "absent_weight": 100.0}), tmp_path / "strict")
    assert strict["active_dims_mean"] < build_builtin_model(texts, mild, tmp_path / "again")["active_dims_mean"]


def test_lexical_targets_are_sqrt_bm25_of_a_texts_own_tokens():
    tokenizer = train_tokenizer(fixtures.NORWEGIAN * 3, 400, 64)
    texts = ["oslo oslo norge", "oslo norge", "fjord norge"]
    targets = lexical_targets(tokenizer, texts, 64)
    oslo, fjord = tokenizer.convert_tokens_to_ids("oslo"), tokenizer.convert_tokens_to_ids("fjord")
    assert set(targets[1]) == set(tokenizer("oslo norge", add_special_tokens=False)["input_ids"])
    assert all(1 not in t and 2 not in t for t in targets)  # no special tokens
    assert targets[2][fjord] > targets[1][oslo]  # the rarer token weighs more
    assert targets[0][oslo] > targets[1][oslo]  # tf 2 outweighs the longer text


def test_lexical_regression_fits_the_targets(tmp_path):
    """The regression lowers its own loss: the vectors move towards sqrt(BM25) weights of each text's own tokens."""
    texts = fixtures.NORWEGIAN * 3
    report = build_builtin_model(texts, fixtures.TINY.model_copy(update={"pretrain_epochs": 2, "absent_weight": 1.0, "lexical_steps": 150,
                                                                          "lexical_learning_rate": 0.01}), tmp_path / "m")
    assert report["lexical_steps"] == 150
    assert report["lexical_loss_end"] < 0.7 * report["lexical_loss_start"]


def test_head_refit_lowers_its_loss_and_edits_the_head_exactly(tmp_path):
    """The per-token refit of the head: its own objective falls, and the edited head's pooled logits are exactly
    ``s * (m + d)`` of the unedited ones (a per-token affine edit with ``s > 0`` commutes with SPLADE's max)."""
    from transformers import AutoConfig, AutoModelForMaskedLM

    from norsparse.base_model.builtin import (fit_token_affine, lexical_targets, model_config, pooled_raw_logits,
                                              refit_output_head, write_remote_code)

    texts = sorted(set(fixtures.NORWEGIAN))
    tiny = fixtures.TINY.model_copy(update={"head_refit": True})
    tokenizer = train_tokenizer(texts, tiny.vocab_size, tiny.max_length)
    write_remote_code(tmp_path, model_config(tiny, len(tokenizer)))
    torch.manual_seed(0)
    model = AutoModelForMaskedLM.from_config(AutoConfig.from_pretrained(tmp_path, trust_remote_code=True), trust_remote_code=True)
    model.classifier.emb2vocab.weight = torch.nn.Parameter(model.classifier.emb2vocab.weight.detach().clone())
    before, _ = pooled_raw_logits(model, tokenizer, texts, tiny.max_length)
    scale, shift, _, _ = fit_token_affine(before, lexical_targets(tokenizer, texts, tiny.max_length), tiny.refit_absent_weight)
    report = refit_output_head(model, tokenizer, texts, tiny)
    assert report["refit_loss_end"] < 0.8 * report["refit_loss_start"]
    after, _ = pooled_raw_logits(model, tokenizer, texts, tiny.max_length)
    assert torch.allclose(after, scale * (before + shift), atol=1e-3, rtol=1e-4)
    assert (scale != 1).any() and (scale > 0).all()


def test_sparse_pooled_weights_match_the_dense_computation_and_its_gradient(tmp_path):
    """The lexical regression's shortcut (one head dot product per active or own entry, at the position that wins
    the max) gives the same pooled SPLADE weights and the same gradient, for every parameter of the builtin model,
    as ``max_i log1p(relu(head(h_i)))`` computed in full."""
    from transformers import AutoConfig, AutoModelForMaskedLM

    from norsparse.base_model.builtin import head_features, model_config, sparse_pooled_weights, write_remote_code

    texts = sorted(set(fixtures.NORWEGIAN))[:6]
    tokenizer = train_tokenizer(texts, fixtures.TINY.vocab_size, fixtures.TINY.max_length)
    write_remote_code(tmp_path, model_config(fixtures.TINY, len(tokenizer)))
    torch.manual_seed(0)
    model = AutoModelForMaskedLM.from_config(AutoConfig.from_pretrained(tmp_path, trust_remote_code=True), trust_remote_code=True)
    model.classifier.emb2vocab.weight = torch.nn.Parameter(model.classifier.emb2vocab.weight.detach().clone())
    model.eval()  # no dropout: both computations see the same hidden states
    encoded = tokenizer(texts, padding=True, return_tensors="pt")
    real = encoded["attention_mask"][:, 1:].bool()
    special = torch.tensor(tokenizer.all_special_ids)
    keep = torch.zeros(len(texts), len(tokenizer), dtype=torch.bool)
    keep.scatter_(1, encoded["input_ids"][:, 1:], True)
    target = torch.rand(keep.shape) * keep

    def loss_and_grads(weights_of):
        model.zero_grad()
        hidden, _ = model.get_contextualized_embeddings(encoded["input_ids"], encoded["attention_mask"])
        weights = weights_of(hidden[:, :-1])
        (((weights - target) ** 2) * keep + 0.1 * weights ** 2 * ~keep).sum().backward()
        return weights.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    dense, dense_grads = loss_and_grads(lambda h: torch.log1p(torch.relu(model.classifier(h).masked_fill(~real[..., None], -1e4)))
                                        .amax(dim=1).index_fill(1, special, 0.0))
    sparse, sparse_grads = loss_and_grads(lambda h: sparse_pooled_weights(model.classifier.emb2vocab, head_features(model.classifier, h),
                                                                          real, keep, special))
    assert (dense > 0).sum() > 20 and ((dense > 0) & ~keep).any()  # active entries, own and not
    assert torch.allclose(sparse, dense, atol=1e-5)
    assert dense_grads.keys() == sparse_grads.keys()
    for name, grad in dense_grads.items():
        assert torch.allclose(sparse_grads[name], grad, atol=1e-5, rtol=1e-4), name


def test_pretraining_loss_is_the_models_own_masked_lm_loss(tmp_path):
    """The builtin pre-training computes GptBertForMaskedLM's own loss (capped logits, shifted labels) at the
    labelled positions only; it must stay equal to what the remote code's forward returns."""
    from transformers import AutoConfig, AutoModelForMaskedLM, DataCollatorForLanguageModeling

    from norsparse.base_model.builtin import all_position_labels, masked_lm_loss, model_config, write_remote_code

    texts = sorted(set(fixtures.NORWEGIAN))[:8]
    tokenizer = train_tokenizer(texts, fixtures.TINY.vocab_size, fixtures.TINY.max_length)
    write_remote_code(tmp_path, model_config(fixtures.TINY, len(tokenizer)))
    torch.manual_seed(0)
    model = AutoModelForMaskedLM.from_config(AutoConfig.from_pretrained(tmp_path, trust_remote_code=True), trust_remote_code=True)
    model.eval()
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15, seed=0)
    batch = collator([{"input_ids": ids} for ids in tokenizer(texts)["input_ids"]])
    labels = all_position_labels(batch, tokenizer)
    assert (labels == -100).any() and (labels != -100).sum() > 20
    own = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels).loss
    assert torch.allclose(masked_lm_loss(model, batch["input_ids"], batch["attention_mask"], labels), own, atol=1e-5)


def test_lexical_gap_benchmark_scores_the_builds_own_targets():
    """benchmarks/lexical_gap.py compares a model with the same sqrt(BM25) weights the build regresses onto."""
    import importlib.util
    from collections import Counter

    from conftest import ROOT

    spec = importlib.util.spec_from_file_location("lexical_gap", ROOT / "benchmarks/lexical_gap.py")
    gap = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gap)
    texts = sorted(set(fixtures.NORWEGIAN))
    tokenizer = train_tokenizer(texts, fixtures.TINY.vocab_size, 64)
    counts = gap.token_counts(tokenizer, texts)
    df = Counter(t for count in counts for t in count)
    average = sum(sum(c.values()) for c in counts) / len(counts)
    matrix = gap.bm25_matrix(counts, df, len(counts), average, len(tokenizer), sqrt=True)
    targets = lexical_targets(tokenizer, texts, 64)
    for row, target in enumerate(targets):
        assert set(matrix[row].nonzero()[0]) == set(target)
        assert all(abs(matrix[row, t] - w) < 1e-5 for t, w in target.items())

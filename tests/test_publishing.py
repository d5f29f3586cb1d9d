"""Model card and Hub push (with a substituted client: no network)."""
import json
import logging

import pytest
import yaml

from norsparse import publishing
from norsparse.params import load_params
from norsparse.stage import StageError

PREPARE = {"train_rows": 1000, "dev_queries": 100, "dev_corpus": 50, "test_queries": 200, "test_corpus": 120,
           "sources": {"sample-qa": {"train_rows": 700}, "sample-nli": {"train_rows": 300}}}
PATCH = {"soft_cap": "removed", "before": {"splade_zero_fraction": 0.0}, "after": {"splade_zero_fraction": 0.99, "special_token_ids": [0, 1, 2, 3, 4]}}
CALIBRATION = {"threshold": 0.3, "max_ndcg_drop": 0.01, "ndcg@10": 0.61, "ndcg@10_unthresholded": 0.615,
               "document_active_dims": 90.5, "document_active_dims_unthresholded": 180.0}
EVALUATION = {"test": {"model": {"ndcg@10": 0.6123, "mrr@10": 0.55, "recall@100": 0.97, "query_active_dims": 12.0, "document_active_dims": 91.0},
                       "bm25": {"ndcg@10": 0.8573, "mrr@10": 0.83, "recall@100": 0.99},
                       "base_model": {"ndcg@10": 0.42, "mrr@10": 0.37, "recall@100": 0.9}}, "run_name": "x"}
SECRET = "hf_SuperSecretTokenValue123"


def card(repo_id="me/norsk-splade"):
    return publishing.model_card(load_params("params.yaml"), prepare=PREPARE, patch=PATCH, calibration=CALIBRATION,
                                 evaluation=EVALUATION, repo_id=repo_id)


def test_card_says_what_the_model_is_and_how_it_scored():
    text = card()
    front = yaml.safe_load(text.split("---")[1])
    assert front["library_name"] == "sentence-transformers" and "sparse-encoder" in front["tags"]
    assert "no" in front["language"]
    for fragment in ("SPLADE", "builtin", "Soft cap", "0.3", "0.6123", "0.8573", "0.4200", "BM25",
                     "Intended use and limits", 'SparseEncoder("me/norsk-splade", trust_remote_code=True)', "sample-qa"):
        assert fragment in text, fragment


def test_release_folder_holds_model_card_and_params(tmp_path):
    calibrated = tmp_path / "calibrated"
    (calibrated / "1_SpladePooling").mkdir(parents=True)
    (calibrated / "modules.json").write_text("[]")
    out = tmp_path / "release"
    out.mkdir()
    publishing.assemble_release(calibrated, out, card(), "model: {}\n")
    assert {p.name for p in out.iterdir()} == {"1_SpladePooling", "modules.json", "README.md", "norsparse_params.yaml"}


class FakeApi:
    def __init__(self, fail=False):
        self.calls, self.fail = [], fail

    def create_repo(self, **kwargs):
        self.calls.append(("create_repo", kwargs))

    def upload_folder(self, **kwargs):
        if self.fail:
            raise ConnectionError(f"upload refused for token {SECRET}")
        self.calls.append(("upload_folder", kwargs))

        class Commit:
            commit_url = "https://huggingface.co/me/norsk-splade/commit/abc"
        return Commit()


def test_push_creates_the_repo_and_uploads_the_release(tmp_path, caplog, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    caplog.set_level(logging.DEBUG)
    api = FakeApi()
    url = publishing.push(tmp_path, "me/norsk-splade", private=True, api=api)
    assert url.endswith("/commit/abc")
    assert api.calls[0] == ("create_repo", {"repo_id": "me/norsk-splade", "repo_type": "model", "private": True, "exist_ok": True})
    assert api.calls[1][1]["folder_path"] == str(tmp_path) and api.calls[1][1]["repo_id"] == "me/norsk-splade"
    assert SECRET not in caplog.text


def test_push_failure_names_the_repo_without_the_token(tmp_path):
    with pytest.raises(StageError) as error:
        publishing.push(tmp_path, "me/norsk-splade", private=True, api=FakeApi(fail=True))
    assert "me/norsk-splade" in str(error.value)
    assert "ConnectionError" in str(error.value)


def test_real_client_gets_the_token_from_the_environment(tmp_path, monkeypatch):
    created = {}

    class RecordingHfApi(FakeApi):
        def __init__(self, token=None):
            super().__init__()
            created["token"] = token

    monkeypatch.setenv("HF_TOKEN", SECRET)
    monkeypatch.setattr("huggingface_hub.HfApi", RecordingHfApi)
    publishing.push(tmp_path, "me/norsk-splade", private=False)
    assert created["token"] == SECRET


def test_no_token_stops_the_push(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # no stored login either
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    with pytest.raises(StageError, match="HF_TOKEN or run `hf auth login`"):
        publishing.push(tmp_path, "me/norsk-splade", private=True)


def test_token_never_lands_in_card_or_params(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    params = load_params("params.yaml")
    assert SECRET not in card()
    assert SECRET not in json.dumps(params.model_dump(mode="json", by_alias=True))


def test_card_shows_search_examples_with_matched_tokens():
    examples = [{"query": "Hvor lang er Sognefjorden?", "rank": 1, "id": "p7", "score": 12.5,
                 "text": "Sognefjorden er den lengste fjorden i Norge.",
                 "matches": [{"token": "sognefjord", "query_weight": 2.0, "document_weight": 3.0, "contribution": 6.0,
                              "query_expansion": False, "document_expansion": False},
                             {"token": "fjord", "query_weight": 1.0, "document_weight": 0.5, "contribution": 0.5,
                              "query_expansion": True, "document_expansion": False}]}]
    text = publishing.model_card(load_params("params.yaml"), prepare=PREPARE, patch=PATCH, calibration=CALIBRATION,
                                 evaluation=EVALUATION, repo_id=None, examples=examples)
    assert "## Examples" in text and "**Hvor lang er Sognefjorden?** → `p7`" in text
    assert "`sognefjord` 2.00 × 3.00 = 6.00" in text and "`fjord` +q" in text
    assert "## Examples" not in card()  # no examples, no section


def test_search_examples_from_a_model(tiny_splade):
    from norsparse.model_io import open_model

    corpus = {"a": "Oslo er hovedstaden i Norge.", "b": "Brunost lages av myse."}
    examples = publishing.search_examples(open_model(tiny_splade), corpus, {"q": "Hva er hovedstaden i Norge?"}, 3)
    assert len(examples) == 1 and examples[0]["query"] == "Hva er hovedstaden i Norge?" and examples[0]["id"] in corpus

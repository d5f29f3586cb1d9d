"""Publishing: the release folder, its model card, and the upload to the Hugging Face Hub.

The release is the calibrated model plus a model card (``README.md``) written
from the pipeline's own metrics, and the params it came from. It is pushed only
when ``publish.push`` is true; the token comes from the environment (``HF_TOKEN``)
or the stored ``hf auth login``, never from params, and is never logged.
"""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import yaml

from .params import BUILTIN_BASE_MODEL, HUB_ID, Params
from .stage import StageError

log = logging.getLogger(__name__)

ARCHITECTURE_TEXT = {
    "splade": (
        "SPLADE: the masked-language-model head scores every vocabulary token for every input token; "
        "`log1p(relu(x))` max-pooled over the input gives one weight per vocabulary token. Queries and documents "
        "are both encoded by the transformer."
    ),
    "inference-free-splade": (
        "Inference-free SPLADE: documents are encoded by the SPLADE path (masked-LM head, max-pooled "
        "`log1p(relu(x))`); queries by a learned weight per vocabulary token, with no transformer at query time, "
        "so query encoding costs a tokenizer call and a lookup."
    ),
    "csr": (
        "CSR (Contrastive Sparse Representation): mean-pooled hidden states pass through a sparse autoencoder that "
        "keeps the top-k latent activations; the active dimensions are latent features, not vocabulary tokens."
    ),
}


def public_path(value: str) -> str:
    """A path as the release may show it: project paths stay relative; a path of this machine outside the project
    becomes ``local:<name>`` (its content hash is in ``norsparse_inputs.json``). Hub ids and ``builtin`` pass through."""
    path = Path(value)
    if not path.exists():
        return value
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return f"local:{path.resolve().name}"


def released_params(params: Params) -> dict:
    """The params the release came from, with no local file paths of this machine."""
    used = params.model_dump(mode="json", by_alias=True)
    for source in used["data"]["sources"]:
        source["path"] = public_path(source["path"])
    used["model"]["base_model"] = public_path(used["model"]["base_model"])
    used["evaluate"]["tasks"] = [public_path(task) for task in used["evaluate"]["tasks"]]
    return used


def _fmt(value, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


NOT_TASKS = {"fusion", "run_name"}


def _results_table(evaluation: dict) -> str:
    rows = ["| task | system | NDCG@10 | MRR@10 | Recall@100 | query active dims | document active dims |",
            "|---|---|---|---|---|---|---|"]
    fusion = evaluation.get("fusion", {})
    labels = {"model": "**this model**", "bm25": "BM25 (bm25s, Norwegian stemmer)",
              "hybrid": f"BM25 + this model ({fusion.get('method', '')} fusion, weights tuned on dev)",
              "base_model": "untrained base model (SPLADE)"}
    for task, systems in evaluation.items():
        if task in NOT_TASKS or not isinstance(systems, dict):
            continue
        for system, s in systems.items():
            label = labels.get(system, system)
            rows.append(f"| {task} | {label} | {_fmt(s['ndcg@10'])} | {_fmt(s['mrr@10'])} | {_fmt(s['recall@100'])} | "
                        f"{_fmt(s.get('query_active_dims', '–'), 1)} | {_fmt(s.get('document_active_dims', '–'), 1)} |")
    return "\n".join(rows)


def model_card(params: Params, *, prepare: dict, patch: dict, calibration: dict, evaluation: dict, repo_id: str | None) -> str:
    arch = params.model.architecture
    base = params.model.base_model
    builtin = base == BUILTIN_BASE_MODEL
    name = params.publish.model_name or (repo_id.split("/")[-1] if repo_id else f"norsparse-{arch}")
    front = {
        "language": ["no", "nb"],
        "license": params.publish.license,
        "library_name": "sentence-transformers",
        "pipeline_tag": "feature-extraction",
        "tags": ["sentence-transformers", "sparse-encoder", "sparse", arch, "norwegian", "norsparse"],
    }
    if not builtin and HUB_ID.match(base):
        front["base_model"] = base
    test = evaluation.get("test", {})
    ours, bm25, hybrid = test.get("model", {}), test.get("bm25", {}), test.get("hybrid")
    sources = "\n".join(
        f"- `{s.name}` ({public_path(s.path)}{'@' + s.revision[:12] if s.revision else ''}): "
        f"{prepare['sources'].get(s.name, {}).get('train_rows', '?')} training rows"
        for s in params.data.sources
    )
    base_line = (
        "the builtin tiny NorBERT4-style model that norsparse builds from the training text (a demonstration "
        "base model: small, trained in minutes on a CPU)" if builtin
        else f"`{public_path(base)}`" + (f" at revision `{params.model.revision}`" if params.model.revision else "")
    )
    usage_id = repo_id or "path/to/this/folder"
    return f"""---
{yaml.safe_dump(front, sort_keys=False, allow_unicode=True).strip()}
---

# {name}

A Norwegian sparse retrieval encoder ({arch}) trained with norsparse, a DVC pipeline built on
sentence-transformers' `SparseEncoder`.
Each text becomes a sparse vector; relevance is the dot product of a query's and a document's vector,
so the vectors can be served from an inverted index (OpenSearch neural sparse, Elasticsearch
`sparse_vector`, Qdrant sparse vectors, Vespa).

## Model

- **Architecture:** {ARCHITECTURE_TEXT[arch]}
- **Base model:** {base_line}.
- **Soft cap:** NorBERT4's masked-LM head soft-caps its logits (`30 * sigmoid(x / 7.5)`), so no SPLADE weight is ever
  exactly zero. Here the cap was **{patch.get('soft_cap', 'absent')}** by the patch stage
  (probe text: {100 * patch.get('before', {}).get('splade_zero_fraction', 0):.1f}% zeros before,
  {100 * patch.get('after', {}).get('splade_zero_fraction', 0):.1f}% after).
- **Special tokens:** the dimensions of special tokens (ids {patch.get('after', {}).get('special_token_ids', [])}) are always zero; NorBERT4's head
  prepends a fixed BOS row that would otherwise be active in every vector.
- **Inference threshold:** {calibration.get('threshold')} — values below it are set to zero by the model's last module
  (`SparsityFilter`, shipped as `sparsity_filter.py`). Chosen on the dev split as the largest threshold that keeps NDCG@10
  within {calibration.get('max_ndcg_drop')} of the unthresholded model (dev NDCG@10 {_fmt(calibration.get('ndcg@10_unthresholded', 0.0))}
  → {_fmt(calibration.get('ndcg@10', 0.0))}; active document dimensions {_fmt(calibration.get('document_active_dims_unthresholded', 0.0), 1)}
  → {_fmt(calibration.get('document_active_dims', 0.0), 1)}).

## Results

Retrieval evaluated with mteb. The test queries and their relevant passages never occur in training; each
split's corpus holds the other passages of its source too (training passages included), as distractors. The dev
split chose the checkpoint, the inference threshold and the hybrid's fusion weights; the test split chose nothing.

{_results_table(evaluation)}

On the test split this model reaches NDCG@10 {_fmt(ours.get('ndcg@10', float('nan')))} against BM25's {_fmt(bm25.get('ndcg@10', float('nan')))}{
f" and, fused with BM25, {_fmt(hybrid['ndcg@10'])}" if hybrid else ""}.

## Training data

{sources}

Train/dev/test splits are grouped by passage (no passage text in two splits); train {prepare.get('train_rows')} rows,
dev {prepare.get('dev_queries')} queries over {prepare.get('dev_corpus')} passages, test {prepare.get('test_queries')} queries over {prepare.get('test_corpus')} passages.
The exact parameters are in `norsparse_params.yaml`.

## Usage

```python
from sentence_transformers import SparseEncoder

model = SparseEncoder("{usage_id}", trust_remote_code=True)
queries = model.encode_query(["Hva er hovedstaden i Norge?"])
documents = model.encode_document(["Oslo er hovedstaden og den største byen i Norge."])
print(model.similarity(queries, documents))
print(model.decode(documents[0], top_k=10))  # the strongest tokens and their weights
```

`trust_remote_code=True` is needed for the base model's remote code and for `sparsity_filter.py`, which applies the
calibrated threshold and the special-token mask. Both files are in this repository; read them before you trust them.

## Intended use and limits

- Retrieval of Norwegian (Bokmål) text: first-stage search over an inverted index, or a lexical signal in hybrid search.
- Scores are only comparable between a query and documents encoded by this model.
- Trained on the data listed above; expect lower quality on other domains, on Nynorsk and on other languages.
{'- Built on the builtin demonstration base model: it shows the pipeline working end to end and is not meant for production search.' if builtin else ''}
"""


def assemble_release(calibrated: Path, out: Path, card: str, params_text: str, inputs: dict | None = None) -> None:
    for item in calibrated.iterdir():
        target = out / item.name
        if item.is_dir():
            shutil.copytree(item, target)
        else:
            shutil.copy2(item, target)
    (out / "README.md").write_text(card, encoding="utf-8")
    (out / "norsparse_params.yaml").write_text(params_text, encoding="utf-8")
    if inputs is not None:  # content hashes of the local inputs (data/checks/inputs), beside the params that name them
        (out / "norsparse_inputs.json").write_text(json.dumps(inputs, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def hub_token() -> str:
    from huggingface_hub import get_token

    token = get_token()  # HF_TOKEN from the environment, else the token stored by `hf auth login`
    if not token:
        raise StageError("publish.push is true but no Hugging Face token was found: set HF_TOKEN or run `hf auth login`")
    return token


def push(folder: Path, repo_id: str, private: bool, api=None) -> str:
    """Create the repository if needed and upload the release folder; return the commit URL."""
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi(token=hub_token())
    try:
        api.create_repo(repo_id=repo_id, repo_type="model", private=private, exist_ok=True)
        commit = api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model",
                                   commit_message="Upload norsparse release")
    except StageError:
        raise
    except Exception as error:  # noqa: BLE001 - report any client failure by name, never the token
        raise StageError(f"pushing to {repo_id!r} failed: {type(error).__name__}: {str(error).splitlines()[0][:300]}") from None
    url = getattr(commit, "commit_url", None) or str(commit)
    log.info("pushed models/release to https://huggingface.co/%s (%s)", repo_id, url)
    return url

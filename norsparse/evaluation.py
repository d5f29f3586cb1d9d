"""Evaluation with mteb on local BEIR folders, beside a BM25 baseline.

Any BEIR folder becomes an mteb retrieval task (``AbsTaskRetrieval`` filled from
local files, so it never touches the Hub). The model is wrapped in
``mteb.models.SparseEncoderWrapper`` (a bare SparseEncoder would be scored as a
dense model), runs without a result cache (a cache keyed by model name silently
returns stale scores for a retrained checkpoint) and under a name unique to its
weights. BM25 is mteb's own bm25s baseline, with the Norwegian stemmer and
stopwords that the task's language (nob-Latn) selects. The hybrid system fuses
the model's and BM25's rankings with ranx; its fusion weights are chosen on the
dev split and then applied unchanged to every other task.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
import tempfile
from pathlib import Path

from .beir import BeirData, load_beir
from .stage import StageError

log = logging.getLogger(__name__)
NORWEGIAN = ("nob", "nno", "nor")  # ISO 639-3: Bokmål, Nynorsk, Norwegian
SCORES = {"ndcg_at_10": "ndcg@10", "mrr_at_10": "mrr@10", "recall_at_100": "recall@100"}


def task_name(folder: Path) -> str:
    """An mteb task name for a folder: ``NorsparseLocal<CamelCasedPath>``."""
    words = re.findall(r"[A-Za-z0-9]+", str(folder))
    return "NorsparseLocal" + "".join(w[:1].upper() + w[1:] for w in words)


def beir_task(folder: Path, name: str | None = None):
    """An mteb retrieval task that reads ``folder`` (BEIR layout) from disk."""
    from datasets import Dataset
    from mteb.abstasks.retrieval import AbsTaskRetrieval
    from mteb.abstasks.retrieval_dataset_loaders import RetrievalSplitData
    from mteb.abstasks.task_metadata import TaskMetadata

    folder = Path(folder)
    data = load_beir(folder)  # read now: a bad folder fails before any model is loaded

    def load_data(self, num_proc=None, **kwargs):
        if self.data_loaded:
            return
        self.dataset = {"default": {"test": RetrievalSplitData(
            corpus=Dataset.from_list([{"id": k, "title": v["title"], "text": v["text"]} for k, v in data.corpus.items()]),
            queries=Dataset.from_list([{"id": k, "text": v} for k, v in data.queries.items()]),
            relevant_docs=data.qrels,
            top_ranked=None,
        )}}
        self.data_loaded = True

    name = name or task_name(folder)
    metadata = TaskMetadata(
        name=name, description=f"Retrieval on the local BEIR folder {folder}",
        dataset={"path": str(folder), "revision": "local"}, type="Retrieval", category="t2t",
        eval_splits=["test"], eval_langs=["nob-Latn"], main_score="ndcg_at_10", bibtex_citation="",
    )
    return type(name, (AbsTaskRetrieval,), {"metadata": metadata, "load_data": load_data})()


def model_fingerprint(folder: Path) -> str:
    digest = hashlib.sha1()
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(folder).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def unit_id(task_name: str, subset: str) -> str:
    """What one evaluated subset of a task is called in the metrics: the task name, plus ``_<subset>`` for a subset."""
    return task_name if subset == "default" else f"{task_name}_{subset}"


def _scores(result) -> dict[str, dict]:
    return {unit_id(tr.task_name, entry["hf_subset"]): {ours: float(entry[theirs]) for theirs, ours in SCORES.items()}
            for tr in result.task_results for split in tr.scores.values() for entry in split}


def norwegian_subsets(task) -> list[str]:
    """The subsets of a multilingual mteb task whose languages are Norwegian (Bokmål, Nynorsk or unspecified)."""
    langs = task.metadata.eval_langs
    if not isinstance(langs, dict):
        return ["default"]
    return [subset for subset, codes in langs.items() if any(code.split("-")[0] in NORWEGIAN for code in codes)]


def mteb_task(name: str, subsets: list[str] | None = None):
    """A named mteb task restricted to its test split and to ``subsets`` (by default its Norwegian ones).

    Its data is loaded now, so that a task whose dataset is neither reachable nor in the local cache stops the
    stage at once, naming the task, before any model is loaded.
    """
    import mteb

    try:
        task = mteb.get_task(name)
    except KeyError as error:
        raise StageError(f"evaluate.mteb_tasks: {error.args[0] if error.args else name}") from None
    available = task.hf_subsets
    chosen = subsets or norwegian_subsets(task)
    unknown = sorted(set(chosen) - set(available))
    if not chosen or unknown:
        raise StageError(f"evaluate.mteb_tasks: {name} has no subset {', '.join(unknown) or '(Norwegian)'}; "
                         f"its subsets are: {', '.join(available)}")
    task = mteb.get_task(name, eval_splits=task.metadata.eval_splits[:1], hf_subsets=chosen)
    dataset = task.metadata.dataset
    try:
        task.load_data()
        task.convert_v1_dataset_format_to_v2(num_proc=None)  # older tasks fill .corpus/.queries: one layout for all
    except Exception as error:  # noqa: BLE001 - whatever datasets raised, say which task and what to do
        raise StageError(f"evaluate.mteb_tasks: {name}: its dataset {dataset['path']}@{dataset.get('revision')} could not be "
                         f"loaded ({type(error).__name__}: {str(error).splitlines()[0][:300]}). Without the Hub, the dataset "
                         "must be in the local datasets cache: run once where the Hub is reachable") from None
    return task


def task_units(task) -> list[tuple[str, str]]:
    """``(unit id, subset)`` for every subset of a task that is evaluated."""
    return [(unit_id(task.metadata.name, subset), subset) for subset in task.hf_subsets]


def task_split(task, subset: str) -> BeirData:
    """Corpus, queries and judgements of one subset's evaluation split of a loaded mteb task."""
    task.load_data()
    task.convert_v1_dataset_format_to_v2(num_proc=None)
    split = task.dataset[subset][task.metadata.eval_splits[0]]
    return BeirData(
        corpus={str(row["id"]): {"title": row.get("title") or "", "text": row["text"]} for row in split["corpus"]},
        queries={str(row["id"]): row["text"] for row in split["queries"]},
        qrels={str(q): {str(d): int(s) for d, s in docs.items()} for q, docs in split["relevant_docs"].items()},
    )


def _evaluate(model, tasks: list, **kwargs) -> tuple[dict[str, dict], dict[str, dict]]:
    """mteb's scores per task, and the ranking it retrieved for every query (task -> {query: {doc: score}})."""
    import mteb

    with tempfile.TemporaryDirectory(prefix="norsparse-runs-") as folder:
        result = mteb.evaluate(model, tasks, cache=None, show_progress_bar=False, prediction_folder=folder, **kwargs)
        runs = {}
        for task in tasks:
            predictions = json.loads((Path(folder) / task.prediction_file_name).read_text(encoding="utf-8"))
            for unit, subset in task_units(task):
                runs[unit] = predictions[subset][task.metadata.eval_splits[0]]
    return _scores(result), runs


def mteb_scores(model, tasks: list, name: str, batch_size: int) -> tuple[dict[str, dict], dict[str, dict]]:
    import mteb

    model.model_card_data.model_name = name
    return _evaluate(mteb.models.SparseEncoderWrapper(model), tasks, encode_kwargs={"batch_size": batch_size})


def bm25_scores(tasks: list) -> tuple[dict[str, dict], dict[str, dict]]:
    import mteb

    return _evaluate(mteb.get_model("mteb/baseline-bm25s"), tasks)


def _ranx_run(run: dict[str, dict], name: str):
    from ranx import Run

    return Run({q: {d: float(s) for d, s in docs.items()} for q, docs in run.items() if docs}, name=name)


def _ranx_qrels(qrels: dict[str, dict[str, int]]):
    from ranx import Qrels

    return Qrels({q: {d: int(s) for d, s in docs.items() if s > 0} for q, docs in qrels.items() if any(s > 0 for s in docs.values())})


def tune_fusion(qrels: dict, bm25_run: dict, model_run: dict, norm: str, method: str) -> dict:
    """ranx fusion parameters (weights) that maximise NDCG@10 on the given (dev) judgements."""
    from ranx import optimize_fusion

    best = optimize_fusion(_ranx_qrels(qrels), [_ranx_run(bm25_run, "bm25"), _ranx_run(model_run, "model")],
                           norm=norm, method=method, metric="ndcg@10")
    return {k: list(v) if isinstance(v, tuple) else v for k, v in best.items()}


def hybrid_scores(qrels: dict, bm25_run: dict, model_run: dict, norm: str, method: str, fusion: dict) -> dict:
    """NDCG@10, MRR@10 and Recall@100 of the fused BM25 + model ranking (ranx)."""
    from ranx import evaluate, fuse

    fused = fuse([_ranx_run(bm25_run, "bm25"), _ranx_run(model_run, "model")], norm=norm, method=method, params=fusion)
    scores = evaluate(_ranx_qrels(qrels), fused, ["ndcg@10", "mrr@10", "recall@100"], make_comparable=True)
    return {name: round(float(value), 5) for name, value in scores.items()}


def memoize_encodings(model):
    """Make ``model.encode_query`` and ``model.encode_document`` remember each text's sparse vector.

    The dev and test corpora of a source hold the same passages (every split's passages are the others'
    distractors), and :func:`active_dims` encodes the texts that mteb has just encoded: each is encoded once.
    Calls for anything but a list of texts as one sparse tensor (the default) pass through uncached.
    """
    import torch

    def cached(encode, kind):
        rows: dict[tuple, tuple] = {}

        def encode_cached(inputs, prompt=None, **kwargs):
            if isinstance(inputs, str) or not inputs or kwargs.get("convert_to_sparse_tensor", True) is not True \
                    or not set(kwargs) <= {"batch_size", "show_progress_bar", "convert_to_sparse_tensor"}:
                return encode(inputs, prompt=prompt, **kwargs)
            prompt = model.prompts.get(kind, "") if prompt is None else prompt  # what encode_query/_document apply
            missing = list(dict.fromkeys(text for text in inputs if (prompt, text) not in rows))
            if missing:
                new = encode(missing, prompt=prompt, **kwargs).coalesce().to_sparse_csr()
                crow, col, values = new.crow_indices(), new.col_indices(), new.values()
                for i, text in enumerate(missing):
                    rows[prompt, text] = (col[crow[i]:crow[i + 1]], values[crow[i]:crow[i + 1]])
            picked = [rows[prompt, text] for text in inputs]
            columns = torch.cat([c for c, _ in picked])
            row_of = torch.repeat_interleave(torch.arange(len(picked), device=columns.device),
                                             torch.tensor([len(c) for c, _ in picked], device=columns.device))
            return torch.sparse_coo_tensor(torch.stack([row_of, columns]), torch.cat([v for _, v in picked]),
                                           (len(picked), model.get_embedding_dimension()), check_invariants=False).coalesce()
        return encode_cached

    model.encode_query = cached(model.encode_query, "query")
    model.encode_document = cached(model.encode_document, "document")
    return model


def active_dims(model, queries: list[str], documents: list[str], batch_size: int) -> dict[str, float]:
    """Mean non-zero dimensions of the query and document vectors the model emits for these texts."""
    queries = model.encode_query(queries, batch_size=batch_size, convert_to_sparse_tensor=True)
    documents = model.encode_document(documents, batch_size=batch_size, convert_to_sparse_tensor=True)
    return {
        "query_active_dims": round(float(model.sparsity(queries)["active_dims"]), 2),
        "document_active_dims": round(float(model.sparsity(documents)["active_dims"]), 2),
    }

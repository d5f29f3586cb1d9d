"""evaluate: mteb on the test split (and evaluate.tasks, evaluate.mteb_tasks), beside BM25, a BM25 + model hybrid and the untrained base model.

The dev split is evaluated too: it is where the hybrid's fusion weights are chosen (ranx), before they are
applied unchanged to the test split and every other task.

Outs: metrics/eval.json (per task: NDCG@10, MRR@10, Recall@100 and active dimensions of the model; the same
scores for BM25, the hybrid and the base model; the fusion chosen on dev), metrics/eval_plot.json (NDCG@10 per
system and task, for dvc plots).
"""
import logging
from pathlib import Path

from norsparse.architectures import splade_encoder
from norsparse.atomic import write_json
from norsparse.beir import load_beir
from norsparse.evaluation import (active_dims, beir_task, bm25_scores, hybrid_scores, memoize_encodings, model_fingerprint,
                                  mteb_scores, mteb_task, task_split, task_units, tune_fusion)
from norsparse.model_io import load_model
from norsparse.params import Params
from norsparse.stage import run_stage
from norsparse.training import select_device

log = logging.getLogger("norsparse.evaluate")
MODEL, BASE = Path("models/calibrated"), Path("models/base")
DEV, TEST = Path("data/prepared/dev"), Path("data/prepared/test")


def main(params: Params) -> None:
    p = params.evaluate
    # every evaluated unit (a local BEIR folder, or one subset of a named mteb task): its task, queries, documents, judgements
    folders = {"test": TEST, "dev": DEV} | {Path(t).name: Path(t) for t in p.tasks}
    tasks = {label: beir_task(folder) for label, folder in folders.items()}
    units = {tasks[label].metadata.name: (label, load_beir(folder)) for label, folder in folders.items()}
    for spec in p.mteb_tasks:  # loaded now: a task without reachable or cached data stops the stage here
        task = tasks[spec.name] = mteb_task(spec.name, spec.subsets)
        for unit, subset in task_units(task):
            units[unit] = (unit, task_split(task, subset))
    texts = {unit: (list(data.queries.values()), list(data.documents().values())) for unit, (_, data) in units.items()}
    qrels = {unit: data.qrels for unit, (_, data) in units.items()}
    device = select_device(params.train.device)

    systems, runs = {}, {}
    model = memoize_encodings(load_model(MODEL, device=device))  # dev and test share their passages: encoded once
    run_name = f"norsparse-{params.model.architecture}-{model_fingerprint(MODEL)}"
    systems["model"], runs["model"] = mteb_scores(model, list(tasks.values()), run_name, p.batch_size)
    for unit in units:
        systems["model"][unit] |= active_dims(model, *texts[unit], p.batch_size)
    systems["bm25"], runs["bm25"] = bm25_scores(list(tasks.values()))

    report = {}
    if p.hybrid.enabled:  # fusion weights from dev only, then the same fusion everywhere
        dev_unit = tasks["dev"].metadata.name
        fusion = tune_fusion(qrels[dev_unit], runs["bm25"][dev_unit], runs["model"][dev_unit], p.hybrid.norm, p.hybrid.method)
        log.info("hybrid: %s fusion (%s norm) tuned on dev: %s", p.hybrid.method, p.hybrid.norm, fusion)
        systems["hybrid"] = {unit: hybrid_scores(qrels[unit], runs["bm25"][unit], runs["model"][unit], p.hybrid.norm,
                                                 p.hybrid.method, fusion) for unit in units}
        report["fusion"] = {"method": p.hybrid.method, "norm": p.hybrid.norm, "tuned_on": "dev", **fusion}
    if p.compare_base_model:
        base = memoize_encodings(splade_encoder(BASE, params.train.max_seq_length).to(device))
        systems["base_model"], _ = mteb_scores(base, list(tasks.values()), f"norsparse-base-{model_fingerprint(BASE)}", p.batch_size)
        for unit in units:
            systems["base_model"][unit] |= active_dims(base, *texts[unit], p.batch_size)

    by_task = {label: {system: scores[unit] for system, scores in systems.items()} for unit, (label, _) in units.items()}
    for label, by_system in by_task.items():
        log.info("%s: NDCG@10 %s", label, ", ".join(f"{s} {v['ndcg@10']:.4f}" for s, v in by_system.items()))
    write_json("metrics/eval.json", by_task | report | {"run_name": run_name})
    write_json("metrics/eval_plot.json", [
        {"task": label, "system": system, "ndcg@10": scores["ndcg@10"]}
        for label, by_system in by_task.items() for system, scores in by_system.items()
    ])

if __name__ == "__main__":
    run_stage("evaluate", main)

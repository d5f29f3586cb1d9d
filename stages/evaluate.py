"""evaluate: mteb on the test split (and evaluate.tasks), beside BM25 and the untrained base model.

Outs: metrics/eval.json (per task: NDCG@10, MRR@10, Recall@100 and active dimensions of the
model; the same scores for BM25 and the base model), metrics/eval_plot.json (NDCG@10 per system, for dvc plots).
"""
import logging
from pathlib import Path

from norsparse.architectures import splade_encoder
from norsparse.atomic import write_json
from norsparse.evaluation import active_dims, beir_task, bm25_scores, model_fingerprint, mteb_scores
from norsparse.model_io import load_model
from norsparse.params import Params
from norsparse.stage import run_stage
from norsparse.training import select_device

log = logging.getLogger("norsparse.evaluate")
MODEL, BASE, TEST = Path("models/calibrated"), Path("models/base"), Path("data/prepared/test")


def main(params: Params) -> None:
    p = params.evaluate
    folders = {"test": TEST} | {Path(t).name: Path(t) for t in p.tasks}
    tasks = {label: beir_task(folder) for label, folder in folders.items()}
    names = {task.metadata.name: label for label, task in tasks.items()}
    device = select_device(params.train.device)

    systems = {}
    model = load_model(MODEL, device=device)
    run_name = f"norsparse-{params.model.architecture}-{model_fingerprint(MODEL)}"
    systems["model"] = mteb_scores(model, list(tasks.values()), run_name, p.batch_size)
    for task_id, label in names.items():
        systems["model"][task_id] |= active_dims(model, folders[label], p.batch_size)
    systems["bm25"] = bm25_scores(list(tasks.values()))
    if p.compare_base_model:
        base = splade_encoder(BASE, params.train.max_seq_length).to(device)
        systems["base_model"] = mteb_scores(base, list(tasks.values()), f"norsparse-base-{model_fingerprint(BASE)}", p.batch_size)
        for task_id, label in names.items():
            systems["base_model"][task_id] |= active_dims(base, folders[label], p.batch_size)

    report = {label: {system: scores[task_id] for system, scores in systems.items()} for task_id, label in names.items()}
    for label, by_system in report.items():
        log.info("%s: NDCG@10 %s", label, ", ".join(f"{s} {v['ndcg@10']:.4f}" for s, v in by_system.items()))
    write_json("metrics/eval.json", report | {"run_name": run_name})
    write_json("metrics/eval_plot.json", [
        {"task": label, "system": system, "ndcg@10": scores["ndcg@10"]}
        for label, by_system in report.items() for system, scores in by_system.items()
    ])


if __name__ == "__main__":
    run_stage("evaluate", main)

"""prepare: read data.sources, clean them and split train/dev/test without leaks.

Outs: data/prepared/train.parquet, data/prepared/dev/, data/prepared/test/ (BEIR layout),
metrics/prepare.json (split statistics).
"""
import logging

from norsparse.atomic import atomic_dir, write_json
from norsparse.beir import write_beir
from norsparse.inputs import check_sources
from norsparse.params import Params
from norsparse.stage import StageError, run_stage

log = logging.getLogger("norsparse.prepare")


def main(params: Params) -> None:
    check_sources(params.data.sources)  # local files: encoding, JSON, columns, types; before pandas and datasets load
    from norsparse.splits import prepare_sources

    prepared = prepare_sources(params.data)
    summary = prepared.summary()
    for name, counts in summary["sources"].items():
        log.info("source %s: %s", name, ", ".join(f"{k} {v}" for k, v in counts.items()))
    if summary["train_rows"] == 0 or summary["dev_queries"] == 0 or summary["test_queries"] == 0:
        raise StageError(f"the sources give an empty split ({summary}); add data or change data.split")

    with atomic_dir("data/prepared") as out:
        prepared.train.to_parquet(out / "train.parquet", index=False)
        write_beir(out / "dev", prepared.dev)
        write_beir(out / "test", prepared.test)
    write_json("metrics/prepare.json", summary)
    log.info("train %d rows; dev %d queries / %d passages; test %d queries / %d passages",
             summary["train_rows"], summary["dev_queries"], summary["dev_corpus"], summary["test_queries"], summary["test_corpus"])


if __name__ == "__main__":
    run_stage("prepare", main)

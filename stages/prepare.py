"""prepare: read data.sources, clean them and split train/dev/test without leaks.

Outs: data/prepared/train.parquet, data/prepared/dev/, data/prepared/test/ (BEIR layout),
metrics/prepare.json (split statistics). Sources are read in batches and the outputs written as
they go, so memory stays bounded at hub scale (README: "prepare at scale").
"""
import logging
import os

os.environ.setdefault("USE_TORCH", "0")  # prepare needs no torch; datasets' streaming reader would import it (seconds)

from norsparse.atomic import atomic_dir, write_json
from norsparse.inputs import check_sources
from norsparse.params import Params
from norsparse.stage import StageError, run_stage

log = logging.getLogger("norsparse.prepare")


def main(params: Params) -> None:
    check_sources(params.data.sources)  # local files: encoding, JSON, columns, types; before pyarrow and datasets load
    from norsparse.splits import prepare_sources

    with prepare_sources(params.data) as prepared:
        summary = prepared.summary()
        for name, counts in summary["sources"].items():
            log.info("source %s: %s", name, ", ".join(f"{k} {v}" for k, v in counts.items()))
        if summary["train_rows"] == 0 or summary["dev_queries"] == 0 or summary["test_queries"] == 0:
            raise StageError(f"the sources give an empty split ({summary}); add data or change data.split")
        with atomic_dir("data/prepared") as out:
            prepared.write(out)
    write_json("metrics/prepare.json", summary)
    log.info("train %d rows; dev %d queries / %d passages; test %d queries / %d passages",
             summary["train_rows"], summary["dev_queries"], summary["dev_corpus"], summary["test_queries"], summary["test_corpus"])


if __name__ == "__main__":
    run_stage("prepare", main)

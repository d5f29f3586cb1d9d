"""What every stage script shares: a conventional CLI, readable logs, params
validated before any work, and clean one-line errors for bad input."""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable

from .beir import DataError
from .params import Params, ParamsError, load_params

log = logging.getLogger("norsparse")


class StageError(RuntimeError):
    """A stage cannot go on; the message says why and what to do."""


EXPECTED_ERRORS = (ParamsError, DataError, StageError)


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
        force=True,
    )
    for noisy in ("httpx", "urllib3", "filelock", "fsspec", "datasets", "huggingface_hub", "mteb", "bm25s"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run_stage(name: str, body: Callable[[Params], None], argv: list[str] | None = None) -> None:
    """Parse ``--params``, validate the whole params file, run ``body`` and report failures clearly."""
    parser = argparse.ArgumentParser(prog=f"python -m stages.{name}", description=f"The '{name}' stage of the norsparse pipeline.")
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    started = time.perf_counter()
    try:
        params = load_params(args.params)
        log.info("stage %s: params from %s are valid", name, args.params)
        body(params)
    except EXPECTED_ERRORS as error:
        log.error("stage %s failed:\n%s", name, error)
        log.debug("the traceback, for debugging:", exc_info=True)
        sys.exit(2)
    log.info("stage %s finished in %.1f s", name, time.perf_counter() - started)

"""The ``norsparse`` command: small helpers around the DVC pipeline.

    norsparse check-params [params.yaml]   validate params without running anything
    norsparse data-card                    regenerate data/sample/README.md from the data
    norsparse encode MODEL TEXT...         show the strongest dimensions of a model's vectors
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .params import ParamsError, load_params


def _check_params(args) -> int:
    try:
        params = load_params(args.params)
    except ParamsError as error:
        print(error, file=sys.stderr)
        return 2
    print(f"{args.params}: valid ({params.model.architecture} on {params.model.base_model}, {len(params.data.sources)} source(s))")
    return 0


def _data_card(args) -> int:
    from .sample_corpus import write_data_card

    path = write_data_card(Path(args.folder), Path(args.params))
    print(f"wrote {path}")
    return 0


def _encode(args) -> int:
    from .model_io import written_by_norsparse

    trust = args.trust_remote_code
    if not trust:
        trust, why = written_by_norsparse(Path(args.model))
        if not trust and not Path(args.model).is_dir():
            print(f"norsparse encode: {args.model} is not a local folder, so it is taken as a hub id, and a hub model may "
                  "run its own code: review it, then pass --trust-remote-code (hub ids always need the flag)", file=sys.stderr)
            return 2
        if not trust and _ships_code(Path(args.model)):
            print(f"norsparse encode: {args.model} ships Python code and {why}. Review the code, then pass "
                  "--trust-remote-code to run it", file=sys.stderr)
            return 2
    from .model_io import load_model

    model = load_model(Path(args.model) if Path(args.model).exists() else args.model, trust_remote_code=trust)
    encode = model.encode_query if args.query else model.encode_document
    for text, vector in zip(args.texts, encode(args.texts)):
        active = int((vector.coalesce().values() != 0).sum()) if vector.is_sparse else int((vector != 0).sum())
        tokens = ", ".join(f"{token} {weight:.2f}" for token, weight in model.decode(vector, top_k=args.top_k))
        print(f"{text}\n  {active} active dims; top {args.top_k}: {tokens}")
    return 0


def _ships_code(model: Path) -> bool:
    """A local folder with Python files, or code named in modules.json / config.json; a hub id may always ship code."""
    import json

    if not model.is_dir():
        return True
    if any(model.rglob("*.py")):
        return True
    try:
        modules = json.loads((model / "modules.json").read_text(encoding="utf-8")) if (model / "modules.json").exists() else []
        if any(not str(m.get("type", "")).startswith("sentence_transformers.") for m in modules):
            return True
        for config in model.rglob("config.json"):
            if json.loads(config.read_text(encoding="utf-8")).get("auto_map"):
                return True
    except (ValueError, AttributeError, TypeError):
        return True  # unreadable: assume the worst
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="norsparse", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check-params", help="validate a params file")
    check.add_argument("params", nargs="?", default="params.yaml")
    check.set_defaults(run=_check_params)
    card = commands.add_parser("data-card", help="regenerate the sample corpus data card")
    card.add_argument("--folder", default="data/sample")
    card.add_argument("--params", default="params.yaml")
    card.set_defaults(run=_data_card)
    encode = commands.add_parser("encode", help="encode texts and show their strongest dimensions")
    encode.add_argument("model", help="a model folder, e.g. models/release")
    encode.add_argument("texts", nargs="+")
    encode.add_argument("--query", action="store_true", help="encode as queries (default: documents)")
    encode.add_argument("--top-k", type=int, default=10)
    encode.add_argument("--trust-remote-code", action="store_true",
                        help="run the model's own Python code (needed for hub ids and folders norsparse did not write)")
    encode.set_defaults(run=_encode)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())

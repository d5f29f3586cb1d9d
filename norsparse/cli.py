"""The ``norsparse`` command: small helpers around the DVC pipeline.

    norsparse check-params [params.yaml]   validate params without running anything
    norsparse data-card                    regenerate data/sample/README.md from the data
    norsparse encode MODEL TEXT...         show the strongest dimensions of a model's vectors
    norsparse search MODEL CORPUS [QUERY...]   top passages and the tokens that matched (no QUERY: read stdin)
    norsparse export MODEL CORPUS --format {qdrant,opensearch,elasticsearch,jsonl} --out DIR

A model's own code (modeling_*.py, sparsity_filter.py) runs only if norsparse wrote the folder and the code is
unchanged since, or with --trust-remote-code.
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


def _open(args):
    """The model; its own code runs only if norsparse wrote the folder (unchanged since) or with --trust-remote-code."""
    from .model_io import UntrustedCodeError, load_model, written_by_norsparse

    path = Path(args.model)
    trust = args.trust_remote_code
    if not trust:
        trust, why = written_by_norsparse(path)
        if not trust and not path.is_dir():
            raise UntrustedCodeError(f"{args.model} is not a local folder, so it is taken as a hub id, and a hub model may "
                                     "run its own code: review it, then pass --trust-remote-code (hub ids always need the flag)")
        if not trust and _ships_code(path):
            raise UntrustedCodeError(f"{args.model} ships Python code and {why}. Review the code, then pass "
                                     "--trust-remote-code to run it")
    return load_model(path if path.exists() else args.model, trust_remote_code=trust)


def _encode(args) -> int:
    model = _open(args)
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


def _search(args) -> int:
    from .search import SparseIndex, format_hits, hits_json, load_corpus

    model = _open(args)
    corpus = load_corpus(args.corpus)
    print(f"indexing {len(corpus)} passages from {args.corpus} ...", file=sys.stderr)
    index = SparseIndex(model, corpus, batch_size=args.batch_size, show_progress_bar=not args.quiet)
    interactive = not args.queries
    if interactive and sys.stdin.isatty():
        print("ready: type a query per line (Ctrl-D to end)", file=sys.stderr)
    queries = args.queries or (line.strip() for line in sys.stdin)
    for query in queries:
        if not query:
            continue
        hits = index.search(query, top_k=args.top_k, explain_tokens=args.tokens)
        print(hits_json(query, hits) if args.json else format_hits(query, hits) + "\n", flush=True)
    return 0


def _export(args) -> int:
    from .export import export
    from .search import load_corpus, load_queries

    model = _open(args)
    corpus = load_corpus(args.corpus)
    queries = load_queries(args.corpus) if Path(args.corpus).is_dir() and not args.no_queries else None
    manifest = export(model, corpus, Path(args.out), args.format, queries=queries, index=args.index,
                      batch_size=args.batch_size, top_k=args.top_k, show_progress_bar=not args.quiet, model_name=args.model)
    print(f"wrote {manifest['documents']} documents ({args.format}) to {args.out}: {', '.join(manifest['files'])}")
    if manifest["non_positive_weights_dropped"]:
        print(f"dropped {manifest['non_positive_weights_dropped']} non-positive weights (engines take positive weights only)")
    return 0


def _model_arguments(command) -> None:
    command.add_argument("model", help="a model folder (e.g. models/release) or a hub id")
    command.add_argument("--trust-remote-code", action="store_true",
                         help="run the model's own Python code (needed for hub ids and folders norsparse did not write)")


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
    _model_arguments(encode)
    encode.add_argument("texts", nargs="+")
    encode.add_argument("--query", action="store_true", help="encode as queries (default: documents)")
    encode.add_argument("--top-k", type=int, default=10)
    encode.set_defaults(run=_encode)
    search = commands.add_parser("search", help="search a corpus and show the tokens that matched",
                                 description="Index CORPUS once, then answer each QUERY (or each line of stdin).")
    _model_arguments(search)
    search.add_argument("corpus", help="a BEIR folder (its corpus.jsonl) or a JSONL file of passages (text, title, _id)")
    search.add_argument("queries", nargs="*", metavar="QUERY", help="queries; none: read one per line from stdin")
    search.add_argument("-k", "--top-k", type=int, default=5, help="passages per query (default 5)")
    search.add_argument("--tokens", type=int, default=8, help="matched tokens shown per passage (default 8; 0: none)")
    search.add_argument("--batch-size", type=int, default=32)
    search.add_argument("--json", action="store_true", help="one JSON object per query instead of text")
    search.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    search.set_defaults(run=_search)
    export = commands.add_parser("export", help="write document vectors, index mapping and query body for an engine")
    _model_arguments(export)
    export.add_argument("corpus", help="a BEIR folder (its queries are exported too) or a JSONL file of passages")
    export.add_argument("--format", required=True, choices=["qdrant", "opensearch", "elasticsearch", "jsonl"])
    export.add_argument("--out", required=True, help="the folder to write")
    export.add_argument("--index", default="norsparse", help="index or collection name in the bulk file (default norsparse)")
    export.add_argument("--top-k", type=int, default=10, help="size/limit in the query bodies (default 10)")
    export.add_argument("--no-queries", action="store_true", help="do not export a BEIR folder's queries")
    export.add_argument("--batch-size", type=int, default=32)
    export.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    export.set_defaults(run=_export)
    args = parser.parse_args(argv)
    from .beir import DataError
    from .model_io import UntrustedCodeError

    try:
        return args.run(args)
    except (DataError, UntrustedCodeError) as error:
        print(f"norsparse {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

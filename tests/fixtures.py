"""Builders for local fixtures that mirror real layouts: hub dataset folders and GPT-BERT model folders.

No test reaches the Hub. The hub-shaped fixtures follow the published schemas:
split file names (``data/train-00000-of-00001.parquet``, ``nb/test-*.parquet``),
``configs`` blocks in the dataset card, column names and nested types.
"""
from __future__ import annotations

import json
import shutil
import zlib
from pathlib import Path

import pandas as pd
import torch
from safetensors.torch import save_file

from norsparse.base_model.builtin import REMOTE_CODE, model_config, train_tokenizer
from norsparse.beir import write_jsonl
from norsparse.params import BuiltinParams

NORWEGIAN = [
    "Oslo er hovedstaden i Norge og landets største by.",
    "Sognefjorden er den lengste fjorden i Norge.",
    "Nordlys oppstår når partikler fra sola treffer atmosfæren.",
    "Grunnloven ble vedtatt på Eidsvoll i 1814.",
    "Brunost lages av myse, melk og fløte.",
    "Hva er hovedstaden i Norge?",
    "Hvor lang er Sognefjorden?",
    "Når ble grunnloven vedtatt?",
]


# ---------------------------------------------------------------- retrieval data


def passage(i: int, topic: str = "by") -> str:
    return f"Dette er avsnitt nummer {i} om {topic}, med ord som bare står her: ord{i}a ord{i}b ord{i}c."


def write_sample_beir(folder: Path, n: int = 40, hard_negatives: bool = True, nli: int = 12) -> Path:
    """A small BEIR folder shaped like data/sample (qrels.tsv at the root, hard_negatives.tsv, nli.jsonl)."""
    folder.mkdir(parents=True, exist_ok=True)
    write_jsonl(folder / "corpus.jsonl", [{"_id": f"p{i}", "title": f"Tittel {i}", "text": passage(i), "topic": "test"} for i in range(n)])
    write_jsonl(folder / "queries.jsonl", [{"_id": f"q{i}", "text": f"hva står i ord{i}a ord{i}b"} for i in range(n)])
    (folder / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\tp{i}\t1\n" for i in range(n)), encoding="utf-8")
    if hard_negatives:
        (folder / "hard_negatives.tsv").write_text(
            "query-id\tcorpus-id\n" + "".join(f"q{i}\tp{(i + 1) % n}\n" for i in range(0, n, 2)), encoding="utf-8")
    if nli:
        write_jsonl(folder / "nli.jsonl", [
            {"anchor": f"Setning {i} handler om vær.", "positive": f"Setning {i} sier noe om været.", "negative": f"Setning {i} handler ikke om vær."}
            for i in range(nli)
        ])
    return folder


def _write_parquet(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(path, index=False)


def _card(folder: Path, configs: dict[str, dict[str, str]]) -> None:
    """A dataset card whose YAML ``configs`` block maps config -> split -> files, as on the hub."""
    lines = ["---", "configs:"]
    for name, splits in configs.items():
        lines += [f"- config_name: \"{name}\"", "  data_files:"]
        lines += [f"  - split: {split}\n    path: {pattern}" for split, pattern in splits.items()]
    (folder / "README.md").write_text("\n".join(lines + ["---", "", "# fixture"]) + "\n", encoding="utf-8")


def norquad(folder: Path, per_split: dict[str, int] | None = None, shared_contexts: int = 3) -> Path:
    """``ltg/norquad``: data/{train,validation,test}-00000-of-00001.parquet; id, title, context, question, answers.

    Like NorQuAD, several questions share one context (``shared_contexts`` per context).
    """
    per_split = per_split or {"train": 30, "validation": 9, "test": 9}
    n = 0
    for split, count in per_split.items():
        rows = []
        for i in range(count):
            c = (n + i) // shared_contexts
            context = f"Artikkel {c}\n" + passage(c, "nyheter")
            rows.append({"id": str(n + i), "title": f"Artikkel {c}", "context": context,
                         "question": f"Spørsmål {n + i} om ord{c}a?", "answers": {"text": [f"ord{c}a"], "answer_start": [10]}})
        n += count
        _write_parquet(folder / "data" / f"{split}-00000-of-00001.parquet", rows)
    return folder


def noropenbookqa(folder: Path) -> Path:
    """``ltg/noropenbookqa`` (configs nb/nn; train and test only; ``fact`` may be empty)."""
    for config in ("nb", "nn"):
        for split, count in (("train", 12), ("test", 4)):
            rows = [{"id": f"{config}-{split}-{i}", "question_stem": f"Hva trenger planter nummer {i}?",
                     "choices": {"label": ["A", "B", "C", "D"], "text": ["sollys", "sand", "stein", "plast"]},
                     "answer": "A", "fact": "" if i == 0 else f"Planter nummer {i} bruker sollys til fotosyntese.", "curated": True}
                    for i in range(count)]
            _write_parquet(folder / config / f"{split}-00000-of-00001.parquet", rows)
    _card(folder, {c: {s: f"{c}/{s}-*" for s in ("train", "test")} for c in ("nb", "nn")})
    return folder


def scandi_qa(folder: Path) -> Path:
    """``alexandrainst/scandi-qa`` (configs da/no/sv; splits train/val/test)."""
    for config in ("da", "no", "sv"):
        for split, count in (("train", 12), ("val", 4), ("test", 4)):
            rows = [{"id": f"{config}{split}{i}", "question": f"Hvem skrev tekst {split} {i}?",
                     "answers": {"text": ["en forfatter"], "answer_start": [0]}, "context": passage(zlib.crc32(f"{split} {i}".encode()) % 1000, config),
                     "answers_en": {"text": ["an author"], "answer_start": [0]}, "context_en": "An English context.", "title_en": "Title"}
                    for i in range(count)]
            _write_parquet(folder / config / f"{split}-00000-of-00001.parquet", rows)
    _card(folder, {c: {s: f"{c}/{s}-*" for s in ("train", "val", "test")} for c in ("da", "no", "sv")})
    return folder


def all_nli_norwegian(folder: Path) -> Path:
    """``Fremtind/all-nli-norwegian``: anchor/positive/negative; splits train/dev/test."""
    for split, count in (("train", 15), ("dev", 5), ("test", 5)):
        rows = [{"anchor": f"En mann spiller gitar {split} {i}.", "positive": f"En person spiller et instrument {split} {i}.",
                 "negative": f"Ingen spiller noe {split} {i}."} for i in range(count)]
        _write_parquet(folder / "data" / f"{split}-00000-of-00001.parquet", rows)
    return folder


def nordic_embedding(folder: Path) -> Path:
    """``DDSC/nordic-embedding-training-data``: train only; ``language`` holds full names; ``negative`` often empty."""
    rows = []
    for i, language in enumerate(["norwegian", "danish", "swedish"] * 6):
        rows.append({"query": f"spørring {i} på {language}", "positive": f"Et relevant dokument {i} på {language}.",
                     "negative": "" if i % 2 else f"Et irrelevant dokument {i}.", "instruction": "Hent relevante dokumenter",
                     "task": "retrieval", "language": language, "prompt": "", "response": ""})
    _write_parquet(folder / "data" / "train-00000-of-00001.parquet", rows)
    return folder


def supervised_da(folder: Path) -> Path:
    """``jealk/supervised-da``: query, pos (a string), dataset_name, label; splits train/test; no negatives."""
    for split, count in (("train", 12), ("test", 4)):
        rows = [{"query": f"dansk forespørgsel {split} {i}", "pos": f"Et dansk svar {split} {i}.", "dataset_name": "fixture",
                 "label": 1.0} for i in range(count)]
        _write_parquet(folder / "data" / f"{split}-00000-of-00001.parquet", rows)
    return folder


# ---------------------------------------------------------------- models


TINY = BuiltinParams(vocab_size=600, hidden_size=32, intermediate_size=64, num_layers=1, num_attention_heads=2,
                     max_length=64, pretrain_epochs=1)


def gptbert_folder(folder: Path, *, tie_head: bool = False, modeling_source: str | None = None, seed: int = 0) -> Path:
    """A GPT-BERT remote-code folder laid out like ``ltg/norbert4-*`` on the hub.

    ``config.json`` with ``auto_map``, ``configuration_gptbert.py``, ``modeling_gptbert.py`` as published for
    transformers 4 (soft cap, BOS row, non-persistent rotary buffers, list-valued ``_tied_weights_keys``),
    ``model.safetensors`` (random weights) and a tokenizer. With ``tie_head`` the checkpoint lacks
    ``classifier.emb2vocab.weight``, as a checkpoint whose head is tied to the input embedding does.
    """
    from transformers import AutoConfig, AutoModelForMaskedLM

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(NORWEGIAN * 4, TINY.vocab_size, TINY.max_length)
    for source in REMOTE_CODE.glob("*.py"):
        shutil.copy(source, folder / source.name)
    if modeling_source is not None:
        (folder / "modeling_gptbert.py").write_text(modeling_source, encoding="utf-8")
    (folder / "config.json").write_text(json.dumps(model_config(TINY, len(tokenizer)), indent=2), encoding="utf-8")
    config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
    torch.manual_seed(seed)
    model = AutoModelForMaskedLM.from_config(config, trust_remote_code=True)
    with torch.no_grad():  # a trained head puts most raw logits well below zero; a random one centres them on it
        model.classifier.emb2vocab.bias.fill_(-1.0)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    if tie_head:
        state.pop("classifier.emb2vocab.weight")
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    tokenizer.save_pretrained(folder)
    return folder


def bert_folder(folder: Path) -> Path:
    """A BERT-style masked LM without a cap and without remote code (like NorBERT3's plain head)."""
    from transformers import BertConfig, BertForMaskedLM

    tokenizer = train_tokenizer(NORWEGIAN * 4, 300, 64)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    BertForMaskedLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def tiny_model(folder: Path, architecture: str = "splade", documents: list[str] | None = None, threshold: float = 0.0) -> Path:
    """A small untrained norsparse model of ``architecture``, saved by ``save_model`` (norsparse's own folder)."""
    import yaml

    from conftest import ROOT
    from norsparse.architectures import build_model
    from norsparse.base_model.patching import patch_base_model
    from norsparse.model_io import filter_module, save_model
    from norsparse.params import parse_params

    source = gptbert_folder(folder / "norbert4")
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["model"].update(base_model=str(source), trust_remote_code=True, architecture=architecture)
    raw["train"]["max_seq_length"] = TINY.max_length
    params = parse_params(raw)
    base = folder / "base"
    base.mkdir()
    patch_base_model(params, [], base)
    model = build_model(params, base, documents or NORWEGIAN)
    filter_module(model).threshold = threshold
    save_model(model, folder / "model")
    return folder / "model"


# --- named mteb tasks, substituted through the datasets cache -------------------------------------------------
# Offline, `datasets.load_dataset(repo, config, revision=...)` reads what an earlier download left in
# HF_DATASETS_CACHE (<namespace>___<name>/<config>/<version>/<revision>/: dataset_info.json and
# <name>-<split>.arrow). Writing that entry from rows in the task's real schema lets mteb's own loaders run.
MTEB_FIXTURE_REVISIONS = {
    "mteb/norquad_retrieval": "9dcfcdb2aa578dd178330d49bf564248935f7fbe",
    "mteb/WebFAQRetrieval": "f64f483ad0f31d2e78209d524c14a4a867965959",
}


def datasets_cache_entry(cache: Path, repo: str, config: str, splits: dict[str, list[dict]]) -> Path:
    import datasets
    from datasets.arrow_writer import ArrowWriter
    from datasets.naming import camelcase_to_snakecase, filenames_for_dataset_split

    namespace, name = repo.split("/")
    folder = Path(cache) / f"{namespace}___{camelcase_to_snakecase(name)}" / config / "0.0.0" / MTEB_FIXTURE_REVISIONS[repo]
    folder.mkdir(parents=True, exist_ok=True)
    split_infos = datasets.SplitDict()
    for split, rows in splits.items():
        table = datasets.Dataset.from_list(rows)
        (path,) = filenames_for_dataset_split(str(folder), dataset_name=name, split=split, filetype_suffix="arrow")
        with ArrowWriter(features=table.features, path=path) as writer:
            writer.write_table(table.data.table)
            count, size = writer.finalize()
        split_infos.add(datasets.SplitInfo(name=split, num_examples=count, num_bytes=size, dataset_name=name))
    datasets.DatasetInfo(features=table.features, config_name=config, dataset_name=name, splits=split_infos,
                         builder_name="parquet").write_to_directory(str(folder))
    return folder


def mteb_task_cache(cache: Path) -> Path:
    """NorQuadRetrieval (SQuAD-style rows: question, context, answers) and WebFAQRetrieval's Norwegian subset
    (BEIR-style configs nor-corpus, nor-queries, nor-qrels), in their published schemas."""
    towns = [("Bergen", "Vestland"), ("Tromsø", "Troms"), ("Bodø", "Nordland"), ("Ålesund", "Møre og Romsdal"),
             ("Hamar", "Innlandet"), ("Skien", "Telemark"), ("Molde", "Møre og Romsdal"), ("Alta", "Finnmark")]
    datasets_cache_entry(cache, "mteb/norquad_retrieval", "default", {"test": [
        {"question": f"Hvilket fylke ligger {town} i?", "context": f"{town} er en by i {county}. Byen har havn og flyplass.",
         "answers": {"text": [county], "answer_start": [len(town) + 13]}} for town, county in towns]})
    datasets_cache_entry(cache, "mteb/WebFAQRetrieval", "nor-corpus", {"test": [
        {"_id": f"d{i}", "title": f"Om {town}", "text": f"{town} ligger i {county} og har mange besøkende om sommeren."}
        for i, (town, county) in enumerate(towns)]})
    datasets_cache_entry(cache, "mteb/WebFAQRetrieval", "nor-queries", {"test": [
        {"_id": f"q{i}", "text": f"hvor ligger {town}"} for i, (town, _) in enumerate(towns)]})
    datasets_cache_entry(cache, "mteb/WebFAQRetrieval", "nor-qrels", {"test": [
        {"query-id": f"q{i}", "corpus-id": f"d{i}", "score": 1} for i in range(len(towns))]})
    return cache

"""BEIR folders: round trip, and errors that name the file and line."""
import pytest

from norsparse.beir import BeirData, DataError, document_text, load_beir, write_beir
from fixtures import write_sample_beir


def test_round_trip(tmp_path):
    data = BeirData(corpus={"d1": {"title": "Oslo", "text": "Hovedstaden."}, "d2": {"title": "", "text": "Bergen."}},
                    queries={"q1": "hovedstad?"}, qrels={"q1": {"d1": 1}})
    write_beir(tmp_path / "split", data)
    assert (tmp_path / "split" / "qrels" / "test.tsv").read_text().splitlines()[0] == "query-id\tcorpus-id\tscore"
    loaded = load_beir(tmp_path / "split")
    assert loaded.corpus == data.corpus and loaded.queries == data.queries and loaded.qrels == data.qrels
    assert loaded.documents() == {"d1": "Oslo Hovedstaden.", "d2": "Bergen."}
    assert document_text("Oslo", "Hovedstaden.") == "Oslo Hovedstaden."  # as mteb joins title and text


def test_sample_layout_with_qrels_at_the_root(tmp_path):
    data = load_beir(write_sample_beir(tmp_path / "sample", n=5))
    assert len(data.corpus) == 5 and data.relevant()["q3"] == {"p3"}


def test_bad_json_names_file_and_line(tmp_path):
    folder = write_sample_beir(tmp_path / "s", n=3)
    lines = (folder / "corpus.jsonl").read_text().splitlines()
    lines[1] = '{"_id": "p1", "text": unquoted}'
    (folder / "corpus.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"corpus\.jsonl:2:23: not valid JSON"):
        load_beir(folder)


def test_missing_field_names_file_and_line(tmp_path):
    folder = write_sample_beir(tmp_path / "s", n=3)
    (folder / "queries.jsonl").write_text('{"_id": "q0", "text": "a"}\n{"_id": "q1"}\n')
    with pytest.raises(DataError, match=r"queries\.jsonl:2: missing field\(s\) text"):
        load_beir(folder)


def test_duplicate_ids_and_dangling_qrels(tmp_path):
    folder = write_sample_beir(tmp_path / "s", n=3)
    (folder / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\nq0\tp9\t1\n")
    with pytest.raises(DataError, match="corpus-id 'p9'.*not in corpus.jsonl"):
        load_beir(folder)
    (folder / "qrels.tsv").write_text("query\tdoc\tscore\nq0\tp0\t1\n")
    with pytest.raises(DataError, match=r"qrels\.tsv:1: expected the header"):
        load_beir(folder)
    (folder / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\nq0\tp0\thigh\n")
    with pytest.raises(DataError, match=r"qrels\.tsv:2: score 'high'"):
        load_beir(folder)
    (folder / "corpus.jsonl").write_text('{"_id": "p0", "text": "a"}\n{"_id": "p0", "text": "b"}\n')
    with pytest.raises(DataError, match="id 'p0' appears twice"):
        load_beir(folder)

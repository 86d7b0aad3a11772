"""Training files in every supported format read to the same rows; malformed files are named."""

import json

import datasets
import pandas as pd
import pytest

from bench.data import training_rows
from train.data import DataError, read_records


def test_formats_read_to_the_same_records(tmp_path):
    rows = training_rows(3, seed=1, tasks=["SynthCount"])
    pd.DataFrame(rows).to_parquet(tmp_path / "t.parquet")
    text_rows = [{k: (["a.png"] if k == "images" else v) for k, v in r.items()} for r in rows]
    (tmp_path / "t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in text_rows) + "\n")
    (tmp_path / "t.json").write_text(json.dumps(text_rows))
    (tmp_path / "cols.json").write_text(json.dumps({k: [r[k] for r in text_rows] for k in text_rows[0]}))
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "ds"))
    for name, expected in [("t.parquet", rows), ("ds", rows), ("t.jsonl", text_rows), ("t.json", text_rows),
                           ("cols.json", text_rows)]:
        columns, records = read_records(tmp_path / name)
        assert columns == ["problem", "answer", "images", "new_questions", "task"], name
        assert records == expected, name


def test_malformed_json_names_the_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"problem": "a", "answer": "1"}\n{"problem": "b", "answer": \n')
    with pytest.raises(DataError, match=r"bad.jsonl line 2: not valid JSON"):
        read_records(bad)
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(DataError, match="expected JSON objects"):
        read_records(tmp_path / "list.json")
    with pytest.raises(DataError, match="unsupported data format '.csv'"):
        (tmp_path / "t.csv").write_text("a,b\n")
        read_records(tmp_path / "t.csv")


def test_jsonl_lines_end_at_newline_only(tmp_path):
    """U+2028, U+2029 and \\x85 are valid inside JSON strings; str.splitlines() would cut there."""
    rows = [{"problem": "<image>a\u2028b", "answer": "1"}, {"problem": "<image>c\u2029d\x85e", "answer": "2"}]
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    assert read_records(path)[1] == rows


def test_non_utf8_and_corrupt_files_are_named(tmp_path):
    (tmp_path / "t.jsonl").write_bytes(b'{"problem": "a", "answer": "1"}\n{"problem": "caf\xe9", "answer": "2"}\n')
    with pytest.raises(DataError, match=r"t.jsonl line 2: not UTF-8 text"):
        read_records(tmp_path / "t.jsonl")
    (tmp_path / "t.parquet").write_bytes(b"")
    with pytest.raises(DataError, match=r"t.parquet: empty file"):
        read_records(tmp_path / "t.parquet")
    (tmp_path / "t.parquet").write_bytes(b"PAR1 not parquet PAR1")
    with pytest.raises(DataError, match=r"t.parquet: not a readable parquet file"):
        read_records(tmp_path / "t.parquet")

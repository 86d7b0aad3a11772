"""`python -m bench.verify` in process (its subprocess runs are in test_verify.py and
test_cli_errors.py): every output of each mode, worked by hand, so that a wrong count, a wrong mean
or a skipped row that is not reported fails here."""

from __future__ import annotations

import json

import pytest

from bench.verify.__main__ import main

THINK = "<think>a</think>"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_one_response(capsys):
    code, out, err = run(capsys, "--response", f"{THINK} so \\boxed{{\\frac{{1}}{{2}}}}", "--answer", "0.5")
    assert (code, err) == (0, "")
    assert json.loads(out) == {"accuracy": 1.0, "format": 1.0, "overall": 1.0, "extracted": "\\frac{1}{2}",
                               "status": "ok"}
    code, out, _ = run(capsys, "--response", "\\boxed{3}", "--answer", "2", "--mode", "paper")
    assert json.loads(out) == {"accuracy": 0.0, "format": 0.0, "overall": 0.0, "extracted": "3", "status": "ok"}
    # the mode reaches the grader: the released extraction takes the unfinished last box
    unfinished = f"{THINK} \\boxed{{5}} and \\boxed{{6"
    for mode, accuracy, extracted in (("default", 1.0, "5"), ("paper", 0.0, None)):
        code, out, _ = run(capsys, "--response", unfinished, "--answer", "5", "--mode", mode)
        assert (json.loads(out)["accuracy"], json.loads(out)["extracted"]) == (accuracy, extracted)


def test_a_jsonl_file_grades_the_good_rows_and_names_each_bad_one(tmp_path, capsys):
    rows = tmp_path / "rows.jsonl"
    lines = [
        json.dumps({"response": f"{THINK}\\boxed{{2}}", "answer": 2}).encode(),  # right, formatted: 1.0
        json.dumps({"response": f"{THINK}\\boxed{{3}}", "answer": "2"}).encode(),  # wrong, formatted: 0.1
        b"{oops",
        b"",
        b"\xff\xfe",
        json.dumps({"response": "x", "answer": True}).encode(),
        json.dumps({"response": "no box at all", "answer": "1"}).encode(),  # no_box: 0.0
        b"[" * 100_000,
        b'{"response": "' + THINK.encode() + b'\\\\boxed{5}",\r "answer": "5"}',  # a raw CR is not a line end
    ]
    rows.write_bytes(b"\n".join(lines) + b"\n")
    out_file = tmp_path / "grades.jsonl"
    code, out, err = run(capsys, "--jsonl", str(rows), "--out", str(out_file))
    assert code == 0
    assert err.splitlines() == [
        f"{rows}:3: not valid JSON (Expecting property name enclosed in double quotes)",
        f"{rows}:4: empty line",
        f"{rows}:5: not UTF-8 text",
        f'{rows}:6: needs a string "response" and a string or number "answer"',
        f"{rows}:8: not valid JSON here (nested too deep)",
    ]
    assert json.loads(out) == {"file": str(rows), "mode": "default", "graded": 4, "skipped_rows": 5,
                               "accuracy": 0.5, "format": 0.75, "overall": pytest.approx((1 + 0.1 + 0 + 1) / 4),
                               "status": {"ok": 3, "no_box": 1}}
    written = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert [w["line"] for w in written] == list(range(1, 10))
    assert [w["status"] for w in written] == ["ok", "ok", "skipped", "skipped", "skipped", "skipped", "no_box",
                                              "skipped", "ok"]
    assert [w.get("overall") for w in written] == [1.0, pytest.approx(0.1), None, None, None, None, 0.0, None, 1.0]
    assert written[2]["problem"] == err.splitlines()[0] and written[8]["extracted"] == "5"


def test_a_file_of_bad_rows_only_exits_1_and_writes_nothing_it_cannot(tmp_path, capsys):
    rows = tmp_path / "bad.jsonl"
    rows.write_text("[1]\n")
    code, out, err = run(capsys, "--jsonl", str(rows))
    assert code == 1 and err == f'{rows}:1: needs a string "response" and a string or number "answer"\n'
    assert json.loads(out)["graded"] == 0 and json.loads(out)["accuracy"] is None


@pytest.mark.parametrize("argv, message", [
    (["--response", "x"], "--response needs --answer"),
    (["--response", "x", "--answer", "1", "--timeout", "0"], "--timeout 0.0: give seconds per answer in (0, 3600]"),
    (["--response", "x", "--answer", "1", "--timeout", "3600.5"],
     "--timeout 3600.5: give seconds per answer in (0, 3600]"),
    (["--response", "x", "--answer", "1", "--timeout", "nan"], "--timeout nan: give seconds per answer in (0, 3600]"),
    (["--jsonl", "{tmp}/none.jsonl"], "--jsonl {tmp}/none.jsonl: no such file"),
    (["--jsonl", "{tmp}"], "--jsonl {tmp}: not a regular file"),
    (["--jsonl", "{tmp}/empty.jsonl"], "--jsonl {tmp}/empty.jsonl: empty file"),
    (["--agreement", "--table", "{tmp}/none.tsv"], "verifier table not found: {tmp}/none.tsv (pass --table FILE)"),
])
def test_usage_errors_are_one_line_and_exit_2(tmp_path, capsys, argv, message):
    (tmp_path / "empty.jsonl").write_bytes(b"")
    code, out, err = run(capsys, *[a.format(tmp=tmp_path) for a in argv])
    assert (code, out, err) == (2, "", f"error: {message.format(tmp=tmp_path)}\n")


@pytest.mark.parametrize("timeout", ["3600", "0.5"])
def test_timeouts_inside_the_range_are_allowed(capsys, timeout):
    code, out, _ = run(capsys, "--response", "\\boxed{1}", "--answer", "1", "--timeout", timeout)
    assert code == 0 and json.loads(out)["accuracy"] == 1.0


def test_a_jsonl_file_without_a_final_newline_keeps_its_last_row_and_takes_the_mode(tmp_path, capsys):
    rows = tmp_path / "rows.jsonl"
    unfinished = f"{THINK} \\boxed{{5}} and \\boxed{{6"
    rows.write_text(json.dumps({"response": unfinished, "answer": "5"}) + "\n" + json.dumps({"response": 5, "answer": "5"})
                    + "\n" + json.dumps({"response": f"{THINK}\\boxed{{5}}", "answer": "5"}))
    code, out, err = run(capsys, "--jsonl", str(rows), "--mode", "paper")
    assert code == 0 and err == f'{rows}:2: needs a string "response" and a string or number "answer"\n'
    assert out.startswith('{\n  "file": ')  # the summary is indented for a person to read
    summary = json.loads(out)
    assert (summary["mode"], summary["graded"], summary["skipped_rows"], summary["accuracy"]) == ("paper", 2, 1, 0.5)


def test_agreement_counts_by_hand(tmp_path, capsys):
    """Three table lines, six rows. The second line's "near miss" 7.0 equals 7, so every judge
    accepts it. The third line's equivalent is a full response whose last box is unfinished: our
    extraction takes the 5 before it, the released one (paper mode) takes nothing. Default: 5 of 6
    agree, 3/3 equivalents accepted, 2/3 near misses rejected; paper: 4 of 6, 2/3, 2/3."""
    table = tmp_path / "t.tsv"
    table.write_text("category\tgold\tequivalent\tnear_miss\ninteger\t12\t12\t13\ndecimal\t7\t7\t7.0\n"
                     "integer\t5\t<think>x</think> \\boxed{5} and \\boxed{6\t6\n")
    code, out, err = run(capsys, "--agreement", "--table", str(table))
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[:4] == ["Verifier agreement with the regression table (6 rows: 3 equivalent, 3 near-miss)", "",
                         "| judge | agrees | equivalents accepted | near-misses rejected |", "|---|---|---|---|"]
    assert lines[4:6] == ["| default | 83.3% | 3/3 | 2/3 |", "| paper | 66.7% | 2/3 | 2/3 |"]
    assert lines[6].startswith("| math-verify alone | ") and lines[6].endswith(" | 2/3 |") and len(lines) == 7


def frame(obj) -> bytes:
    import pickle
    import struct

    payload = pickle.dumps(obj)
    return struct.pack("<I", len(payload)) + payload


def test_the_worker_protocol_in_process():
    """`bench.verify.worker.serve` (run in its subprocess by the judge pool): "ready", then one reply
    per request in order, each after the request's CPU bound is set; a judge that raises, or one
    that does not exist, is a non-match that names the exception."""
    import io
    import pickle
    import struct

    from bench.verify.worker import serve

    requests = [("math_verify", "\\frac{1}{2}", "0.5", 1.5), ("mathruler", "3", "4", 2.0), ("no_such_judge", "1", "1", 3.0)]
    stdin, stdout, bounds = io.BytesIO(b"".join(frame(r) for r in requests)), io.BytesIO(), []
    serve(stdin, stdout, limit_cpu=bounds.append)
    data, replies = stdout.getvalue(), []
    while data:
        (size,) = struct.unpack("<I", data[:4])
        replies.append(pickle.loads(data[4:4 + size]))
        data = data[4 + size:]
    assert replies[:3] == ["ready", (True, "ok"), (False, "ok")]
    assert replies[3] == (False, "judge_error:ValueError") and len(replies) == 4
    assert bounds == [1.5, 2.0, 3.0]


def test_the_workers_own_cpu_limit_is_the_bound_plus_its_margin():
    import math
    import resource

    from bench.verify.worker import CPU_MARGIN_S, _limit_cpu

    before = resource.getrlimit(resource.RLIMIT_CPU)
    try:
        used = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
        _limit_cpu(30.2)
        soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
        assert hard == before[1] and soft - CPU_MARGIN_S in (math.ceil(used + 30.2), math.ceil(used + 30.2) + 1)
    finally:
        resource.setrlimit(resource.RLIMIT_CPU, before)


def test_the_table_file_line_by_line(tmp_path):
    """Comments and blank lines are skipped but counted, so each case names its line in the file;
    quotes are text (no CSV quoting); a full response passes through, a bare answer is wrapped."""
    from bench.verify.table import Case, as_response, load_table

    table = tmp_path / "t.tsv"
    table.write_text('# a comment\ncategory\tgold\tequivalent\tnear_miss\n\n# another\n'
                     'text\t"yes"\t"yes"\tno\nboxed\t5\t<think>a</think> \\boxed{5}\t6\n')
    wrap = "<think>Working it out step by step.</think> The answer is \\boxed{{{}}}."
    assert as_response("6") == wrap.format("6")
    assert load_table(table) == [
        Case("text", wrap.format('"yes"'), '"yes"', True, 5), Case("text", wrap.format("no"), '"yes"', False, 5),
        Case("boxed", "<think>a</think> \\boxed{5}", "5", True, 6), Case("boxed", wrap.format("6"), "5", False, 6),
    ]


@pytest.mark.parametrize("content, message", [
    ("category\tgold\n", "{path}: header must be category, gold, equivalent, near_miss; got ['category', 'gold']"),
    ("category\tgold\tequivalent\tnear_miss\n# c\nint\t1\t1\n", "{path}:3: expected 4 tab-separated columns, got 3"),
])
def test_a_malformed_table_names_the_file_and_line(tmp_path, content, message):
    from bench.errors import UsageError
    from bench.verify.table import load_table

    table = tmp_path / "t.tsv"
    table.write_text(content)
    with pytest.raises(UsageError) as raised:
        load_table(table)
    assert str(raised.value) == message.format(path=table)


def test_help_shows_the_usage_and_documents_every_option(capsys, monkeypatch):
    from bench.verify import __main__ as cli

    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    out = capsys.readouterr().out
    assert exited.value.code == 0 and out.startswith("usage: python -m bench.verify [-h] (--response RESPONSE | ")
    assert cli.__doc__.strip() in out  # the module docstring, its examples laid out as written
    section = out.split("options:\n")[1]
    assert [line.split()[0] for line in section.splitlines() if line.startswith("  -")] == [
        "-h,", "--response", "--jsonl", "--agreement", "--answer", "--mode", "--timeout", "--out", "--table"]
    words = " ".join(section.split())
    for option, text in (
        ("--response RESPONSE", "one response to grade (with --answer)"),
        ("--jsonl JSONL", 'file of {"response": ..., "answer": ...} rows'),
        ("--agreement", "judges against the regression table"),
        ("--answer ANSWER", "gold answer for --response"),
        ("--mode {default,paper}", "default: exact rules, then math-verify; paper: the released grader (mathruler)"),
        ("--timeout TIMEOUT", "seconds per answer"),
        ("--out OUT", "with --jsonl: write each row's grade here (JSONL)"),
        ("--table TABLE", "with --agreement (default: the packaged regression table)"),
    ):
        assert f"{option} {text}" in words


@pytest.mark.parametrize("argv, message", [
    ([], "one of the arguments --response --jsonl --agreement is required"),
    (["--response", "x", "--answer", "1", "--mode", "strict"], "argument --mode: invalid choice: 'strict'"),
])
def test_argument_errors_are_argparses(capsys, argv, message):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    err = capsys.readouterr().err
    assert exited.value.code == 2 and err.startswith("usage: python -m bench.verify ") and message in err


def test_the_table_defaults_to_the_packaged_one(monkeypatch):
    from bench.verify import __main__ as cli
    from bench.verify.table import DEFAULT_TABLE

    seen = []
    monkeypatch.setattr(cli, "run", seen.append)
    main(["--agreement"])
    assert seen[0].table == DEFAULT_TABLE and DEFAULT_TABLE.is_file()

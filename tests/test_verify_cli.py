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


def test_the_largest_timeout_is_allowed(capsys):
    code, out, _ = run(capsys, "--response", "\\boxed{1}", "--answer", "1", "--timeout", "3600")
    assert code == 0 and json.loads(out)["accuracy"] == 1.0


def test_agreement_counts_by_hand(tmp_path, capsys):
    """Two table lines, four rows; the second line's "near miss" 7.0 equals 7, so every judge
    accepts it: 3 of 4 agree, both equivalents accepted, 1 of 2 near misses rejected."""
    table = tmp_path / "t.tsv"
    table.write_text("category\tgold\tequivalent\tnear_miss\ninteger\t12\t12\t13\ndecimal\t7\t7\t7.0\n")
    code, out, err = run(capsys, "--agreement", "--table", str(table))
    assert (code, err) == (0, "")
    assert out == ("Verifier agreement with the regression table (4 rows: 2 equivalent, 2 near-miss)\n\n"
                   "| judge | agrees | equivalents accepted | near-misses rejected |\n|---|---|---|---|\n"
                   + "".join(f"| {name} | 75.0% | 2/2 | 1/2 |\n" for name in ("default", "paper", "math-verify alone")))


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
    assert replies[3][0] is False and replies[3][1].startswith("judge_error:") and len(replies) == 4
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

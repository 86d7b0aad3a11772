"""Verifier worker process: reads length-prefixed pickled (judge, pred, gold) requests on stdin,
writes (match, status) replies on stdout. Started by `bench.verify.judge.BoundedJudge`; the
parent enforces every time bound by killing this process."""

import logging
import os
import pickle
import struct
import sys


def main() -> None:
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # stray prints from the judges must not corrupt the protocol
    from bench.verify.judge import JUDGES

    # math-verify's signal timeouts are off on purpose (the parent bounds us); it warns each call.
    logging.getLogger("math_verify").setLevel(logging.ERROR)

    def reply(obj) -> None:
        payload = pickle.dumps(obj)
        stdout.write(struct.pack("<I", len(payload)) + payload)
        stdout.flush()

    reply("ready")
    while header := stdin.read(4):
        judge, pred, gold = pickle.loads(stdin.read(struct.unpack("<I", header)[0]))
        try:
            reply(JUDGES[judge](pred, gold))
        except Exception as exc:  # a judge crash is a non-match, never a dead worker
            reply((False, f"judge_error:{type(exc).__name__}"))
    os._exit(0)


if __name__ == "__main__":
    main()

"""A folder of wheels for installing on a machine with no internet (an air-gapped GPU cluster):

    python -m reproduce.wheelhouse --out wheelhouse --python-version 3.12 --platform manylinux_2_28_x86_64
    # on the target, with its own CUDA build of torch already installed:
    pip install --no-index --find-links wheelhouse --no-deps -r wheelhouse/requirements.txt

Every package of `requirements/lock.txt` (and, with `--peer`, TRL's from `requirements/peer.txt`)
is downloaded as a binary wheel for the target Python and platform. A package that publishes no
wheel (DeepSpeed, a few pure-Python ones) is built into one from its source release here, with this
environment's torch (DeepSpeed's setup imports it; `DS_BUILD_OPS=0` keeps the wheel pure Python, its
ops compile on first use). torch itself is left out unless `--with-torch`: a GPU machine brings the
CUDA build that matches its driver. `--dry-run` prints the plan without downloading.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from bench.errors import UsageError, exit_on_usage_error

REPO = Path(__file__).resolve().parents[1]
NOT_CARRIED = {"torch"}  # the target's own CUDA build


def pinned(path: Path) -> list[str]:
    """`name==version` lines of a requirements file, comments and options dropped."""
    specs = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-") and "==" in line:
            specs.append(line.split(";", 1)[0].strip())
    return specs


def plan(peer: bool, with_torch: bool) -> list[str]:
    """The pinned packages to carry: the lock (which leaves torch out: `make setup` installs it
    first), TRL's with `peer`, and torch as pyproject.toml pins it with `with_torch`."""
    import tomllib

    specs = pinned(REPO / "requirements" / "lock.txt")
    if with_torch:
        deps = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
        specs = [d for d in deps if d.startswith("torch==")] + specs
    if peer:
        specs += [s for s in pinned(REPO / "requirements" / "peer.txt") if s not in specs]
    keep = [s for s in specs if with_torch or s.split("==")[0].lower() not in NOT_CARRIED]
    return list(dict.fromkeys(keep))


def download_command(spec: str, out: Path, python_version: str, platforms: list[str]) -> list[str]:
    """pip's download of `spec` as a binary wheel for the target, not for this machine."""
    return [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--no-deps",
            "--only-binary=:all:", "--python-version", python_version, "--implementation", "cp",
            *[a for p in platforms for a in ("--platform", p)], "-d", str(out), spec]


def download(spec: str, out: Path, python_version: str, platforms: list[str]) -> bool:
    return subprocess.run(download_command(spec, out, python_version, platforms), capture_output=True).returncode == 0


def build(spec: str, out: Path) -> str | None:
    """A wheel built from the source release; None on success, else pip's last line."""
    cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check", "--no-deps",
           "--no-build-isolation", "--no-binary", spec.split("==")[0], "-w", str(out), spec]
    result = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "DS_BUILD_OPS": "0"})
    if result.returncode == 0:
        return None
    return (result.stderr.strip().splitlines() or ["failed"])[-1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reproduce.wheelhouse", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--out", type=Path, default=Path("wheelhouse"))
    parser.add_argument("--python-version", default="3.12", help="the target's Python, e.g. 3.11 or 3.12")
    parser.add_argument("--platform", nargs="+", default=["manylinux_2_28_x86_64", "manylinux_2_17_x86_64",
                                                         "manylinux2014_x86_64", "any"])
    parser.add_argument("--peer", action="store_true", help="also TRL and what it needs (requirements/peer.txt)")
    parser.add_argument("--with-torch", action="store_true", help="also torch (the lock's CPU version)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="just these packages (at their pinned versions)")
    parser.add_argument("--dry-run", action="store_true", help="print the packages, download nothing")
    args = parser.parse_args(argv)

    def run() -> int:
        specs = plan(args.peer, args.with_torch)
        if args.only:
            wanted = {n.lower() for n in args.only}
            unknown = wanted - {s.split("==")[0].lower() for s in specs}
            if unknown:
                raise UsageError(f"--only {' '.join(sorted(unknown))}: not in the lock")
            specs = [s for s in specs if s.split("==")[0].lower() in wanted]
        if args.dry_run:
            print("\n".join(specs))
            return 0
        args.out.mkdir(parents=True, exist_ok=True)
        built, failed = [], []
        for spec in specs:
            if download(spec, args.out, args.python_version, args.platform):
                continue
            problem = build(spec, args.out)
            (failed if problem else built).append(f"{spec}: {problem}" if problem else spec)
        (args.out / "requirements.txt").write_text("".join(s + "\n" for s in specs), encoding="utf-8")
        size = sum(f.stat().st_size for f in args.out.iterdir()) / 2**20
        print(f"{len(specs)} packages in {args.out} ({size:.0f} MiB); built from source: {', '.join(built) or 'none'}")
        if failed:
            raise UsageError(*(f"no wheel and no build for {f}" for f in failed))
        return 0

    return exit_on_usage_error(run)


if __name__ == "__main__":
    sys.exit(main())

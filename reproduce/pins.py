"""Does the `vllm` extra agree with the lock? The pinned vLLM release's own requirements (its
wheel's METADATA `Requires-Dist`, recorded in requirements/vllm-requires.txt) are checked against
requirements/lock.txt and the torch pin: every locked package that vLLM names must satisfy vLLM's
specifier, or `pip install -e '.[vllm]'` cannot resolve beside the lock.

    python -m reproduce.pins            # check the recorded metadata (offline; a test runs this)
    python -m reproduce.pins --refresh  # first record the metadata of the pinned release again

`--refresh` asks pip for the release's metadata alone (`pip install --dry-run --report`, which reads
the registry's metadata file and downloads no CUDA wheel).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT / "requirements" / "vllm-requires.txt"
TARGET = {"python_version": "3.12", "python_full_version": "3.12.0", "platform_machine": "x86_64",
          "sys_platform": "linux", "platform_system": "Linux", "implementation_name": "cpython"}
"""The GPU machine the extra is for: markers are evaluated as there, not as on this machine."""


def vllm_pin(pyproject: str) -> str:
    """The version the `vllm` extra pins in pyproject.toml's text."""
    found = re.search(r'^vllm = \["vllm==([^"]+)"\]', pyproject, re.M)
    if not found:
        raise ValueError("pyproject.toml: no `vllm = [\"vllm==X\"]` extra")
    return found.group(1)


def locked(lock: str, constraints: str) -> dict[str, str]:
    """{canonical name: version} of every `name==version` line of the lock and the constraints."""
    pins = {}
    for line in (lock + "\n" + constraints).splitlines():
        line = line.split("#")[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[canonicalize_name(name)] = version.strip()
    return pins


def read_record(text: str) -> tuple[str, list[Requirement]]:
    """(version, requirements) of a recorded metadata file: `# vllm==X` then one requirement a line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines or not lines[0].startswith("# vllm=="):
        raise ValueError(f"{RECORD.name}: the first line must be `# vllm==VERSION`")
    return lines[0].removeprefix("# vllm==").split()[0].rstrip(":"), [Requirement(line) for line in lines[1:]
                                                          if not line.startswith("#")]


def conflicts(requirements: list[Requirement], pins: dict[str, str]) -> list[str]:
    """One line per requirement (without an extra, its marker true on TARGET) that a pin breaks."""
    env = default_environment() | TARGET | {"extra": ""}
    out = []
    for req in requirements:
        if req.marker is not None and not req.marker.evaluate(env):
            continue
        version = pins.get(canonicalize_name(req.name))
        if version is not None and not req.specifier.contains(version, prereleases=True):
            out.append(f"vllm requires {req}, the lock pins {req.name}=={version}")
    return out


def refresh(version: str) -> str:
    """The recorded metadata of vllm==version, from pip's report (metadata only, no wheel)."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--dry-run", "--no-deps", "--ignore-installed",
                        "--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp",
                        "--platform", "manylinux_2_28_x86_64", "--target", tmp, "--report", str(report),
                        f"vllm=={version}"], check=True)
        meta = json.loads(report.read_text())["install"][0]["metadata"]
    header = f"# vllm=={meta['version']}: Requires-Dist of its wheel's METADATA (python -m reproduce.pins --refresh)"
    return "\n".join([header, *meta.get("requires_dist", [])]) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reproduce.pins", description=__doc__.split("\n\n")[0])
    parser.add_argument("--refresh", action="store_true", help="record the pinned release's metadata again first")
    args = parser.parse_args(argv)
    pin = vllm_pin((ROOT / "pyproject.toml").read_text())
    if args.refresh:
        RECORD.write_text(refresh(pin))
    version, requirements = read_record(RECORD.read_text())
    if version != pin:
        print(f"{RECORD.name} records vllm=={version}, pyproject.toml pins {pin}: "
              "run python -m reproduce.pins --refresh", file=sys.stderr)
        return 1
    pins = locked((ROOT / "requirements" / "lock.txt").read_text(), (ROOT / "requirements" / "constraints.txt").read_text())
    problems = conflicts(requirements, pins)
    for line in problems:
        print(line, file=sys.stderr)
    named = sorted(canonicalize_name(r.name) for r in requirements if canonicalize_name(r.name) in pins)
    print(f"vllm=={pin}, as on linux x86_64 with Python 3.12: "
          f"{len(named)} locked packages named, {len(problems)} conflicts")
    return 1 if problems else 0


if __name__ == "__main__":
    from bench.errors import exit_on_usage_error

    sys.exit(exit_on_usage_error(main))

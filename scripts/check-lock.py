#!/usr/bin/env python3
"""Does requirements.lock install on another CPython? For each version given (3.12, 3.13 ...) pip resolves the
whole lock, dependencies included, as that CPython on Linux x86_64 (manylinux, glibc 2.28 or older) from wheels
only, and every package it would install must be pinned in the lock for that Python, at that version.

    python scripts/check-lock.py 3.12 3.13                # pip's dry run: metadata only where the index serves it
    python scripts/check-lock.py --download 3.12 3.13     # every wheel downloaded into a temporary directory
    python scripts/check-lock.py --download --into DIR 3.12

pip evaluates environment markers (the lock's and those in the packages' own requirements) for the Python that
runs it, even with --python-version: here pip runs with its marker environment set to the target version, so
`; python_version >= "3.12"` means what it says. Exit 0: every version resolves; 1: a finding, one line each; 2: usage.
"""

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_sdist_filename, parse_wheel_filename

REPO = Path(__file__).resolve().parents[1]
# glibc 2.28 (Debian 10, RHEL 8) and older: every locked wheel has such a build.
PLATFORMS = [f"manylinux_2_{minor}_x86_64" for minor in range(28, 4, -1)] + [
    "manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]
# Pure-Python packages that PyPI has as source only (hydra-core's ANTLR runtime, through dvc): built here into a
# wheel, which must come out py3-none-any, one that installs on every Python 3.
SOURCE_ONLY = {"antlr4-python3-runtime"}

# pip of this process's venv, run with the marker environment of the target CPython (a JSON argument).
PIP_AS = """
import json, sys
from pip._vendor.packaging import markers
from pip._internal.models import installation_report

target = json.loads(sys.argv.pop(1))
real = markers.default_environment
markers.default_environment = installation_report.default_environment = lambda: {**real(), **target}
from pip._internal.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def environment(version: str) -> dict[str, str]:
    """The marker environment of CPython `version` (its first release, x.y.0) on Linux x86_64."""
    return {"python_version": version, "python_full_version": f"{version}.0", "implementation_name": "cpython",
            "implementation_version": f"{version}.0", "platform_python_implementation": "CPython",
            "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix"}


def pins(lock: Path, environment: dict[str, str]) -> dict[str, str]:
    """The lock's `name==version` lines whose markers hold in `environment`: {canonical name: version}."""
    out = {}
    for number, line in enumerate(lock.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        spec = list(req.specifier)
        if len(spec) != 1 or spec[0].operator != "==":
            raise SystemExit(f"error: {lock}:{number}: not a pin (name==version): {line}")
        if req.marker is None or req.marker.evaluate(environment):
            name = canonicalize_name(req.name)
            if name in out:
                raise SystemExit(f"error: {lock}:{number}: {name} is pinned twice for Python "
                                 f"{environment['python_version']}")
            out[name] = spec[0].version
    return out


def pip(version: str, *args: str) -> subprocess.CompletedProcess:
    target = ["--python-version", version, "--implementation", "cp", "--only-binary=:all:",
              *(f"--platform={p}" for p in PLATFORMS)]
    return subprocess.run([sys.executable, "-c", PIP_AS, json.dumps(environment(version)), args[0], *target, *args[1:]],
                          capture_output=True, text=True, timeout=1800)


def pip_errors(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
    return " ".join(lines) or result.stderr.strip()[-2000:]


def build_source_only(lock: Path, versions: list[str], into: Path) -> list[str]:
    """Wheels of the SOURCE_ONLY pins for `versions` in `into`; the problems found."""
    wanted = {name: version for v in versions for name, version in pins(lock, environment(v)).items()}
    problems = []
    for name in sorted(SOURCE_ONLY & set(wanted)):
        result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-binary", name,
                                 "-w", str(into), f"{name}=={wanted[name]}"], capture_output=True, text=True,
                                timeout=600)
        built = [w for w in into.glob("*.whl") if canonicalize_name(parse_wheel_filename(w.name)[0]) == name]
        if result.returncode != 0 or not built:
            problems.append(f"{name}=={wanted[name]}: its source did not build into a wheel: {pip_errors(result)}")
        elif any(str(tag) != "py3-none-any" for tag in parse_wheel_filename(built[0].name)[3]):
            problems.append(f"{name}=={wanted[name]}: its wheel {built[0].name} is not pure Python (py3-none-any);"
                            f" it has no wheel on PyPI for other Pythons")
    return problems


def compare(version: str, wanted: dict[str, str], got: dict[str, str], lock: Path) -> list[str]:
    problems = [f"{name} {got[name]} is needed on Python {version} but not pinned in {lock.name}"
                for name in sorted(set(got) - set(wanted))]
    problems += [f"{name}=={wanted[name]} is pinned for Python {version} but pip would install "
                 f"{got.get(name, 'nothing')}" for name in sorted(wanted) if got.get(name) != wanted[name]]
    return problems


def check(version: str, lock: Path, links: Path, download: Path | None) -> tuple[list[str], str]:
    """(problems, summary) for one target version."""
    wanted = pins(lock, environment(version))
    start = time.monotonic()
    if download is None:
        report = links.parent / f"report-{version}.json"
        result = pip(version, "install", "--dry-run", "--ignore-installed", "--quiet", "--report", str(report),
                     "--find-links", str(links), "-r", str(lock))
        if result.returncode != 0:
            return [f"pip could not resolve {lock.name} from wheels: {pip_errors(result)}"], ""
        got = {canonicalize_name(item["metadata"]["name"]): item["metadata"]["version"]
               for item in json.loads(report.read_text())["install"]}
        size = ""
    else:
        into = download / version
        into.mkdir(parents=True, exist_ok=True)
        result = pip(version, "download", "--quiet", "--dest", str(into), "--find-links", str(links),
                     "-r", str(lock))
        if result.returncode != 0:
            return [f"pip could not download {lock.name} as wheels: {pip_errors(result)}"], ""
        files = sorted(into.iterdir())
        got = {}
        for file in files:
            name, ver = (parse_wheel_filename(file.name) if file.suffix == ".whl"
                         else parse_sdist_filename(file.name))[:2]
            got[canonicalize_name(name)] = str(ver)
        size = f", {sum(f.stat().st_size for f in files) / 1e6:,.0f} MB of wheels in {into}"
    problems = compare(version, wanted, got, lock)
    return problems, (f"Python {version}: {len(got)} package{'s' if len(got) != 1 else ''} resolve from wheels (CPython, manylinux x86_64),"
                      f" each pinned in {lock.name} ({time.monotonic() - start:.0f} s{size})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("versions", nargs="+", metavar="VERSION", help="3.12, 3.13 ...")
    parser.add_argument("--lock", type=Path, default=REPO / "requirements.lock")
    parser.add_argument("--download", action="store_true", help="download every wheel, not only pip's dry run")
    parser.add_argument("--into", type=Path, help="with --download: keep the wheels in DIR/VERSION")
    args = parser.parse_args()
    if any(not re.fullmatch(r"3\.\d+", v) for v in args.versions):
        parser.error("versions are major.minor, e.g. 3.12")
    with tempfile.TemporaryDirectory(prefix="check-lock-") as tmp:
        links = Path(tmp) / "built"
        links.mkdir()
        problems = [f"error: {p}" for p in build_source_only(args.lock, args.versions, links)]
        download = (args.into or Path(tmp) / "wheels") if args.download else None
        # The versions at once: pip's time goes mostly in waiting for the index, one request at a time.
        with ThreadPoolExecutor(len(args.versions)) as pool:
            results = pool.map(lambda v: check(v, args.lock, links, download), args.versions)
            for version, (found, summary) in zip(args.versions, results):
                problems += [f"error: Python {version}: {p}" for p in found]
                if not found:
                    print(summary, flush=True)
        if download is not None and args.into is None:
            shutil.rmtree(download, ignore_errors=True)
    for line in problems:
        print(line, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

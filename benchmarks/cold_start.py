"""Cold-start import of `authorizer.app` on Python 3.13, with and without the package's bytecode.

    .venv/bin/python benchmarks/cold_start.py [--package DIR] [--python PYTHON3.13] [--runs N]
    make cold-start [COLD_START_ARGS="--runs 30"]

Without `--package` it builds the Lambda package for this machine's architecture into a temporary folder
(`make build-AuthorizerFunction`, offline from the wheelhouse when `make wheels` filled it). The "without"
variant is a copy with every `__pycache__` removed. Each run is a fresh `python3.13 -I -S -B` process with
only the package on its path, as Lambda runs /var/task: -B, because /var/task is read-only, so nothing
compiled on one cold start is kept for the next. The two variants alternate, so that load from other
processes falls on both alike. Timed: the `import authorizer.app` statement (what the Lambda's init phase
runs), and the whole process (interpreter start-up included). Report: a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARCHES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}
PROBE = (
    "import sys, time; sys.path.insert(0, sys.argv[1]); started = time.perf_counter(); "
    "import authorizer.app; print((time.perf_counter() - started) * 1000)"
)


def lambda_python() -> str:
    """The interpreter the build compiles with (the Makefile's search for Python 3.13)."""
    found = subprocess.run(
        ["make", "-s", "--no-print-directory", "-C", str(ROOT), "lambda-python"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not found:
        sys.exit("no Python 3.13 found (python3.13 on PATH or in pyenv): pass --python")
    return found


def build(into: Path) -> Path:
    arch = ARCHES.get(platform.machine().lower())
    if arch is None:
        sys.exit(f"no Lambda architecture matches this machine ({platform.machine()}): pass --package")
    offline = (ROOT / ".venv" / "wheelhouse" / ("aarch64" if arch == "arm64" else "x86_64")).is_dir()
    command = ["make", "-s", "--no-print-directory", "-C", str(ROOT), "build-AuthorizerFunction"]
    command += [f"ARTIFACTS_DIR={into}", f"ARCH={arch}", *(["OFFLINE=1"] if offline else [])]
    print(f"building the {arch} package into {into} ...", file=sys.stderr)
    subprocess.run(command, check=True, stdout=sys.stderr)
    return into


def measure(python: str, package: Path) -> tuple[float, float]:
    """(import ms, process ms) of one fresh process."""
    started = time.perf_counter()
    out = subprocess.run(
        [python, "-I", "-S", "-B", "-c", PROBE, str(package)],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "POWERTOOLS_TRACE_DISABLED": "true"},
    ).stdout
    return float(out.strip().splitlines()[-1]), (time.perf_counter() - started) * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--package", type=Path, help="a built package (default: build one for this machine)")
    parser.add_argument("--python", help="Python 3.13 (default: the one the build uses)")
    parser.add_argument("--runs", type=int, default=15, help="processes per variant (default 15)")
    args = parser.parse_args(argv)
    python = args.python or lambda_python()
    with tempfile.TemporaryDirectory(prefix="cold-start-") as scratch:
        package = args.package or build(Path(scratch) / "package")
        if not list((package / "authorizer").glob("__pycache__/app.cpython-313.pyc")):
            sys.exit(f"{package} has no Python 3.13 bytecode: build it with a Python 3.13 available")
        bare = Path(scratch) / "without-bytecode"
        shutil.copytree(package, bare, ignore=shutil.ignore_patterns("__pycache__"), symlinks=True)
        variants = {"with bytecode": package, "without bytecode": bare}
        for path in variants.values():
            measure(python, path)  # warm the page cache: every run then reads the same files from memory
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
        for _ in range(args.runs):
            for name, path in variants.items():
                times[name].append(measure(python, path))
    version = subprocess.run(
        [python, "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    print(
        f"`import authorizer.app`, CPython {version}, {platform.machine()}, {os.cpu_count()} cores, "
        f"{args.runs} fresh processes per variant; load average {os.getloadavg()[0]:.2f} at the end.\n"
    )
    print("| package | import p50 (min-max) | process p50 |")
    print("| --- | ---: | ---: |")
    for name, samples in times.items():
        imports = [s[0] for s in samples]
        process = [s[1] for s in samples]
        print(
            f"| {name} | {statistics.median(imports):.0f} ms ({min(imports):.0f}-{max(imports):.0f}) "
            f"| {statistics.median(process):.0f} ms |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

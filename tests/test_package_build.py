"""The Lambda package, built the way `sam build` builds it (Makefile target build-AuthorizerFunction),
without Docker: wheels for the Lambda platform, which `make wheels` (a prerequisite of `make test`)
downloads at install time; the build here runs with OFFLINE=1, from that wheelhouse only. Its bytecode
is compiled by Python 3.13, the runtime's version, and the package for this machine's architecture is
run on Python 3.13 in an isolated process with nothing else on its path. Also the wheel and the layer.
Marked `build`: deselect with `pytest -m "not build"`.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import stat
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import authorizer
from conftest import REGION, make_event, parse_response
from pki import PKI, Credential, pem_bundle
from servers import MotoS3

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "src" / "authorizer"

# ELF e_machine values.
ELF_MACHINES = {"aarch64": 0xB7, "x86_64": 0x3E}
TARGETS = {"arm64": "aarch64", "x86_64": "x86_64"}
# The package that can run here: Lambda's name for this machine's architecture.
NATIVE = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}.get(
    platform.machine().lower()
)


def _make(*arguments: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    env = {k: v for k, v in os.environ.items() if k not in {"ARCH", "ARTIFACTS_DIR", "MAKEFLAGS", "MFLAGS"}}
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), *arguments],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """Builds the package for an architecture once per module: arch -> artifacts dir."""
    built: dict[str, Path] = {}

    def build(arch: str) -> Path:
        if arch not in built:
            artifacts = tmp_path_factory.mktemp(f"artifacts-{arch}")
            arguments = ["build-AuthorizerFunction", f"ARTIFACTS_DIR={artifacts}", "OFFLINE=1"]
            if arch != "arm64":  # arm64 is the default, as in the template
                arguments.append(f"ARCH={arch}")
            result = _make(*arguments)
            assert result.returncode == 0, result.stdout + result.stderr
            built[arch] = artifacts
        return built[arch]

    return build


@pytest.fixture(scope="module", params=sorted(TARGETS))
def package(request: pytest.FixtureRequest, builds: Callable[[str], Path]) -> tuple[str, Path]:
    """(machine, artifacts dir) of one build per architecture."""
    return TARGETS[request.param], builds(request.param)


@pytest.fixture(scope="module")
def lambda_python() -> str:
    """The Python 3.13 the build compiles with (the Makefile's own search), or skip."""
    found = _make("-s", "lambda-python", timeout=60).stdout.strip()
    if not found:
        pytest.skip(
            "no Python 3.13 (the Lambda runtime's version) on PATH or in pyenv: the package is built "
            "without bytecode and cannot be run as Lambda runs it; install one (pyenv install 3.13) "
            "or set LAMBDA_PYTHON"
        )
    return found


@pytest.fixture(scope="module")
def native_package(builds: Callable[[str], Path]) -> Path:
    if NATIVE is None:
        pytest.skip(f"no Lambda architecture matches this machine ({platform.machine()})")
    return builds(NATIVE)


def _magic(python: str) -> bytes:
    """The bytecode magic number of `python`."""
    out = subprocess.run(
        [python, "-I", "-c", "import importlib.util; print(importlib.util.MAGIC_NUMBER.hex())"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return bytes.fromhex(out.strip())


def _wheel_tags(artifacts: Path, distribution: str) -> list[str]:
    (info,) = artifacts.glob(f"{distribution}-*.dist-info")
    return re.findall(r"^Tag: (\S+)$", (info / "WHEEL").read_text(), re.M)


def _elf_machine(path: Path) -> int:
    header = path.read_bytes()[:20]
    assert header[:4] == b"\x7fELF", path
    return int.from_bytes(header[18:20], "little")


@pytest.mark.build
def test_package_has_the_function_and_its_dependencies(package: tuple[str, Path]) -> None:
    _, artifacts = package
    assert (artifacts / "authorizer" / "app.py").is_file()
    assert (artifacts / "authorizer" / "__init__.py").is_file()
    for module in SOURCE.glob("*.py"):
        assert (artifacts / "authorizer" / module.name).read_bytes() == module.read_bytes(), module.name
    # The source tree's own bytecode (this machine's Python) is never copied: only the build's 3.13 one.
    for cached in (artifacts / "authorizer").rglob("*.pyc"):
        assert cached.parent.name == "__pycache__" and cached.name.endswith(".cpython-313.pyc"), cached
        assert (cached.parent.parent / (cached.name.split(".")[0] + ".py")).is_file(), cached
    for dependency in (
        "pyhanko_certvalidator",
        "asn1crypto",
        "aws_lambda_powertools",
        "cryptography",
        "boto3",
    ):
        assert (artifacts / dependency / "__init__.py").is_file(), dependency
    # Nothing compiled by the build machine's Python (Lambda runs 3.13).
    assert not [p for p in artifacts.rglob("*.pyc") if "cpython-313" not in p.name]


@pytest.mark.build
def test_native_code_is_for_the_target_platform(package: tuple[str, Path]) -> None:
    machine, artifacts = package
    other = next(m for m in ELF_MACHINES if m != machine)

    tags = _wheel_tags(artifacts, "cryptography")
    assert tags, "cryptography's WHEEL has no Tag"
    for tag in tags:
        python, abi, platform = tag.split("-")
        assert machine in platform and other not in platform, tag
        assert abi == "abi3" or (python, abi) == ("cp313", "cp313"), tag
        assert platform.startswith("manylinux"), tag

    # Every wheel is pure Python or built for this machine and CPython 3.13.
    for wheel in artifacts.glob("*.dist-info/WHEEL"):
        for tag in re.findall(r"^Tag: (\S+)$", wheel.read_text(), re.M):
            python, abi, platform = tag.split("-")
            if platform == "any":
                continue
            assert machine in platform and other not in platform, (wheel.parent.name, tag)
            assert abi == "abi3" or abi == "cp313", (wheel.parent.name, tag)

    extensions = list(artifacts.rglob("*.so"))
    assert any(p.parent.name == "cryptography" or "cryptography" in p.parts for p in extensions)
    for extension in extensions:
        assert _elf_machine(extension) == ELF_MACHINES[machine], extension
        assert other not in extension.name, extension
        assert "cpython-3" not in extension.name or "cpython-313" in extension.name, extension


def test_build_uses_the_venv_pip_for_the_lambda_platform() -> None:
    """A dry run: the recipe, without downloading anything."""
    result = _make("-n", "build-AuthorizerFunction", "ARTIFACTS_DIR=/tmp/artifacts-dry-run", timeout=60)
    assert result.returncode == 0, result.stderr
    recipe = " ".join(result.stdout.split())
    assert ".venv/bin/python -m pip install" in recipe
    for flag in (
        "--platform manylinux2014_aarch64",
        "--implementation cp",
        "--python-version 3.13",
        "--only-binary=:all:",
        '--target "/tmp/artifacts-dry-run"',
        "-r requirements.txt",
    ):
        assert flag in recipe, flag
    assert "x86_64" not in recipe
    assert 'cp -R src/authorizer "/tmp/artifacts-dry-run/authorizer"' in recipe
    # Bytecode for the whole package, compiled after everything is in place, in the __pycache__ layout
    # (no -b: legacy .pyc next to the source would be another layout) and valid whatever the mtimes.
    assert recipe.index("cp -R src/authorizer") < recipe.index("-m compileall")
    assert '-m compileall -q -f --invalidation-mode unchecked-hash "/tmp/artifacts-dry-run"' in recipe
    assert (
        " -b " not in recipe and "--no-compile" in recipe
    )  # pip compiles nothing with this machine's Python

    layer = _make("-n", "build-AuthorizerLayer", "ARTIFACTS_DIR=/tmp/layer-dry-run", timeout=60)
    assert layer.returncode == 0, layer.stderr
    assert 'ARTIFACTS_DIR="/tmp/layer-dry-run/python"' in layer.stdout  # Lambda's /opt/python

    x86 = _make("-n", "build-AuthorizerFunction", "ARTIFACTS_DIR=/tmp/a", "ARCH=x86_64", timeout=60)
    assert x86.returncode == 0, x86.stderr
    assert "--platform manylinux2014_x86_64" in x86.stdout and "aarch64" not in x86.stdout

    bad = _make("-n", "build-AuthorizerFunction", "ARTIFACTS_DIR=/tmp/a", "ARCH=sparc", timeout=60)
    assert bad.returncode != 0 and "ARCH must be arm64 or x86_64" in bad.stderr


def test_convenience_build_target_lays_out_sam_build_output() -> None:
    result = _make("-n", "build", timeout=60)
    assert result.returncode == 0, result.stderr
    assert f"ARTIFACTS_DIR={ROOT}/.aws-sam/build/AuthorizerFunction" in result.stdout.replace('"', "")
    # The built template points the function at the built folder, like `sam build` does.
    (sed,) = [line for line in result.stdout.splitlines() if line.startswith("sed ")]
    expression = re.search(r"sed '([^']+)'", sed)
    assert expression
    built = subprocess.run(
        ["sed", expression.group(1), str(ROOT / "template.yaml")], capture_output=True, text=True, check=True
    ).stdout
    # Both functions (the authorizer and the indexer) are the one package.
    assert re.findall(r"^\s*CodeUri: (\S+)$", built, re.M) == ["AuthorizerFunction", "AuthorizerFunction"]


# --- bytecode ---------------------------------------------------------------------------------------


@pytest.mark.build
def test_package_ships_unchecked_hash_bytecode_for_python_3_13(
    package: tuple[str, Path], lambda_python: str
) -> None:
    _, artifacts = package
    magic = _magic(lambda_python)
    sources = list(artifacts.rglob("*.py"))
    assert len(sources) > 500
    for source in sources:
        cached = source.parent / "__pycache__" / f"{source.stem}.cpython-313.pyc"
        assert cached.is_file(), source
        header = cached.read_bytes()[:16]
        assert header[:4] == magic, cached
        # PEP 552 flags: 0b01 = hash-based, check_source off ("unchecked-hash"): the loader never
        # stats the source, so the zip's mtimes cannot invalidate it.
        assert int.from_bytes(header[4:8], "little") == 0b01, cached
    assert not list(artifacts.rglob("*.cpython-311.pyc"))


# Runs inside `python3.13 -I -S`: no site-packages, no PYTHON* variables, not even the script's folder on
# sys.path; the package folders (argv[1], os.pathsep-separated) are inserted by hand, as Lambda puts
# /var/task on the path. Counts every module of those folders that had to be compiled from source.
RUNNER = r"""
import _frozen_importlib_external as external
import json
import os
import sys
import time

roots = [os.path.realpath(p) for p in sys.argv[1].split(os.pathsep)]
sys.path[0:0] = roots


def root_of(path):
    return next((r for r in roots if os.path.realpath(path).startswith(r + os.sep)), None)


def inside(path):
    return root_of(path) is not None


compiled = []
original = external.SourceLoader.source_to_code


def counting(self, data, path, *args, **kwargs):
    if inside(path):
        compiled.append(os.path.relpath(os.path.realpath(path), root_of(path)))
    return original(self, data, path, *args, **kwargs)


external.SourceLoader.source_to_code = counting
with open(sys.argv[2]) as handle:
    job = json.load(handle)
started = time.perf_counter()
import authorizer.app  # noqa: E402

import_ms = (time.perf_counter() - started) * 1000
out = {"import_ms": import_ms, "python": sys.version, "flags": [sys.flags.isolated, sys.flags.no_site]}
if not job.get("import_only"):
    from authorizer import Checker

    out["handler"] = [authorizer.app.lambda_handler(event, None) for event in job["events"]]
    checker = Checker(truststore=job["truststore"], crls=job["crls"])
    out["library"] = [
        [r.allow, r.reason.value, r.source.value] for r in (checker.check(pem) for pem in job["pems"])
    ]
    import importlib.util

    hashes = {}
    for name, module in list(sys.modules.items()):
        if name.split(".")[0] == "authorizer" and getattr(module, "__file__", None):
            with open(module.__spec__.cached, "rb") as handle:
                header = handle.read(16)
            with open(module.__file__, "rb") as handle:
                hashes[name] = header[8:16] == importlib.util.source_hash(handle.read())
    out["source_hashes_match"] = hashes
stdlib = os.path.realpath(sys.base_prefix) + os.sep
out["outside"] = sorted(
    {
        module.__file__
        for name, module in list(sys.modules.items())
        if getattr(module, "__file__", None) and module.__file__ != __file__
        and not inside(module.__file__) and not os.path.realpath(module.__file__).startswith(stdlib)
    }
)
out["compiled"] = compiled
with open(sys.argv[3], "w") as handle:
    json.dump(out, handle)
sys.stdout.flush()
os._exit(0)  # background refresh threads are daemons; do not wait for them
"""


def _run_isolated(
    python: str, roots: list[Path], job: dict[str, Any], workdir: Path, env: dict[str, str], *flags: str
) -> dict[str, Any]:
    runner, job_file, out = workdir / "runner.py", workdir / "job.json", workdir / "out.json"
    runner.write_text(RUNNER)
    job_file.write_text(json.dumps(job))
    out.unlink(missing_ok=True)
    run = subprocess.run(
        [python, "-I", "-S", *flags, str(runner), os.pathsep.join(map(str, roots)), str(job_file), str(out)],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        cwd=workdir,
    )
    assert run.returncode == 0 and out.is_file(), run.stdout[-3000:] + run.stderr[-3000:]
    result: dict[str, Any] = json.loads(out.read_text())
    assert result["python"].startswith("3.13"), result["python"]
    assert result["flags"] == [1, 1]
    assert result["outside"] == [], "modules loaded from outside the package and the standard library"
    return result


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


@pytest.fixture
def read_only(native_package: Path) -> Iterator[Path]:
    """The package as Lambda mounts /var/task: not writable (as root, only PYTHONDONTWRITEBYTECODE-free
    runs and the snapshot below show nothing is written)."""
    modes = {p: p.stat().st_mode for p in [native_package, *native_package.rglob("*")] if not p.is_symlink()}
    for path, mode in modes.items():
        path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        yield native_package
    finally:
        for path, mode in modes.items():
            path.chmod(mode)


@pytest.mark.build
def test_the_built_package_decides_on_python_3_13_without_compiling(
    read_only: Path, lambda_python: str, s3: MotoS3, pki: PKI, tmp_path: Path
) -> None:
    """The package for this machine on CPython 3.13, isolated: the handler on REST and HTTP API events
    (truststore and denylist in S3, as deployed), the library with a local truststore and a CRL file;
    every module of the package loads from its bytecode, and nothing is written."""
    root = pki.root("Package Test Root CA")
    ica = pki.intermediate("Package Test Issuing CA", root)
    alice, bob, carol = (pki.leaf(n, ica) for n in ("pkg-alice", "pkg-bob", "pkg-carol"))
    mallory = pki.leaf("pkg-mallory", pki.root("Package Test Stranger CA"))
    truststore = tmp_path / "truststore.pem"
    truststore.write_bytes(pem_bundle([root, ica]))
    crl = tmp_path / "ica.crl"
    crl.write_bytes(pki.crl(ica, [carol]))
    s3.put("package-test/truststore.pem", truststore.read_bytes())
    s3.put("package-test/denylist.txt", f"{bob.fingerprint_sha256}  keyCompromise\n".encode())

    cases: list[tuple[Any, str, Credential | None, bool, str]] = [
        ("rest", "rest", alice, True, "no_revocation_info"),
        ("v2", "v2", alice, True, "no_revocation_info"),
        ("v1", "v1", alice, True, "no_revocation_info"),
        ("rest", "rest", bob, False, "revoked"),  # in the S3 denylist
        ("v2", "v2", mallory, False, "untrusted"),
        ("rest", "rest", None, False, "invalid_request"),
    ]
    events = [make_event(fmt, cert.pem if cert else None, cert) for fmt, _, cert, _, _ in cases]
    garbage = make_event("v2", "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    samples = [
        json.loads((ROOT / "events" / f"{n}-missing-certificate.json").read_text()) for n in ("rest", "http")
    ]
    job = {
        "events": [*events, garbage, *samples],
        "truststore": str(truststore),
        "crls": [str(crl)],
        "pems": [alice.pem, bob.pem, carol.pem, mallory.pem],
    }
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_ENDPOINT_URL_S3": s3.endpoint,
        "NO_PROXY": "127.0.0.1,localhost",
        "TRUSTSTORE_BUCKET": s3.bucket,
        "TRUSTSTORE_KEY": "package-test/truststore.pem",
        "REVOCATION_DENYLIST_S3_URI": f"s3://{s3.bucket}/package-test/denylist.txt",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "MtlsAuthorizerPackageTest",
    }
    before = _snapshot(read_only)
    result = _run_isolated(lambda_python, [read_only], job, tmp_path, env)
    assert _snapshot(read_only) == before, "running the package wrote to it"
    assert result["compiled"] == [], "modules compiled from source on a cold start"
    assert result["source_hashes_match"] and all(result["source_hashes_match"].values())

    answers = result["handler"]
    for (fmt, _, cert, allowed, reason), answer in zip(cases, answers[: len(cases)], strict=True):
        decision = parse_response(answer, fmt)
        assert (decision.allowed, decision.reason) == (allowed, reason), (fmt, cert and cert.subject)
    assert parse_response(answers[len(cases)], "v2").reason == "invalid_request"
    for sample, answer in zip(samples, answers[len(cases) + 1 :], strict=True):
        fmt = "v2" if sample.get("version") == "2.0" else "rest"
        decision = parse_response(answer, fmt)
        assert (decision.allowed, decision.reason) == (False, "invalid_request")
    assert result["library"] == [
        [True, "good", "crl"],
        [False, "revoked", "denylist"],
        [False, "revoked", "crl"],
        [False, "untrusted", "none"],
    ]
    version = result["python"].split()[0]
    print(f"\nimport authorizer.app on Python {version} with bytecode: {result['import_ms']:.0f} ms")

    # The control: the authorizer's modules without bytecode (first on the path) are compiled, and
    # counted, which is what a package without .pyc does on every cold start.
    bare = tmp_path / "bare"
    shutil.copytree(
        read_only / "authorizer", bare / "authorizer", ignore=shutil.ignore_patterns("__pycache__")
    )
    control = _run_isolated(lambda_python, [bare, read_only], {"import_only": True}, tmp_path, env, "-B")
    assert "authorizer/app.py" in {c.replace(os.sep, "/") for c in control["compiled"]}, control["compiled"]


# --- the build without (or with the wrong) Python 3.13 ---------------------------------------------


@pytest.mark.build
def test_without_python_3_13_the_build_says_so_and_ships_no_bytecode(tmp_path: Path) -> None:
    result = _make(
        "build-AuthorizerFunction",
        f"ARTIFACTS_DIR={tmp_path}",
        "OFFLINE=1",
        f"ARCH={NATIVE or 'x86_64'}",
        "LAMBDA_PYTHON=",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no Python 3.13 found" in result.stderr and "without bytecode" in result.stderr
    assert (tmp_path / "authorizer" / "app.py").is_file()
    assert not list(tmp_path.rglob("*.pyc"))


def test_a_lambda_python_of_another_version_is_refused(tmp_path: Path) -> None:
    result = _make(
        "build-AuthorizerFunction", f"ARTIFACTS_DIR={tmp_path}", f"LAMBDA_PYTHON={sys.executable}", timeout=60
    )
    assert result.returncode != 0
    assert "is not Python 3.13" in result.stderr
    assert not list(tmp_path.iterdir()), "nothing is installed before the check"


# --- wheel and layer ------------------------------------------------------------------------------


@pytest.mark.build
def test_wheel_holds_the_package_and_its_metadata(tmp_path: Path) -> None:
    if not list((ROOT / ".venv" / "wheelhouse" / "backend").glob("setuptools-*.whl")):
        pytest.skip("the build backend is not in the wheelhouse: run `make wheels`")
    result = _make("wheel", "OFFLINE=1", f"DIST={tmp_path}")
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = tmp_path.glob("*.whl")
    assert wheel.name == f"mtls_revocation_authorizer-{authorizer.__version__}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        info = f"mtls_revocation_authorizer-{authorizer.__version__}.dist-info"
        metadata = archive.read(f"{info}/METADATA").decode()
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
        archive.extractall(tmp_path / "site")
    expected = {f"authorizer/{p.relative_to(SOURCE).as_posix()}" for p in SOURCE.rglob("*.py")}
    assert expected <= names
    assert "authorizer/py.typed" in names  # PEP 561
    assert not [
        n for n in names if n.endswith(".pyc") or "__pycache__" in n or n.startswith(("tests/", "examples/"))
    ]
    assert {n.split("/")[0] for n in names} == {"authorizer", info}
    assert re.search(rf"^Version: {re.escape(authorizer.__version__)}$", metadata, re.M)
    requirements = [
        line.split("#")[0].strip()
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line.split("#")[0].strip()
    ]
    assert re.findall(r"^Requires-Dist: (.+)$", metadata, re.M) == requirements
    assert "mtls-authorizer = authorizer.cli:main" in entry_points

    # The unpacked wheel is the library (its dependencies from this environment).
    code = (
        "import authorizer, sys; from authorizer import check_request; "
        "print(authorizer.__file__); print(authorizer.__version__); "
        "print(check_request('not a certificate', truststore=b'').reason)"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120
    )
    assert run.returncode == 0, run.stderr
    where, version, reason = run.stdout.split()[-3:]
    assert where.startswith(str(tmp_path / "site")) and version == authorizer.__version__
    assert reason == "untrusted"


@pytest.mark.build
def test_layer_zip_has_the_lambda_layout(tmp_path: Path) -> None:
    arch = NATIVE or "x86_64"
    layer = tmp_path / "layer.zip"
    result = _make(
        "layer", "OFFLINE=1", f"ARCH={arch}", f"LAYER_ZIP={layer}", f"LAYER_BUILD={tmp_path / 'build'}"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    with zipfile.ZipFile(layer) as archive:
        names = set(archive.namelist())
        assert archive.getinfo("python/authorizer/app.py").compress_type == zipfile.ZIP_DEFLATED
        archive.extractall(tmp_path / "opt")
    assert {n.split("/")[0] for n in names} == {"python"}  # Lambda adds /opt/python to sys.path
    for required in (
        "python/authorizer/app.py",
        "python/authorizer/api.py",
        "python/cryptography/__init__.py",
        "python/pyhanko_certvalidator/__init__.py",
        "python/boto3/__init__.py",
    ):
        assert required in names, required
    compiled = _make("-s", "lambda-python", timeout=60).stdout.strip()
    if compiled:
        assert "python/authorizer/__pycache__/app.cpython-313.pyc" in names
        run = _run_isolated(
            compiled,
            [tmp_path / "opt" / "python"],
            {"import_only": True},
            tmp_path,
            {"PATH": "/usr/bin:/bin", "POWERTOOLS_TRACE_DISABLED": "true"},
        )
        assert run["compiled"] == []

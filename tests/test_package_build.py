"""The Lambda package, built the way `sam build` builds it (Makefile target build-AuthorizerFunction),
without Docker: wheels for the Lambda platform, which `make wheels` (a prerequisite of `make test`)
downloads at install time; the build here runs with OFFLINE=1, from that wheelhouse only.
Marked `build`: deselect with `pytest -m "not build"`.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "src" / "authorizer"

# ELF e_machine values.
ELF_MACHINES = {"aarch64": 0xB7, "x86_64": 0x3E}
TARGETS = {"arm64": "aarch64", "x86_64": "x86_64"}


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


@pytest.fixture(scope="module", params=sorted(TARGETS))
def package(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """(machine, artifacts dir) of one build per architecture."""
    arch = request.param
    artifacts = tmp_path_factory.mktemp(f"artifacts-{arch}")
    arguments = ["build-AuthorizerFunction", f"ARTIFACTS_DIR={artifacts}", "OFFLINE=1"]
    if arch != "arm64":  # arm64 is the default, as in the template
        arguments.append(f"ARCH={arch}")
    result = _make(*arguments)
    assert result.returncode == 0, result.stdout + result.stderr
    return TARGETS[arch], artifacts


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
    assert not list((artifacts / "authorizer").rglob("__pycache__"))
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
    assert re.findall(r"^\s*CodeUri: (\S+)$", built, re.M) == ["AuthorizerFunction"]

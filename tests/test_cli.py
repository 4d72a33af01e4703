"""The command line: the Lambda's decision locally, and sample events."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import World
from pki import Credential, pem_bundle

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def files(tmp_path: Path, world: World, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FETCH_BLOCKED_NETWORKS", "")  # the test servers are on loopback
    (tmp_path / "truststore.pem").write_bytes(pem_bundle(world.trusted))
    return tmp_path


def run(*args: str) -> tuple[int, str, str]:
    import contextlib
    import io

    from authorizer.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def write(directory: Path, cert: Credential) -> str:
    path = directory / f"{cert.serial_hex}.pem"
    path.write_text(cert.pem)
    return str(path)


def test_check_allows_a_good_certificate_and_shows_the_path(files: Path, world: World) -> None:
    leaf = world.leaf("cli-good", crl=True)
    code, out, _ = run("check", "--cert", write(files, leaf), "--truststore", str(files / "truststore.pem"))
    assert code == 0, out
    assert "Decision: Allow" in out and "Reason:   good" in out
    assert "leaf" in out and "crl: good" in out and "trust anchor" in out


def test_check_json_denies_a_revoked_certificate(files: Path, world: World) -> None:
    leaf = world.leaf("cli-revoked", ocsp="issuer", ocsp_status="revoked")
    code, out, _ = run(
        "check", "--cert", write(files, leaf), "--truststore", str(files / "truststore.pem"), "--json"
    )
    report = json.loads(out)
    assert code == 1
    assert (report["decision"], report["reason"], report["revocationSource"]) == ("Deny", "revoked", "ocsp")
    assert [entry["role"] for entry in report["path"]] == ["leaf", "intermediate", "anchor"]
    assert report["path"][0]["revocation"] == "revoked"
    assert int(report["path"][0]["serial"], 16) == leaf.serial


def test_check_untrusted_is_a_deny_not_a_usage_error(files: Path, world: World) -> None:
    leaf = world.leaf("cli-untrusted", issuer=world.unknown_ica)
    code, out, _ = run("check", "--cert", write(files, leaf), "--truststore", str(files / "truststore.pem"))
    assert code == 1 and "untrusted" in out and "(no validated path)" in out


@pytest.mark.parametrize(
    "args",
    [
        ("check", "--cert", "missing.pem", "--truststore", "missing.pem"),
        ("check", "--truststore", "x.pem"),
        ("check", "--cert", "x.pem", "--truststore", "x.pem", "--crl"),
        ("revoke", "--cert", "x.pem"),
        ("unrevoke", "--denylist", "denylist.txt"),
        ("list",),
        ("frobnicate",),
        (),
    ],
)
def test_usage_errors_exit_2(files: Path, args: tuple[str, ...]) -> None:
    assert run(*args)[0] == 2


def test_help_names_every_command_and_the_reasons() -> None:
    from authorizer.denylist import REASONS

    code, out, _ = run("--help")
    assert code == 0
    for command in ("check", "revoke", "unrevoke", "list", "event"):
        assert command in out
    code, out, _ = run("revoke", "--help")
    assert code == 0 and all(reason in " ".join(out.split()) for reason in REASONS)
    code, out, _ = run("check", "--help")
    assert code == 0 and "--crl" in out and "--denylist" in out


def test_a_file_that_is_not_a_certificate_is_a_usage_error(files: Path) -> None:
    (files / "garbage.pem").write_text("hello")
    code, _, err = run(
        "check", "--cert", str(files / "garbage.pem"), "--truststore", str(files / "truststore.pem")
    )
    assert code == 2 and "CERTIFICATE" in err


@pytest.mark.parametrize(("fmt", "where"), [("rest", "identity"), ("http", "authentication")])
def test_event_prints_an_event_the_handler_reads(files: Path, world: World, fmt: str, where: str) -> None:
    leaf = world.leaf("cli-event")
    code, out, _ = run("event", "--cert", write(files, leaf), "--format", fmt)
    event = json.loads(out)
    assert code == 0
    assert event["requestContext"][where]["clientCert"]["clientCertPem"] == leaf.pem
    colon_serial = event["requestContext"][where]["clientCert"]["serialNumber"]
    assert int(colon_serial.replace(":", ""), 16) == leaf.serial
    from authorizer.events import parse_event

    assert parse_event(event).cert_pem == leaf.pem


def test_module_entry_point_runs(files: Path, world: World) -> None:
    leaf = world.leaf("cli-module")
    result = subprocess.run(
        [sys.executable, "-m", "authorizer", "event", "--cert", write(files, leaf)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["type"] == "REQUEST"


def test_installed_console_script(files: Path, world: World) -> None:
    script = Path(sys.executable).parent / "mtls-authorizer"  # installed by `make` (pip install -e .)
    leaf = world.leaf("cli-script", crl=True)
    result = subprocess.run(
        [str(script), "check", "--cert", write(files, leaf), "--truststore", str(files / "truststore.pem")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Decision: Allow" in result.stdout

"""The check as a library (authorizer.api): `check_request`, `Checker`, `CheckResult`, and the example
that composes it with a JWT check (examples/jwt_authorizer.py).

The library is the Lambda's own code path, so its decisions and context must equal lambda_handler's for
the same certificate; every failure is a Deny, never an exception.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import importlib.util
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import authorizer
from authorizer import Checker, CheckResult, Reason, Source, check_request
from authorizer import app as app_module
from authorizer.settings import Settings
from authorizer.truststore import TruststoreError, parse_truststore
from conftest import (
    METHOD_ARN,
    STAGE_RESOURCE,
    Authorizer,
    Configure,
    FakeLambdaContext,
    World,
    make_event,
    parse_response,
    policy_resources,
)
from pki import PKI, Credential, pem_bundle
from servers import StallingServer

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def private(pki: PKI) -> dict[str, Credential]:
    """A small hierarchy with no revocation information, and one nobody trusts."""
    root = pki.root("Library Root CA")
    ica = pki.intermediate("Library Issuing CA", root)
    stranger = pki.root("Library Stranger CA")
    return {
        "root": root,
        "ica": ica,
        "alice": pki.leaf("alice", ica),
        "bob": pki.leaf("bob", ica),
        "mallory": pki.leaf("mallory", stranger),
    }


@pytest.fixture(scope="module")
def truststore_file(private: dict[str, Credential], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("library") / "truststore.pem"
    path.write_bytes(pem_bundle([private["root"], private["ica"]]))
    return path


@pytest.fixture(scope="module")
def checker(truststore_file: Path) -> Checker:
    return Checker(Settings(), truststore=truststore_file)


# --- the package: import cost and version -----------------------------------------------------------


def test_importing_the_package_loads_none_of_the_decision_dependencies() -> None:
    code = (
        "import sys; from authorizer import Checker, CheckResult, check_request, __version__; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('cryptography', 'boto3', 'botocore', 'aws_lambda_powertools', 'pyhanko_certvalidator', "
        "'asn1crypto') or m == 'authorizer.app'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT / "src"
    ).stdout
    assert out.strip() == "[]"


def test_the_version_is_written_once() -> None:
    assert authorizer.__version__ == "0.2.0"
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'version = { attr = "authorizer.__version__" }' in pyproject
    assert '"version"' in pyproject.split("dynamic = ", 1)[1].split("\n", 1)[0]
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert f"## {authorizer.__version__} " in changelog or f"## [{authorizer.__version__}]" in changelog
    assert (ROOT / "src" / "authorizer" / "py.typed").is_file()


def test_public_names() -> None:
    assert set(authorizer.__all__) >= {"check_request", "Checker", "CheckResult", "Reason", "Source"}
    assert authorizer.Reason is Reason and Reason.GOOD == "good"


# --- decisions ------------------------------------------------------------------------------------


def test_a_certificate_without_revocation_info_is_allowed(
    checker: Checker, private: dict[str, Credential]
) -> None:
    alice = private["alice"]
    for request in (alice.pem, alice.pem.encode(), alice.der):
        result = checker.check(request)
        assert isinstance(result, CheckResult)
        assert (result.allow, result.reason, result.source) == (True, Reason.NO_REVOCATION_INFO, Source.NONE)
        assert result.client is not None and result.client.fingerprint == alice.fingerprint_sha256
        assert result.principal == alice.subject
        assert result.context == {
            "reason": "no_revocation_info",
            "certSerial": alice.serial_hex.lower(),
            "certFingerprintSha256": alice.fingerprint_sha256,
            "certSubject": alice.subject,
            "certIssuer": alice.issuer,
            "revocationSource": "none",
        }
        assert result.elapsed_ms >= 0


@pytest.mark.parametrize("form", ["path", "str-path", "bytes", "pem-str", "parsed", "provider"])
def test_every_truststore_form(form: str, truststore_file: Path, private: dict[str, Credential]) -> None:
    data = truststore_file.read_bytes()
    parsed = parse_truststore(data, "v1")

    class Provider:
        def get(self, deadline: float | None = None) -> Any:
            return parsed

    truststore: Any = {
        "path": truststore_file,
        "str-path": str(truststore_file),
        "bytes": data,
        "pem-str": data.decode(),
        "parsed": parsed,
        "provider": Provider(),
    }[form]
    assert Checker(Settings(), truststore=truststore).check(private["bob"].pem).allow
    assert check_request(private["bob"].pem, truststore=truststore).reason is Reason.NO_REVOCATION_INFO


def test_untrusted_and_unparseable_certificates_are_denied(
    checker: Checker, private: dict[str, Credential]
) -> None:
    untrusted = checker.check(private["mallory"].pem)
    assert (untrusted.allow, untrusted.reason) == (False, Reason.UNTRUSTED)
    assert untrusted.context["certSubject"] == private["mallory"].subject
    for garbage in (
        "not a certificate",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        "",
    ):
        result = checker.check(garbage)
        assert (result.allow, result.reason, result.client) == (False, Reason.INVALID_REQUEST, None)
        assert result.context == {"reason": "invalid_request"}


def test_crl_files_and_a_denylist_file_revoke(
    pki: PKI, private: dict[str, Credential], truststore_file: Path, tmp_path: Path
) -> None:
    crl = tmp_path / "ica.crl"
    crl.write_bytes(pki.crl(private["ica"], [private["bob"]]))
    with_crl = Checker(Settings(), truststore=truststore_file, crls=[crl])
    good, revoked = with_crl.check(private["alice"].pem), with_crl.check(private["bob"].pem)
    assert (good.allow, good.reason, good.source) == (True, Reason.GOOD, Source.CRL)
    assert (revoked.allow, revoked.reason, revoked.source) == (False, Reason.REVOKED, Source.CRL)

    denylist = tmp_path / "denylist.txt"
    denylist.write_text(f"{private['alice'].fingerprint_sha256}  keyCompromise\n")
    listed = Checker(Settings(), truststore=truststore_file, denylist=denylist).check(private["alice"].pem)
    assert (listed.allow, listed.reason, listed.source) == (False, Reason.REVOKED, Source.DENYLIST)


def test_settings_come_from_env_or_arguments(truststore_file: Path, private: dict[str, Credential]) -> None:
    strict = Checker(env={"REVOCATION_NO_INFO": "deny"}, truststore=truststore_file)
    assert strict.settings.revocation.allow_no_info is False
    result = strict.check(private["alice"].pem)
    assert (result.allow, result.reason) == (False, Reason.NO_REVOCATION_INFO)
    settings = dataclasses.replace(Settings(), revocation=strict.settings.revocation)
    assert not check_request(private["alice"].pem, truststore=truststore_file, settings=settings).allow


# --- events and API Gateway's answer ------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["rest", "v1", "v2"])
def test_events_get_the_lambdas_answer(fmt: Any, checker: Checker, private: dict[str, Credential]) -> None:
    alice = private["alice"]
    result = checker.check(make_event(fmt, alice.pem, alice))
    assert result.allow and result.reason is Reason.NO_REVOCATION_INFO
    allowed = parse_response(result.response(), fmt)
    assert allowed.allowed and allowed.context == result.context
    if fmt != "v2":
        assert allowed.response["principalId"] == alice.subject
        assert policy_resources(allowed.response) == [STAGE_RESOURCE]

    # Another check can deny what this one allowed, and add to the context.
    denied = parse_response(result.response(allow=False, context={"jwt": "expired"}), fmt)
    assert not denied.allowed and denied.context == {**result.context, "jwt": "expired"}
    # ...but never allow what this one denied.
    mallory = checker.check(make_event(fmt, private["mallory"].pem, private["mallory"]))
    assert not parse_response(mallory.response(allow=True), fmt).allowed
    # Only a real True allows.
    assert not parse_response(result.response(allow="yes"), fmt).allowed  # type: ignore[arg-type]


def test_principal_can_be_replaced(checker: Checker, private: dict[str, Credential]) -> None:
    result = checker.check(make_event("rest", private["alice"].pem, private["alice"]))
    assert result.response(principal="user-42")["principalId"] == "user-42"


def test_a_bare_certificate_answers_with_a_policy_that_names_no_api(
    checker: Checker, private: dict[str, Credential]
) -> None:
    response = checker.check(private["alice"].pem).response()
    assert response["policyDocument"]["Statement"][0]["Effect"] == "Deny"
    assert policy_resources(response) == ["*"]


def test_an_event_without_an_arn_is_an_invalid_request_as_in_the_lambda(
    checker: Checker, private: dict[str, Credential]
) -> None:
    event = make_event("rest", private["alice"].pem, private["alice"])
    del event["methodArn"]
    result = checker.check(event)
    assert (result.allow, result.reason) == (False, Reason.INVALID_REQUEST)
    assert "ARN" in result.detail
    assert not parse_response(result.response(), "rest").allowed
    missing = checker.check(make_event("v2", None))
    assert (missing.allow, missing.reason) == (False, Reason.INVALID_REQUEST)


def test_a_context_value_of_the_wrong_type_still_gives_an_answer(
    checker: Checker, private: dict[str, Credential]
) -> None:
    result = checker.check(make_event("rest", private["alice"].pem, private["alice"]))
    answer = result.response(context={"bad": object()})  # type: ignore[dict-item]
    assert isinstance(answer, dict) and "policyDocument" in answer


# --- never raises ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_",
    [
        None,
        42,
        [],
        {},
        {"version": "2.0"},
        {"requestContext": "x"},
        b"",
        b"\x30\x00",
        b"\xff\xfe",
        3.5,
        object(),
    ],
    ids=repr,
)
def test_garbage_is_a_deny_never_an_exception(checker: Checker, request_: Any) -> None:
    result = checker.check(request_)
    assert (result.allow, result.reason) == (False, Reason.INVALID_REQUEST)
    assert isinstance(result.response(), dict)
    assert check_request(request_, truststore=b"not a truststore").allow is False


def test_an_internal_error_is_a_deny(
    checker: Checker, private: dict[str, Credential], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("bug")

    monkeypatch.setattr(app_module, "decide", broken)
    result = checker.check(make_event("rest", private["alice"].pem, private["alice"]))
    assert (result.allow, result.reason) == (False, Reason.INVALID_REQUEST)
    assert "internal error" in result.detail
    assert not parse_response(result.response(), "rest").allowed


def test_a_failing_truststore_provider_is_a_deny(private: dict[str, Credential]) -> None:
    class Broken:
        def get(self, deadline: float | None = None) -> Any:
            raise TruststoreError("S3 said no")

    result = Checker(Settings(), truststore=Broken()).check(private["alice"].pem)
    assert (result.allow, result.reason, result.detail) == (False, Reason.UNTRUSTED, "S3 said no")


def test_a_setup_that_cannot_work_raises_in_checker_and_denies_in_check_request(
    tmp_path: Path, private: dict[str, Credential], monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(FileNotFoundError):
        Checker(Settings(), truststore=tmp_path / "missing.pem")
    with pytest.raises(TruststoreError):
        Checker(Settings(), truststore=private["alice"].pem.encode())  # no self-signed root
    with pytest.raises(ValueError, match="TRUSTSTORE_BUCKET"):
        Checker(Settings())
    with pytest.raises(TypeError):
        Checker(Settings(), truststore=42)  # type: ignore[arg-type]
    result = check_request(private["alice"].pem, truststore=tmp_path / "missing.pem")
    assert (result.allow, result.reason) == (False, Reason.UNTRUSTED)
    assert "missing.pem" in result.detail
    assert result.context == {"reason": "untrusted"}


# --- time -----------------------------------------------------------------------------------------


@pytest.fixture
def stalling() -> Iterator[StallingServer]:
    server = StallingServer("headers", interval=0.5)
    yield server
    server.close()


def test_deadline_and_lambda_context_bound_the_time(
    pki: PKI, private: dict[str, Credential], truststore_file: Path, stalling: StallingServer
) -> None:
    slow = pki.leaf("slow", private["ica"], crl_urls=[stalling.url("/slow.crl")])
    loopback = Checker(env={"FETCH_BLOCKED_NETWORKS": ""}, truststore=truststore_file)
    started = time.monotonic()
    result = loopback.check(slow.pem, deadline=time.monotonic() + 0.3)
    assert time.monotonic() - started < 1.5
    assert (result.allow, result.reason) == (False, Reason.REVOCATION_UNAVAILABLE)

    started = time.monotonic()
    result = loopback.check(slow.pem, lambda_context=FakeLambdaContext(remaining_ms=800))
    assert time.monotonic() - started < 1.5
    assert not result.allow


def test_threads_may_share_a_checker(checker: Checker, private: dict[str, Credential]) -> None:
    names = ["alice", "bob", "mallory"] * 8
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda n: checker.check(private[n].pem), names))
    for name, result in zip(names, results, strict=True):
        assert result.allow is (name != "mallory"), (name, result)
        assert result.context["certSubject"] == private[name].subject


# --- one implementation: the Lambda's --------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["rest", "v1", "v2"])
def test_check_request_is_the_lambdas_decision(fmt: Any, authorizer: Authorizer, world: World) -> None:
    """With no truststore or settings it runs on the Lambda's own runtime (S3 truststore, env settings)."""
    for leaf in (
        world.leaf("library-private", issuer=world.private_ica),
        world.leaf("library-crl-good", crl=True),
        world.leaf("library-crl-revoked", crl=True, crl_revoked=True),
        world.pki.leaf("library-unknown", world.unknown_root),
    ):
        event = make_event(fmt, leaf.pem, leaf)
        lambda_answer = parse_response(authorizer.invoke(event), fmt)
        result = check_request(event)
        assert result.allow == lambda_answer.allowed, leaf.subject
        assert result.reason.value == lambda_answer.reason
        assert result.context == lambda_answer.context
        assert result.response() == authorizer.invoke(event)

        # A Checker built from the same environment decides the same.
        assert Checker().check(event).context == lambda_answer.context


def test_check_request_without_a_truststore_denies_when_the_lambdas_is_missing(
    configure: Configure, private: dict[str, Credential]
) -> None:
    configure(upload=False, key="nothing/here.pem")
    result = check_request(private["alice"].pem)
    assert (result.allow, result.reason) == (False, Reason.UNTRUSTED)


# --- the example: one authorizer for the certificate and a JWT ------------------------------------


def _example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("jwt_authorizer", ROOT / "examples" / "jwt_authorizer.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


jwt_example = _example()
SECRET = b"library-test-secret"


def _with_token(event: dict[str, Any], token: str | None) -> dict[str, Any]:
    headers = {k: v for k, v in (event.get("headers") or {}).items() if k.lower() != "authorization"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    event["headers"] = headers
    return event


def _claims(**extra: Any) -> dict[str, Any]:
    return {
        "sub": "user-7",
        "iss": "https://issuer.example",
        "aud": "orders",
        "exp": time.time() + 300,
        **extra,
    }


@pytest.mark.parametrize("fmt", ["rest", "v2"])
def test_jwt_example_allows_only_when_both_pass(
    fmt: Any, checker: Checker, private: dict[str, Credential]
) -> None:
    handler = jwt_example.build_handler(
        checker.check, SECRET, issuer="https://issuer.example", audience="orders"
    )
    alice, mallory = private["alice"], private["mallory"]
    sign = jwt_example.sign_hs256
    thumbprint = jwt_example.certificate_thumbprint(alice.fingerprint_sha256)
    other = jwt_example.certificate_thumbprint(private["bob"].fingerprint_sha256)
    header, payload, _ = sign(_claims(), SECRET).split(".")
    unsigned = jwt_example._b64url_encode(json.dumps({"alg": "none"}).encode())
    cases: list[tuple[Credential, str | None, bool, str]] = [
        (alice, sign(_claims(), SECRET), True, "valid"),
        (alice, sign(_claims(cnf={"x5t#S256": thumbprint}), SECRET), True, "valid"),
        (alice, sign(_claims(cnf={"x5t#S256": other}), SECRET), False, "binding"),
        (alice, sign(_claims(cnf={"jkt": "abc"}), SECRET), False, "binding"),
        (alice, sign(_claims(), b"another key"), False, "signature"),
        (alice, sign(_claims(exp=time.time() - 3600), SECRET), False, "expired"),
        (alice, sign(_claims(nbf=time.time() + 3600), SECRET), False, "not_yet_valid"),
        (alice, sign({k: v for k, v in _claims().items() if k != "exp"}, SECRET), False, "no_expiry"),
        (alice, sign(_claims(aud="billing"), SECRET), False, "audience"),
        (alice, sign(_claims(aud=["billing", "orders"]), SECRET), True, "valid"),
        (alice, sign(_claims(iss="https://evil.example"), SECRET), False, "issuer"),
        (alice, f"{unsigned}.{payload}.", False, "algorithm"),
        (alice, f"{header}.{payload}.!!!", False, "malformed"),
        (alice, "a.b", False, "malformed"),
        (alice, None, False, "missing"),
        (mallory, sign(_claims(), SECRET), False, "not_checked"),  # the certificate decides first
    ]
    for cert, token, allowed, jwt_reason in cases:
        answer = parse_response(handler(_with_token(make_event(fmt, cert.pem, cert), token), None), fmt)
        assert (answer.allowed, answer.context["jwt"]) == (allowed, jwt_reason), (cert.subject, token)
        if allowed:
            assert answer.context["jwtSubject"] == "user-7"
            assert answer.context["reason"] == "no_revocation_info"
            if fmt == "rest":
                assert answer.response["principalId"] == "user-7"


def test_jwt_example_refuses_everything_without_a_secret(
    checker: Checker, private: dict[str, Credential]
) -> None:
    handler = jwt_example.build_handler(checker.check, b"")
    event = _with_token(
        make_event("rest", private["alice"].pem, private["alice"]), jwt_example.sign_hs256(_claims(), b"")
    )
    answer = parse_response(handler(event, None), "rest")
    assert (answer.allowed, answer.context["jwt"]) == (False, "not_configured")


def test_jwt_example_can_require_a_binding(checker: Checker, private: dict[str, Credential]) -> None:
    handler = jwt_example.build_handler(checker.check, SECRET, require_binding=True)
    event = _with_token(
        make_event("rest", private["alice"].pem, private["alice"]), jwt_example.sign_hs256(_claims(), SECRET)
    )
    assert parse_response(handler(event, None), "rest").context["jwt"] == "binding"


def test_jwt_example_lambda_handler_runs_on_the_lambdas_runtime(
    authorizer: Authorizer, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JWT_SECRET", SECRET.decode())
    monkeypatch.setenv("JWT_AUDIENCE", "orders")
    good = world.leaf("jwt-crl-good", crl=True)
    revoked = world.leaf("jwt-crl-revoked", crl=True, crl_revoked=True)
    token = jwt_example.sign_hs256(_claims(), SECRET)
    allowed = parse_response(
        jwt_example.lambda_handler(
            _with_token(make_event("rest", good.pem, good), token), FakeLambdaContext()
        ),
        "rest",
    )
    assert allowed.allowed and (allowed.reason, allowed.context["jwt"]) == ("good", "valid")
    assert allowed.response["policyDocument"]["Statement"][0]["Resource"] == [STAGE_RESOURCE]
    denied = parse_response(
        jwt_example.lambda_handler(
            _with_token(make_event("rest", revoked.pem, revoked), token), FakeLambdaContext()
        ),
        "rest",
    )
    assert not denied.allowed and denied.reason == "revoked"
    assert METHOD_ARN.startswith(STAGE_RESOURCE[:-1])


def test_jwt_example_command_line(
    private: dict[str, Credential], truststore_file: Path, tmp_path: Path
) -> None:
    cert = tmp_path / "alice.pem"
    cert.write_text(private["alice"].pem)
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "jwt_authorizer.py"),
            "--cert",
            str(cert),
            "--truststore",
            str(truststore_file),
            "--bind",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT / "src"), "POWERTOOLS_TRACE_DISABLED": "true"},
    )
    assert run.returncode == 0, run.stdout + run.stderr
    answer = json.loads(run.stdout[run.stdout.index("{\n") :])
    assert answer["policyDocument"]["Statement"][0]["Effect"] == "Allow"
    assert answer["context"]["jwt"] == "valid"

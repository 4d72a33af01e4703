"""The SAM template: cfn-lint clean, the settings the function reads wired to parameters, least privilege,
mTLS only behind a condition, monitoring of the metrics the function emits, and an offline SAM transform.

Nothing here contacts AWS: cfn-lint and the SAM translator run locally (the translator only needs a region
name, given through the environment).
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import decode

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template.yaml"
SETTINGS_SOURCE = ROOT / "src" / "authorizer" / "settings.py"

# Every environment variable the function reads -> (parameter, default, allowed values or None).
ENV_PARAMETERS: dict[str, tuple[str, str, list[str] | None]] = {
    "TRUSTSTORE_BUCKET": ("TruststoreBucketName", "", None),
    "TRUSTSTORE_KEY": ("TruststoreKey", "truststore.pem", None),
    "TRUSTSTORE_VERSION": ("TruststoreVersion", "", None),
    "TRUSTSTORE_REFRESH_SECONDS": ("TruststoreRefreshSeconds", "300", None),
    "REVOCATION_NO_INFO": ("RevocationNoInfo", "allow", ["allow", "deny"]),
    "REVOCATION_UNAVAILABLE": ("RevocationUnavailable", "deny", ["deny", "allow"]),
    "REVOCATION_CHECK": ("RevocationCheck", "chain", ["chain", "leaf"]),
    "FETCH_TIMEOUT_SECONDS": ("FetchTimeoutSeconds", "2", None),
    "FETCH_BLOCKED_NETWORKS": (
        "FetchBlockedNetworks",
        "127.0.0.0/8,::1/128,169.254.0.0/16,fe80::/10,0.0.0.0/8,::/128,fd00:ec2::254/128",
        None,
    ),
    "HTTP_API_SIMPLE_RESPONSES": ("HttpApiSimpleResponses", "true", ["true", "false"]),
    "REVOCATION_CACHE_MAX_AGE_SECONDS": ("RevocationCacheMaxAgeSeconds", "3600", None),
    "MAX_CRL_BYTES": ("MaxCrlBytes", "67108864", None),
    "MAX_OCSP_BYTES": ("MaxOcspBytes", "65536", None),
    "AUTHORIZER_BUDGET_SECONDS": ("AuthorizerBudgetSeconds", "5", None),
    "REVOCATION_STALE_GRACE_SECONDS": ("RevocationStaleGraceSeconds", "0", None),
    "REVOCATION_FAILURE_BACKOFF_SECONDS": ("RevocationFailureBackoffSeconds", "10", None),
    "CLOCK_SKEW_SECONDS": ("ClockSkewSeconds", "300", None),
    "LOG_LEVEL": ("LogLevel", "INFO", None),
    "POWERTOOLS_TRACE_DISABLED": ("EnableTracing", "false", ["true", "false"]),
    "REVOCATION_CRL_S3_URI": ("CrlS3Uri", "", None),
    "CRL_S3_BUCKETS": ("CrlS3Buckets", "", None),
    "REVOCATION_DENYLIST_S3_URI": ("DenylistS3Uri", "", None),
    "REVOCATION_S3_REFRESH_SECONDS": ("S3RefreshSeconds", "60", None),
}
FIXED_ENV = {"POWERTOOLS_SERVICE_NAME": "mtls-authorizer", "POWERTOOLS_METRICS_NAMESPACE": "MtlsAuthorizer"}

METRICS = [
    "Allowed", "Denied", "Reason_good", "Reason_no_revocation_info", "Reason_revoked",
    "Reason_revocation_unavailable", "Reason_untrusted", "Reason_invalid_request", "CacheHit", "CacheMiss",
    "FetchLatency", "FetchFailure", "ColdStart",
]  # fmt: skip
DENIAL_REASONS = [
    "Reason_revoked", "Reason_revocation_unavailable", "Reason_untrusted", "Reason_invalid_request",
    "Reason_no_revocation_info",
]  # fmt: skip


def _load() -> dict[str, Any]:
    template, matches = decode(str(TEMPLATE))
    assert not matches, [str(m) for m in matches]
    assert template is not None
    return dict(template)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return _load()


@pytest.fixture(scope="module")
def resources(template: dict[str, Any]) -> dict[str, Any]:
    return dict(template["Resources"])


@pytest.fixture(scope="module")
def authorizer(resources: dict[str, Any]) -> dict[str, Any]:
    function = resources["AuthorizerFunction"]
    assert function["Type"] == "AWS::Serverless::Function"
    return dict(function["Properties"])


def _refs(node: Any) -> Iterator[str]:
    """Every name referenced by Ref, GetAtt or a ${...} placeholder of Sub, anywhere below node."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                yield value
            elif key == "Fn::GetAtt":
                yield value[0] if isinstance(value, list) else str(value).split(".")[0]
            elif key == "Fn::Sub":
                text = value[0] if isinstance(value, list) else value
                yield from (name.split(".")[0] for name in re.findall(r"\$\{([^}!]+)\}", text))
                if isinstance(value, list):
                    yield from _refs(value[1])
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _conditions_used(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Fn::If":
                found.add(value[0])
                found |= _conditions_used(value[1:])
            elif key == "Condition" and isinstance(value, str):
                found.add(value)
            else:
                found |= _conditions_used(value)
    elif isinstance(node, list):
        for item in node:
            found |= _conditions_used(item)
    return found


# ---- cfn-lint -------------------------------------------------------------------------------------------


def _cfn_lint_command() -> list[str]:
    beside = Path(sys.executable).with_name("cfn-lint")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("cfn-lint")
    if found is None:
        pytest.fail("cfn-lint is not installed (requirements-dev.txt)")
    return [found]


def test_cfn_lint_is_clean() -> None:
    result = subprocess.run(
        [*_cfn_lint_command(), str(TEMPLATE)], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


# ---- the function ---------------------------------------------------------------------------------------


def test_function_basics(
    template: dict[str, Any], resources: dict[str, Any], authorizer: dict[str, Any]
) -> None:
    parameters = template["Parameters"]
    runtime = re.fullmatch(r"python3\.(\d+)", authorizer["Runtime"])
    assert runtime and int(runtime.group(1)) >= 13, authorizer["Runtime"]
    assert authorizer["Handler"] == "authorizer.app.lambda_handler"
    assert authorizer["CodeUri"] == "."
    assert resources["AuthorizerFunction"]["Metadata"]["BuildMethod"] == "makefile"
    assert authorizer["Timeout"] == 10
    assert authorizer["Architectures"] == [{"Ref": "Architecture"}]
    assert parameters["Architecture"]["Default"] == "arm64"
    assert sorted(parameters["Architecture"]["AllowedValues"]) == ["arm64", "x86_64"]
    assert authorizer["MemorySize"] == {"Ref": "MemorySize"}
    assert str(parameters["MemorySize"]["Default"]) == "1769"
    assert authorizer["Tracing"] == {"Fn::If": ["TracingEnabled", "Active", "PassThrough"]}
    assert "Condition" not in resources["AuthorizerFunction"]


def test_function_source_exists() -> None:
    module, _, function = "authorizer.app.lambda_handler".rpartition(".")
    source = ROOT / "src" / Path(*module.split("."))
    if not source.with_suffix(".py").exists():
        pytest.skip("src/authorizer/app.py is not written yet")
    assert re.search(rf"^(def {function}\b|{function}\s*=)", source.with_suffix(".py").read_text(), re.M)


@pytest.mark.parametrize("variable", sorted(ENV_PARAMETERS))
def test_env_var_is_mapped_from_a_parameter(
    template: dict[str, Any], authorizer: dict[str, Any], variable: str
) -> None:
    env = authorizer["Environment"]["Variables"]
    parameter, default, allowed = ENV_PARAMETERS[variable]
    assert variable in env, f"{variable} is not set on the function"
    assert parameter in set(_refs(env[variable])) | set(_condition_parameters(template, env[variable])), (
        f"{variable} does not come from parameter {parameter}: {env[variable]!r}"
    )
    definition = template["Parameters"][parameter]
    assert str(definition["Default"]) == default
    if allowed is not None:
        assert sorted(definition["AllowedValues"]) == sorted(allowed)


def _condition_parameters(template: dict[str, Any], node: Any) -> set[str]:
    """Parameters that the conditions used in node depend on (transitively)."""
    conditions = template.get("Conditions", {})
    seen: set[str] = set()
    names: set[str] = set()
    pending = list(_conditions_used(node))
    while pending:
        condition = pending.pop()
        if condition in seen:
            continue
        seen.add(condition)
        names |= set(_refs(conditions[condition]))
        pending.extend(_conditions_used(conditions[condition]))
    return names


def test_tracing_switches_env_and_policy(template: dict[str, Any], authorizer: dict[str, Any]) -> None:
    env = authorizer["Environment"]["Variables"]
    assert env["POWERTOOLS_TRACE_DISABLED"] == {"Fn::If": ["TracingEnabled", "false", "true"]}
    assert template["Conditions"]["TracingEnabled"] == {"Fn::Equals": [{"Ref": "EnableTracing"}, "true"]}


def test_fixed_powertools_env(authorizer: dict[str, Any]) -> None:
    env = authorizer["Environment"]["Variables"]
    for name, value in FIXED_ENV.items():
        assert env[name] == value


def test_truststore_bucket_is_created_or_given(template: dict[str, Any], resources: dict[str, Any]) -> None:
    bucket = resources["TruststoreBucket"]
    assert bucket["Condition"] == "CreateTruststoreBucket"
    assert template["Conditions"]["CreateTruststoreBucket"] == {
        "Fn::Equals": [{"Ref": "TruststoreBucketName"}, ""]
    }
    assert bucket["Properties"]["VersioningConfiguration"]["Status"] == "Enabled"
    env = resources["AuthorizerFunction"]["Properties"]["Environment"]["Variables"]
    assert env["TRUSTSTORE_BUCKET"] == {
        "Fn::If": ["CreateTruststoreBucket", {"Ref": "TruststoreBucket"}, {"Ref": "TruststoreBucketName"}]
    }


def test_every_setting_the_code_reads_is_in_the_template(authorizer: dict[str, Any]) -> None:
    """Guards against a setting added to the code but not to the template (or the reverse)."""
    if not SETTINGS_SOURCE.exists():
        pytest.skip("src/authorizer/settings.py is not written yet")
    read = set(
        re.findall(
            r"""\.(?:text|choice|number|networks|flag|boolean|integer|words|s3_uris)\(\s*["']([A-Z][A-Z0-9_]+)["']""",
            SETTINGS_SOURCE.read_text(),
        )
    )
    assert read, "found no setting names in settings.py: update this test's pattern"
    # Lambda's reserved runtime variables (AWS_LAMBDA_FUNCTION_MEMORY_SIZE, ...): no template sets them.
    read = {name for name in read if not name.startswith("AWS_LAMBDA_")}
    env = set(authorizer["Environment"]["Variables"])
    assert read <= env, f"read by the code but missing from template.yaml: {sorted(read - env)}"
    assert read <= set(ENV_PARAMETERS), f"add to ENV_PARAMETERS: {sorted(read - set(ENV_PARAMETERS))}"


def test_readme_configuration_table_matches_the_template(template: dict[str, Any]) -> None:
    """Every variable the template sets is in the README's table, with the template's default."""
    rows = dict(re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \| ([^|]*) \|", (ROOT / "README.md").read_text(), re.M))
    # POWERTOOLS_TRACE_DISABLED is internal (from EnableTracing); LOG_LEVEL shares the Powertools row.
    for variable in sorted(set(ENV_PARAMETERS) - {"POWERTOOLS_TRACE_DISABLED", "LOG_LEVEL"}):
        default = ENV_PARAMETERS[variable][1]
        assert variable in rows, f"{variable} is missing from the README's configuration table"
        shown = rows[variable].strip()
        if shown.startswith("`"):
            assert shown.strip("`") == default, (variable, shown, default)
        else:  # "(required)", "(latest)", "(none)": no value
            assert default == "", (variable, shown)


# ---- least privilege ------------------------------------------------------------------------------------


def test_role_is_least_privilege(
    template: dict[str, Any], resources: dict[str, Any], authorizer: dict[str, Any]
) -> None:
    assert authorizer["Role"] == {"Fn::GetAtt": ["AuthorizerFunctionRole", "Arn"]}
    assert "Policies" not in authorizer  # SAM policy templates would add more
    role = resources["AuthorizerFunctionRole"]["Properties"]
    assert role["AssumeRolePolicyDocument"]["Statement"] == [
        {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ]
    # Only X-Ray, and only when tracing: no AWSLambdaBasicExecutionRole (logs:* actions on "*").
    assert role["ManagedPolicyArns"] == [
        {
            "Fn::If": [
                "TracingEnabled",
                {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/AWSXRayDaemonWriteAccess"},
                {"Ref": "AWS::NoValue"},
            ]
        },
    ]
    assert "BasicExecution" not in json.dumps(resources)
    # ReadTruststore always; ReadRevocationSources only when an S3 revocation source is configured.
    truststore_policy, sources_policy = role["Policies"]
    assert truststore_policy["PolicyName"] == "ReadTruststore"
    assert sources_policy["Fn::If"][0] == "HasRevocationS3Sources"
    assert sources_policy["Fn::If"][2] == {"Ref": "AWS::NoValue"}
    # With the default parameters the truststore object is all it may read.
    assert len(_role_statements(template, {})) == 1
    (statement,) = truststore_policy["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Allow"
    assert sorted(statement["Action"]) == ["s3:GetObject", "s3:GetObjectVersion"]
    assert set(statement) == {"Effect", "Action", "Resource"}
    pattern, variables = statement["Resource"]["Fn::Sub"]
    assert pattern == "arn:${AWS::Partition}:s3:::${Bucket}/${TruststoreKey}"
    assert variables == {
        "Bucket": {
            "Fn::If": ["CreateTruststoreBucket", {"Ref": "TruststoreBucket"}, {"Ref": "TruststoreBucketName"}]
        }
    }
    # Nothing else grants the role anything, apart from writing to its own log group.
    policy_types = {"AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::RolePolicy"}
    for name, resource in resources.items():
        if resource["Type"] in policy_types and name != "AuthorizerLogsPolicy":
            assert "AuthorizerFunctionRole" not in set(_refs(resource)), name


def test_role_writes_only_its_own_log_group(resources: dict[str, Any]) -> None:
    """Issue 8 item 17: logs:CreateLogStream and logs:PutLogEvents on the stack's log group, nothing else."""
    log_group = resources["AuthorizerFunctionLogGroup"]
    assert log_group["Type"] == "AWS::Logs::LogGroup"
    assert log_group["Properties"]["LogGroupName"] == {"Fn::Sub": "/aws/lambda/${AuthorizerFunction}"}
    policy = resources["AuthorizerLogsPolicy"]
    assert policy["Type"] == "AWS::IAM::RolePolicy"
    assert policy["Properties"]["RoleName"] == {"Ref": "AuthorizerFunctionRole"}
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert set(statement) == {"Effect", "Action", "Resource"}
    assert statement["Effect"] == "Allow"
    assert sorted(statement["Action"]) == ["logs:CreateLogStream", "logs:PutLogEvents"]
    group_arn = (
        "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:${AuthorizerFunctionLogGroup}"
    )
    # The group's ARN, and the form with ":*" that covers its log streams (CloudWatch Logs' IAM docs).
    assert statement["Resource"] == [{"Fn::Sub": group_arn}, {"Fn::Sub": group_arn + ":*"}]
    assert "*" not in json.dumps(statement["Action"])


# ---- revocation data in S3: parameters -> environment and IAM ----------------------------------------
# A small evaluator of the intrinsic functions the template uses, so the role's policy can be checked as
# CloudFormation would produce it for given parameter values (the SAM translator leaves them unresolved).

_NO_VALUE = object()
PARTITION = "aws"


def _parameters(template: dict[str, Any], given: dict[str, str]) -> dict[str, str]:
    values = {name: str(p.get("Default", "")) for name, p in template["Parameters"].items()}
    values.update(given)
    return values


def _condition(template: dict[str, Any], name: str, params: dict[str, str]) -> bool:
    return bool(_resolve(template["Conditions"][name], template, params))


def _resolve(node: Any, template: dict[str, Any], params: dict[str, str]) -> Any:
    def resolve(value: Any) -> Any:
        return _resolve(value, template, params)

    if isinstance(node, list):
        return [v for v in (resolve(item) for item in node) if v is not _NO_VALUE]
    if not isinstance(node, dict):
        return node
    if len(node) != 1 or not next(iter(node)).startswith(("Fn::", "Ref", "Condition")):
        return {k: v for k, v in ((k, resolve(v)) for k, v in node.items()) if v is not _NO_VALUE}
    ((function, argument),) = node.items()
    if function == "Ref":
        if argument == "AWS::NoValue":
            return _NO_VALUE
        if argument == "AWS::Partition":
            return PARTITION
        return params.get(argument, f"<{argument}>")  # a resource: its placeholder
    if function == "Condition":
        return _condition(template, argument, params)
    if function == "Fn::If":
        name, if_true, if_false = argument
        return resolve(if_true if _condition(template, name, params) else if_false)
    if function == "Fn::Equals":
        return resolve(argument[0]) == resolve(argument[1])
    if function == "Fn::Not":
        return not resolve(argument[0])
    if function == "Fn::Or":
        return any(resolve(a) for a in argument)
    if function == "Fn::And":
        return all(resolve(a) for a in argument)
    if function == "Fn::Select":
        index, values = int(argument[0]), resolve(argument[1])
        assert 0 <= index < len(values), f"Fn::Select {index} out of range of {values}"  # a stack error
        return values[index]
    if function == "Fn::Split":
        delimiter, source = argument
        assert isinstance(delimiter, str), "Fn::Split takes a literal delimiter"
        return resolve(source).split(delimiter)
    if function == "Fn::Join":
        delimiter, values = argument
        assert isinstance(delimiter, str), "Fn::Join takes a literal delimiter"
        return delimiter.join(resolve(values))
    if function == "Fn::Sub":
        text, variables = (argument, {}) if isinstance(argument, str) else argument
        local = {name: resolve(value) for name, value in variables.items()}

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in local:
                return str(local[name])
            return str(resolve({"Ref": name.split(".")[0]}))

        return re.sub(r"\$\{([^}!]+)\}", substitute, text)
    if function == "Fn::GetAtt":
        return f"<{argument[0] if isinstance(argument, list) else argument}>"
    raise AssertionError(f"the evaluator does not know {function}")


def _role_statements(template: dict[str, Any], given: dict[str, str]) -> list[dict[str, Any]]:
    """Every statement of the role's inline policies, resolved for these parameter values."""
    params = _parameters(template, given)
    role = _resolve(template["Resources"]["AuthorizerFunctionRole"]["Properties"], template, params)
    return [s for policy in role["Policies"] for s in policy["PolicyDocument"]["Statement"]]


def _function_env(template: dict[str, Any], given: dict[str, str]) -> dict[str, str]:
    params = _parameters(template, given)
    env = template["Resources"]["AuthorizerFunction"]["Properties"]["Environment"]["Variables"]
    return {name: str(value) for name, value in _resolve(env, template, params).items()}


def _listed(value: Any) -> list[Any]:
    """An IAM element that may be one value or a list of them, as a list."""
    return value if isinstance(value, list) else [value]


def _allows(statements: list[dict[str, Any]], action: str, resource: str, prefix: str | None = None) -> bool:
    """Whether an Allow statement grants `action` on `resource` (IAM wildcards; s3:prefix StringLike)."""

    def like(pattern: str, value: str) -> bool:
        return re.fullmatch(re.escape(pattern).replace(r"\*", ".*").replace(r"\?", "."), value) is not None

    for statement in statements:
        if statement["Effect"] != "Allow" or action not in _listed(statement["Action"]):
            continue
        if not any(like(r, resource) for r in _listed(statement["Resource"])):
            continue
        condition = statement.get("Condition")
        if condition is not None:
            assert set(condition) == {"StringLike"} and set(condition["StringLike"]) == {"s3:prefix"}
            patterns = _listed(condition["StringLike"]["s3:prefix"])
            if prefix is None or not any(like(p, prefix) for p in patterns):
                continue
        return True
    return False


S3_SOURCES = {
    "CrlS3Uri": "s3://pca-crls/crl/,s3://handed-over/crl-files/",
    "CrlS3Buckets": "legacy-cdp,other-cdp.example",
    "DenylistS3Uri": "s3://ops-revocation/authorizer/denylist.txt",
}
ARN = f"arn:{PARTITION}:s3:::"


def test_s3_sources_grant_exactly_the_named_objects(template: dict[str, Any]) -> None:
    statements = _role_statements(template, S3_SOURCES)
    (sources,) = [s for s in statements if s.get("Sid") == "ReadRevocationObjects"]
    assert sources["Action"] == "s3:GetObject"
    assert sources["Resource"] == [
        f"{ARN}pca-crls/crl/*",
        f"{ARN}handed-over/crl-files/*",
        f"{ARN}legacy-cdp/*",
        f"{ARN}other-cdp.example/*",
        f"{ARN}ops-revocation/authorizer/denylist.txt",
    ]
    listings = [s for s in statements if s.get("Action") == "s3:ListBucket"]
    assert listings == [
        {
            "Sid": "ListCrlS3Uri0",
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": f"{ARN}pca-crls",
            "Condition": {"StringLike": {"s3:prefix": "crl/*"}},
        },
        {
            "Sid": "ListCrlS3Uri1",
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": f"{ARN}handed-over",
            "Condition": {"StringLike": {"s3:prefix": "crl-files/*"}},
        },
    ]
    assert len(statements) == 1 + 1 + len(listings)  # the truststore, the objects, the listings
    # Read-only: nothing the role may do changes any object.
    actions = {action for s in statements for action in _listed(s["Action"])}
    assert actions == {"s3:GetObject", "s3:GetObjectVersion", "s3:ListBucket"}


def test_s3_sources_allow_what_the_function_does_and_nothing_beside(template: dict[str, Any]) -> None:
    statements = _role_statements(template, S3_SOURCES)
    # What the function does: list each prefix exactly as given (ListObjectsV2 Prefix=...), read what it
    # lists, read CDP URLs into the named buckets, read the denylist.
    assert _allows(statements, "s3:ListBucket", f"{ARN}pca-crls", prefix="crl/")
    assert _allows(statements, "s3:ListBucket", f"{ARN}handed-over", prefix="crl-files/")
    assert _allows(statements, "s3:GetObject", f"{ARN}pca-crls/crl/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0.crl")
    assert _allows(statements, "s3:GetObject", f"{ARN}handed-over/crl-files/issuing-ca.crl.pem")
    assert _allows(statements, "s3:GetObject", f"{ARN}legacy-cdp/any/path/ca.crl")
    assert _allows(statements, "s3:GetObject", f"{ARN}ops-revocation/authorizer/denylist.txt")
    # Nothing beside.
    assert not _allows(statements, "s3:ListBucket", f"{ARN}pca-crls", prefix="")
    assert not _allows(statements, "s3:ListBucket", f"{ARN}pca-crls", prefix="other/")
    assert not _allows(statements, "s3:ListBucket", f"{ARN}pca-crls", prefix=None)
    assert not _allows(statements, "s3:ListBucket", f"{ARN}legacy-cdp", prefix="")
    assert not _allows(statements, "s3:GetObject", f"{ARN}pca-crls/acm-pca-permission-test-key")
    assert not _allows(statements, "s3:GetObject", f"{ARN}pca-crls/crlx/ca.crl")
    assert not _allows(statements, "s3:GetObject", f"{ARN}ops-revocation/authorizer/denylist.txt.bak")
    assert not _allows(statements, "s3:GetObject", f"{ARN}ops-revocation/other")
    assert not _allows(statements, "s3:PutObject", f"{ARN}ops-revocation/authorizer/denylist.txt")


@pytest.mark.parametrize(("given", "sids", "objects"), [
    ({}, [], None),
    ({"DenylistS3Uri": "s3://ops/denylist.txt"}, ["ReadRevocationObjects"], [f"{ARN}ops/denylist.txt"]),
    ({"CrlS3Buckets": "cdp-a"}, ["ReadRevocationObjects"], [f"{ARN}cdp-a/*"]),
    (
        {"CrlS3Uri": "s3://a/crl/,s3://b/crl/,s3://c/x/", "CrlS3Buckets": "d,e,f"},
        ["ListCrlS3Uri0", "ListCrlS3Uri1", "ListCrlS3Uri2", "ReadRevocationObjects"],
        [f"{ARN}a/crl/*", f"{ARN}b/crl/*", f"{ARN}c/x/*", f"{ARN}d/*", f"{ARN}e/*", f"{ARN}f/*"],
    ),
])  # fmt: skip
def test_s3_sources_policy_follows_each_parameter(
    template: dict[str, Any], given: dict[str, str], sids: list[str], objects: list[str] | None
) -> None:
    statements = _role_statements(template, given)
    assert [s.get("Sid") for s in statements[1:]] == sids
    if objects is not None:
        assert statements[-1]["Resource"] == objects


@pytest.mark.parametrize(("parameter", "value", "valid"), [
    ("CrlS3Uri", "", True),
    ("CrlS3Uri", "s3://my-pca-crls/crl/", True),
    ("CrlS3Uri", "s3://a.b-c/crl/,s3://ddd/uploaded_crls/,s3://eee/x/", True),
    ("CrlS3Uri", "s3://a1/crl/,s3://b1/crl/,s3://c1/crl/,s3://d1/crl/", False),  # at most 3
    ("CrlS3Uri", "s3://my-pca-crls/crl", False),  # a prefix ends with "/"
    ("CrlS3Uri", "s3://my-pca-crls/", False),  # the whole bucket: not in the template (see README)
    ("CrlS3Uri", "s3://my-pca-crls/a/b/", False),  # one segment only
    ("CrlS3Uri", "s3://my-pca-crls/*/", False),  # no wildcards
    ("CrlS3Uri", "s3://My_Bucket/crl/", False),
    ("CrlS3Uri", "s3://my-pca-crls/crl/, s3://other/crl/", False),
    ("CrlS3Buckets", "pca-crls", True),
    ("CrlS3Buckets", "a12,b12,c12", True),
    ("CrlS3Buckets", "a12,b12,c12,d12", False),
    ("CrlS3Buckets", "a12,", False),
    ("CrlS3Buckets", "a*", False),
    ("DenylistS3Uri", "s3://ops/denylist.txt", True),
    ("DenylistS3Uri", "s3://ops/authorizer/denylist.txt", True),
    ("DenylistS3Uri", "s3://ops/", False),
    ("DenylistS3Uri", "s3://ops/dir/", False),
    ("DenylistS3Uri", "s3://ops/deny*", False),
    ("DenylistS3Uri", "s3://ops/a.txt,s3://ops/b.txt", False),
])  # fmt: skip
def test_s3_source_parameters_are_validated(
    template: dict[str, Any], parameter: str, value: str, valid: bool
) -> None:
    pattern = template["Parameters"][parameter]["AllowedPattern"]
    assert (re.fullmatch(pattern, value) is not None) == valid
    if valid:  # every value the template accepts resolves without a stack error, and the code reads it
        env = _function_env(template, {parameter: value})
        _role_statements(template, {parameter: value})
        from authorizer.settings import Settings

        settings = Settings.from_env(env)
        assert settings.problems == ()


def test_s3_sources_reach_the_function_unchanged(template: dict[str, Any]) -> None:
    env = _function_env(template, {**S3_SOURCES, "S3RefreshSeconds": "15"})
    assert env["REVOCATION_CRL_S3_URI"] == S3_SOURCES["CrlS3Uri"]
    assert env["CRL_S3_BUCKETS"] == S3_SOURCES["CrlS3Buckets"]
    assert env["REVOCATION_DENYLIST_S3_URI"] == S3_SOURCES["DenylistS3Uri"]
    assert env["REVOCATION_S3_REFRESH_SECONDS"] == "15"
    from authorizer.settings import Settings

    sources = Settings.from_env(env).sources
    assert sources.crl_s3_uris == ("s3://pca-crls/crl/", "s3://handed-over/crl-files/")
    assert sources.denylist_uri == S3_SOURCES["DenylistS3Uri"]
    assert sources.s3_refresh_seconds == 15
    # CDP URLs into these buckets go through S3 with the role: all of a CRL_S3_BUCKETS bucket is readable,
    # of a REVOCATION_CRL_S3_URI bucket only its prefix (what Private CA's CDPs name: crl/<CA-ID>.crl).
    statements = _role_statements(template, S3_SOURCES)
    assert sources.s3_buckets == {"pca-crls", "handed-over", "legacy-cdp", "other-cdp.example"}
    for bucket in sorted(sources.crl_s3_buckets):
        assert _allows(statements, "s3:GetObject", f"{ARN}{bucket}/pki/ca.crl"), bucket
    assert _allows(statements, "s3:GetObject", f"{ARN}pca-crls/crl/ca-id.crl")
    assert not _allows(statements, "s3:GetObject", f"{ARN}pca-crls/pki/ca.crl")


def test_samconfig_overrides_are_valid_parameters(template: dict[str, Any]) -> None:
    """The example in samconfig.toml names real parameters with values the template accepts."""
    import tomllib

    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    overrides = config["default"]["deploy"]["parameters"]["parameter_overrides"]
    pairs = dict(re.findall(r'(\w+)="([^"]*)"', overrides))
    assert {"CrlS3Uri", "CrlS3Buckets", "DenylistS3Uri"} <= set(pairs)
    for name, value in pairs.items():
        definition = template["Parameters"][name]
        if "AllowedValues" in definition:
            assert value in [str(v) for v in definition["AllowedValues"]], name
        if "AllowedPattern" in definition:
            assert re.fullmatch(definition["AllowedPattern"], value), name
    _role_statements(template, pairs)  # resolves without a stack error


# ---- APIs and authorizers --------------------------------------------------------------------------------


def test_rest_api_request_authorizer(template: dict[str, Any], resources: dict[str, Any]) -> None:
    api = resources["RestApi"]
    assert api["Type"] == "AWS::Serverless::Api"
    assert api["Condition"] == "IsRestApi"
    properties = api["Properties"]
    assert properties["DisableExecuteApiEndpoint"] == {"Fn::If": ["HasCustomDomain", True, False]}
    auth = properties["Auth"]
    authorizer = auth["Authorizers"][auth["DefaultAuthorizer"]]
    assert authorizer["FunctionArn"] == {"Fn::GetAtt": ["AuthorizerFunction", "Arn"]}
    assert authorizer["FunctionPayloadType"] == "REQUEST"
    assert authorizer["Identity"]["Context"] == ["identity.clientCert.clientCertPem"]
    assert authorizer["Identity"]["ReauthorizeEvery"] == {"Ref": "AuthorizerCacheTtlSeconds"}
    ttl = template["Parameters"]["AuthorizerCacheTtlSeconds"]
    assert (str(ttl["Default"]), str(ttl["MinValue"]), str(ttl["MaxValue"])) == ("0", "0", "3600")


def test_http_api_authorizer(resources: dict[str, Any]) -> None:
    api = resources["HttpApi"]
    assert api["Type"] == "AWS::Serverless::HttpApi"
    assert api["Condition"] == "IsHttpApi"
    properties = api["Properties"]
    assert properties["DisableExecuteApiEndpoint"] == {"Fn::If": ["HasCustomDomain", True, False]}
    auth = properties["Auth"]
    authorizer = auth["Authorizers"][auth["DefaultAuthorizer"]]
    assert authorizer["FunctionArn"] == {"Fn::GetAtt": ["AuthorizerFunction", "Arn"]}
    assert authorizer["AuthorizerPayloadFormatVersion"] == "2.0"
    assert authorizer["EnableFunctionDefaultPermissions"] is True
    # Simple responses on by default, and always the same switch the function reads.
    assert authorizer["EnableSimpleResponses"] == {"Fn::If": ["SimpleResponses", True, False]}


@pytest.mark.parametrize(("function", "api", "event_type", "condition"), [
    ("HelloRestFunction", "RestApi", "Api", "IsRestApi"),
    ("HelloHttpFunction", "HttpApi", "HttpApi", "IsHttpApi"),
])  # fmt: skip
def test_sample_route(
    resources: dict[str, Any], function: str, api: str, event_type: str, condition: str
) -> None:
    resource = resources[function]
    assert resource["Condition"] == condition
    (event,) = resource["Properties"]["Events"].values()
    assert event["Type"] == event_type
    assert event["Properties"]["Path"] == "/hello"
    assert event["Properties"]["Method"] == "GET"
    assert api in set(_refs(event))
    compile(resource["Properties"]["InlineCode"], function, "exec")


def test_api_type_parameter(template: dict[str, Any]) -> None:
    assert sorted(template["Parameters"]["ApiType"]["AllowedValues"]) == ["HTTP", "REST"]
    assert template["Conditions"]["IsRestApi"] == {"Fn::Equals": [{"Ref": "ApiType"}, "REST"]}
    assert template["Conditions"]["IsHttpApi"] == {"Fn::Equals": [{"Ref": "ApiType"}, "HTTP"]}


# ---- mTLS custom domain -----------------------------------------------------------------------------------


def test_mutual_tls_only_under_a_condition(template: dict[str, Any], resources: dict[str, Any]) -> None:
    domains = {
        name: r for name, r in resources.items() if "MutualTlsAuthentication" in r.get("Properties", {})
    }
    assert set(domains) == {"RestCustomDomain", "HttpCustomDomain"}
    for name, domain in domains.items():
        assert "Condition" in domain, name
        depends_on = _condition_parameters(template, {"Condition": domain["Condition"]})
        assert {"DomainName", "CertificateArn", "ApiType"} <= depends_on, (name, depends_on)
        mtls = domain["Properties"]["MutualTlsAuthentication"]
        pattern, variables = mtls["TruststoreUri"]["Fn::Sub"]
        assert pattern == "s3://${Bucket}/${TruststoreKey}"
        assert "TruststoreBucketName" in set(_refs(variables))
        # The same version the function pins (TRUSTSTORE_VERSION).
        assert mtls["TruststoreVersion"] == {
            "Fn::If": ["HasTruststoreVersion", {"Ref": "TruststoreVersion"}, {"Ref": "AWS::NoValue"}]
        }
    rest = resources["RestCustomDomain"]["Properties"]
    assert rest["EndpointConfiguration"] == {"Types": ["REGIONAL"]}
    assert rest["SecurityPolicy"] == "TLS_1_2"
    (http,) = resources["HttpCustomDomain"]["Properties"]["DomainNameConfigurations"]
    assert (http["EndpointType"], http["SecurityPolicy"]) == ("REGIONAL", "TLS_1_2")
    for mapping, domain, api in (
        ("RestBasePathMapping", "RestCustomDomain", "RestApi"),
        ("HttpApiMapping", "HttpCustomDomain", "HttpApi"),
    ):
        assert resources[mapping]["Condition"] == resources[domain]["Condition"]
        assert {domain, api} <= set(_refs(resources[mapping]))


# ---- monitoring ------------------------------------------------------------------------------------------


def _dashboard(resources: dict[str, Any]) -> dict[str, Any]:
    body = resources["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    assert isinstance(body, str)
    # Substitute every ${...} with a number so the JSON can be parsed.
    return dict(json.loads(re.sub(r"\$\{[^}]+\}", "1", body)))


def test_dashboard(resources: dict[str, Any]) -> None:
    widgets = _dashboard(resources)["widgets"]
    titles = {w["properties"]["title"]: w["properties"] for w in widgets}
    text = json.dumps(widgets)
    for metric in METRICS:
        assert f'"{metric}"' in text, metric
    denials = titles["Denials by reason"]
    assert [m[1] for m in denials["metrics"]] == DENIAL_REASONS
    assert all(
        m[0] == "MtlsAuthorizer" and m[2:4] == ["service", "mtls-authorizer"] for m in denials["metrics"]
    )
    rate = titles["revocation_unavailable rate (%)"]["metrics"]
    assert "100 * FILL(unavailable, 0) / total" in rate[0][0]["expression"]
    assert rate[1][0]["expression"] == "FILL(allowed, 0) + FILL(denied, 0)"
    assert '"Errors", "FunctionName"' in text
    assert '"stat": "p99"' in text


def test_alarms(template: dict[str, Any], resources: dict[str, Any]) -> None:
    alarms = {name: r["Properties"] for name, r in resources.items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    rate = alarms["RevocationUnavailableRateAlarm"]
    assert rate["Threshold"] == {"Ref": "RevocationUnavailableRateThresholdPercent"}
    by_id = {m["Id"]: m for m in rate["Metrics"]}
    assert [m["Id"] for m in rate["Metrics"] if m["ReturnData"]] == ["rate"]
    for metric_id, name in (
        ("unavailable", "Reason_revocation_unavailable"),
        ("allowed", "Allowed"),
        ("denied", "Denied"),
    ):
        metric = by_id[metric_id]["MetricStat"]["Metric"]
        assert (metric["Namespace"], metric["MetricName"]) == ("MtlsAuthorizer", name)
        assert metric["Dimensions"] == [{"Name": "service", "Value": "mtls-authorizer"}]
    errors = alarms["AuthorizerErrorsAlarm"]
    assert (errors["Namespace"], errors["MetricName"], errors["Threshold"]) == ("AWS/Lambda", "Errors", 0)
    assert errors["ComparisonOperator"] == "GreaterThanThreshold"
    duration = alarms["AuthorizerDurationP99Alarm"]
    assert (duration["MetricName"], duration["ExtendedStatistic"]) == ("Duration", "p99")
    assert duration["Threshold"] == {"Ref": "DurationP99ThresholdMs"}
    for name, alarm in alarms.items():
        assert alarm["AlarmActions"] == {
            "Fn::If": ["HasAlarmEmail", [{"Ref": "AlarmTopic"}], {"Ref": "AWS::NoValue"}]
        }, name
    assert resources["AlarmTopic"]["Condition"] == "HasAlarmEmail"


def test_outputs(template: dict[str, Any]) -> None:
    outputs = template["Outputs"]
    assert {"ApiUrl", "CustomDomainUrl", "AuthorizerFunctionArn", "TruststoreBucketName"} <= set(outputs)
    assert outputs["CustomDomainUrl"]["Condition"] == "HasCustomDomain"


# ---- the SAM transform, offline ---------------------------------------------------------------------------

CERTIFICATE_ARN = "arn:aws:acm:eu-west-1:123456789012:certificate/0f0e0d0c-0b0a-0908-0706-050403020100"
TRANSFORM_CASES = {
    "defaults": {},
    "rest-domain-existing-bucket": {
        "ApiType": "REST", "DomainName": "api.example.com", "TruststoreBucketName": "my-truststore",
        "CertificateArn": CERTIFICATE_ARN,
        "TruststoreVersion": "3sL4kqtJlcpXroDTDmJ-rmSpXd3dIbrHY", "AuthorizerCacheTtlSeconds": "300",
        "EnableTracing": "true", "AlarmEmail": "ops@example.com",
    },
    "rest-s3-sources": {
        "CrlS3Uri": "s3://pca-crls/crl/,s3://handed-over/crl-files/,s3://third/crl/",
        "CrlS3Buckets": "legacy-cdp,b2b,b3b", "DenylistS3Uri": "s3://ops-revocation/denylist.txt",
        "S3RefreshSeconds": "30",
    },
    "http-domain": {
        "ApiType": "HTTP", "DomainName": "api.example.com",
        "CertificateArn": CERTIFICATE_ARN,
        "HttpApiSimpleResponses": "false", "Architecture": "x86_64",
    },
}  # fmt: skip


class _NoManagedPolicies:
    """Stands in for the translator's IAM managed-policy lookup (which would call AWS)."""

    def load(self) -> dict[str, str]:
        return {}


@pytest.fixture
def offline_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def _transform(parameters: dict[str, str]) -> dict[str, Any]:
    samtranslator_transform = pytest.importorskip(
        "samtranslator.translator.transform", reason="aws-sam-translator is not installed"
    ).transform
    template = copy.deepcopy(_load())
    # What `sam package` does: the local CodeUri becomes an S3 object.
    template["Resources"]["AuthorizerFunction"]["Properties"]["CodeUri"] = (
        "s3://artifacts-bucket/authorizer.zip"
    )
    return dict(samtranslator_transform(template, dict(parameters), _NoManagedPolicies()))


@pytest.mark.usefixtures("offline_aws")
@pytest.mark.parametrize("case", sorted(TRANSFORM_CASES))
def test_sam_transform(case: str) -> None:
    from cfnlint.api import ManualArgs, lint

    output = _transform(TRANSFORM_CASES[case])
    resources = output["Resources"]
    assert not any(r["Type"].startswith("AWS::Serverless::") for r in resources.values())
    function = resources["AuthorizerFunction"]["Properties"]
    assert function["Handler"] == "authorizer.app.lambda_handler"
    assert function["Runtime"] == "python3.13"
    # The translator adds no basic-execution policy to the authorizer's own role (item 17).
    assert "BasicExecution" not in json.dumps(resources["AuthorizerFunctionRole"])
    assert resources["AuthorizerLogsPolicy"]["Type"] == "AWS::IAM::RolePolicy"
    # The S3 sources' policy survives the translation (still under its condition) and the settings reach
    # the function.
    assert "ReadRevocationSources" in json.dumps(resources["AuthorizerFunctionRole"])
    env = function["Environment"]["Variables"]
    assert env["REVOCATION_CRL_S3_URI"] == {"Ref": "CrlS3Uri"}
    assert env["REVOCATION_DENYLIST_S3_URI"] == {"Ref": "DenylistS3Uri"}

    # Everything generated for an API type carries that API type's condition.
    for name, resource in resources.items():
        refs = set(_refs(resource))
        if name.startswith("RestApi") or "RestApi" in refs:
            assert resource.get("Condition") in {"IsRestApi", "CreateRestCustomDomain"}, name
        if name.startswith("HttpApi") or "HttpApi" in refs:
            assert resource.get("Condition") in {"IsHttpApi", "CreateHttpCustomDomain"}, name

    rest = resources["RestApi"]["Properties"]["Body"]["securityDefinitions"]["MtlsRevocationAuthorizer"]
    rest_authorizer = rest["x-amazon-apigateway-authorizer"]
    assert rest_authorizer["type"] == "request"
    assert rest_authorizer["identitySource"] == "context.identity.clientCert.clientCertPem"
    http = resources["HttpApi"]["Properties"]["Body"]["components"]["securitySchemes"][
        "MtlsRevocationAuthorizer"
    ]
    http_authorizer = http["x-amazon-apigateway-authorizer"]
    assert http_authorizer["identitySource"] == ["$context.identity.clientCert.clientCertPem"]
    assert http_authorizer["authorizerPayloadFormatVersion"] == "2.0"
    permissions = [r for r in resources.values() if r["Type"] == "AWS::Lambda::Permission"]
    assert sum("AuthorizerFunction" in set(_refs(p)) for p in permissions) == 2  # one per API type

    # The generated CloudFormation passes cfn-lint too (it sees more than the SAM schema does), apart from
    # W1028, which flags redundant Fn::If that the translator itself wraps around conditional paths.
    matches = lint(json.dumps(output), config=ManualArgs(regions=["eu-west-1"], ignore_checks=["W1028"]))
    assert not matches, "\n".join(str(m) for m in matches)

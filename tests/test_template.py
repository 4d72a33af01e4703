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
    "REVOCATION_DELTA_CRL": ("DeltaCrl", "require", ["require", "ignore"]),
    "REVOCATION_INDEX_S3_URI": ("IndexS3Uri", "", None),
    "REVOCATION_INDEX_URLS": ("IndexUrls", "", None),
}
# What the indexer reads (src/authorizer/indexer.py: truststore, fetch limits, freshness, sources, the index),
# each from the same parameter as the authorizer's variable of that name.
INDEXER_ENV = {
    "TRUSTSTORE_BUCKET", "TRUSTSTORE_KEY", "TRUSTSTORE_VERSION", "FETCH_TIMEOUT_SECONDS",
    "FETCH_BLOCKED_NETWORKS", "MAX_CRL_BYTES", "REVOCATION_STALE_GRACE_SECONDS", "CLOCK_SKEW_SECONDS",
    "REVOCATION_CRL_S3_URI", "CRL_S3_BUCKETS", "REVOCATION_INDEX_S3_URI", "REVOCATION_INDEX_URLS",
    "LOG_LEVEL",
}  # fmt: skip
FIXED_ENV = {"POWERTOOLS_SERVICE_NAME": "mtls-authorizer", "POWERTOOLS_METRICS_NAMESPACE": "MtlsAuthorizer"}

METRICS = [
    "Allowed", "Denied", "Reason_good", "Reason_no_revocation_info", "Reason_revoked",
    "Reason_revocation_unavailable", "Reason_untrusted", "Reason_invalid_request", "CacheHit", "CacheMiss",
    "FetchLatency", "FetchFailure", "ColdStart",
    # health.py
    "TruststoreDaysToExpiry", "StaleRevocationUse", "RevocationDataUnrefreshed",
    "RevocationDataOverdueSeconds", "RevocationDataAgeSeconds", "SourceFailureByCa",
]  # fmt: skip
INDEXER_METRICS = [
    "IndexerRuns",
    "CrlsIndexed",
    "IndexFailures",
    "IndexMaxAgeSeconds",
]  # indexer._emit_metrics
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
    # ReadTruststore always; ReadRevocationSources only when an S3 revocation source is configured,
    # ReadSharedIndex only with the shared index.
    truststore_policy, sources_policy, index_policy = role["Policies"]
    assert truststore_policy["PolicyName"] == "ReadTruststore"
    assert sources_policy["Fn::If"][0] == "HasRevocationS3Sources"
    assert sources_policy["Fn::If"][2] == {"Ref": "AWS::NoValue"}
    assert index_policy["Fn::If"][0] == "HasIndex"
    assert index_policy["Fn::If"][1]["PolicyName"] == "ReadSharedIndex"
    assert index_policy["Fn::If"][2] == {"Ref": "AWS::NoValue"}
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


def _role_statements(
    template: dict[str, Any], given: dict[str, str], role_name: str = "AuthorizerFunctionRole"
) -> list[dict[str, Any]]:
    """Every statement of the role's inline policies, resolved for these parameter values."""
    params = _parameters(template, given)
    role = _resolve(template["Resources"][role_name]["Properties"], template, params)
    return [s for policy in role.get("Policies", []) for s in policy["PolicyDocument"]["Statement"]]


def _grants(template: dict[str, Any], given: dict[str, str]) -> dict[str, list[dict[str, Any]]]:
    """Every deployed role's statements, from its inline policies and from the policy resources naming it."""
    params = _parameters(template, given)
    deployed = {
        name: resource
        for name, resource in template["Resources"].items()
        if "Condition" not in resource or _condition(template, resource["Condition"], params)
    }
    grants = {
        name: _role_statements(template, given, name)
        for name, resource in deployed.items()
        if resource["Type"] == "AWS::IAM::Role"
    }
    policy_types = {"AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::RolePolicy"}
    for name, resource in deployed.items():
        if resource["Type"] not in policy_types:
            continue
        assert resource["Type"] == "AWS::IAM::RolePolicy", name  # the template uses no other kind
        properties = _resolve(resource["Properties"], template, params)
        role = properties["RoleName"].strip("<>")
        grants[role] = grants[role] + properties["PolicyDocument"]["Statement"]
    return grants


def _function_env(
    template: dict[str, Any], given: dict[str, str], function: str = "AuthorizerFunction"
) -> dict[str, str]:
    params = _parameters(template, given)
    env = template["Resources"][function]["Properties"]["Environment"]["Variables"]
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
    assert {"CrlS3Uri", "CrlS3Buckets", "DenylistS3Uri", "DeltaCrl", "IndexS3Uri", "IndexUrls"} <= set(pairs)
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
    assert sorted(template["Parameters"]["ApiType"]["AllowedValues"]) == ["HTTP", "NONE", "REST"]
    assert template["Conditions"]["IsRestApi"] == {"Fn::Equals": [{"Ref": "ApiType"}, "REST"]}
    assert template["Conditions"]["IsHttpApi"] == {"Fn::Equals": [{"Ref": "ApiType"}, "HTTP"]}
    assert template["Conditions"]["IsNoApi"] == {"Fn::Equals": [{"Ref": "ApiType"}, "NONE"]}


# ---- ApiType=NONE: attach to an existing API -------------------------------------------------------------

EXISTING_API = {"ApiType": "NONE", "ExistingApiId": "a1b2c3d4e5", "TruststoreBucketName": "their-truststore"}
EXECUTE_API = "arn:aws:execute-api:<AWS::Region>:<AWS::AccountId>:"
DOMAIN = {
    "DomainName": "api.example.com",
    "CertificateArn": "arn:aws:acm:eu-west-1:123456789012:certificate/x",
}
# What ApiType=NONE deploys: the authorizer and its monitoring, nothing of an API.
AUTHORIZER_ONLY = {
    "AuthorizerFunctionRole", "AuthorizerFunction", "AuthorizerFunctionLogGroup", "AuthorizerLogsPolicy",
    "ExistingApiInvokePermission", "Dashboard", "RevocationUnavailableRateAlarm", "AuthorizerErrorsAlarm",
    "AuthorizerDurationP99Alarm", "TruststoreCaExpiryAlarm", "StaleRevocationDataAlarm",
    "RevocationSourceFailuresAlarm",
}  # fmt: skip


def _deployed(template: dict[str, Any], given: dict[str, str]) -> dict[str, Any]:
    """The resources CloudFormation would create for these parameter values, resolved."""
    params = _parameters(template, given)
    return {
        name: _resolve(resource, template, params)
        for name, resource in template["Resources"].items()
        if "Condition" not in resource or _condition(template, resource["Condition"], params)
    }


def _outputs(template: dict[str, Any], given: dict[str, str]) -> dict[str, Any]:
    params = _parameters(template, given)
    return {
        name: _resolve(output["Value"], template, params)
        for name, output in template["Outputs"].items()
        if "Condition" not in output or _condition(template, output["Condition"], params)
    }


def _rules_hold(template: dict[str, Any], given: dict[str, str]) -> bool:
    params = _parameters(template, given)
    for rule in template.get("Rules", {}).values():
        if "RuleCondition" in rule and not _resolve(rule["RuleCondition"], template, params):
            continue
        if not all(_resolve(a["Assert"], template, params) for a in rule["Assertions"]):
            return False
    return True


@pytest.mark.parametrize("extra", [{}, DOMAIN])
def test_no_api_deploys_only_the_authorizer(template: dict[str, Any], extra: dict[str, str]) -> None:
    deployed = _deployed(template, {**EXISTING_API, **extra})
    assert set(deployed) == AUTHORIZER_ONLY
    assert set(_deployed(template, {**EXISTING_API, "AlarmEmail": "ops@example.com"})) == AUTHORIZER_ONLY | {
        "AlarmTopic"
    }
    # The function reads the given truststore, as it would behind the stack's own API.
    env = deployed["AuthorizerFunction"]["Properties"]["Environment"]["Variables"]
    assert env["TRUSTSTORE_BUCKET"] == "their-truststore"


@pytest.mark.parametrize(("api_id", "source_arn"), [
    ("a1b2c3d4e5", f"{EXECUTE_API}a1b2c3d4e5/authorizers/*"),
    ("", f"{EXECUTE_API}*/authorizers/*"),  # every API of the account, in this Region
])  # fmt: skip
def test_no_api_invoke_permission(template: dict[str, Any], api_id: str, source_arn: str) -> None:
    given = {**EXISTING_API, "ExistingApiId": api_id}
    permission = _deployed(template, given)["ExistingApiInvokePermission"]
    assert permission["Type"] == "AWS::Lambda::Permission"
    assert permission["Properties"] == {
        "Action": "lambda:InvokeFunction",
        "FunctionName": "<AuthorizerFunction>",
        "Principal": "apigateway.amazonaws.com",
        "SourceAccount": "<AWS::AccountId>",
        "SourceArn": source_arn,
    }
    assert _outputs(template, given)["InvokePermissionSourceArn"] == source_arn


def test_no_api_outputs_are_what_an_authorizer_needs(template: dict[str, Any]) -> None:
    outputs = _outputs(template, {**EXISTING_API, "HttpApiSimpleResponses": "false"})
    assert "ApiUrl" not in outputs and "CustomDomainUrl" not in outputs
    assert outputs["AuthorizerFunctionArn"] == "<AuthorizerFunction>"
    assert outputs["AuthorizerInvokeUri"] == (
        "arn:aws:apigateway:<AWS::Region>:lambda:path/2015-03-31/functions/<AuthorizerFunction>/invocations"
    )
    # The identity sources the stack's own APIs use (see test_sam_transform), the payload format and
    # the response shape the function returns.
    assert outputs["RestAuthorizerIdentitySource"] == "context.identity.clientCert.clientCertPem"
    assert outputs["HttpAuthorizerIdentitySource"] == "$context.identity.clientCert.clientCertPem"
    assert outputs["HttpAuthorizerPayloadFormatVersion"] == "2.0"
    assert outputs["HttpAuthorizerEnableSimpleResponses"] == "false"
    # Exported, for !ImportValue in another stack (README snippets).
    for name in ("AuthorizerFunctionArn", "AuthorizerInvokeUri"):
        export = template["Outputs"][name]["Export"]["Name"]
        assert export == {"Fn::Sub": f"${{AWS::StackName}}-{name}"}
    for api_type in ("REST", "HTTP"):
        outputs = _outputs(template, {"ApiType": api_type})
        assert "AuthorizerInvokeUri" not in outputs and "ApiUrl" in outputs


def test_no_api_requires_the_truststore_bucket(template: dict[str, Any]) -> None:
    assert _rules_hold(template, EXISTING_API)
    assert not _rules_hold(template, {**EXISTING_API, "TruststoreBucketName": ""})
    assert _rules_hold(template, {"ApiType": "REST"})  # a stack of its own may create the bucket


@pytest.mark.parametrize("api_id", ["a1b2c3d4e5", "", "0123456789"])
def test_existing_api_id_pattern_accepts(template: dict[str, Any], api_id: str) -> None:
    assert re.fullmatch(template["Parameters"]["ExistingApiId"]["AllowedPattern"], api_id)


@pytest.mark.parametrize("api_id", ["A1B2C3D4E5", "a1b2c3d4e", "a1b2c3d4e5f", "*", "a1b2c3d4e5/*"])
def test_existing_api_id_pattern_refuses(template: dict[str, Any], api_id: str) -> None:
    assert not re.fullmatch(template["Parameters"]["ExistingApiId"]["AllowedPattern"], api_id)


@pytest.mark.parametrize("given", [
    {}, {"ApiType": "HTTP"}, EXISTING_API, {**EXISTING_API, "ExistingApiId": ""},
    DOMAIN, {"ApiType": "HTTP", **DOMAIN}, {**EXISTING_API, **DOMAIN},
    {"IndexS3Uri": "s3://ops-index/mtls-index/"},
    {**EXISTING_API, "IndexS3Uri": "s3://ops-index/mtls-index/", "CrlS3Uri": "s3://a1/crl/,s3://b1/x/"},
])  # fmt: skip
def test_every_reference_is_to_something_deployed(template: dict[str, Any], given: dict[str, str]) -> None:
    """For each API type, nothing deployed (resources, outputs) names a resource that is not."""
    params = _parameters(template, given)
    deployed = set(_deployed(template, given))
    known = deployed | set(params) | {"AWS::Region", "AWS::AccountId", "AWS::Partition", "AWS::URLSuffix",
                                      "AWS::StackName", "AWS::NoValue"}  # fmt: skip
    for name in deployed:
        node = _resolve_conditions(template["Resources"][name], template, params)
        refs = {ref.split(".")[0] for ref in _references(node)}  # SAM's `!Ref RestApi.Stage`
        assert refs <= known, (name, refs - known)
    for name, output in template["Outputs"].items():
        if "Condition" in output and not _condition(template, output["Condition"], params):
            continue
        refs = {
            ref.split(".")[0] for ref in _references(_resolve_conditions(output["Value"], template, params))
        }
        assert refs <= known, (name, refs - known)


def _references(node: Any) -> Iterator[str]:
    """Like _refs, without the local variables of a Fn::Sub (its second argument)."""
    if isinstance(node, dict) and set(node) == {"Fn::Sub"} and isinstance(node["Fn::Sub"], list):
        text, variables = node["Fn::Sub"]
        names = {name.split(".")[0] for name in re.findall(r"\$\{([^}!]+)\}", text)}
        yield from names - set(variables)
        yield from _references(list(variables.values()))
    elif isinstance(node, dict) and set(node) & {"Ref", "Fn::GetAtt", "Fn::Sub"}:
        yield from _refs(node)
    elif isinstance(node, dict):
        for value in node.values():
            yield from _references(value)
    elif isinstance(node, list):
        for item in node:
            yield from _references(item)


def _resolve_conditions(node: Any, template: dict[str, Any], params: dict[str, str]) -> Any:
    """`node` with only the taken branch of every Fn::If (references stay as they are)."""
    if isinstance(node, list):
        return [_resolve_conditions(item, template, params) for item in node]
    if not isinstance(node, dict):
        return node
    if set(node) == {"Fn::If"}:
        name, if_true, if_false = node["Fn::If"]
        taken = if_true if _condition(template, name, params) else if_false
        return _resolve_conditions(taken, template, params)
    return {k: _resolve_conditions(v, template, params) for k, v in node.items()}


# ---- the shared revocation index (issue 12) ---------------------------------------------------------------

INDEX = {"IndexS3Uri": "s3://ops-index/mtls-index/"}
INDEX_WITH_SOURCES = {**INDEX, **S3_SOURCES}
INDEX_ARN = f"{ARN}ops-index/mtls-index/"
# What the template deploys for the index, beside the authorizer's own resources.
INDEXER_RESOURCES = {
    "IndexerFunctionRole", "IndexerFunction", "IndexerFunctionLogGroup", "IndexerLogsPolicy",
    "IndexerSchedule", "IndexerScheduleRole", "IndexFailuresAlarm", "IndexAgeAlarm", "IndexerNotRunningAlarm",
}  # fmt: skip


def _rules(slots: int) -> set[str]:
    return {f"Indexer{kind}{i}" for i in range(slots) for kind in ("CrlCreatedRule", "CrlCreatedPermission")}


@pytest.fixture(scope="module")
def indexer(resources: dict[str, Any]) -> dict[str, Any]:
    function = resources["IndexerFunction"]
    assert function["Type"] == "AWS::Serverless::Function"
    return dict(function["Properties"])


def test_indexer_is_the_same_package(
    template: dict[str, Any], resources: dict[str, Any], authorizer: dict[str, Any], indexer: dict[str, Any]
) -> None:
    """One implementation: the authorizer's package and build, the indexer's handler, only with an index."""
    assert resources["IndexerFunction"]["Condition"] == "HasIndex"
    assert template["Conditions"]["HasIndex"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "IndexS3Uri"}, ""]}]}
    assert resources["IndexerFunction"]["Metadata"] == resources["AuthorizerFunction"]["Metadata"]
    for name in ("CodeUri", "Runtime", "Architectures"):
        assert indexer[name] == authorizer[name], name
    assert indexer["Handler"] == "authorizer.indexer.lambda_handler"
    source = ROOT / "src" / "authorizer" / "indexer.py"
    assert re.search(r"^def lambda_handler\b", source.read_text(), re.M)
    assert indexer["MemorySize"] == 1769  # one vCPU, for a 1,000,000-entry CRL
    assert 60 <= indexer["Timeout"] <= 900
    assert indexer["Role"] == {"Fn::GetAtt": ["IndexerFunctionRole", "Arn"]}
    assert "Policies" not in indexer and "Events" not in indexer  # the schedule and rules are explicit
    assert indexer["ReservedConcurrentExecutions"] == {
        "Fn::If": [
            "HasIndexerReservedConcurrency",
            {"Ref": "IndexerReservedConcurrency"},
            {"Ref": "AWS::NoValue"},
        ]
    }
    assert indexer["EventInvokeConfig"] == {"MaximumRetryAttempts": 0}


def test_indexer_env_comes_from_the_authorizers_parameters(
    template: dict[str, Any], authorizer: dict[str, Any], indexer: dict[str, Any]
) -> None:
    env = indexer["Environment"]["Variables"]
    assert set(env) == INDEXER_ENV | set(FIXED_ENV) | {"POWERTOOLS_TRACE_DISABLED"}
    for name in INDEXER_ENV:
        assert env[name] == authorizer["Environment"]["Variables"][name], name
    # The metric namespace and service dimension the indexer's alarms and dashboard row use.
    for name, value in FIXED_ENV.items():
        assert env[name] == value
    # Every value reaches the indexer's settings as the authorizer reads them.
    from authorizer.settings import Settings

    settings = Settings.from_env(
        _function_env(
            template, {**INDEX_WITH_SOURCES, "IndexUrls": "http://a.example/ca.crl"}, "IndexerFunction"
        )
    )
    assert settings.problems == ()
    assert settings.sources.index_uri == INDEX["IndexS3Uri"]
    assert settings.sources.index_urls == ("http://a.example/ca.crl",)
    assert settings.sources.crl_s3_uris == ("s3://pca-crls/crl/", "s3://handed-over/crl-files/")
    assert settings.truststore_bucket == "<TruststoreBucket>"


def test_index_settings_reach_the_authorizer(template: dict[str, Any]) -> None:
    from authorizer.settings import Settings

    env = _function_env(template, {**INDEX, "DeltaCrl": "ignore", "IndexUrls": "https://x.example/a.crl"})
    settings = Settings.from_env(env)
    assert settings.problems == ()
    assert settings.sources.index_uri == INDEX["IndexS3Uri"]
    assert settings.revocation.use_delta_crls is False
    assert Settings.from_env(_function_env(template, {})).revocation.use_delta_crls is True


@pytest.mark.parametrize(("given", "expected"), [
    ({}, set()),
    (INDEX, INDEXER_RESOURCES),
    ({**INDEX, "CrlS3Buckets": "cdp-a"}, INDEXER_RESOURCES),
    ({**INDEX, "CrlS3Uri": "s3://a1/crl/"}, INDEXER_RESOURCES | _rules(1)),
    ({**INDEX, "CrlS3Uri": "s3://a1/crl/,s3://b1/crl/,s3://c1/x/"}, INDEXER_RESOURCES | _rules(3)),
    ({"CrlS3Uri": "s3://a1/crl/,s3://b1/crl/"}, set()),  # no index: no indexer, no rules
])  # fmt: skip
def test_indexer_resources_only_with_an_index(
    template: dict[str, Any], given: dict[str, str], expected: set[str]
) -> None:
    deployed = set(_deployed(template, given))
    assert deployed - set(_deployed(template, {})) == expected
    assert {n for n in deployed if "Index" in n} == expected


@pytest.mark.parametrize(("minutes", "expression"), [("15", "rate(15 minutes)"), ("1", "rate(1 minute)")])
def test_indexer_schedule(template: dict[str, Any], minutes: str, expression: str) -> None:
    deployed = _deployed(template, {**INDEX, "IndexRefreshMinutes": minutes})
    schedule = deployed["IndexerSchedule"]
    assert schedule["Type"] == "AWS::Scheduler::Schedule"
    properties = schedule["Properties"]
    assert properties["ScheduleExpression"] == expression
    assert properties["FlexibleTimeWindow"] == {"Mode": "OFF"}
    target = properties["Target"]
    assert (target["Arn"], target["RoleArn"]) == ("<IndexerFunction>", "<IndexerScheduleRole>")
    assert "Records" not in json.loads(target["Input"])  # a scheduled run: every source
    parameter = template["Parameters"]["IndexRefreshMinutes"]
    assert (str(parameter["Default"]), str(parameter["MinValue"]), str(parameter["MaxValue"])) == (
        "15",
        "1",
        "60",
    )
    role = deployed["IndexerScheduleRole"]["Properties"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": "<AWS::AccountId>"}}
    # The scheduler's role may invoke the indexer, and nothing else.
    assert _grants(template, INDEX)["IndexerScheduleRole"] == [
        {"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": "<IndexerFunction>"}
    ]


def test_indexer_s3_event_rules(template: dict[str, Any]) -> None:
    """Each CrlS3Uri entry: S3's EventBridge "Object Created" for exactly that bucket and prefix."""
    given = {**INDEX, "CrlS3Uri": "s3://pca-crls/crl/,s3://handed-over/crl-files/"}
    deployed = _deployed(template, given)
    for slot, (bucket, prefix) in enumerate((("pca-crls", "crl/"), ("handed-over", "crl-files/"))):
        rule = deployed[f"IndexerCrlCreatedRule{slot}"]["Properties"]
        assert rule["EventPattern"] == {
            "source": ["aws.s3"],
            "detail-type": ["Object Created"],
            "detail": {"bucket": {"name": [bucket]}, "object": {"key": [{"prefix": prefix}]}},
        }
        assert rule["State"] == "ENABLED"
        assert [t["Arn"] for t in rule["Targets"]] == ["<IndexerFunction>"]
        permission = deployed[f"IndexerCrlCreatedPermission{slot}"]["Properties"]
        assert permission == {
            "Action": "lambda:InvokeFunction",
            "FunctionName": "<IndexerFunction>",
            "Principal": "events.amazonaws.com",
            "SourceArn": f"<IndexerCrlCreatedRule{slot}>",
        }
    assert "IndexerCrlCreatedRule2" not in deployed


def test_indexer_reads_the_sources_and_writes_the_index(template: dict[str, Any]) -> None:
    statements = _grants(template, INDEX_WITH_SOURCES)["IndexerFunctionRole"]
    # The truststore, as the authorizer reads it.
    assert _allows(statements, "s3:GetObject", "arn:aws:s3:::<TruststoreBucket>/truststore.pem")
    assert _allows(statements, "s3:GetObjectVersion", "arn:aws:s3:::<TruststoreBucket>/truststore.pem")
    # The CRL sources: each prefix listed and read, CDP URLs into the named buckets read.
    assert _allows(statements, "s3:ListBucket", f"{ARN}pca-crls", prefix="crl/")
    assert _allows(statements, "s3:ListBucket", f"{ARN}handed-over", prefix="crl-files/")
    assert _allows(statements, "s3:GetObject", f"{ARN}pca-crls/crl/0f1e2d3c.crl")
    assert _allows(statements, "s3:GetObject", f"{ARN}handed-over/crl-files/issuing-ca.crl.pem")
    assert _allows(statements, "s3:GetObject", f"{ARN}legacy-cdp/pki/ca.crl")
    # The index: read and write the indexes and sources.json, take (list, read, delete) the requests.
    for key in (f"crl/{'ab' * 32}.idx", f"sets/{'ef' * 32}.json", "sources.json"):
        assert _allows(statements, "s3:GetObject", INDEX_ARN + key), key
        assert _allows(statements, "s3:PutObject", INDEX_ARN + key), key
    assert _allows(statements, "s3:ListBucket", f"{ARN}ops-index", prefix="mtls-index/requests/")
    assert _allows(statements, "s3:GetObject", f"{INDEX_ARN}requests/{'cd' * 32}.json")
    assert _allows(statements, "s3:DeleteObject", f"{INDEX_ARN}requests/{'cd' * 32}.json")
    # Nothing beside: not the denylist, not the rest of the index bucket, no deletion of indexes.
    assert not _allows(statements, "s3:GetObject", f"{ARN}ops-revocation/authorizer/denylist.txt")
    assert not _allows(statements, "s3:ListBucket", f"{ARN}ops-index", prefix="mtls-index/")
    assert not _allows(statements, "s3:ListBucket", f"{ARN}ops-index", prefix=None)
    assert not _allows(statements, "s3:GetObject", f"{ARN}ops-index/other/object")
    assert not _allows(statements, "s3:PutObject", f"{INDEX_ARN}requests/{'cd' * 32}.json")
    assert not _allows(statements, "s3:PutObject", f"{INDEX_ARN}other")
    assert not _allows(statements, "s3:DeleteObject", f"{INDEX_ARN}crl/{'ab' * 32}.idx")
    assert not _allows(statements, "s3:PutObject", f"{ARN}pca-crls/crl/0f1e2d3c.crl")
    # Without S3 CRL sources, no source grants at all (the CDPs over http need none).
    bare = _grants(template, INDEX)["IndexerFunctionRole"]
    assert not _allows(bare, "s3:GetObject", f"{ARN}pca-crls/crl/0f1e2d3c.crl")
    assert {s.get("Sid") for s in bare} == {None, "ReadWriteIndex", "ListIndexRequests", "TakeIndexRequests"}


def test_authorizer_reads_the_index_and_may_only_ask(template: dict[str, Any]) -> None:
    statements = _grants(template, INDEX_WITH_SOURCES)["AuthorizerFunctionRole"]
    assert _allows(statements, "s3:GetObject", f"{INDEX_ARN}crl/{'ab' * 32}.idx")
    assert _allows(statements, "s3:GetObject", f"{INDEX_ARN}sets/{'ef' * 32}.json")
    assert _allows(statements, "s3:PutObject", f"{INDEX_ARN}requests/{'cd' * 32}.json")
    # It never writes an index or a manifest, never reads or lists the requests (write-only), nor
    # sources.json.
    assert not _allows(statements, "s3:PutObject", f"{INDEX_ARN}crl/{'ab' * 32}.idx")
    assert not _allows(statements, "s3:PutObject", f"{INDEX_ARN}sets/{'ef' * 32}.json")
    assert not _allows(statements, "s3:PutObject", f"{INDEX_ARN}sources.json")
    assert not _allows(statements, "s3:GetObject", f"{INDEX_ARN}requests/{'cd' * 32}.json")
    assert not _allows(statements, "s3:GetObject", f"{INDEX_ARN}sources.json")
    assert not _allows(statements, "s3:DeleteObject", f"{INDEX_ARN}requests/{'cd' * 32}.json")
    for prefix in ("mtls-index/", "mtls-index/requests/", "mtls-index/crl/", None):
        assert not _allows(statements, "s3:ListBucket", f"{ARN}ops-index", prefix=prefix), prefix
    role = template["Resources"]["AuthorizerFunctionRole"]["Properties"]
    policies = _resolve(role, template, _parameters(template, INDEX))["Policies"]
    (policy,) = [p for p in policies if p["PolicyName"] == "ReadSharedIndex"]
    assert policy["PolicyDocument"]["Statement"] == [
        {
            "Sid": "ReadIndex", "Effect": "Allow", "Action": "s3:GetObject",
            "Resource": [f"{INDEX_ARN}crl/*", f"{INDEX_ARN}sets/*"],
        },
        {
            "Sid": "RequestIndexing", "Effect": "Allow", "Action": "s3:PutObject",
            "Resource": f"{INDEX_ARN}requests/*",
        },
    ]  # fmt: skip
    # Without an index, the authorizer's role has no grant on it.
    assert not _allows(
        _grants(template, S3_SOURCES)["AuthorizerFunctionRole"], "s3:GetObject", f"{INDEX_ARN}crl/x"
    )


READ_ACTIONS = {"s3:GetObject", "s3:GetObjectVersion", "s3:ListBucket"}
LOG_WRITES = {"logs:CreateLogStream", "logs:PutLogEvents"}


@pytest.mark.parametrize(
    "given", [{}, S3_SOURCES, INDEX, INDEX_WITH_SOURCES, {**INDEX_WITH_SOURCES, "EnableTracing": "true"}]
)
def test_nothing_writes_anywhere_else(template: dict[str, Any], given: dict[str, str]) -> None:
    """Every action that is not a read, of every role the stack deploys, on exactly these resources."""
    writes: set[tuple[str, str, str]] = set()
    for role, statements in _grants(template, given).items():
        for statement in statements:
            assert (
                statement["Effect"] == "Allow"
                and "NotAction" not in statement
                and "NotResource" not in statement
            )
            for action in _listed(statement["Action"]):
                assert "*" not in action, (role, action)
                for resource in _listed(statement["Resource"]):
                    assert resource != "*", (role, action)
                    if action not in READ_ACTIONS:
                        writes.add((role, action, resource))
    log_group = "arn:aws:logs:<AWS::Region>:<AWS::AccountId>:log-group:<{}>"
    expected = {
        ("AuthorizerFunctionRole", action, arn)
        for action in LOG_WRITES
        for arn in (
            log_group.format("AuthorizerFunctionLogGroup"),
            log_group.format("AuthorizerFunctionLogGroup") + ":*",
        )
    }
    if "IndexS3Uri" in given:
        expected |= {
            ("AuthorizerFunctionRole", "s3:PutObject", f"{INDEX_ARN}requests/*"),
            ("IndexerFunctionRole", "s3:PutObject", f"{INDEX_ARN}crl/*"),
            ("IndexerFunctionRole", "s3:PutObject", f"{INDEX_ARN}sets/*"),
            ("IndexerFunctionRole", "s3:PutObject", f"{INDEX_ARN}sources.json"),
            ("IndexerFunctionRole", "s3:DeleteObject", f"{INDEX_ARN}requests/*"),
            ("IndexerScheduleRole", "lambda:InvokeFunction", "<IndexerFunction>"),
        }
        expected |= {
            ("IndexerFunctionRole", action, arn)
            for action in LOG_WRITES
            for arn in (
                log_group.format("IndexerFunctionLogGroup"),
                log_group.format("IndexerFunctionLogGroup") + ":*",
            )
        }
    assert writes == expected
    # X-Ray (tracing on) is the only managed policy, and only for the authorizer.
    params = _parameters(template, given)
    for name, resource in _deployed(template, given).items():
        if resource["Type"] == "AWS::IAM::Role" and name != "AuthorizerFunctionRole":
            assert not resource["Properties"].get("ManagedPolicyArns"), name
    managed = _resolve(template["Resources"]["AuthorizerFunctionRole"]["Properties"], template, params)
    assert managed.get("ManagedPolicyArns", []) == (
        ["arn:aws:iam::aws:policy/AWSXRayDaemonWriteAccess"] if given.get("EnableTracing") == "true" else []
    )


def test_indexer_writes_only_its_own_log_group(resources: dict[str, Any]) -> None:
    log_group = resources["IndexerFunctionLogGroup"]
    assert log_group["Condition"] == "HasIndex"
    assert log_group["Properties"]["LogGroupName"] == {"Fn::Sub": "/aws/lambda/${IndexerFunction}"}
    policy = resources["IndexerLogsPolicy"]
    assert policy["Properties"]["RoleName"] == {"Ref": "IndexerFunctionRole"}
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert sorted(statement["Action"]) == sorted(LOG_WRITES)
    group_arn = (
        "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:${IndexerFunctionLogGroup}"
    )
    assert statement["Resource"] == [{"Fn::Sub": group_arn}, {"Fn::Sub": group_arn + ":*"}]


@pytest.mark.parametrize(("parameter", "value", "valid"), [
    ("IndexS3Uri", "", True),
    ("IndexS3Uri", "s3://ops-index/mtls-index/", True),
    ("IndexS3Uri", "s3://ops-index/mtls-index", False),  # a prefix ends with "/"
    ("IndexS3Uri", "s3://ops-index/", False),  # the whole bucket: the grants need a prefix
    ("IndexS3Uri", "s3://ops-index/a/b/", False),  # one segment only
    ("IndexS3Uri", "s3://ops-index/*/", False),
    ("IndexS3Uri", "s3://a1/x/,s3://b1/x/", False),  # one index
    ("IndexUrls", "", True),
    ("IndexUrls", "http://pki.example/ca.crl", True),
    ("IndexUrls", "http://pki.example/ca.crl,https://pki.example/sub%20ca.crl", True),
    ("IndexUrls", "ldap://pki.example/cn=ca", False),
    ("IndexUrls", "http://a.example/ca.crl, http://b.example/ca.crl", False),
    ("IndexUrls", "http://a.example/ca.crl,", False),
    ("DeltaCrl", "require", True),
    ("DeltaCrl", "ignore", True),
])  # fmt: skip
def test_index_parameters_are_validated(
    template: dict[str, Any], parameter: str, value: str, valid: bool
) -> None:
    definition = template["Parameters"][parameter]
    if "AllowedPattern" in definition:
        assert (re.fullmatch(definition["AllowedPattern"], value) is not None) == valid
    else:
        assert (value in definition["AllowedValues"]) == valid
    if valid:  # every accepted value resolves without a stack error, and both functions read it
        from authorizer.settings import Settings

        given = {**S3_SOURCES, parameter: value}
        _grants(template, given)
        _deployed(template, given)
        assert Settings.from_env(_function_env(template, given)).problems == ()
        if _condition(template, "HasIndex", _parameters(template, given)):
            assert Settings.from_env(_function_env(template, given, "IndexerFunction")).problems == ()


def test_index_alarms(template: dict[str, Any], resources: dict[str, Any]) -> None:
    alarms = {
        name: resources[name] for name in ("IndexFailuresAlarm", "IndexAgeAlarm", "IndexerNotRunningAlarm")
    }
    for name, alarm in alarms.items():
        assert alarm["Condition"] == "HasIndex", name
        properties = alarm["Properties"]
        # The namespace and service dimension the indexer's EMF documents carry (observability.metrics,
        # POWERTOOLS_* of the indexer).
        assert properties["Namespace"] == FIXED_ENV["POWERTOOLS_METRICS_NAMESPACE"], name
        assert properties["Dimensions"] == [
            {"Name": "service", "Value": FIXED_ENV["POWERTOOLS_SERVICE_NAME"]}
        ]
        assert properties["MetricName"] in INDEXER_METRICS
        # At least one scheduled run in every period (IndexRefreshMinutes <= 60).
        assert properties["Period"] >= 60 * int(template["Parameters"]["IndexRefreshMinutes"]["MaxValue"])
    failures = alarms["IndexFailuresAlarm"]["Properties"]
    assert (failures["MetricName"], failures["Statistic"], failures["Threshold"]) == (
        "IndexFailures",
        "Sum",
        0,
    )
    assert failures["ComparisonOperator"] == "GreaterThanThreshold"
    assert failures["EvaluationPeriods"] == failures["DatapointsToAlarm"] == 2
    age = alarms["IndexAgeAlarm"]["Properties"]
    assert (age["MetricName"], age["Statistic"]) == ("IndexMaxAgeSeconds", "Maximum")
    assert age["Threshold"] == {"Ref": "IndexMaxAgeAlarmSeconds"}
    assert age["ComparisonOperator"] == "GreaterThanThreshold"
    assert str(template["Parameters"]["IndexMaxAgeAlarmSeconds"]["Default"]) == "86400"
    running = alarms["IndexerNotRunningAlarm"]["Properties"]
    assert (running["MetricName"], running["Threshold"], running["ComparisonOperator"]) == (
        "IndexerRuns", 1, "LessThanThreshold"
    )  # fmt: skip
    assert running["TreatMissingData"] == "breaching"
    # The indexer emits the metrics these watch.
    source = (ROOT / "src" / "authorizer" / "indexer.py").read_text()
    for metric in INDEXER_METRICS:
        assert f'name="{metric}"' in source, metric


def test_dashboard_has_an_indexer_row_only_with_an_index(template: dict[str, Any]) -> None:
    without = json.dumps(_dashboard(template))
    assert "IndexerFunction" not in without and "IndexerRuns" not in without
    widgets = _dashboard(template, INDEX)["widgets"]
    row = [w for w in widgets if w["properties"]["title"].startswith("Indexer")]
    assert len(row) == 3 and {w["y"] for w in row} == {max(w["y"] for w in widgets)}
    text = json.dumps(row)
    for metric in INDEXER_METRICS:
        assert f'"{metric}"' in text, metric
    assert '"<IndexerFunction>"' in text
    (age,) = [w for w in row if "IndexMaxAgeSeconds" in json.dumps(w)]
    assert [a["value"] for a in age["properties"]["annotations"]["horizontal"]] == [86400]


def test_makefile_builds_every_function(template: dict[str, Any]) -> None:
    """`sam build` runs `make build-<LogicalId>` for each function with BuildMethod makefile (it never shares
    a makefile build between functions), so each needs its target."""
    makefile = (ROOT / "Makefile").read_text()
    for name, resource in template["Resources"].items():
        if (
            resource.get("Metadata", {}).get("BuildMethod") == "makefile"
            and resource["Type"] == "AWS::Serverless::Function"
        ):
            assert re.search(rf"^build-{name}\s*:", makefile, re.M), (
                f"the Makefile has no build-{name} target"
            )


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


def _dashboard(template: dict[str, Any], given: dict[str, str] | None = None) -> dict[str, Any]:
    """The dashboard's JSON as CloudFormation would produce it for these parameter values (resources and
    pseudo parameters as "<name>" placeholders)."""
    params = _parameters(template, given or {})
    body = _resolve(template["Resources"]["Dashboard"]["Properties"]["DashboardBody"], template, params)
    assert isinstance(body, str)
    return dict(json.loads(body))


def _dashboard_text(resources: dict[str, Any]) -> str:
    body = resources["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    text = body[0] if isinstance(body, list) else body
    assert isinstance(text, str)
    return text


def test_dashboard(template: dict[str, Any], resources: dict[str, Any]) -> None:
    widgets = _dashboard(template)["widgets"]
    titles = {w["properties"]["title"]: w["properties"] for w in widgets}
    text = json.dumps(widgets)
    for metric in METRICS:  # a metric of its own, or a search (\"...\" inside the expression)
        assert re.search(rf'\\?"{metric}\\?"', text), metric
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
    # Health (health.py): the truststore's expiry with the alarm's threshold, and failures per CA,
    # found by the `ca` dimension whatever the labels.
    expiry = titles["Truststore: days until the earliest CA expires"]
    assert (
        expiry["metrics"][0][1] == "TruststoreDaysToExpiry" and expiry["metrics"][0][4]["stat"] == "Minimum"
    )
    assert [a["value"] for a in expiry["annotations"]["horizontal"]] == [30]  # ${TruststoreExpiryAlarmDays}
    assert '"value": ${TruststoreExpiryAlarmDays}' in _dashboard_text(resources)
    (search,) = [
        m[0]["expression"] for m in titles["Source failures by CA"]["metrics"] if isinstance(m[0], dict)
    ]
    assert search == """SEARCH('{MtlsAuthorizer,ca,service} MetricName="SourceFailureByCa"', 'Sum', 300)"""
    late = [m[1] for m in titles["Revocation data not refreshed"]["metrics"]]
    assert late == [
        "StaleRevocationUse", "RevocationDataUnrefreshed",
        "RevocationDataOverdueSeconds", "RevocationDataAgeSeconds",
    ]  # fmt: skip


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
    # Health (health.py).
    expiry = alarms["TruststoreCaExpiryAlarm"]
    assert (expiry["Namespace"], expiry["MetricName"], expiry["Statistic"]) == (
        "MtlsAuthorizer", "TruststoreDaysToExpiry", "Minimum"
    )  # fmt: skip
    assert expiry["Threshold"] == {"Ref": "TruststoreExpiryAlarmDays"}
    assert expiry["ComparisonOperator"] == "LessThanThreshold"
    assert expiry["TreatMissingData"] == "ignore"  # emitted with decisions: no traffic keeps the state
    assert str(template["Parameters"]["TruststoreExpiryAlarmDays"]["Default"]) == "30"
    stale = alarms["StaleRevocationDataAlarm"]
    stale_by_id = {m["Id"]: m for m in stale["Metrics"]}
    assert [m["Id"] for m in stale["Metrics"] if m["ReturnData"]] == ["late"]
    assert stale_by_id["late"]["Expression"] == "FILL(stale, 0) + FILL(unrefreshed, 0)"
    for metric_id, name, stat in (
        ("stale", "StaleRevocationUse", "Sum"),
        ("unrefreshed", "RevocationDataUnrefreshed", "Maximum"),
    ):
        metric_stat = stale_by_id[metric_id]["MetricStat"]
        assert (metric_stat["Metric"]["MetricName"], metric_stat["Stat"]) == (name, stat)
        assert metric_stat["Metric"]["Dimensions"] == [{"Name": "service", "Value": "mtls-authorizer"}]
    assert (stale["Threshold"], stale["ComparisonOperator"]) == (0, "GreaterThanThreshold")
    failures = alarms["RevocationSourceFailuresAlarm"]
    assert (failures["MetricName"], failures["Statistic"], failures["Period"]) == ("FetchFailure", "Sum", 300)
    assert failures["EvaluationPeriods"] == failures["DatapointsToAlarm"] == 3  # sustained: 15 minutes
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
    "none-existing-api": {"ApiType": "NONE", "ExistingApiId": "a1b2c3d4e5", "TruststoreBucketName": "theirs"},
    "none-every-api": {"ApiType": "NONE", "TruststoreBucketName": "theirs", "AlarmEmail": "ops@example.com"},
    "index": {"IndexS3Uri": "s3://ops-index/mtls-index/", "IndexUrls": "http://pki.example/ca.crl"},
    "index-s3-sources": {
        "IndexS3Uri": "s3://ops-index/mtls-index/", "CrlS3Uri": "s3://pca-crls/crl/,s3://handed-over/crl-files/",
        "CrlS3Buckets": "legacy-cdp", "IndexRefreshMinutes": "1", "IndexerReservedConcurrency": "0",
        "ApiType": "NONE", "TruststoreBucketName": "theirs",
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
    # What `sam package` does: the local CodeUri becomes an S3 object (one build for each function).
    for function in ("AuthorizerFunction", "IndexerFunction"):
        template["Resources"][function]["Properties"]["CodeUri"] = f"s3://artifacts-bucket/{function}.zip"
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
    assert env["REVOCATION_INDEX_S3_URI"] == {"Ref": "IndexS3Uri"}

    # The indexer: a plain function under HasIndex, and so is everything SAM generates for it; deployed
    # exactly when the case sets IndexS3Uri.
    params = _parameters(output, TRANSFORM_CASES[case])
    indexer = resources["IndexerFunction"]
    assert (indexer["Type"], indexer["Condition"]) == ("AWS::Lambda::Function", "HasIndex")
    assert indexer["Properties"]["Handler"] == "authorizer.indexer.lambda_handler"
    assert indexer["Properties"]["Role"] == {"Fn::GetAtt": ["IndexerFunctionRole", "Arn"]}
    assert resources["IndexerFunctionEventInvokeConfig"]["Condition"] == "HasIndex"
    assert "BasicExecution" not in json.dumps(resources["IndexerFunctionRole"])
    # Without IndexS3Uri, nothing deployed refers to the indexer's resources (the dashboard's row included).
    no_index = _parameters(output, {k: v for k, v in TRANSFORM_CASES[case].items() if k != "IndexS3Uri"})
    for name, resource in resources.items():
        if name.startswith("Indexer"):
            assert not _condition(output, resource["Condition"], no_index), name
            continue
        if "Condition" in resource and not _condition(output, resource["Condition"], no_index):
            continue
        refs = {ref.split(".")[0] for ref in _references(_resolve_conditions(resource, output, no_index))}
        assert not {ref for ref in refs if ref.startswith("Indexer")}, name
    deployed = {
        n for n, r in resources.items() if "Condition" not in r or _condition(output, r["Condition"], params)
    }
    assert ("IndexerFunction" in deployed) == ("IndexS3Uri" in TRANSFORM_CASES[case])

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
    permissions = {n: r for n, r in resources.items() if r["Type"] == "AWS::Lambda::Permission"}
    assert sum("AuthorizerFunction" in set(_refs(p)) for p in permissions.values()) == 3  # REST, HTTP, NONE
    # For the case's parameters, exactly one of them is deployed: SAM's for its API, or the one for yours.
    invoking = [
        name
        for name, p in permissions.items()
        if "AuthorizerFunction" in set(_refs(p)) and _condition(output, p["Condition"], params)
    ]
    api_type = TRANSFORM_CASES[case].get("ApiType", "REST")
    assert len(invoking) == 1, invoking
    assert (invoking[0] == "ExistingApiInvokePermission") == (api_type == "NONE")
    if api_type == "NONE":
        deployed = {
            n
            for n, r in resources.items()
            if "Condition" not in r or _condition(output, r["Condition"], params)
        }
        assert not {
            n for n in deployed if n.startswith(("RestApi", "HttpApi", "Hello", "TruststoreBucket"))
        }, deployed
        assert _rules_hold(output, TRANSFORM_CASES[case])

    # The generated CloudFormation passes cfn-lint too (it sees more than the SAM schema does), apart from
    # W1028, which flags redundant Fn::If that the translator itself wraps around conditional paths.
    matches = lint(json.dumps(output), config=ManualArgs(regions=["eu-west-1"], ignore_checks=["W1028"]))
    assert not matches, "\n".join(str(m) for m in matches)

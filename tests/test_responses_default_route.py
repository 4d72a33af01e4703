"""The IAM-policy answer covers every route of the stage, HTTP API's `$default` route included (issue 8,
item 18), through ``lambda_handler``.

HTTP API payload 1.0, and 2.0 with simple responses off, are answered with an IAM policy. A `$default`
route's ARN has no verb or path: `arn:aws:execute-api:{region}:{account}:{api}/{stage}/$default`. The
stage-wide `{stage}/*/*` needs two more `/`-separated parts, so it does not cover that route, and with
authorizer caching one Allow must cover every route it is reused on. The policy is `{stage}/*`: AWS's
documentation gives `api-id/test/*` as "resource path in the stage of test" (Control access for invoking
an API, Resource format), and `*` there, as in IAM, matches any characters, `/` included.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from authorizer.events import parse_event
from conftest import (
    ACCOUNT,
    API_ID,
    REGION,
    STAGE,
    STAGE_RESOURCE,
    Configure,
    World,
    cert_event,
    parse_response,
    policy_resources,
)
from pki import Credential

PREFIX = f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{API_ID}"
DEFAULT_ROUTE_ARN = f"{PREFIX}/{STAGE}/$default"


def iam_glob_match(pattern: str, value: str) -> bool:
    """IAM's Resource matching: `*` is any run of characters (`/` included), `?` is one character."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, flags=re.DOTALL) is not None


def covered(response: dict[str, Any], arn: str) -> bool:
    return any(iam_glob_match(resource, arn) for resource in policy_resources(response))


def default_route_event(fmt: str, leaf: Credential, arn: str = DEFAULT_ROUTE_ARN) -> dict[str, Any]:
    """A request to a `$default` route: routeArn (2.0) or methodArn (1.0) without verb or path."""
    event = cert_event("v2" if fmt == "v2" else "v1", leaf)
    if fmt == "v2":
        event["routeArn"] = arn
        event["routeKey"] = event["requestContext"]["routeKey"] = "$default"
    else:
        event["methodArn"] = arn
    return event


def test_glob_matcher_and_why_the_old_resource_missed_default() -> None:
    """The matcher itself, and the bug: `{stage}/*/*` needs a `/` after the route key, `$default` has none."""
    assert iam_glob_match(f"{PREFIX}/{STAGE}/*/*", f"{PREFIX}/{STAGE}/GET/pets/42")
    assert not iam_glob_match(f"{PREFIX}/{STAGE}/*/*", DEFAULT_ROUTE_ARN)
    assert iam_glob_match(f"{PREFIX}/{STAGE}/*", DEFAULT_ROUTE_ARN)
    assert iam_glob_match("a?c", "abc") and not iam_glob_match("a?c", "ac")
    assert not iam_glob_match("a.c", "abc")  # regex characters are literal


@pytest.mark.parametrize("fmt", ["v1", "v2"])
def test_allow_covers_the_default_route(configure: Configure, world: World, fmt: str) -> None:
    """Payload 2.0 with HTTP_API_SIMPLE_RESPONSES=false, and payload 1.0 (always an IAM policy)."""
    authorizer = configure(HTTP_API_SIMPLE_RESPONSES="false")
    leaf = world.leaf("default route client", ocsp="issuer")
    event = default_route_event(fmt, leaf)

    request = parse_event(event)  # events.py reads the verb-less ARN
    assert request.arn is not None
    assert (request.arn.api_id, request.arn.stage) == (API_ID, STAGE)

    response = authorizer.invoke(event)
    decision = parse_response(response, "v2" if fmt == "v2" else "v1", simple=False)
    decision.expect(True, "good", cert=leaf, source="ocsp")
    assert policy_resources(response) == [STAGE_RESOURCE]
    assert covered(response, DEFAULT_ROUTE_ARN), policy_resources(response)


@pytest.mark.parametrize("fmt", ["v1", "v2"])
def test_deny_covers_the_default_route(configure: Configure, world: World, fmt: str) -> None:
    """A Deny names the same resource, so it applies to the `$default` route explicitly too."""
    authorizer = configure(HTTP_API_SIMPLE_RESPONSES="false")
    leaf = world.leaf("revoked default route client", ocsp="issuer", ocsp_status="revoked")
    response = authorizer.invoke(default_route_event(fmt, leaf))
    parse_response(response, "v2" if fmt == "v2" else "v1", simple=False).expect(False, "revoked", cert=leaf)
    assert covered(response, DEFAULT_ROUTE_ARN)


def test_one_cached_allow_covers_every_route_of_the_stage_and_nothing_else(
    configure: Configure, world: World
) -> None:
    """The resource covers every route and method of its own stage (so a cached Allow holds wherever it
    is reused), including HTTP API's `$default` stage, and no other stage or API."""
    authorizer = configure(HTTP_API_SIMPLE_RESPONSES="false")
    leaf = world.leaf("stage-wide client", ocsp="issuer")
    for stage in (STAGE, "$default"):
        arn = f"{PREFIX}/{stage}/$default"
        response = authorizer.invoke(default_route_event("v2", leaf, arn))
        assert response["policyDocument"]["Statement"][0]["Effect"] == "Allow", response
        (resource,) = policy_resources(response)
        assert resource == f"{PREFIX}/{stage}/*" and len(resource) <= 512
        for route in ("$default", "GET/pets/42", "POST/", "ANY/a/b/c", "GET"):
            assert iam_glob_match(resource, f"{PREFIX}/{stage}/{route}"), route
        for other in (
            f"{PREFIX}/{stage}x/GET/pets",
            f"{PREFIX}x/{stage}/GET/pets",
            f"{PREFIX}/other/$default",
        ):
            assert not iam_glob_match(resource, other), other


def test_rest_method_arns_are_still_covered(configure: Configure, world: World) -> None:
    """REST: `{stage}/*` still covers `{stage}/{verb}/{path}` method ARNs, nested paths included."""
    authorizer = configure()
    leaf = world.leaf("rest stage client", ocsp="issuer")
    response = authorizer.invoke(cert_event("rest", leaf))
    parse_response(response, "rest").expect(True, "good", cert=leaf)
    for route in ("GET/pets/42", "DELETE/pets/42/toys/1", "GET/"):
        assert covered(response, f"{PREFIX}/{STAGE}/{route}"), route

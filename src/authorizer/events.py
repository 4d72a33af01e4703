"""Where the event is parsed: which API Gateway format it is, its ARN and the client certificate PEM.

Powertools' event classes read the fields; their accessors index dicts directly, so every access
is guarded and a malformed event reads as "no certificate" instead of raising.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.utilities.data_classes.api_gateway_authorizer_event import (
    APIGatewayAuthorizerEventV2,
    APIGatewayAuthorizerRequestEvent,
    APIGatewayRouteArn,
    parse_api_gateway_arn,
)

MAX_ARN_LENGTH = 1600  # API Gateway's own limit on methodArn
MAX_POLICY_RESOURCE = 512  # IAM's limit on one policy Resource


class EventFormat(enum.Enum):
    REST = "rest"  # REST API REQUEST authorizer
    HTTP_V1 = "1.0"  # HTTP API payload 1.0: REST-shaped, answered with an IAM policy
    HTTP_V2 = "2.0"  # HTTP API payload 2.0


@dataclass(frozen=True, slots=True)
class AuthorizerRequest:
    format: EventFormat
    arn: APIGatewayRouteArn | None
    cert_pem: str | None


def parse_event(event: object) -> AuthorizerRequest:
    """Read an authorizer event of any supported format; never raises."""
    if not isinstance(event, dict):
        return AuthorizerRequest(EventFormat.REST, None, None)
    if event.get("version") == "2.0":
        v2 = APIGatewayAuthorizerEventV2(event)
        return AuthorizerRequest(
            EventFormat.HTTP_V2,
            _arn(lambda: v2.route_arn),
            _pem(lambda: v2.request_context.authentication.client_cert_pem),  # type: ignore[union-attr]
        )
    rest = APIGatewayAuthorizerRequestEvent(event)
    return AuthorizerRequest(
        EventFormat.HTTP_V1 if event.get("version") == "1.0" else EventFormat.REST,
        _arn(lambda: rest.method_arn),
        _pem(lambda: rest.request_context.identity.client_cert.client_cert_pem),  # type: ignore[union-attr]
    )


def _guarded(read: Callable[[], Any]) -> Any:
    try:
        return read()
    except (KeyError, TypeError, AttributeError, IndexError, ValueError):
        return None


def _pem(read: Callable[[], Any]) -> str | None:
    value = _guarded(read)
    return value if isinstance(value, str) and value.strip() else None


def _arn(read: Callable[[], Any]) -> APIGatewayRouteArn | None:
    value = _guarded(read)
    if not isinstance(value, str) or len(value) > MAX_ARN_LENGTH or not value.startswith("arn:"):
        return None
    parsed: APIGatewayRouteArn | None = _guarded(lambda: parse_api_gateway_arn(value))
    if parsed is None or not all((parsed.region, parsed.aws_account_id, parsed.api_id, parsed.stage)):
        return None
    stage_resource = f"arn:{parsed.partition}:execute-api:{parsed.region}:{parsed.aws_account_id}:"
    stage_resource += f"{parsed.api_id}/{parsed.stage}/*/*"
    if len(stage_resource) > MAX_POLICY_RESOURCE:  # no valid policy could name this stage
        return None
    return parsed

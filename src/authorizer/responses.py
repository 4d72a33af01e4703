"""Where the response is shaped: an IAM policy for the whole stage, or HTTP API's simple response."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.data_classes.api_gateway_authorizer_event import (
    APIGatewayAuthorizerResponseV2,
    APIGatewayRouteArn,
)

from .events import AuthorizerRequest, EventFormat

ANONYMOUS_PRINCIPAL = "anonymous"  # when no certificate subject is available
MAX_CONTEXT_VALUE = 1024  # keeps the whole result far below API Gateway's 8 KB

ContextValue = str | int | float | bool


def build_response(
    request: AuthorizerRequest,
    allow: bool,
    principal: str,
    context: dict[str, ContextValue],
    simple_http_responses: bool,
) -> dict[str, Any]:
    context = {key: _bounded(value) for key, value in context.items()}
    principal = _bounded(principal) if principal else ANONYMOUS_PRINCIPAL
    if request.format is EventFormat.HTTP_V2 and simple_http_responses:
        return APIGatewayAuthorizerResponseV2(authorize=allow, context=context).asdict()
    arn = request.arn
    if arn is None:  # nothing to scope a policy to: deny everything
        return {
            "principalId": principal,
            "policyDocument": _deny_everything(),
            "context": context,
        }
    return {
        "principalId": principal,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Action": "execute-api:Invoke",
                    "Effect": "Allow" if allow else "Deny",
                    "Resource": [stage_resource(arn)],
                }
            ],
        },
        "context": context,
    }


def stage_resource(arn: APIGatewayRouteArn) -> str:
    """Every route of the request's stage, `$default` included.

    A cached Allow must hold for every route API Gateway reuses it on. Powertools' allow_all_routes()
    gives `{stage}/*/*`, which needs two more segments and so misses HTTP API's `$default` route, whose
    routeArn is `{api}/{stage}/$default`. `*` matches across `/`, so `{stage}/*` is every method and
    path on REST (AWS's own example for "any resource path in the stage of test") and every route on
    HTTP APIs. It is two characters shorter than the form events.py bounds by 512.
    """
    return f"arn:{arn.partition}:execute-api:{arn.region}:{arn.aws_account_id}:{arn.api_id}/{arn.stage}/*"


def _deny_everything() -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [{"Action": "execute-api:Invoke", "Effect": "Deny", "Resource": ["*"]}],
    }


def _bounded(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_CONTEXT_VALUE:
        return value[: MAX_CONTEXT_VALUE - 3] + "..."
    return value

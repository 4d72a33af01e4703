"""Where the response is shaped: an IAM policy for the whole stage, or HTTP API's simple response."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.data_classes.api_gateway_authorizer_event import (
    APIGatewayAuthorizerResponse,
    APIGatewayAuthorizerResponseV2,
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
    policy = APIGatewayAuthorizerResponse(
        principal,
        arn.region,
        arn.aws_account_id,
        arn.api_id,
        arn.stage,
        context=context,
        partition=arn.partition,
    )
    # The whole stage, every method: a cached Allow must hold for every route API Gateway reuses it on.
    (policy.allow_all_routes if allow else policy.deny_all_routes)()
    return policy.asdict()


def _deny_everything() -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [{"Action": "execute-api:Invoke", "Effect": "Deny", "Resource": ["*"]}],
    }


def _bounded(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_CONTEXT_VALUE:
        return value[: MAX_CONTEXT_VALUE - 3] + "..."
    return value

"""Client-certificate revocation authorizer for AWS API Gateway mutual TLS.

As a Lambda: the handler is `authorizer.app.lambda_handler`. As a library (api.py):

    from authorizer import Checker, check_request
    result = check_request(event)          # CheckResult(allow, reason, context, detail, source, client)

Where things happen:
- api.py         the public library API: Checker, check_request, CheckResult
- events.py      reads the API Gateway event (REST, HTTP API 1.0 and 2.0)
- trust.py       decides trust: the certificate's path to a truststore anchor
- revocation.py  decides revocation: OCSP and CRL answers combined by the policy
- responses.py   shapes the IAM policy or simple response
- app.py         the Lambda entry point that wires them together
- observability.py  logs, metrics and tracing (Powertools)

Importing the package is light: the decision's dependencies load when a Checker is first built
(or on the Lambda's first request).
"""

from .api import Checker, CheckResult, ContextValue, Reason, Source, TruststoreSource, check_request

# The one place the version is written: pyproject.toml reads it (tool.setuptools.dynamic).
__version__ = "0.2.0"

__all__ = [
    "CheckResult",
    "Checker",
    "ContextValue",
    "Reason",
    "Source",
    "TruststoreSource",
    "__version__",
    "check_request",
]

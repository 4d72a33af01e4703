"""Client-certificate revocation authorizer for AWS API Gateway mutual TLS.

Where things happen:
- events.py      reads the API Gateway event (REST, HTTP API 1.0 and 2.0)
- trust.py       decides trust: the certificate's path to a truststore anchor
- revocation.py  decides revocation: OCSP and CRL answers combined by the policy
- responses.py   shapes the IAM policy or simple response
- app.py         the Lambda entry point that wires them together
- observability.py  logs, metrics and tracing (Powertools)
"""

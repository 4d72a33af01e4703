"""`make demo` and `make events`: a throwaway openssl PKI, loopback servers, the real authorizer."""

"""The demo's client of the mutual-TLS gateway: `curl --cert --key`, or Python's http.client where there is
no curl. Both present a client certificate, trust only the gateway's throwaway server CA, and never use a
proxy; loopback only."""

from __future__ import annotations

import http.client
import shlex
import shutil
import ssl
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

TLS_FAIL = "TLS-fail"  # the handshake failed: no HTTP status at all
# curl's exit codes for a TLS failure: 35 in the handshake; 55/56 when a TLS 1.3 server's alert comes
# after the client finished its side of the handshake (sending or reading the request).
CURL_TLS_EXITS = {35, 55, 56}


@dataclass(frozen=True)
class Answer:
    status: str  # "200", "403", ... or TLS_FAIL
    body: str = ""


class GatewayClient:
    def __init__(self, cacert: Path, curl: str | None = None) -> None:
        self.cacert = cacert
        self.curl = curl if curl is not None else shutil.which("curl")

    @property
    def name(self) -> str:
        return "curl" if self.curl else "http.client"

    def command(self, url: str, cert: Path | None, key: Path | None, shown: Path | None = None) -> str:
        """The curl command line for a request (for people to copy), paths relative to ``shown``."""

        def rel(path: Path) -> str:
            return str(path.relative_to(shown)) if shown and path.is_relative_to(shown) else str(path)

        parts = ["curl"]
        if cert is not None and key is not None:
            parts += ["--cert", rel(cert), "--key", rel(key)]
        parts += ["--cacert", rel(self.cacert), url]
        return shlex.join(parts)

    def get(
        self, url: str, cert: Path | None, key: Path | None, headers: Mapping[str, str] | None = None
    ) -> Answer:
        headers = dict(headers or {})
        return self._curl(url, cert, key, headers) if self.curl else self._python(url, cert, key, headers)

    def _curl(self, url: str, cert: Path | None, key: Path | None, headers: dict[str, str]) -> Answer:
        assert self.curl is not None
        command = [self.curl, "-sS", "--noproxy", "*", "--max-time", "20", "--cacert", str(self.cacert)]
        command += ["-w", "\n%{http_code}"]
        if cert is not None and key is not None:
            command += ["--cert", str(cert), "--key", str(key)]
        for name, value in headers.items():
            command += ["-H", f"{name}: {value}"]
        done = subprocess.run([*command, url], capture_output=True, text=True, timeout=30, check=False)
        body, _, code = done.stdout.rpartition("\n")
        if done.returncode == 0:
            return Answer(code.strip(), body)
        if done.returncode in CURL_TLS_EXITS:
            return Answer(TLS_FAIL, done.stderr.strip())
        return Answer(f"curl-exit-{done.returncode}", done.stderr.strip())

    def _python(self, url: str, cert: Path | None, key: Path | None, headers: dict[str, str]) -> Answer:
        parts = urlsplit(url)
        context = ssl.create_default_context(cafile=str(self.cacert))
        if cert is not None and key is not None:
            context.load_cert_chain(cert, key)
        connection = http.client.HTTPSConnection(
            parts.hostname or "localhost", parts.port or 443, context=context, timeout=20
        )
        try:
            connection.request("GET", parts.path or "/", headers=headers)
            response = connection.getresponse()
            return Answer(str(response.status), response.read().decode(errors="replace"))
        except (ssl.SSLError, ConnectionError) as exc:
            return Answer(TLS_FAIL, str(exc))
        finally:
            connection.close()

"""TLS: ``[server] tls_cert`` / ``tls_key`` (PEM) make the same port serve https:// and wss://."""

from __future__ import annotations

import ssl

from ..config import ServerConfig
from ..errors import ConfigError


def tls_context(server: ServerConfig) -> ssl.SSLContext | None:
    """Return the server's TLS context (None without tls_cert); raise ConfigError in one line if unusable."""
    if server.tls_cert is None or server.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    for key, path in (("tls_cert", server.tls_cert), ("tls_key", server.tls_key)):
        try:
            path.open("rb").close()
        except OSError as exc:
            raise ConfigError(f"[server] {key}: cannot read {path}: {exc.strerror or exc}") from None
    try:
        context.load_cert_chain(server.tls_cert, server.tls_key)
    except ssl.SSLError as exc:
        why = "the key does not match the certificate" if "KEY_VALUES_MISMATCH" in str(exc) else exc.reason or str(exc)
        raise ConfigError(
            f"[server] tls_cert / tls_key: cannot use {server.tls_cert} with {server.tls_key}: {why}"
        ) from None
    return context

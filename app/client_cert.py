"""Device Management's client certificate: who presented it, checked against the expected subject CN.

HTTPS callbacks from Device Management present a client certificate (GlobalSign, CN
``notifications.mbedcloud.com``): the one proof of the sender that does not rest on a shared secret.
Two places can have verified it against the CA, and this module reads the subject from either:

- gunicorn terminating TLS (``WEB_TLS_CERT``, ``CALLBACK_CLIENT_CA``): the handshake verified the
  chain; ``environ["gunicorn.socket"].getpeercert()`` is the verified certificate, or None;
- a proxy terminating TLS that forwards the verified certificate (PEM, URL-escaped or not: nginx
  ``$ssl_client_escaped_cert``, AWS ALB ``X-Amzn-Mtls-Clientcert``) or its subject DN (nginx
  ``$ssl_client_s_dn``, RFC 2253 or OpenSSL's ``/C=…/CN=…``) in ``CALLBACK_CLIENT_CERT_HEADER``. The
  header is believed only from a peer in ``FORWARDED_ALLOW_IPS``: from anyone else it is ignored.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any
from urllib.parse import unquote

from app.errors import Unauthorized
from app.verify import environ_key

_DN_CN = re.compile(r"(?:^|[,/+]\s*)CN=((?:\\.|[^,/+\\])*)", re.IGNORECASE)
_PEM_MARK = "-----BEGIN CERTIFICATE-----"


def cn_from_peercert(peercert: Mapping[str, Any] | None) -> str | None:
    """The subject CN of a certificate as ``ssl.SSLSocket.getpeercert()`` returns it; None without one."""
    for rdn in (peercert or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


def cn_from_dn(dn: str) -> str | None:
    """The CN of a distinguished name in RFC 2253 (``CN=x,O=y``) or OpenSSL (``/O=y/CN=x``) form."""
    match = _DN_CN.search(dn.strip())
    if not match:
        return None
    return re.sub(r"\\(.)", r"\1", match.group(1)).strip()


def cn_from_pem(pem: str) -> str | None:
    """The subject CN of a PEM certificate; None when it does not parse."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    try:
        cert = x509.load_pem_x509_certificate(pem.encode("ascii"))
    except ValueError:
        return None
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else None


def cn_from_header(value: str) -> str | None:
    """The subject CN from a proxy's header: a PEM certificate (URL-escaped or not) or a subject DN."""
    text = unquote(value) if "%" in value else value
    if _PEM_MARK in text:
        # Some proxies fold the PEM onto one line with spaces or tabs for newlines.
        body = text.replace(_PEM_MARK, "").replace("-----END CERTIFICATE-----", "")
        lines = re.sub(r"\s+", "\n", body.strip())
        return cn_from_pem(f"{_PEM_MARK}\n{lines}\n-----END CERTIFICATE-----\n")
    return cn_from_dn(text)


def trusted(remote_addr: str | None, proxies: Sequence[str]) -> bool:
    """True when the peer address is one of the configured proxies (addresses, networks or ``*``)."""
    if "*" in proxies:
        return True
    if not remote_addr:
        return False
    try:
        address = ipaddress.ip_address(remote_addr)
    except ValueError:
        return False
    return any(address in _network(proxy) for proxy in proxies)


@lru_cache(maxsize=64)
def _network(proxy: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """A configured proxy as a network, parsed once (not on every callback PUT)."""
    return ipaddress.ip_network(proxy)


class ClientCertCheck:
    """Requires the expected client certificate subject on a request, from TLS or a trusted proxy."""

    def __init__(self, expected_cn: str, header: str | None, proxies: Sequence[str], from_tls: bool) -> None:
        self.expected_cn = expected_cn
        self.header_key = environ_key(header) if header else None
        self.proxies = tuple(proxies)
        self.from_tls = from_tls

    def presented_cn(self, environ: Mapping[str, Any]) -> str | None:
        """The subject CN the request's client certificate carries, or None."""
        if self.from_tls:
            sock = environ.get("gunicorn.socket")
            getpeercert = getattr(sock, "getpeercert", None)
            if getpeercert is not None:
                return cn_from_peercert(getpeercert())
        if self.header_key and trusted(environ.get("REMOTE_ADDR"), self.proxies):
            value = environ.get(self.header_key)
            return cn_from_header(value) if value else None
        return None

    def check(self, environ: Mapping[str, Any]) -> None:
        """Raise Unauthorized unless the request presented a certificate for the expected CN."""
        cn = self.presented_cn(environ)
        if cn is None:
            raise Unauthorized("the request did not present a client certificate")
        if cn != self.expected_cn:
            raise Unauthorized(f"the client certificate is not for {self.expected_cn}")

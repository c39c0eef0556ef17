"""Reading the client certificate's subject from TLS or a trusted proxy's header (pure)."""

from __future__ import annotations

from urllib.parse import quote

import pytest
import trustme

from app.client_cert import ClientCertCheck, cn_from_dn, cn_from_header, cn_from_peercert, trusted
from app.errors import Unauthorized

DM_CN = "notifications.mbedcloud.com"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def leaf_pem(ca: trustme.CA, cn: str) -> str:
    """A client certificate for cn, signed by the test CA, as PEM text."""
    cert = ca.issue_cert(cn, common_name=cn)
    return cert.cert_chain_pems[0].bytes().decode()


def test_cn_of_the_peer_certificate_that_ssl_returns() -> None:
    peercert = {"subject": ((("countryName", "BE"),), (("commonName", DM_CN),))}
    assert cn_from_peercert(peercert) == DM_CN
    assert cn_from_peercert(None) is None
    assert cn_from_peercert({}) is None


@pytest.mark.parametrize(
    "dn",
    [
        f"CN={DM_CN},O=GlobalSign nv-sa,C=BE",  # RFC 2253 (nginx $ssl_client_s_dn)
        f"/C=BE/O=GlobalSign nv-sa/CN={DM_CN}",  # OpenSSL one-line (older nginx)
        f"C=BE, O=GlobalSign, cn={DM_CN}",
    ],
)
def test_cn_of_a_subject_dn_in_either_common_form(dn: str) -> None:
    assert cn_from_dn(dn) == DM_CN


def test_dn_with_an_escaped_comma_keeps_it_and_a_dn_without_cn_has_none() -> None:
    assert cn_from_dn(r"CN=a\,b,O=x") == "a,b"
    assert cn_from_dn("O=GlobalSign,C=BE") is None


def test_cn_of_a_forwarded_pem_certificate_plain_escaped_or_folded(ca: trustme.CA) -> None:
    pem = leaf_pem(ca, DM_CN)
    assert cn_from_header(pem) == DM_CN
    assert cn_from_header(quote(pem)) == DM_CN  # nginx $ssl_client_escaped_cert, ALB
    assert cn_from_header(pem.replace("\n", " ")) == DM_CN
    assert cn_from_header("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----") is None


@pytest.mark.parametrize(
    ("addr", "proxies", "expected"),
    [
        ("10.0.0.7", ("10.0.0.0/8",), True),
        ("127.0.0.1", ("127.0.0.1", "::1"), True),
        ("192.0.2.1", ("10.0.0.0/8",), False),
        ("192.0.2.1", ("*",), True),
        ("192.0.2.1", (), False),
        (None, ("10.0.0.0/8",), False),
        ("not-an-ip", ("10.0.0.0/8",), False),
    ],
)
def test_trusted_only_from_configured_proxies(
    addr: str | None, proxies: tuple[str, ...], expected: bool
) -> None:
    assert trusted(addr, proxies) is expected


class FakeTLSSocket:
    """A socket that returns a fixed peer certificate, like ssl.SSLSocket.getpeercert()."""

    def __init__(self, peercert: dict[str, object] | None) -> None:
        self.peercert = peercert

    def getpeercert(self) -> dict[str, object] | None:
        return self.peercert


def test_tls_check_accepts_the_expected_cn_and_refuses_another_or_none() -> None:
    check = ClientCertCheck(DM_CN, None, (), from_tls=True)
    good = {"subject": ((("commonName", DM_CN),),)}
    check.check({"gunicorn.socket": FakeTLSSocket(good)})
    with pytest.raises(Unauthorized, match="not for"):
        check.check({"gunicorn.socket": FakeTLSSocket({"subject": ((("commonName", "evil"),),)})})
    with pytest.raises(Unauthorized, match="did not present"):
        check.check({"gunicorn.socket": FakeTLSSocket(None)})


def test_header_check_ignores_the_header_from_a_peer_that_is_not_a_proxy() -> None:
    check = ClientCertCheck(DM_CN, "X-Client-DN", ("10.0.0.0/8",), from_tls=False)
    header = {"HTTP_X_CLIENT_DN": f"CN={DM_CN}"}
    check.check({**header, "REMOTE_ADDR": "10.1.2.3"})
    with pytest.raises(Unauthorized, match="did not present"):
        check.check({**header, "REMOTE_ADDR": "192.0.2.1"})
    with pytest.raises(Unauthorized, match="not for"):
        check.check({"HTTP_X_CLIENT_DN": "CN=other.example", "REMOTE_ADDR": "10.1.2.3"})

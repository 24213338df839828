"""TLS and mutual TLS through grpc's own credentials, with a CA and certificates the test makes itself."""

from __future__ import annotations

import datetime as dt
import ipaddress
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from coordinator.config import BackboneSpec, ServerConfig
from promptbank import Client
from promptbank.errors import Unavailable
from tests.conftest import LiveServer


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write(path: Path, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> tuple[Path, Path]:
    key_path, cert_path = path.with_suffix(".key"), path.with_suffix(".pem")
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def _cert(name: str, key: ec.EllipticCurvePrivateKey, issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
          ca: bool = False, server: bool = False) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer_name, issuer_key = issuer or (subject, key)
    now = dt.datetime.now(dt.UTC)
    b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer_name).public_key(key.public_key())
         .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
         .not_valid_after(now + dt.timedelta(days=1))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if server:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                         x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                            critical=False)
    return b.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("pki")
    ca_key = _key()
    ca = _cert("promptbank test CA", ca_key, None, ca=True)
    ca_pem, _ = _write(d / "ca", ca_key, ca)
    srv_key, cli_key, rogue_key = _key(), _key(), _key()
    srv_pem, srv_key_path = _write(d / "server", srv_key, _cert("server", srv_key, (ca.subject, ca_key), server=True))
    cli_pem, cli_key_path = _write(d / "client", cli_key, _cert("client", cli_key, (ca.subject, ca_key)))
    rogue_pem, rogue_key_path = _write(d / "rogue", rogue_key, _cert("rogue", rogue_key, None))  # self-signed
    return {"ca": ca_pem, "server": srv_pem, "server_key": srv_key_path, "client": cli_pem,
            "client_key": cli_key_path, "rogue": rogue_pem, "rogue_key": rogue_key_path}


def _server(tiny_encoder: str, db: Path, pki: dict[str, Path], mutual: bool) -> LiveServer:
    return LiveServer(ServerConfig(
        port=0, db=str(db), worker_cpus=0.25, grace_seconds=0.5, backbones=(BackboneSpec("enc", tiny_encoder),),
        tls_cert=str(pki["server"]), tls_key=str(pki["server_key"]),
        tls_client_ca=str(pki["ca"]) if mutual else ""))


@pytest.fixture(scope="module")
def tls_server(ray_session: None, tiny_encoder: str, pki: dict[str, Path],
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = _server(tiny_encoder, tmp_path_factory.mktemp("tls") / "b.db", pki, mutual=False)
    yield live
    live.stop()


def _backbones(client: Client) -> list[str]:
    return [b.name for b in client.list_backbones()]


def refusal(call: Callable[[], object], capfd: pytest.CaptureFixture[str]) -> tuple[str, str]:
    """A call refused at the TLS handshake: UNAVAILABLE (the connection never came up). Returns what the client
    was told and what gRPC's TLS layer logged meanwhile (the server runs in this process, so its side too)."""
    capfd.readouterr()
    with pytest.raises(Unavailable) as err:
        call()
    return err.value.details(), capfd.readouterr().err


def test_a_tls_client_works_and_a_plaintext_one_does_not(tls_server: LiveServer, pki: dict[str, Path],
                                                         capfd: pytest.CaptureFixture[str]) -> None:
    with Client(tls_server.address, tls_ca=pki["ca"], timeout=10) as c:
        assert _backbones(c) == ["backbones/enc"]
    with Client(tls_server.address, timeout=5) as plain:  # the server hangs up on a handshake that is not TLS
        told, log = refusal(lambda: _backbones(plain), capfd)
        assert "Socket closed" in told and "WRONG_VERSION_NUMBER" in log, (told, log)
    with Client(tls_server.address, tls_ca=pki["rogue"], timeout=5) as wrong_ca:  # a server cert of another CA
        told, _ = refusal(lambda: _backbones(wrong_ca), capfd)
        assert "Tls handshake failed" in told and "CERTIFICATE_VERIFY_FAILED" in told, told
    out = subprocess.run([sys.executable, "-m", "promptbank.cli", "--server", tls_server.address, "--tls-ca",
                          str(pki["ca"]), "backbones", "list"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "backbones/enc" in out.stdout, out.stderr


def test_mutual_tls_refuses_a_client_without_a_certificate_of_its_ca(ray_session: None, tiny_encoder: str,
                                                                     pki: dict[str, Path], tmp_path: Path,
                                                                     capfd: pytest.CaptureFixture[str]) -> None:
    live = _server(tiny_encoder, tmp_path / "b.db", pki, mutual=True)
    try:
        with Client(live.address, tls_ca=pki["ca"], tls_cert=pki["client"], tls_key=pki["client_key"],
                    timeout=10) as c:
            assert _backbones(c) == ["backbones/enc"]
        # the server checks the client's certificate and hangs up; its TLS layer logs why
        with Client(live.address, tls_ca=pki["ca"], timeout=5) as no_cert:
            told, log = refusal(lambda: _backbones(no_cert), capfd)
            assert "Socket closed" in told and "PEER_DID_NOT_RETURN_A_CERTIFICATE" in log, (told, log)
        with Client(live.address, tls_ca=pki["ca"], tls_cert=pki["rogue"], tls_key=pki["rogue_key"],
                    timeout=5) as rogue:  # a certificate the client CA did not sign
            told, log = refusal(lambda: _backbones(rogue), capfd)
            assert "Socket closed" in told and "CERTIFICATE_VERIFY_FAILED" in log, (told, log)
    finally:
        live.stop()


def test_tls_settings_are_checked_at_the_edge(pki: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="both --tls-cert and --tls-key"):
        ServerConfig(tls_cert=str(pki["server"]))
    with pytest.raises(ValueError, match="--tls-key .*no such file"):
        ServerConfig(tls_cert=str(pki["server"]), tls_key=str(tmp_path / "missing.key"))
    with pytest.raises(ValueError, match="without tokens"):  # TLS alone is not enough beyond loopback
        ServerConfig(host="0.0.0.0", tls_cert=str(pki["server"]), tls_key=str(pki["server_key"]))
    ok = ServerConfig(host="0.0.0.0", auth="tokens", tls_cert=str(pki["server"]), tls_key=str(pki["server_key"]))
    assert ok.tls and not ok.insecure

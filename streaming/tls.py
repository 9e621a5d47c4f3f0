"""HTTPS/WSS for the live server.

Browsers give the microphone only to a secure context: https, or a page on localhost. A server
reachable from a phone on the same network therefore needs TLS even at home, so when none is
configured a self-signed certificate is made once (kept beside the avatar cache) and its SHA-256
fingerprint is printed, so the user can check what their browser shows before trusting it.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import socket
import ssl
from pathlib import Path

from core.errors import UserError


def load_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except FileNotFoundError as exc:
        raise UserError(f"TLS file not found: {exc.filename}") from None
    except (ssl.SSLError, ValueError) as exc:
        raise UserError(f"cannot use TLS certificate {cert} with key {key}: {exc}") from None
    return context


def fingerprint(cert: Path) -> str:
    der = ssl.PEM_cert_to_DER_cert(cert.read_text())
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def self_signed(folder: Path, host: str) -> tuple[Path, Path]:
    """A certificate for this machine's names and addresses, made once and reused."""
    cert, key = folder / "server-cert.pem", folder / "server-key.pem"
    if cert.is_file() and key.is_file():
        return cert, key
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    names: list[x509.GeneralName] = [x509.DNSName("localhost"), x509.DNSName(socket.gethostname())]
    addresses = {"127.0.0.1", "::1"} | ({host} if _is_ip(host) and host not in ("0.0.0.0", "::") else set())
    addresses |= _local_addresses()
    names += [x509.IPAddress(ipaddress.ip_address(a)) for a in sorted(addresses)]
    private = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "digital-human (self-signed)")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(private, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    key_bytes = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _write_private(key, key_bytes)
    _write_private(cert, certificate.public_bytes(serialization.Encoding.PEM))
    return cert, key


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".part")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _local_addresses() -> set[str]:
    """The addresses other devices would use to reach this one (best effort, no network traffic)."""
    found: set[str] = set()
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None):
            found.add(str(info[4][0]))
    except OSError:
        pass
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # a documentation address: no packet is sent for UDP connect
            found.add(s.getsockname()[0])
        except OSError:
            pass
    return {a.split("%")[0] for a in found if _is_ip(a.split("%")[0])}

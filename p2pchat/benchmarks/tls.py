"""TLS 1.3 for the comparison: a throw-away certificate, contexts, and which key-exchange group is used.

p2pchat uses X25519, so TLS is asked for X25519 too. Some Python builds cannot set
that group (Python 3.10's ``set_ecdh_curve`` only knows classic EC curves); then the
library's own preference stands. Either way the group is read back from a real
ServerHello, so the report says what was measured, not what was asked for.
"""

from __future__ import annotations

import contextlib
import datetime
import ssl
from dataclasses import dataclass
from pathlib import Path

# TLS NamedGroup code points (RFC 8446 §4.2.7, RFC 7919) for the groups a library may pick.
GROUP_NAMES = {
    0x0017: "secp256r1",
    0x0018: "secp384r1",
    0x0019: "secp521r1",
    0x001D: "x25519",
    0x001E: "x448",
    0x0100: "ffdhe2048",
    0x0101: "ffdhe3072",
    0x0102: "ffdhe4096",
}
_KEY_SHARE = 0x0033  # the extension carrying the chosen group


@dataclass(frozen=True)
class Tls:
    server: ssl.SSLContext
    client: ssl.SSLContext
    group: str  # the group a handshake between the two really used
    group_requested: bool  # False: X25519 could not be asked for; the library chose


def make_certificate(directory: Path) -> None:
    """A self-signed ECDSA P-256 certificate for localhost, made now, in *directory*."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    (directory / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


def contexts(directory: Path) -> tuple[ssl.SSLContext, ssl.SSLContext, bool]:
    """Server and client contexts, TLS 1.3 only, X25519 where this Python can ask for it.

    The third value says whether it could. The client verifies the certificate in *directory*.
    """
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.minimum_version = ssl.TLSVersion.TLSv1_3
    server.load_cert_chain(directory / "cert.pem", directory / "key.pem")
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.minimum_version = ssl.TLSVersion.TLSv1_3
    client.load_verify_locations(directory / "cert.pem")
    requested = True
    for context in (server, client):
        try:
            context.set_ecdh_curve("X25519")  # the key exchange p2pchat uses too
        except (ssl.SSLError, ValueError):  # e.g. Python 3.10: "unknown group"; keep the library's choice
            requested = False
    return server, client, requested


def load(directory: Path) -> Tls:
    server, client, requested = contexts(directory)
    return Tls(server, client, negotiated_group(server, client), requested)


def negotiated_group(server: ssl.SSLContext, client: ssl.SSLContext) -> str:
    """The key-exchange group of one in-memory handshake, read from the ServerHello's key_share."""
    client_in, client_out, server_in, server_out = (ssl.MemoryBIO() for _ in range(4))
    client_side = client.wrap_bio(client_in, client_out, server_hostname="localhost")
    server_side = server.wrap_bio(server_in, server_out, server_side=True)
    with contextlib.suppress(ssl.SSLWantReadError):
        client_side.do_handshake()
    server_in.write(client_out.read())
    with contextlib.suppress(ssl.SSLWantReadError):
        server_side.do_handshake()
    code = server_hello_group(server_out.read())
    if code is None:
        return "unknown"
    return GROUP_NAMES.get(code, f"group {code:#06x}")


def server_hello_group(flight: bytes) -> int | None:
    """The NamedGroup in the key_share extension of the ServerHello starting *flight*, if any."""
    try:
        view = memoryview(flight)
        if view[0] != 0x16 or view[5] != 0x02:  # a handshake record holding a ServerHello
            return None
        position = 5 + 4 + 2 + 32  # record header, handshake header, legacy_version, random
        position += 1 + view[position]  # legacy_session_id_echo
        position += 2 + 1  # cipher_suite, legacy_compression_method
        end = position + 2 + int.from_bytes(view[position : position + 2], "big")
        position += 2
        while position + 4 <= end:
            kind = int.from_bytes(view[position : position + 2], "big")
            length = int.from_bytes(view[position + 2 : position + 4], "big")
            if kind == _KEY_SHARE and length >= 2:
                return int.from_bytes(view[position + 4 : position + 6], "big")
            position += 4 + length
    except IndexError:
        return None
    return None

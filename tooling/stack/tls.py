"""The local stack's TLS: a CA of its own and the certificate of the broker's SASL_SSL listener.

Devices and partners log in with passwords: on the listener they use, the connection is
encrypted and the broker proven by a certificate. The local stack makes a CA once
(``$HUB_HOME/tls/ca.pem``, its key beside it readable by the owner only) and signs a certificate
for the broker's address (and ``localhost`` and ``kafka``, its name in compose). Clients trust
``ca.pem``: ``HUB_KAFKA_CA``, librdkafka's ``ssl.ca.location``, Java's PEM truststore
(``docs/security.md``).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
SERVER_DAYS = 825  # what browsers and most clients accept for a server certificate


@dataclass(frozen=True, slots=True)
class TlsFiles:
    ca: Path  # the CA's certificate: what clients trust
    ca_key: Path
    keystore: Path  # the broker's key, certificate and the CA's, PEM (Kafka's PEM keystore)

    @classmethod
    def under(cls, home: Path) -> TlsFiles:
        tls = home / "tls"
        return cls(tls / "ca.pem", tls / "ca.key", tls / "kafka.pem")


def ensure(files: TlsFiles, hosts: list[str]) -> bool:
    """The CA (made once) and a broker certificate naming ``hosts`` (made again when the hosts
    change); True when anything was written."""
    wrote = False
    if not (files.ca.exists() and files.ca_key.exists()):
        _write_ca(files)
        wrote = True
    if wrote or not files.keystore.exists() or _names(files.keystore) != sorted(set(hosts)):
        _write_server(files, hosts)
        wrote = True
    return wrote


def _private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write_ca(files: TlsFiles) -> None:
    now = datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Testbed hub local CA")])
    usage = x509.KeyUsage(
        digital_signature=True,
        key_cert_sign=True,
        crl_sign=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        encipher_only=False,
        decipher_only=False,
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _private(files.ca_key, _key_pem(key))
    files.ca.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _subject_names(hosts: list[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in sorted(set(hosts)):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def _names(keystore: Path) -> list[str]:
    """The hosts the broker's current certificate names."""
    try:
        cert = x509.load_pem_x509_certificates(keystore.read_bytes())[0]
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return []
    return sorted(
        [str(ip) for ip in names.get_values_for_type(x509.IPAddress)]
        + names.get_values_for_type(x509.DNSName)
    )


def _write_server(files: TlsFiles, hosts: list[str]) -> None:
    now = datetime.datetime.now(datetime.UTC)
    ca_key = serialization.load_pem_private_key(files.ca_key.read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    ca = x509.load_pem_x509_certificate(files.ca.read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "testbed hub kafka")]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=SERVER_DAYS))
        .add_extension(x509.SubjectAlternativeName(_subject_names(hosts)), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    _private(files.keystore, _key_pem(key) + cert.public_bytes(pem) + ca.public_bytes(pem))

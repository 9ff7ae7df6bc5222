"""HTTPS for an emulated AWS: a throw-away CA and a server certificate for AWS's host names, and
moto served over it. Only a tree that is told to trust the CA (its PEM) accepts the certificate;
the CA's key exists only in this process's memory and is never written anywhere."""
from __future__ import annotations

import datetime
import ipaddress
import ssl
import tempfile
import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class ThrowawayTLS:
    ca_pem: str  # what the emulated machine adds to its trusted CAs
    context: ssl.SSLContext  # the server side: certificate for the names, its key loaded


def _san(name: str):
    from cryptography import x509
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def throwaway_tls(names: list[str], label: str) -> ThrowawayTLS:
    """A CA named `label`, valid for a day, and a server certificate it signed for `names` (host
    names, wildcards or IP addresses)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    valid = (now - datetime.timedelta(hours=1), now + datetime.timedelta(days=1))

    def certificate(subject, key, issuer, issuer_key, extensions):
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(valid[0]).not_valid_after(valid[1]))
        for ext, critical in extensions:
            builder = builder.add_extension(ext, critical=critical)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{label} (throw-away)")])
    ca = certificate(ca_name, ca_key, ca_name, ca_key, [(x509.BasicConstraints(ca=True, path_length=0), True)])
    leaf = certificate(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]), key, ca_name, ca_key,
                       [(x509.SubjectAlternativeName([_san(n) for n in names]), False),
                        (x509.BasicConstraints(ca=False, path_length=None), True)])
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # load_cert_chain reads files only: a private folder that is gone when this returns
    with tempfile.TemporaryDirectory(prefix="condor-seed-tls-") as scratch:
        chain, key_file = f"{scratch}/cert.pem", f"{scratch}/key.pem"
        with open(chain, "wb") as f:
            f.write(leaf.public_bytes(serialization.Encoding.PEM))
        with open(key_file, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
        context.load_cert_chain(chain, key_file)
    return ThrowawayTLS(ca.public_bytes(serialization.Encoding.PEM).decode(), context)


def moto_app():
    """moto's server as a WSGI app (every service, dispatched by host name)."""
    from moto.server import DomainDispatcherApplication, create_backend_app
    return DomainDispatcherApplication(create_backend_app)


def serve_https(app, host: str, port: int, tls: ThrowawayTLS):
    """A WSGI app (moto's, maybe wrapped) over HTTPS on host:port in a background thread. Returns
    the server: `.shutdown()` and `.server_close()` end it."""
    from moto.server import MotoRequestHandler
    from werkzeug.serving import make_server

    server = make_server(host, port, app, threaded=True, request_handler=MotoRequestHandler, ssl_context=tls.context)
    threading.Thread(target=server.serve_forever, name=f"aws-emulator-{host}", daemon=True).start()
    return server

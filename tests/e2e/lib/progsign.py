"""A programmer of the owner-tool tests made outside mintflash (Python `cryptography` as the
independent implementation): its identity secret in prog.key (64 random bytes: X25519, then the
Ed25519 seed; made on first use), its public file prog.pub as `mintflash identity` writes one, and
its fingerprint. Run in the test's temporary folder."""
import base64
import hashlib
import os

from cryptography.hazmat.primitives import serialization as ser
from cryptography.hazmat.primitives.asymmetric import ed25519, x25519


def b64(data):
    return base64.b64encode(data).decode()


def programmer(path="prog.key"):
    """(Ed25519 private key, fingerprint) of the programmer in `path`; writes prog.pub beside."""
    raw = (ser.Encoding.Raw, ser.PublicFormat.Raw)
    if not os.path.exists(path):
        with open(path, "wb") as f:
            f.write(os.urandom(64))
    secret = open(path, "rb").read()
    xpub = x25519.X25519PrivateKey.from_private_bytes(secret[:32]).public_key().public_bytes(*raw)
    key = ed25519.Ed25519PrivateKey.from_private_bytes(secret[32:])
    epub = key.public_key().public_bytes(*raw)
    digits = hashlib.sha256(b"mintflash programmer\0" + xpub + epub).digest()[:10].hex().upper()
    fingerprint = "-".join(digits[i:i + 4] for i in range(0, 20, 4))
    with open(os.path.join(os.path.dirname(path) or ".", "prog.pub"), "w") as f:
        f.write("mintflash-programmer 1\nfingerprint: %s\nx25519: %s\ned25519: %s\n"
                % (fingerprint, b64(xpub), b64(epub)))
    return key, fingerprint

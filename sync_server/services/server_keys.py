"""The server secret kept outside the database, and the keys derived from it.

The audit-head HMAC key and the key that encrypts signing keys and TOTP secrets
come from one secret: `EHR_SERVER_SECRET` when set (production: from the secret
store), else a random one created once in the data directory (mode 0600). Someone
holding only a database dump or a database login can therefore neither forge the
audit head nor read TOTP secrets or signing keys.
"""

from __future__ import annotations

import os
import secrets
from functools import cache
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

SECRET_FILE = "server-secret"  # noqa: S105 - a file name, not a secret


def _load_or_create(path: Path) -> bytes:
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(32))
        fh.flush()
        os.fsync(fh.fileno())
    try:
        os.link(tmp, path)  # atomic; loses cleanly to a concurrent creator
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return bytes.fromhex(path.read_text().strip())


@cache
def _secret(explicit: str | None, data_dir: str) -> bytes:
    if explicit:
        if len(explicit) < 32:
            raise ValueError("EHR_SERVER_SECRET must have at least 32 characters")
        return explicit.encode()
    return _load_or_create(Path(data_dir) / SECRET_FILE)


class ServerKeys:
    """Purpose-bound keys derived (HKDF-SHA256) from the server secret.

    The secret is loaded (or created) on first use, so a process that never
    signs, encrypts or seals anything never touches the data directory.
    """

    def __init__(self, secret: bytes | None = None, *, explicit: str | None = None,
                 data_dir: Path | None = None) -> None:  # fmt: skip
        self._secret = secret
        self._source = (explicit, data_dir)
        self._derived: dict[str, bytes] = {}

    @classmethod
    def load(cls, explicit_secret: str | None, data_dir: Path) -> ServerKeys:
        return cls(explicit=explicit_secret, data_dir=data_dir)

    def derive(self, purpose: str) -> bytes:
        if purpose not in self._derived:
            if self._secret is None:
                explicit, data_dir = self._source
                self._secret = _secret(explicit, str(data_dir))
            self._derived[purpose] = HKDF(
                algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode()
            ).derive(self._secret)
        return self._derived[purpose]

    def encrypt(self, purpose: str, plaintext: bytes) -> bytes:
        nonce = secrets.token_bytes(12)
        return nonce + AESGCM(self.derive(purpose)).encrypt(nonce, plaintext, purpose.encode())

    def decrypt(self, purpose: str, blob: bytes) -> bytes:
        return AESGCM(self.derive(purpose)).decrypt(blob[:12], blob[12:], purpose.encode())

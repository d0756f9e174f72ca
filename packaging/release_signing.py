"""Signing and verification of release files with the organisation's Ed25519 key.

Every release file `F` gets two companions:

- `F.sha256`: one line `<hex digest>  <file name>`, the format `sha256sum -c` reads;
- `F.sig`: the raw 64-byte Ed25519 signature of the bytes of `F.sha256`.

Signing the small sum file (not the whole build) keeps signing and checking
streaming, and binds the file name, so a signed file cannot be passed off under
another name. IT can check a file without Python too:

    sha256sum -c F.sha256
    openssl pkeyutl -verify -pubin -inkey org-signing.pub -rawin -in F.sha256 -sigfile F.sig

This module needs only the standard library and `cryptography`, so the verifier
runs on an IT workstation that has neither the product nor its virtualenv.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

SUM_SUFFIX = ".sha256"
SIG_SUFFIX = ".sig"
#: Environment variables through which IT hands the private key to a build.
KEY_FILE_ENV = "EHR_SIGNING_KEY_FILE"
KEY_PASSPHRASE_ENV = "EHR_SIGNING_KEY_PASSPHRASE"  # noqa: S105 - a variable name, not a secret


class VerificationFailed(Exception):
    """The file must not be installed; the message says why, for a person."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(block)
    return digest.hexdigest()


def key_fingerprint(public_key: Ed25519PublicKey) -> str:
    """Short SHA-256 fingerprint of the raw public key, for IT to compare by eye."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "SHA256:" + hashlib.sha256(raw).hexdigest()[:32]


def load_private_key(path: Path, passphrase: bytes | None = None) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=passphrase)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path.name} is not an Ed25519 private key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (ValueError, OSError) as exc:
        raise VerificationFailed(f"cannot read the public key {path}: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise VerificationFailed(f"{path} is not an Ed25519 public key")
    return key


def generate_keypair(private_out: Path, public_out: Path, passphrase: bytes | None) -> None:
    """Write a new key pair; the private key file is created readable by its owner only."""
    key = Ed25519PrivateKey.generate()
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    fd = os.open(private_out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    public_out.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def sign_file(path: Path, key: Ed25519PrivateKey) -> tuple[Path, Path]:
    """Write `path.sha256` and `path.sig`; return their paths."""
    sum_path = path.with_name(path.name + SUM_SUFFIX)
    sig_path = path.with_name(path.name + SIG_SUFFIX)
    statement = f"{sha256_of(path)}  {path.name}\n".encode()
    sum_path.write_bytes(statement)
    sig_path.write_bytes(key.sign(statement))
    return sum_path, sig_path


def verify_file(path: Path, public_key: Ed25519PublicKey) -> str:
    """Check `path` against its signed sum; return the digest or raise `VerificationFailed`."""
    sum_path = path.with_name(path.name + SUM_SUFFIX)
    sig_path = path.with_name(path.name + SIG_SUFFIX)
    if not path.is_file():
        raise VerificationFailed(f"{path.name}: file not found")
    if not sig_path.is_file() or not sum_path.is_file():
        raise VerificationFailed(
            f"{path.name} is UNSIGNED: {sig_path.name} or {sum_path.name} is missing. "
            "Do not install it; ask for the signed release."
        )
    statement = sum_path.read_bytes()
    try:
        public_key.verify(sig_path.read_bytes(), statement)
    except InvalidSignature:
        raise VerificationFailed(
            f"{path.name}: the signature is NOT valid for this organisation's key "
            f"({key_fingerprint(public_key)}). The checksum file was altered or signed by "
            "someone else. Do not install it."
        ) from None
    try:
        expected, name = statement.decode("ascii").rstrip("\n").split("  ", 1)
    except (UnicodeDecodeError, ValueError):
        raise VerificationFailed(f"{sum_path.name} is malformed") from None
    if name != path.name:
        raise VerificationFailed(
            f"{path.name}: the signed checksum is for a different file ({name}). Do not install it."
        )
    actual = sha256_of(path)
    if actual != expected:
        raise VerificationFailed(
            f"{path.name} was TAMPERED WITH or damaged: its SHA-256 does not match the "
            "signed checksum. Do not install it; download it again."
        )
    return actual


def verify_main(argv: list[str] | None = None) -> int:
    """`packaging/verify --public-key KEY FILE...`: exit 0 only when every file checks out."""
    parser = argparse.ArgumentParser(
        prog="verify", description="Check release files against the organisation's signing key."
    )
    parser.add_argument("--public-key", type=Path, required=True, help="org-signing.pub (PEM)")
    parser.add_argument("files", type=Path, nargs="+")
    args = parser.parse_args(argv)
    try:
        public_key = load_public_key(args.public_key)
    except VerificationFailed as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 2
    refused = 0
    for path in args.files:
        try:
            digest = verify_file(path, public_key)
        except VerificationFailed as exc:
            refused += 1
            print(f"REFUSED: {exc}", file=sys.stderr)
        else:
            print(f"OK: {path.name} sha256={digest} signed by {key_fingerprint(public_key)}")
    return 1 if refused else 0


def _sign_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="release_signing.py")
    commands = parser.add_subparsers(dest="command", required=True)
    keygen = commands.add_parser("keygen", help="make the organisation's key pair (once, by IT)")
    keygen.add_argument("--private-out", type=Path, required=True)
    keygen.add_argument("--public-out", type=Path, required=True)
    sign = commands.add_parser("sign", help=f"sign files with the key named by ${KEY_FILE_ENV}")
    sign.add_argument("files", type=Path, nargs="+")
    args = parser.parse_args(argv)
    passphrase = os.environ.get(KEY_PASSPHRASE_ENV, "").encode() or None
    if args.command == "keygen":
        generate_keypair(args.private_out, args.public_out, passphrase)
        return 0
    key = load_private_key(Path(os.environ[KEY_FILE_ENV]), passphrase)
    for path in args.files:
        sign_file(path, key)
    return 0


if __name__ == "__main__":
    sys.exit(_sign_main(sys.argv[1:]))

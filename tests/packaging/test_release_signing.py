"""The release verifier IT runs: signed files pass, tampered or unsigned ones are refused."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from release_signing import generate_keypair, load_private_key, sign_file


@pytest.fixture()
def keypair(tmp_path: Path) -> tuple[Path, Path]:
    private, public = tmp_path / "org-signing.key", tmp_path / "org-signing.pub"
    generate_keypair(private, public, passphrase=b"it-passphrase")
    return private, public


@pytest.fixture()
def signed_release(tmp_path: Path, keypair: tuple[Path, Path], shared_data: Path) -> Path:
    """A release-like file (real shared test data bytes), signed with the test key."""
    source = next(p for p in sorted(shared_data.rglob("*.json")) if p.stat().st_size > 10_000)
    release = tmp_path / "dist" / "ehr-desktop-0.1.0-linux-x86_64.tar.gz"
    release.parent.mkdir()
    shutil.copyfile(source, release)
    sign_file(release, load_private_key(keypair[0], b"it-passphrase"))
    return release


def run_verify(packaging_dir: Path, public: Path, *files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            str(packaging_dir / "verify"),
            "--public-key",
            str(public),
            *map(str, files),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_private_key_file_is_owner_only_and_encrypted(keypair: tuple[Path, Path]) -> None:
    private, _ = keypair
    assert private.stat().st_mode & 0o077 == 0
    assert b"ENCRYPTED" in private.read_bytes()
    with pytest.raises(TypeError):
        load_private_key(private, None)


def test_signed_file_is_accepted(packaging_dir, keypair, signed_release) -> None:
    result = run_verify(packaging_dir, keypair[1], signed_release)
    assert result.returncode == 0, result.stderr
    assert f"OK: {signed_release.name}" in result.stdout
    # The sum file is sha256sum-compatible.
    check = subprocess.run(
        ["sha256sum", "-c", signed_release.name + ".sha256"],
        cwd=signed_release.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_tampered_file_is_refused(packaging_dir, keypair, signed_release) -> None:
    data = bytearray(signed_release.read_bytes())
    data[len(data) // 2] ^= 0x01
    signed_release.write_bytes(bytes(data))
    result = run_verify(packaging_dir, keypair[1], signed_release)
    assert result.returncode == 1
    assert "TAMPERED" in result.stderr


def test_unsigned_file_is_refused(packaging_dir, keypair, signed_release) -> None:
    signed_release.with_name(signed_release.name + ".sig").unlink()
    result = run_verify(packaging_dir, keypair[1], signed_release)
    assert result.returncode == 1
    assert "UNSIGNED" in result.stderr


def test_rewritten_checksum_is_refused(packaging_dir, keypair, signed_release) -> None:
    """An attacker who replaces the file and recomputes its sum still lacks the key."""
    signed_release.write_bytes(b"malicious build")
    sum_path = signed_release.with_name(signed_release.name + ".sha256")
    digest = subprocess.run(
        ["sha256sum", signed_release.name],
        cwd=signed_release.parent,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    sum_path.write_text(digest)
    result = run_verify(packaging_dir, keypair[1], signed_release)
    assert result.returncode == 1
    assert "signature is NOT valid" in result.stderr


def test_signature_by_another_key_is_refused(packaging_dir, keypair, signed_release) -> None:
    sign_file(signed_release, Ed25519PrivateKey.generate())
    result = run_verify(packaging_dir, keypair[1], signed_release)
    assert result.returncode == 1
    assert "signature is NOT valid" in result.stderr


def test_signed_file_renamed_is_refused(packaging_dir, keypair, signed_release) -> None:
    renamed = signed_release.with_name("ehr-desktop-9.9.9-linux-x86_64.tar.gz")
    for suffix in ("", ".sha256", ".sig"):
        signed_release.with_name(signed_release.name + suffix).rename(
            renamed.with_name(renamed.name + suffix)
        )
    result = run_verify(packaging_dir, keypair[1], renamed)
    assert result.returncode == 1
    assert "different file" in result.stderr


def test_openssl_can_check_the_signature_too(keypair, signed_release) -> None:
    """IT without Python: the documented openssl command accepts the signature."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed on this machine")
    result = subprocess.run(
        [
            openssl,
            "pkeyutl",
            "-verify",
            "-pubin",
            "-inkey",
            str(keypair[1]),
            "-rawin",
            "-in",
            signed_release.name + ".sha256",
            "-sigfile",
            signed_release.name + ".sig",
        ],
        cwd=signed_release.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr

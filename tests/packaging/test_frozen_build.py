"""CI's release check: build the real PyInstaller package, verify it, run its self-test.

Slow (PyInstaller of PySide6 takes minutes). Prints the build time and sizes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from live_http import make_tls_material, serve_in_thread
from release_signing import generate_keypair
from tuf_publish import init_repository

from sync_server.api import health
from sync_server.db.engine import make_engine

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


@pytest.fixture(scope="module")
def release(packaging_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("frozen")
    generate_keypair(base / "org.key", base / "org.pub", passphrase=b"ci-only")
    tuf_root = init_repository(base / "tuf-repo", base / "tuf-keys")
    env = {
        **os.environ,
        "EHR_SIGNING_KEY_FILE": str(base / "org.key"),
        "EHR_SIGNING_KEY_PASSPHRASE": "ci-only",
    }
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, str(packaging_dir / "build_desktop.py"),
         "--out", str(base / "dist"), "--work", str(base / "build"),
         "--tuf-root", str(base / "tuf-repo" / "metadata" / "root.json")],
        capture_output=True, text=True, env=env, timeout=1800, check=False,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    print(f"\n{result.stdout.strip()}\nrelease build total: {elapsed:.0f} s")
    return {
        "tuf_root": tuf_root,
        "base": base,
        "pub": base / "org.pub",
        "dist": base / "dist",
        "app": base / "build" / "dist" / "ehr-desktop",
        "modules": base / "build" / "work" / "ehr-desktop" / "bundled-modules.txt",
    }


def test_artifacts_are_signed_and_verify(packaging_dir: Path, release) -> None:
    artifacts = sorted(p for p in release["dist"].iterdir() if p.suffix not in (".sha256", ".sig"))
    assert len(artifacts) == 3
    result = subprocess.run(
        [sys.executable, str(packaging_dir / "verify"), "--public-key", str(release["pub"]),
         *map(str, artifacts)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for artifact in artifacts:
        print(f"{artifact.name}: {artifact.stat().st_size / 1e6:.1f} MB")


def test_frozen_binary_passes_its_self_test_against_a_tls_server(
    release, create_database, tmp_path: Path
) -> None:
    tls = make_tls_material(tmp_path / "tls")
    app = FastAPI()
    app.include_router(health.router)
    app.state.engine = make_engine(create_database())
    env = {k: v for k, v in os.environ.items() if k != "QT_QPA_PLATFORM"}
    env |= {
        "EHR_DESKTOP_CONFIG": str(tmp_path / "no-system-config.toml"),
        "EHR_DESKTOP_USER_CONFIG": str(tmp_path / "no-user-config.toml"),
        "EHR_DESKTOP_CA_BUNDLE": str(tls.ca_bundle),
        "HOME": str(tmp_path / "home"),
    }
    with serve_in_thread(app, tls) as url:
        result = subprocess.run(
            [str(release["app"] / "ehr-desktop"), "--self-test", "--server", url],
            capture_output=True, text=True, env=env, timeout=300, check=False, cwd=tmp_path,
        )  # fmt: skip
    app.state.engine.dispose()
    print(result.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    for check in ("qt", "encrypted-db", "resources", "server"):
        assert f"PASS {check}:" in result.stdout


def test_frozen_self_test_fails_when_the_server_is_not_trusted(release, tmp_path: Path) -> None:
    tls = make_tls_material(tmp_path / "tls")
    other_ca = make_tls_material(tmp_path / "other", ca_name="Unrelated CA").ca_bundle
    app = FastAPI()

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    env = {**os.environ, "EHR_DESKTOP_CONFIG": str(tmp_path / "none.toml"),
           "EHR_DESKTOP_CA_BUNDLE": str(other_ca), "HOME": str(tmp_path)}  # fmt: skip
    with serve_in_thread(app, tls) as url:
        result = subprocess.run(
            [str(release["app"] / "ehr-desktop"), "--self-test", "--server", url],
            capture_output=True, text=True, env=env, timeout=300, check=False,
        )  # fmt: skip
    assert result.returncode == 1
    assert "FAIL server:" in result.stdout and "PASS encrypted-db:" in result.stdout


def test_build_holds_what_it_needs_and_nothing_of_the_server(release) -> None:
    modules = set(release["modules"].read_text().split())
    assert {"desktop", "shared_models", "PySide6", "sqlcipher3", "tuf", "keyring"} <= modules
    assert not modules & {"sync_server", "fastapi", "uvicorn", "sqlalchemy", "psycopg", "pgserver"}
    qt_libs = {p.name for p in (release["app"] / "_internal").rglob("libQt6*.so*")}
    assert not {name for name in qt_libs if "Qml" in name or "Quick" in name or "WebEngine" in name}
    resources = release["app"] / "_internal" / "resources"
    assert (resources / "style.qss").is_file()
    assert (resources / "update-root.json").read_bytes() == release["tuf_root"]
    size_mb = (
        sum(
            p.stat().st_size
            for p in release["app"].rglob("*")
            if p.is_file() and not p.is_symlink()
        )
        / 1e6
    )
    print(f"one-folder build: {size_mb:.0f} MB on disk")


def test_sbom_lists_the_bundled_distributions(release) -> None:
    (sbom_path,) = release["dist"].glob("*.cdx.json")
    sbom = json.loads(sbom_path.read_text())
    assert sbom["bomFormat"] == "CycloneDX"
    names = {c["name"].lower().replace("_", "-") for c in sbom["components"]}
    assert {"pyside6-essentials", "sqlcipher3", "cryptography", "tuf"} <= names
    assert "fastapi" not in names and "pgserver" not in names
    assert sbom["metadata"]["component"]["name"] == "clinic-workstation"


def test_archive_and_deb_carry_the_same_build(release, tmp_path: Path) -> None:
    (archive,) = release["dist"].glob("*.tar.gz")
    with tarfile.open(archive) as tar:
        in_archive = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    (deb,) = release["dist"].glob("*.deb")
    subprocess.run(["dpkg-deb", "-x", str(deb), str(tmp_path)], check=True)
    in_deb = {
        str(p.relative_to(tmp_path / "opt" / "ehr-desktop"))
        for p in (tmp_path / "opt" / "ehr-desktop").rglob("*")
    }
    assert in_archive == in_deb

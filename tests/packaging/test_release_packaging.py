"""Packaging steps of `build_desktop.py` on a small stand-in build (fast).

The real PyInstaller build, its SBOM, signatures and self-test are in
test_frozen_build.py (marked slow).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from build_desktop import bundled_requirements, make_archive, make_deb


@pytest.fixture(scope="module")
def stand_in_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    build = tmp_path_factory.mktemp("build") / "ehr-desktop"
    (build / "_internal" / "resources").mkdir(parents=True)
    (build / "ehr-desktop").write_text("#!/bin/sh\necho stand-in\n")
    (build / "ehr-desktop").chmod(0o755)
    (build / "_internal" / "resources" / "style.qss").write_text("QWidget {}\n")
    return build


def test_build_refuses_to_run_without_the_signing_key(packaging_dir: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "EHR_SIGNING_KEY_FILE"}
    result = subprocess.run(
        [sys.executable, str(packaging_dir / "build_desktop.py"), "--out", str(tmp_path / "out"),
         "--skip-freeze", str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "EHR_SIGNING_KEY_FILE" in result.stderr
    assert not (tmp_path / "out").exists()


def test_deb_installs_to_opt_with_desktop_entry_and_config(
    stand_in_build: Path, tmp_path: Path
) -> None:
    deb = make_deb(stand_in_build, tmp_path, "0.1.0", tmp_path / "root")
    assert deb.name == "ehr-desktop_0.1.0_amd64.deb"
    listing = subprocess.run(
        ["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True
    ).stdout
    for path in (
        "./opt/ehr-desktop/ehr-desktop",
        "./opt/ehr-desktop/_internal/resources/style.qss",
        "./etc/ehr-desktop/config.toml",
        "./usr/share/applications/ehr-desktop.desktop",
        "./usr/bin/ehr-desktop -> /opt/ehr-desktop/ehr-desktop",
    ):
        assert path in listing, path
    assert "root/root" in listing
    control = subprocess.run(
        ["dpkg-deb", "-f", str(deb)], capture_output=True, text=True, check=True
    ).stdout
    assert "Package: ehr-desktop" in control and "Version: 0.1.0" in control
    extracted = tmp_path / "ctrl"
    subprocess.run(["dpkg-deb", "-e", str(deb), str(extracted)], check=True)
    assert (extracted / "conffiles").read_text() == "/etc/ehr-desktop/config.toml\n"
    payload = tmp_path / "payload"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(payload)], check=True)
    config = (payload / "etc/ehr-desktop/config.toml").read_text()
    assert 'server_url = "https://' in config and "[policy]" in config
    entry = (payload / "usr/share/applications/ehr-desktop.desktop").read_text()
    assert "Exec=/opt/ehr-desktop/ehr-desktop" in entry


def test_archive_holds_the_build_under_a_versioned_folder(
    stand_in_build: Path, tmp_path: Path
) -> None:
    archive = make_archive(stand_in_build, tmp_path, "0.1.0")
    assert archive.name == "ehr-desktop-0.1.0-linux-x86_64.tar.gz"
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        binary = tar.getmember("ehr-desktop-0.1.0/ehr-desktop")
    assert "ehr-desktop-0.1.0/_internal/resources/style.qss" in names
    assert binary.mode & 0o111 and binary.uid == 0


def test_sbom_requirements_name_the_distributions_of_bundled_modules(tmp_path: Path) -> None:
    modules = tmp_path / "bundled-modules.txt"
    modules.write_text("PySide6\nshiboken6\nsqlcipher3\ndesktop\nshared_models\nos\n")
    requirements = bundled_requirements(modules)
    names = {line.split("==")[0] for line in requirements}
    assert names == {"PySide6_Essentials", "shiboken6", "sqlcipher3"}
    assert all(line.split("==")[1] for line in requirements)

"""Desktop updates over TUF, served by the server's /updates routes over pinned TLS.

A newer signed build is downloaded and verified; tampered, expired, rolled-back,
wrongly-signed and older updates are refused with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from live_http import TlsMaterial, make_tls_material, serve_in_thread
from securesystemslib.signer import CryptoSigner
from tuf_publish import init_repository, publish_build, refresh_timestamp

import desktop
from desktop.config import DesktopConfig
from desktop.updates import TRUSTED_ROOT_RESOURCE, UpdateChecker, UpdateRefused
from shared_models.errors import NetworkUnavailable
from sync_server.api.updates import updates_router


@dataclass
class UpdateSite:
    repo: Path
    keys: Path
    root: bytes
    build: Path
    config: DesktopConfig
    state: Path

    def checker(self, current_version: str) -> UpdateChecker:
        return UpdateChecker(self.config, self.state, self.root, current_version)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsMaterial:
    return make_tls_material(tmp_path_factory.mktemp("tls"))


@pytest.fixture()
def site(tmp_path: Path, tls: TlsMaterial, shared_data: Path) -> Iterator[UpdateSite]:
    repo, keys = tmp_path / "repo", tmp_path / "keys"
    root = init_repository(repo, keys)
    build = tmp_path / "ehr-desktop-0.2.0-linux-x86_64.tar.gz"
    source = max(shared_data.rglob("*.json"), key=lambda p: p.stat().st_size)
    shutil.copyfile(source, build)
    publish_build(repo, keys, build, "0.2.0")
    app = FastAPI()
    app.include_router(updates_router(repo))
    with serve_in_thread(app, tls) as url:
        config = DesktopConfig(server_url=url, ca_bundle=tls.ca_bundle)
        yield UpdateSite(repo, keys, root, build, config, tmp_path / "client")


def test_newer_build_is_downloaded_and_verified(site: UpdateSite) -> None:
    result = site.checker("0.1.0").check_and_download()
    assert result is not None
    update, path = result
    assert update.version == "0.2.0"
    assert path.read_bytes() == site.build.read_bytes()
    assert update.length == site.build.stat().st_size


def test_up_to_date_workstation_gets_nothing(site: UpdateSite) -> None:
    assert site.checker("0.2.0").check_and_download() is None


def test_older_build_is_refused(site: UpdateSite) -> None:
    with pytest.raises(UpdateRefused, match="downgrade refused"):
        site.checker("0.3.0").check_and_download()


def test_tampered_build_is_refused(site: UpdateSite) -> None:
    (stored,) = (site.repo / "targets" / "ehr-desktop" / "0.2.0").iterdir()
    data = bytearray(stored.read_bytes())
    data[100] ^= 0xFF
    stored.write_bytes(bytes(data))
    with pytest.raises(UpdateRefused, match="tampered") as info:
        site.checker("0.1.0").check_and_download()
    assert "security checks" in info.value.user_message
    assert not any((site.state / "downloads").glob("*0.2.0*"))


def test_expired_metadata_is_refused(site: UpdateSite) -> None:
    """A freeze attack: the mirror keeps serving a timestamp that has run out."""
    refresh_timestamp(site.repo, site.keys, expires=datetime.now(UTC) - timedelta(hours=1))
    with pytest.raises(UpdateRefused, match="expired"):
        site.checker("0.1.0").check_and_download()


def test_rolled_back_metadata_is_refused(site: UpdateSite) -> None:
    old_timestamp = (site.repo / "metadata" / "timestamp.json").read_bytes()
    refresh_timestamp(site.repo, site.keys)
    assert site.checker("0.1.0").check_and_download() is not None
    (site.repo / "metadata" / "timestamp.json").write_bytes(old_timestamp)
    with pytest.raises(UpdateRefused, match="rollback"):
        site.checker("0.1.0").check_and_download()


def test_targets_signed_with_an_unknown_key_are_refused(site: UpdateSite) -> None:
    (site.keys / "targets.pem").write_bytes(CryptoSigner.generate_ed25519().private_bytes)
    publish_build(site.repo, site.keys, site.build, "0.2.1")
    with pytest.raises(UpdateRefused, match="not signed by the trusted keys"):
        site.checker("0.1.0").check_and_download()


def test_server_with_a_certificate_outside_the_pinned_ca_is_refused(
    site: UpdateSite, tmp_path: Path
) -> None:
    other_ca = make_tls_material(tmp_path / "other", ca_name="Some Public CA").ca_bundle
    config = DesktopConfig(server_url=site.config.server_url, ca_bundle=other_ca)
    with pytest.raises(NetworkUnavailable):
        UpdateChecker(config, site.state, site.root, "0.1.0").check_and_download()


def test_update_routes_do_not_serve_files_outside_the_repository(site: UpdateSite) -> None:
    import httpx

    with httpx.Client(verify=site.config.ssl_context()) as client:
        base = site.config.updates_base_url
        assert client.get(f"{base}/metadata/root.json").status_code == 200
        assert client.get(f"{base}/metadata/..%2F..%2Fkeys%2Froot.pem").status_code == 404
        assert client.get(f"{base}/targets/..%2F..%2Fkeys%2Ftargets.pem").status_code == 404
        assert client.get(f"{base}/metadata/keys.json").status_code == 404


def test_running_version_is_the_project_version() -> None:
    """Updates compare against `desktop.__version__`: it must be what the build is called."""
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    assert desktop.__version__ == tomllib.loads(pyproject.read_text())["project"]["version"]


def _cli_env(site: UpdateSite, tmp_path: Path, resources: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        "EHR_RESOURCES_DIR": str(resources),
        "EHR_DESKTOP_CONFIG": str(tmp_path / "no-system-config.toml"),
        "EHR_DESKTOP_USER_CONFIG": str(tmp_path / "no-user-config.toml"),
        "EHR_DESKTOP_CA_BUNDLE": str(site.config.ca_bundle),
        "XDG_DATA_HOME": str(tmp_path / "data"),
    }


def test_check_update_command_downloads_a_verified_build(site: UpdateSite, tmp_path: Path) -> None:
    resources = tmp_path / "resources"
    resources.mkdir()
    (resources / TRUSTED_ROOT_RESOURCE).write_bytes(site.root)
    command = [sys.executable, "-m", "desktop.cli", "check-update"]
    env = _cli_env(site, tmp_path, resources)
    found = subprocess.run(
        [*command, "--server", str(site.config.server_url)],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert found.returncode == 0, found.stderr
    assert "update 0.2.0 downloaded and verified" in found.stdout
    saved = Path(found.stdout.strip().rsplit(": ", 1)[1])
    assert saved.read_bytes() == site.build.read_bytes()
    assert saved.is_relative_to(tmp_path / "data")

    (resources / TRUSTED_ROOT_RESOURCE).unlink()
    refused = subprocess.run(
        [*command, "--server", str(site.config.server_url)],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert refused.returncode == 3
    assert "cannot check for updates" in refused.stderr and "Traceback" not in refused.stderr


@pytest.mark.gui
def test_help_menu_check_reports_the_verified_update_and_refusals(
    qtbot: Any, site: UpdateSite
) -> None:
    from PySide6.QtWidgets import QMessageBox, QWidget

    from desktop.ui.context import UiContext
    from desktop.ui.update_check import UpdateCheck

    window = QWidget()
    qtbot.addWidget(window)
    ctx = UiContext.create(None, window)
    ctx.runner.open_workstation(lambda: None, lambda _future: None)  # the check needs no profile
    try:
        versions = iter(["0.1.0", "0.2.0", "0.3.0"])
        check = UpdateCheck(window, ctx, lambda: site.checker(next(versions)))
        answers = []
        for _ in range(3):
            check.run()
            qtbot.waitUntil(lambda: check.box is not None and check.box.isVisible(), timeout=30000)
            assert check.box is not None
            answers.append((check.box.icon(), check.box.text()))
            check.box.close()
            check.box = None
    finally:
        ctx.shutdown()
    assert answers[0][0] == QMessageBox.Icon.Information and "Version 0.2.0" in answers[0][1]
    assert "security checks" in answers[0][1] and "IT support" in answers[0][1]
    assert "latest version" in answers[1][1]
    assert answers[2][0] == QMessageBox.Icon.Warning
    assert "failed its security checks" in answers[2][1]

"""Checking for, downloading and verifying new workstation builds with TUF.

The server publishes The Update Framework metadata under `/updates/metadata/`
and the builds under `/updates/targets/` (see `packaging/tuf_publish.py`).
Every check refreshes the signed metadata (root, timestamp, snapshot, targets),
so an update is only offered when it is signed by the organisation's keys,
the metadata has not expired (freeze attack), no version number went backwards
(rollback attack), the file's length and hashes match (tampering), and the
build is newer than the one running (downgrade). Anything else is refused with
`UpdateRefused`, whose message says which check failed; nothing is installed.

The channel file `ehr-desktop/channels/<channel>.json` (itself a signed
target) names the current build: `{"version": "0.2.0", "target": "<path>"}`.
No Qt here: the GUI runs `UpdateChecker` on a worker thread.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import platformdirs
from tuf.api import exceptions as tuf_errors
from tuf.ngclient.config import UpdaterConfig
from tuf.ngclient.fetcher import FetcherInterface
from tuf.ngclient.updater import Updater

from desktop import __version__
from desktop.config import DesktopConfig, resources_dir
from shared_models.errors import ClinicError, NetworkUnavailable

log = logging.getLogger(__name__)

_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")

#: The update repository's root metadata, bundled into builds by
#: `packaging/build_desktop.py --tuf-root`: the keys this workstation trusts.
TRUSTED_ROOT_RESOURCE = "update-root.json"


class UpdateRefused(ClinicError):
    """The update failed a security check: it is not offered, and IT should look."""

    user_message = (
        "An update was found but failed its security checks, so it was not installed. "
        "Please tell IT support."
    )
    help_topic = "updates"


@dataclass(frozen=True)
class AvailableUpdate:
    version: str
    target_path: str
    length: int
    sha256: str


def parse_version(text: str) -> tuple[int, int, int]:
    match = _VERSION.match(text)
    if match is None:
        raise UpdateRefused(f"malformed build version {text!r}")
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


class HttpxFetcher(FetcherInterface):
    """TUF downloads through httpx, with the workstation's pinned CA and proxy."""

    def __init__(self, config: DesktopConfig, timeout: float = 30.0) -> None:
        self._client = httpx.Client(
            verify=config.ssl_context(), proxy=config.proxy, timeout=timeout
        )

    def close(self) -> None:
        self._client.close()

    def _fetch(self, url: str) -> Iterator[bytes]:
        request = self._client.build_request("GET", url)
        try:
            response = self._client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise tuf_errors.SlowRetrievalError from exc
        if response.status_code >= 400:
            response.close()
            raise tuf_errors.DownloadHTTPError(f"HTTP {response.status_code}", response.status_code)
        return self._chunks(response)

    @staticmethod
    def _chunks(response: httpx.Response) -> Iterator[bytes]:
        try:
            yield from response.iter_bytes(64 * 1024)
        except httpx.TimeoutException as exc:
            raise tuf_errors.SlowRetrievalError from exc
        finally:
            response.close()


class UpdateChecker:
    """One workstation's view of the update repository."""

    def __init__(
        self,
        config: DesktopConfig,
        state_dir: Path,
        trusted_root: bytes,
        current_version: str,
        channel: str = "stable",
    ) -> None:
        base = config.updates_base_url
        if base is None:
            raise UpdateRefused(
                "no server or update URL is configured",
                user_message="Updates are not configured on this workstation.",
            )
        self._config = config
        self._base = base
        self._metadata_dir = state_dir / "metadata"
        self._download_dir = state_dir / "downloads"
        self._trusted_root = trusted_root
        self._current = parse_version(current_version)
        self._channel = channel

    def _updater(self, fetcher: HttpxFetcher) -> Updater:
        self._metadata_dir.mkdir(parents=True, exist_ok=True)
        self._download_dir.mkdir(parents=True, exist_ok=True)
        # The locally stored root is the newest one this workstation trusted: start
        # from it so a rotated root is never rolled back to the bundled one.
        local_root = self._metadata_dir / "root.json"
        return Updater(
            metadata_dir=str(self._metadata_dir),
            metadata_base_url=f"{self._base}/metadata/",
            target_dir=str(self._download_dir),
            target_base_url=f"{self._base}/targets/",
            fetcher=fetcher,
            config=UpdaterConfig(app_user_agent="ehr-desktop"),
            bootstrap=None if local_root.is_file() else self._trusted_root,
        )

    def check_and_download(self) -> tuple[AvailableUpdate, Path] | None:
        """Return the newer verified build and where it was saved, or None when up to date.

        Raises `UpdateRefused` for any failed security check and
        `NetworkUnavailable` when the repository cannot be reached.
        """
        fetcher = HttpxFetcher(self._config)
        try:
            updater = self._updater(fetcher)
            updater.refresh()
            update = self._offered_update(updater)
            if update is None:
                return None
            info = updater.get_targetinfo(update.target_path)
            if info is None:
                raise UpdateRefused(f"the channel names an unsigned file {update.target_path}")
            cached = updater.find_cached_target(info)
            path = cached or updater.download_target(info)
            log.info("update %s downloaded and verified", update.version)
            return update, Path(path)
        except tuf_errors.RepositoryError as exc:
            reason = _describe(exc)
            log.warning("update refused: %s", reason)
            raise UpdateRefused(reason) from exc
        except (tuf_errors.DownloadError, httpx.TransportError) as exc:
            log.warning("update repository unreachable: %s", type(exc).__name__)
            raise NetworkUnavailable(f"update repository unreachable: {exc}") from exc
        finally:
            fetcher.close()

    def _offered_update(self, updater: Updater) -> AvailableUpdate | None:
        channel_path = f"ehr-desktop/channels/{self._channel}.json"
        channel_info = updater.get_targetinfo(channel_path)
        if channel_info is None:
            return None
        channel_file = Path(updater.download_target(channel_info))
        try:
            channel = json.loads(channel_file.read_bytes())
            version, target_path = str(channel["version"]), str(channel["target"])
        except (ValueError, KeyError, TypeError) as exc:
            raise UpdateRefused("the signed channel file is malformed") from exc
        offered = parse_version(version)
        if offered < self._current:
            raise UpdateRefused(
                f"the repository offers build {version}, older than the running "
                f"{'.'.join(map(str, self._current))}: downgrade refused"
            )
        if offered == self._current:
            return None
        info = updater.get_targetinfo(target_path)
        if info is None:
            raise UpdateRefused(f"build {version} is not in the signed targets")
        return AvailableUpdate(version, target_path, info.length, info.hashes["sha256"])


def installed_checker(config: DesktopConfig, channel: str = "stable") -> UpdateChecker:
    """The checker of this installation: its bundled root, its version, the user's cache."""
    try:
        trusted_root = (resources_dir() / TRUSTED_ROOT_RESOURCE).read_bytes()
    except FileNotFoundError:
        raise UpdateRefused(
            "this build carries no trusted update root",
            user_message="This installation cannot check for updates (it was built without "
            "the update key). IT installs updates on this workstation.",
        ) from None
    state_dir = Path(platformdirs.user_data_dir("ehr-desktop", appauthor=False)) / "updates"
    return UpdateChecker(config, state_dir, trusted_root, __version__, channel)


def _describe(exc: tuf_errors.RepositoryError) -> str:
    if isinstance(exc, tuf_errors.ExpiredMetadataError):
        return f"the update metadata has expired (possible freeze attack): {exc}"
    if isinstance(exc, tuf_errors.BadVersionNumberError):
        return f"the update metadata is older than what was seen before (rollback): {exc}"
    if isinstance(exc, tuf_errors.LengthOrHashMismatchError):
        return f"a downloaded file does not match its signed hash (tampered): {exc}"
    if isinstance(exc, tuf_errors.UnsignedMetadataError):
        return f"the update metadata is not signed by the trusted keys: {exc}"
    return f"the update metadata failed verification: {exc}"

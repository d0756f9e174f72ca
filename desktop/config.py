"""Workstation configuration that IT controls, with per-user overrides where policy allows.

Sources, later ones winning:

1. built-in defaults;
2. the system-wide file `/etc/ehr-desktop/config.toml` (path overridable with
   `EHR_DESKTOP_CONFIG`), installed by the Debian package and managed by IT;
3. environment variables `EHR_DESKTOP_<KEY>` (set by IT through the system
   profile or the deployment tool), e.g. `EHR_DESKTOP_SERVER_URL`;
4. the user's file (`~/.config/ehr-desktop/config.toml`, or
   `EHR_DESKTOP_USER_CONFIG`) and the command line, but only for the keys the
   system file's `[policy] user_may_override` lists. A user may only shorten
   the idle timeout, never lengthen it.

Without a system file (a developer machine) every key may be overridden.
Pure: no Qt, no network; reading two small files is its only I/O.
"""

from __future__ import annotations

import os
import ssl
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import platformdirs

from shared_models.errors import ClinicError

SYSTEM_CONFIG_PATH = Path("/etc/ehr-desktop/config.toml")
ENV_PREFIX = "EHR_DESKTOP_"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class ConfigurationError(ClinicError):
    user_message = "This workstation is not configured correctly. Please call IT support."
    help_topic = "configuration"


@dataclass(frozen=True)
class DesktopConfig:
    #: Base URL of the sync server; https except on loopback.
    server_url: str | None = None
    #: PEM bundle of the organisation's CA: when set, only it is trusted (pinning).
    ca_bundle: Path | None = None
    #: FHIR Location id of the site this workstation stands at.
    location: str | None = None
    #: Minutes of inactivity before the session locks.
    idle_timeout_minutes: int = 10
    #: HTTP(S) proxy URL for reaching the server.
    proxy: str | None = None
    #: Base URL of the TUF update metadata; defaults to `<server_url>/updates`.
    update_url: str | None = None
    #: Keys a user may override (from the system file's policy).
    user_may_override: frozenset[str] = field(default_factory=frozenset)

    @property
    def updates_base_url(self) -> str | None:
        if self.update_url:
            return self.update_url.rstrip("/")
        return f"{self.server_url.rstrip('/')}/updates" if self.server_url else None

    def ssl_context(self) -> ssl.SSLContext:
        """TLS settings for every connection to the server (pins the CA bundle when set)."""
        if self.ca_bundle is None:
            return ssl.create_default_context()
        # With a cafile, the system trust store is not loaded: only the org CA counts.
        return ssl.create_default_context(cafile=str(self.ca_bundle))

    def with_user_overrides(self, overrides: Mapping[str, Any], source: str) -> DesktopConfig:
        """Apply a user's settings (file or command line); refuse what policy forbids."""
        values = _parse_values(overrides, source)
        forbidden = sorted(set(values) - self.user_may_override)
        if forbidden:
            raise ConfigurationError(
                f"{source}: IT policy does not allow changing {', '.join(forbidden)}",
                user_message="IT policy does not allow changing this setting on this "
                "workstation: " + ", ".join(forbidden),
            )
        timeout = values.get("idle_timeout_minutes")
        if timeout is not None and timeout > self.idle_timeout_minutes:
            raise ConfigurationError(
                f"{source}: idle_timeout_minutes may only be shortened "
                f"(IT sets {self.idle_timeout_minutes})"
            )
        return _validated(replace(self, **values), source)


#: Keys a file or variable may set (the policy itself only in the system file).
SETTING_NAMES = tuple(f.name for f in fields(DesktopConfig) if f.name != "user_may_override")


def resources_dir() -> Path:
    """`resources/` beside the packages (or EHR_RESOURCES_DIR in a frozen build)."""
    override = os.environ.get("EHR_RESOURCES_DIR")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[1] / "resources"


def _parse_values(raw: Mapping[str, Any], source: str) -> dict[str, Any]:
    unknown = sorted(set(raw) - set(SETTING_NAMES))
    if unknown:
        raise ConfigurationError(f"{source}: unknown setting(s) {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for name, value in raw.items():
        if name == "idle_timeout_minutes":
            try:
                values[name] = int(value)
            except (TypeError, ValueError):
                raise ConfigurationError(f"{source}: {name} must be a whole number") from None
        elif name == "ca_bundle":
            values[name] = Path(str(value)) if value else None
        else:
            values[name] = str(value) if value else None
    return values


def _check_url(name: str, url: str | None, source: str, schemes: set[str]) -> None:
    if url is None:
        return
    parts = urlsplit(url)
    if parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS and name != "proxy":
        return
    if parts.scheme not in schemes or not parts.hostname:
        allowed = "/".join(sorted(schemes))
        raise ConfigurationError(f"{source}: {name} must be an {allowed} URL")


def _validated(config: DesktopConfig, source: str) -> DesktopConfig:
    _check_url("server_url", config.server_url, source, {"https"})
    _check_url("update_url", config.update_url, source, {"https"})
    _check_url("proxy", config.proxy, source, {"http", "https", "socks5"})
    if config.ca_bundle is not None and not config.ca_bundle.is_file():
        raise ConfigurationError(f"{source}: ca_bundle {config.ca_bundle} does not exist")
    if not 1 <= config.idle_timeout_minutes <= 240:
        raise ConfigurationError(f"{source}: idle_timeout_minutes must be 1-240")
    return config


def _read_toml(path: Path) -> dict[str, Any] | None:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        return None
    except (tomllib.TOMLDecodeError, OSError) as exc:
        raise ConfigurationError(f"{path}: cannot read the configuration: {exc}") from exc


def _system_config(path: Path) -> DesktopConfig:
    data = _read_toml(path)
    if data is None:
        return DesktopConfig(user_may_override=frozenset(SETTING_NAMES))
    policy = data.pop("policy", {})
    allowed = policy.get("user_may_override", [])
    unknown = sorted(set(allowed) - set(SETTING_NAMES))
    if unknown:
        raise ConfigurationError(f"{path}: policy names unknown setting(s) {', '.join(unknown)}")
    return DesktopConfig(user_may_override=frozenset(allowed), **_parse_values(data, str(path)))


def load_config(
    environ: Mapping[str, str] | None = None,
    *,
    cli_overrides: Mapping[str, Any] | None = None,
) -> DesktopConfig:
    """The effective configuration for this process."""
    env = os.environ if environ is None else environ
    system_path = Path(env.get(ENV_PREFIX + "CONFIG", SYSTEM_CONFIG_PATH))
    config = _system_config(system_path)
    from_env = {
        name: env[ENV_PREFIX + name.upper()]
        for name in SETTING_NAMES
        if ENV_PREFIX + name.upper() in env
    }
    config = _validated(replace(config, **_parse_values(from_env, "environment")), str(system_path))
    default_user = Path(platformdirs.user_config_dir("ehr-desktop", appauthor=False))
    user_path = Path(env.get(ENV_PREFIX + "USER_CONFIG", default_user / "config.toml"))
    user_data = _read_toml(user_path)
    if user_data:
        config = config.with_user_overrides(user_data, str(user_path))
    if cli_overrides:
        present = {k: v for k, v in cli_overrides.items() if v is not None}
        if present:
            config = config.with_user_overrides(present, "command line")
    return config

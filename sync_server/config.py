"""Server settings, read from the environment (prefix `EHR_`) and the command line."""

from __future__ import annotations

from pathlib import Path

import platformdirs
from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("ehr-server", appauthor=False))


class Settings(BaseSettings):
    """One settings object for the whole server.

    `DATABASE_URL` (no prefix, the common convention) selects an external
    PostgreSQL; without it the server runs an embedded one under `data_dir`.
    """

    model_config = SettingsConfigDict(env_prefix="EHR_", extra="ignore")

    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "EHR_DATABASE_URL")
    )
    data_dir: Path = Field(default_factory=default_data_dir)
    #: Largest request body accepted, in bytes (a transaction Bundle of a big chart fits).
    max_body_bytes: int = 32 * 1024 * 1024
    #: Largest `_count` a search may ask for.
    max_page_size: int = 1000
    default_page_size: int = 50
    #: Public base URL used in Bundle links; derived from the request when unset.
    base_url: str | None = None
    #: Demo mode: shows current MFA codes for demo accounts. Never on in production.
    demo_mode: bool = False
    log_json: bool = False
    #: TUF update repository for the desktop (packaging/tuf_publish.py), served at /updates.
    updates_dir: Path | None = None

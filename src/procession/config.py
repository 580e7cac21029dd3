"""Settings: one validated object read from ``PROCESSION_*`` environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PROCESSION_")

    data_dir: Path = Field(default=Path("procession-data"), description="SQLite file and uploaded files")
    database_url: str | None = Field(default=None, description="SQLAlchemy URL; default SQLite in data_dir")
    max_body_bytes: int = Field(default=16 * 1024 * 1024, gt=0, description="larger requests get a 413")

    embedded_worker: bool | None = Field(
        default=None,
        description="apply background work inside serve; default: on for SQLite, off for PostgreSQL",
    )
    lease_seconds: float = Field(default=30.0, gt=0, description="re-wake pending work idle this long")
    check_tenancy: Path | None = Field(
        default=None,
        description="a check for tests and debugging, off by default: every statement on a team's table "
        "must be scoped to its team; each one that is not is appended to this file and fails",
    )

    @property
    def url(self) -> str:
        """The database URL in use."""
        return self.database_url or f"sqlite:///{(self.data_dir / 'procession.db').resolve()}"

    @property
    def is_sqlite(self) -> bool:
        return not self.database_url or self.database_url.startswith("sqlite")  # "" means the default too

    @property
    def files_dir(self) -> Path:
        return self.data_dir / "files"

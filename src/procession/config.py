"""Settings: one validated object read from ``PROCESSION_*`` environment variables."""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

SECRET_FILE = "secret-key"  # in the data folder: the key generated when none is set
CONNECTOR_KEYS_FILE = "connector-keys"  # in the data folder: the Fernet key generated when none is set


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
    secret_key: SecretStr | None = Field(
        default=None,
        min_length=16,
        description="signs list cursors; default: generated once into <data_dir>/secret-key (mode 0600). "
        "Every server of one database must have the same",
    )
    secret_keys: SecretStr | None = Field(
        default=None,
        description="Fernet keys that encrypt connectors' credentials, comma-separated: the first encrypts, "
        "every one decrypts (rotation); default: generated once into <data_dir>/connector-keys (mode 0600). "
        "Every server and worker of one database must have them",
    )
    statement_timeout_ms: int = Field(
        default=5_000,
        ge=0,
        description="a request's SQL statement runs at most this long, or the request gets a 503 "
        "(0: no limit); background work is not bounded",
    )
    db_connections: int = Field(
        default=40,
        ge=2,
        description="PostgreSQL: the most connections one process (serve or worker) opens to the database; "
        "a quarter of them are kept open. Every process of a deployment together, and each worker's "
        "task-engine pool (4), must stay under the server's max_connections",
    )
    keep_alive_seconds: int = Field(
        default=5,
        ge=1,
        description="serve closes a client's connection idle this long; behind a load balancer that keeps "
        "connections open, set it above the balancer's idle timeout (60 s on many: 65), or a request sent on a "
        "connection as serve closes it fails with no reply (a 502 from the balancer)",
    )
    run_lease_seconds: float = Field(
        default=60.0,
        gt=0,
        description="a worker holds the automation runs it took this long; if it dies, another takes them "
        "up after it (a step's call is cut at half of it, whatever its own timeout)",
    )
    webhook_disable_after_seconds: float = Field(
        default=3 * 24 * 3600.0,
        gt=0,
        description="a webhook subscription whose endpoint failed every attempt for this long is disabled "
        "(its unfinished deliveries given up; the team told by an event and a flag on the subscription)",
    )
    retention_days: float = Field(
        default=30.0,
        ge=0,
        description="the entries of finished jobs, finished automation runs (with their attempts) and "
        "finished webhook deliveries (with theirs) older than this are removed by background work (0: kept "
        "for ever); events are kept unless a team sets its own retention",
    )
    retention_every_seconds: float = Field(
        default=3600.0, gt=0, description="how often each team's old rows are looked for"
    )
    outbound_allow: str = Field(
        default="",
        description="addresses automations may call although they are private (loopback, private networks, "
        "link-local, ...): comma-separated addresses, networks (10.1.0.0/16) or host:port pairs",
    )
    log_format: Literal["auto", "json", "logfmt"] = Field(
        default="auto",
        description="log lines as JSON objects or logfmt pairs; auto: logfmt when stderr is a terminal, "
        "JSON otherwise",
    )
    log_level: str = Field(default="INFO", description="the least level logged (DEBUG, INFO, WARNING, ...)")
    access_log: bool = Field(default=True, description="one log line per request (procession.access)")
    metrics_token: SecretStr | None = Field(
        default=None,
        description="if set, GET /metrics needs 'Authorization: Bearer <this>'; default: open, like "
        "/healthz (bind serve to an address only the scraper reaches, or set this)",
    )
    rate_limit_key: str | None = Field(
        default=None,
        description="requests one API key may make, as '100/second', '6000/minute', '100/second;5000/hour' "
        "(off by default)",
    )
    rate_limit_team: str | None = Field(
        default=None, description="requests all API keys of one team may make together, same form (off)"
    )
    rate_limit_storage: str = Field(
        default="memory://",
        description="where the counts are kept: redis://host:6379[/db] (shared by every serve process: "
        "needed for a limit that holds across several), or memory:// (this process alone)",
    )
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

    def secret(self) -> bytes:
        """The server's secret key: ``secret_key``, or else the one kept in the data folder (generated by
        the first process to need it; every later one, and every restart, reads the same)."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value().encode()
        return kept_secret(self.data_dir / SECRET_FILE)

    def connector_keys(self) -> list[bytes]:
        """The keys of connectors' credentials, the one that encrypts first: ``secret_keys``, or else the one
        kept in the data folder."""
        if self.secret_keys is not None:
            keys = [k.strip().encode() for k in self.secret_keys.get_secret_value().split(",") if k.strip()]
            if keys:
                return keys
        return [kept_secret(self.data_dir / CONNECTOR_KEYS_FILE, make=_fernet_key)]


def _fernet_key() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def kept_secret(path: Path, *, make: Callable[[], str] = lambda: secrets.token_urlsafe(48)) -> bytes:
    """The key in ``path``, written first if there is none (readable by its owner only). Two processes
    starting at once agree: each writes a file of its own and links it to ``path``, and the first link
    wins, whole."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        mine = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(mine, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(make() + "\n")
        try:
            os.link(mine, path)
        except FileExistsError:
            pass
        finally:
            mine.unlink()
    key = path.read_text().strip()
    if len(key) < 16:
        raise RuntimeError(f"{path} holds no key (16 characters or more): remove it to have one made")
    return key.encode()

"""The ``procession`` command: serve, migrate, demo, teams, keys, users."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import secrets
import signal
from pathlib import Path
from typing import Annotated

import typer

from procession.bootstrap import Services, bootstrap
from procession.config import Settings
from procession.domain.errors import ProcessionError
from procession.services import teams as team_service
from procession.services.accounts import check_password, set_password
from procession.services.templates import DEMO_SLUG, TEMPLATES, install_template, seed_demo

app = typer.Typer(help="Procession: a process engine for operations teams.", no_args_is_help=True)
teams_app = typer.Typer(help="Teams.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
users_app = typer.Typer(help="Users.", no_args_is_help=True)
app.add_typer(teams_app, name="teams")
app.add_typer(keys_app, name="keys")
connectors_app = typer.Typer(help="Connectors.", no_args_is_help=True)
app.add_typer(connectors_app, name="connectors")
app.add_typer(users_app, name="users")
DEMO_USER = "admin"


def _fail(error: ProcessionError) -> None:
    typer.echo(f"error: {error.message}", err=True)
    raise typer.Exit(1)


def _demo_key(svc: Services, team_id: str) -> str:
    """The demo admin key, kept in the data folder so restarts print the same one."""
    path = svc.settings.data_dir / "demo-api-key"
    if path.exists():
        key = path.read_text().strip()
        with contextlib.suppress(ProcessionError):  # revoked, or of another database: a new one
            team_service.authenticate(svc.engine, key)
            return key
    key = svc.run(team_service.create_key, team_id, role="admin", username="admin", label="demo")
    path.write_text(key + "\n")
    os.chmod(path, 0o600)
    return key


def _demo_password(svc: Services, team_id: str) -> str:
    """The demo admin's console password, kept in the data folder so restarts print the same one."""
    path = svc.settings.data_dir / "demo-password"
    if path.exists():
        password = path.read_text().strip()
        if svc.run(check_password, team_id, DEMO_USER, password):
            return password
    password = secrets.token_urlsafe(12)
    svc.run(set_password, team_id, DEMO_USER, password)
    path.write_text(password + "\n")
    os.chmod(path, 0o600)
    return password


def _settle_gc() -> None:
    """For a long-running process: startup objects live for the whole run, so keep them out of the
    collector's way, and collect young objects less often (a request or a chunk allocates thousands of
    short-lived ones that reference counting frees)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)


@app.command()
def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    demo: Annotated[bool, typer.Option(help="seed the demo team and print its key")] = False,
) -> None:
    """Run the API on the configured database (SQLite in the data folder by default)."""
    import uvicorn

    from procession.api.app import create_app

    svc = bootstrap()
    _log_as(svc.settings)
    if demo:
        team_id = svc.run(seed_demo)
        key, password = _demo_key(svc, team_id), _demo_password(svc, team_id)
        typer.echo(f"Procession on http://{host}:{port}  (API docs: http://{host}:{port}/docs)", err=True)
        typer.echo(f"Demo team '{DEMO_SLUG}', admin API key: {key}", err=True)
        typer.echo(
            f"Console: http://{host}:{port}/  team '{DEMO_SLUG}', user '{DEMO_USER}', password {password}",
            err=True,
        )
    svc.start_background()
    _settle_gc()
    try:
        uvicorn.run(
            create_app(svc),
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            log_config=None,
            timeout_keep_alive=svc.settings.keep_alive_seconds,
        )
    finally:
        svc.close()


class _Stopped(BaseException):
    """SIGINT/SIGTERM before the worker's own handlers are in place."""


def _raise_stopped(signum: int, frame: object) -> None:
    raise _Stopped


def _log_as(settings: Settings) -> None:
    """Structured logs, as the settings have them (``logs.configure``)."""
    from procession.logs import configure

    configure(style=settings.log_format, level=settings.log_level)


@app.command()
def worker(
    concurrency: Annotated[
        int, typer.Option(min=1, help="chunks applied at once (2: one computes while the other's SQL runs)")
    ] = 2,
    metrics_port: Annotated[
        int | None, typer.Option(help="serve this worker's Prometheus metrics on this port (default: none)")
    ] = None,
    metrics_host: Annotated[str, typer.Option(help="the address the metrics port listens on")] = "127.0.0.1",
) -> None:
    """Apply background work (PostgreSQL): run on as many machines as needed. A lost database is waited
    for (at start too), however long; the command exits 1 only on what waiting cannot fix."""
    from procession.engine.distributed import run_worker
    from procession.engine.retry import describe, retry
    from procession.store.repositories.retention import ensure_tasks

    for signum in (signal.SIGINT, signal.SIGTERM):  # until run_worker's own: stop, status 0
        signal.signal(signum, _raise_stopped)
    try:
        settings = Settings()
        _log_as(settings)
        if settings.is_sqlite:
            typer.echo("error: on SQLite, `procession serve` applies background work itself", err=True)
            raise typer.Exit(2)
        svc = retry(lambda: bootstrap(settings), what="procession worker: start")
        assert svc is not None  # no stop event: until it succeeds (or raises)
        if metrics_port is not None:
            from procession.metrics import serve_worker_metrics

            serve_worker_metrics(svc.engine, metrics_port, metrics_host)
        ensure_tasks(svc.engine)  # periodic work: every team's retention task
        _settle_gc()
        run_worker(svc.uows, svc.kinds, svc.settings.url, concurrency=concurrency, lease_ms=svc.lease_ms)
    except _Stopped:
        return
    except typer.Exit:
        raise
    except Exception as e:  # fatal: bad settings, a schema that migrations cannot fix
        logging.getLogger("procession.engine").critical("procession worker: fatal error", exc_info=True)
        typer.echo(f"error: {describe(e)}", err=True)
        raise typer.Exit(1) from None


@app.command()
def migrate() -> None:
    """Bring the database schema up to date."""
    bootstrap().close()
    typer.echo("migrated", err=True)


@app.command()
def backup(path: Path) -> None:
    """Copy the database to PATH while the service runs: on SQLite with its online backup (one consistent
    snapshot, in steps; writers go on), on PostgreSQL with pg_dump (custom format)."""
    from procession.config import Settings
    from procession.store.backup import BackupError
    from procession.store.backup import backup as make_backup

    try:
        made = make_backup(Settings().url, path)
    except BackupError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"backed up to {made['path']}: {made['bytes']:,} bytes in {made['seconds']:.1f} s", err=True)


@app.command()
def restore(path: Path) -> None:
    """Replace the configured database by the backup at PATH. Refuses while a server (SQLite) or any other
    session (PostgreSQL) uses it; the uploaded files and keys of the data folder are not part of it."""
    from procession.config import Settings
    from procession.store.backup import BackupError
    from procession.store.backup import restore as do_restore

    try:
        typer.echo(do_restore(Settings().url, path), err=True)
    except BackupError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None


@app.command()
def demo() -> None:
    """Seed the demo team (slug 'demo') with every template; safe to run again."""
    svc = bootstrap()
    svc.run(seed_demo)
    typer.echo(f"demo team '{DEMO_SLUG}' ready", err=True)


@teams_app.command("create")
def teams_create(
    slug: str,
    template: Annotated[str | None, typer.Option(help="sales|support|field|all")] = None,
    name: str = "",
) -> None:
    """Create a team, optionally with a solution template."""
    if template is not None and template not in TEMPLATES:
        typer.echo(f"error: template must be one of {', '.join(TEMPLATES)}", err=True)
        raise typer.Exit(2)
    svc = bootstrap()
    try:
        team_id = team_service.create_team(svc.engine, slug, name)
    except ProcessionError as e:
        _fail(e)
    if template:
        svc.run(install_template, team_id, template)
    typer.echo(team_id)


@teams_app.command("set")
def teams_set(
    slug: str,
    event_retention_days: Annotated[
        int, typer.Option(min=0, help="remove the team's events once this many days old (0: keep them)")
    ],
) -> None:
    """Change a team's settings."""
    svc = bootstrap()
    try:
        svc.run(
            team_service.set_event_retention, team_service.team_id(svc.engine, slug), event_retention_days
        )
    except ProcessionError as e:
        _fail(e)
    typer.echo("set", err=True)


@keys_app.command("create")
def keys_create(
    team: Annotated[str, typer.Option(help="team slug")],
    role: Annotated[str, typer.Option(help="admin|member")] = "member",
    user: Annotated[str | None, typer.Option(help="username the key acts as")] = None,
    label: str = "",
) -> None:
    """Create an API key; prints the key alone on stdout (it is not shown again)."""
    svc = bootstrap()
    try:
        team_id = team_service.team_id(svc.engine, team)
        key = svc.run(team_service.create_key, team_id, role=role, username=user, label=label)
    except ProcessionError as e:
        _fail(e)
    typer.echo(key)


@keys_app.command("list")
def keys_list(team: Annotated[str, typer.Option(help="team slug")]) -> None:
    """List a team's keys (ids and prefixes, never the keys)."""
    svc = bootstrap()
    try:
        rows = svc.run(team_service.list_keys, team_service.team_id(svc.engine, team))
    except ProcessionError as e:
        _fail(e)
    for k in rows:
        state = "revoked" if k["revoked_at"] else "active"
        typer.echo(f"{k['id']}  {k['prefix']}…  {k['role']:6}  {state:7}  {k['label']}")


@keys_app.command("revoke")
def keys_revoke(key_id: str, team: Annotated[str, typer.Option(help="team slug")]) -> None:
    """Revoke a key by its id."""
    svc = bootstrap()
    try:
        svc.run(team_service.revoke_key, team_service.team_id(svc.engine, team), key_id)
    except ProcessionError as e:
        _fail(e)
    typer.echo("revoked", err=True)


@connectors_app.command("reseal")
def reseal() -> None:
    """Encrypt every connector's credentials again with the first of PROCESSION_SECRET_KEYS (after rotating
    a new key in first); the old key can then be dropped."""
    from procession.services.connectors import reseal_credentials

    svc = bootstrap()
    try:
        typer.echo(f"{svc.run(reseal_credentials, vault=svc.vault)} connectors' credentials re-encrypted")
    finally:
        svc.close()


@users_app.command("set-password")
def users_set_password(
    username: str,
    team: Annotated[str, typer.Option(help="team slug")],
    password: Annotated[
        str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True, help="asked when not given")
    ],
) -> None:
    """Give a user a password to sign in to the console with."""
    svc = bootstrap()
    try:
        svc.run(set_password, team_service.team_id(svc.engine, team), username, password)
    except ProcessionError as e:
        _fail(e)
    typer.echo("password set", err=True)


if __name__ == "__main__":
    app()

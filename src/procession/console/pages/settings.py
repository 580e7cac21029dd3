"""Settings, for admins only: API keys (shown once when made, revoked) and users (added with a console
password, their role changed, removed; never the last admin). Connectors and webhook subscriptions have
modules of their own."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import ValidationError

from procession.console.auth import Session, admin
from procession.console.web import ConsoleRoute, back, call, field_errors, page, status_of
from procession.domain.errors import Invalid, ProcessionError
from procession.services import configuration as conf
from procession.services import teams as team_service
from procession.services.accounts import MIN_PASSWORD, remove_user, set_password, set_role
from procession.services.commands import UserInput

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)


@router.get("/settings")
def settings(request: Request, session: Session = Depends(admin)) -> Response:
    return page(request, "settings.html", {})


@router.get("/settings/keys")
async def keys(request: Request, session: Session = Depends(admin)) -> Response:
    return await _keys_page(request, session)


async def _keys_page(
    request: Request, session: Session, *, made: str = "", errors: dict[str, str] | None = None
) -> Response:
    rows = await call(request, team_service.list_keys, session.caller.team_id)
    config = await call(request, conf.team_config, session.caller.team_id)
    users = {u["id"]: u for u in config["users"]}
    context = {"rows": rows, "users": users, "made": made, "errors": errors or {}}
    return page(request, "settings_keys.html", context, status=422 if errors else 200)


@router.post("/settings/keys")
async def create_key(request: Request, session: Session = Depends(admin)) -> Response:
    form = await request.form()
    try:
        made = await call(
            request, team_service.create_key, session.caller.team_id, role=str(form.get("role", "member")),
            username=str(form.get("user") or "") or None, label=str(form.get("label", ""))[:200],
        )  # fmt: skip
    except ProcessionError as e:
        return await _keys_page(request, session, errors=field_errors(e))
    return await _keys_page(request, session, made=made)  # shown once, never again


@router.post("/settings/keys/{key_id}/revoke")
async def revoke_key(request: Request, key_id: str, session: Session = Depends(admin)) -> Response:
    await call(request, team_service.revoke_key, session.caller.team_id, key_id)
    return back("/settings/keys")


@router.get("/settings/users")
async def users(request: Request, session: Session = Depends(admin)) -> Response:
    return await _users_page(request, session)


async def _users_page(
    request: Request,
    session: Session,
    *,
    errors: dict[str, str] | None = None,
    form: dict[str, str] | None = None,
    rows_errors: dict[str, str] | None = None,
    status: int = 422,
) -> Response:
    """The users; ``errors`` of the new user's form, ``rows_errors`` beside a user's row (by username, or
    ``password-`` and the username)."""
    config = await call(request, conf.team_config, session.caller.team_id)
    context = {
        "rows": config["users"], "errors": errors or {}, "form": form or {}, "min": MIN_PASSWORD,
        "rows_errors": rows_errors or {},
    }  # fmt: skip
    return page(request, "settings_users.html", context, status=status if errors or rows_errors else 200)


@router.post("/settings/users")
async def add_user(request: Request, session: Session = Depends(admin)) -> Response:
    form = {k: str(v) for k, v in (await request.form()).items()}
    team = session.caller.team_id
    try:
        if len(form.get("password", "")) < MIN_PASSWORD:
            raise Invalid.one(
                "weak_password", f"a password has at least {MIN_PASSWORD} characters", "password"
            )
        try:
            user = UserInput.model_validate(
                {"username": form.get("username", ""), "name": form.get("name", ""), "role": form.get("role")}
            )
        except ValidationError as e:
            message = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
            raise Invalid.one("invalid", message, "username") from None
        await call(request, conf.add_user, team, user)
        await call(request, set_password, team, user.username, form["password"])
    except ProcessionError as e:
        kept = {k: v for k, v in form.items() if k != "password"}
        return await _users_page(request, session, errors=field_errors(e), form=kept)
    return back("/settings/users")


@router.post("/settings/users/{username}/password")
async def change_password(request: Request, username: str, session: Session = Depends(admin)) -> Response:
    form = await request.form()
    try:
        await call(request, set_password, session.caller.team_id, username, str(form.get("password", "")))
    except ProcessionError as e:
        return await _users_page(request, session, rows_errors={f"password-{username}": e.message})
    return back("/settings/users")


@router.post("/settings/users/{username}/role")
async def change_role(request: Request, username: str, session: Session = Depends(admin)) -> Response:
    role = str((await request.form()).get("role", ""))
    try:
        await call(request, set_role, session.caller.team_id, username, role)
    except ProcessionError as e:
        return await _users_page(request, session, rows_errors={username: e.message}, status=status_of(e))
    return back("/settings/users")


@router.post("/settings/users/{username}/remove")
async def remove(request: Request, username: str, session: Session = Depends(admin)) -> Response:
    try:
        await call(request, remove_user, session.caller.team_id, username)
    except ProcessionError as e:
        return await _users_page(request, session, rows_errors={username: e.message}, status=status_of(e))
    return back("/settings/users")

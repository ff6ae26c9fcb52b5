"""Accounts of the review application: roles, salted argon2 password hashes, demo users.

Roles (:class:`WebRole`) and what they may do:

- ``reviewer`` 审核员 (office): triage detections, dispatch cases, handle cases;
- ``approver`` 审批人 (office): everything a reviewer does, plus sign off (销项) or return
  write-offs; ``gis_db.workflow`` still refuses a write-off by the person who requested it;
- ``street_town`` 街镇用户: sees and acts on its own 街镇's detections and cases only (查实,
  处置, 申请销项, 复查);
- ``analyst`` 分析员: reads everything, changes nothing;
- ``admin`` 管理员: everything an approver does.

In ``gis_db`` history rows the actor is the user name and the role is the workflow role
(``office`` or ``street_town``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import IntegrityError

from gis_db.domain import LabelledEnum, Role
from gis_db.workflow import CaseAction, DetectionAction, transaction
from web_map.errors import AccountError

MIN_PASSWORD_LENGTH = 8
_HASHER = PasswordHasher()
#: A valid hash of a random password, verified when the user name is unknown (same timing).
_DUMMY_HASH = _HASHER.hash("weijian-no-such-user-password")


class WebRole(LabelledEnum):
    """用户角色: the role of an account in the review application."""

    REVIEWER = ("reviewer", "审核员")
    APPROVER = ("approver", "审批人")
    STREET_TOWN = ("street_town", "街镇用户")
    ANALYST = ("analyst", "分析员")
    ADMIN = ("admin", "管理员")


#: The gis_db workflow role each web role acts as (analysts never act).
WORKFLOW_ROLE: dict[WebRole, Role] = {
    WebRole.REVIEWER: Role.OFFICE,
    WebRole.APPROVER: Role.OFFICE,
    WebRole.ADMIN: Role.OFFICE,
    WebRole.STREET_TOWN: Role.STREET_TOWN,
}

_OFFICE_CASE = {
    CaseAction.DISPATCH,
    CaseAction.VERIFY,
    CaseAction.DISPOSE,
    CaseAction.REQUEST_WRITE_OFF,
    CaseAction.REINSPECT_CLEAN,
    CaseAction.REPORT_REBOUND,
}
#: Case actions each web role may take (gis_db then applies its own state and role rules).
CASE_ACTIONS: dict[WebRole, frozenset[CaseAction]] = {
    WebRole.REVIEWER: frozenset(_OFFICE_CASE),
    WebRole.APPROVER: frozenset(_OFFICE_CASE | {CaseAction.WRITE_OFF, CaseAction.REJECT_WRITE_OFF}),
    WebRole.ADMIN: frozenset(_OFFICE_CASE | {CaseAction.WRITE_OFF, CaseAction.REJECT_WRITE_OFF}),
    WebRole.STREET_TOWN: frozenset(
        {
            CaseAction.VERIFY,
            CaseAction.DISPOSE,
            CaseAction.REQUEST_WRITE_OFF,
            CaseAction.REINSPECT_CLEAN,
            CaseAction.REPORT_REBOUND,
        }
    ),
    WebRole.ANALYST: frozenset(),
}
#: Detection actions each web role may take.
DETECTION_ACTIONS: dict[WebRole, frozenset[DetectionAction]] = {
    WebRole.REVIEWER: frozenset(DetectionAction),
    WebRole.APPROVER: frozenset(DetectionAction),
    WebRole.ADMIN: frozenset(DetectionAction),
    WebRole.STREET_TOWN: frozenset(
        {DetectionAction.CONFIRM, DetectionAction.FALSE_POSITIVE, DetectionAction.BAD_IMAGERY}
    ),
    WebRole.ANALYST: frozenset(),
}


@dataclass(frozen=True)
class User:
    """A logged-in (or listed) account. ``street_town`` is the 街镇 code of a 街镇 user."""

    id: int
    username: str
    role: WebRole
    street_town: str | None
    display_name: str | None
    disabled: bool
    session_epoch: int

    @property
    def workflow_role(self) -> Role | None:
        """The gis_db role this user acts as; None for a read-only analyst."""
        return WORKFLOW_ROLE.get(self.role)

    @property
    def label(self) -> str:
        """The name shown in pages."""
        return self.display_name or self.username


@dataclass(frozen=True)
class DemoUser:
    """A demo log-in created by :func:`ensure_demo_users` (the password is documented)."""

    username: str
    password: str
    role: str
    street_town: str | None


def hash_password(password: str) -> str:
    """A salted argon2id hash of ``password`` (at least 8 characters)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    return _HASHER.hash(password)


def _user(row: Any) -> User:
    return User(
        id=int(row.id),
        username=row.username,
        role=WebRole(row.role),
        street_town=row.street_town_code,
        display_name=row.display_name,
        disabled=bool(row.disabled),
        session_epoch=int(row.session_epoch),
    )


_COLUMNS = "id, username, role, street_town_code, display_name, disabled, session_epoch"


def _street_town_code(conn: Connection, street_town: str | None, role: WebRole) -> str | None:
    if role != WebRole.STREET_TOWN:
        if street_town:
            raise AccountError("only a 街镇 user (role street_town) is bound to a 街镇")
        return None
    if not street_town:
        raise AccountError("a 街镇 user needs --street-town: the code or name of its 街镇")
    code = conn.execute(
        text("SELECT code FROM street_town WHERE code = :s OR name = :s ORDER BY code LIMIT 1"),
        {"s": street_town.strip()},
    ).scalar()
    if code is None:
        raise AccountError(
            f"no 街镇 with code or name {street_town!r}: load the boundaries first "
            "('weijian admin import ... --level street_town')"
        )
    return str(code)


def _name_and_role(username: str, role: WebRole | str) -> tuple[str, WebRole]:
    username = (username or "").strip()
    if not 2 <= len(username) <= 64 or any(ch.isspace() for ch in username):
        raise AccountError("the user name must have 2-64 characters and no spaces")
    try:
        return username, WebRole(WebRole.parse(str(role)))
    except ValueError as exc:
        raise AccountError(str(exc)) from None


def check_new_user(
    bind: Engine | Connection, username: str, role: WebRole | str, *, street_town: str | None
) -> None:
    """Raise :class:`AccountError` for what :func:`add_user` would refuse, the password aside.

    The command line calls it before asking for the password (twice), so that a mistyped role
    or 街镇, or a taken user name, is said before anyone types a password for nothing.
    """
    username, web_role = _name_and_role(username, role)
    with transaction(bind) as conn:
        _street_town_code(conn, street_town, web_role)
        taken = conn.execute(
            text("SELECT 1 FROM app_user WHERE username = :u"), {"u": username}
        ).scalar()
    if taken:
        raise AccountError(f"user {username!r} exists already: use 'weijian users passwd'")


def add_user(
    bind: Engine | Connection,
    username: str,
    password: str,
    role: WebRole | str,
    *,
    street_town: str | None = None,
    display_name: str | None = None,
) -> User:
    """Create an account; ``street_town`` (code or name) is required for a 街镇 user."""
    username, web_role = _name_and_role(username, role)
    hashed = hash_password(password)
    try:
        with transaction(bind) as conn:
            code = _street_town_code(conn, street_town, web_role)
            row = conn.execute(
                text(
                    "INSERT INTO app_user (username, display_name, password_hash, role, "
                    f"street_town_code) VALUES (:u, :d, :h, :r, :s) RETURNING {_COLUMNS}"
                ),
                {"u": username, "d": display_name, "h": hashed, "r": web_role.value, "s": code},
            ).one()
    except IntegrityError:
        raise AccountError(
            f"user {username!r} exists already: use 'weijian users passwd'"
        ) from None
    return _user(row)


def get_user(bind: Engine | Connection, username: str) -> User:
    """The account named ``username``."""
    with transaction(bind) as conn:
        row = conn.execute(
            text(f"SELECT {_COLUMNS} FROM app_user WHERE username = :u"), {"u": username}
        ).first()
    if row is None:
        raise AccountError(f"no user {username!r}: 'weijian users list' lists them")
    return _user(row)


def get_user_by_id(bind: Engine | Connection, user_id: int) -> User | None:
    """The account with id ``user_id``, or None."""
    with transaction(bind) as conn:
        row = conn.execute(
            text(f"SELECT {_COLUMNS} FROM app_user WHERE id = :i"), {"i": user_id}
        ).first()
    return None if row is None else _user(row)


def list_users(bind: Engine | Connection) -> list[User]:
    """All accounts, by user name."""
    with transaction(bind) as conn:
        rows = conn.execute(text(f"SELECT {_COLUMNS} FROM app_user ORDER BY username")).all()
    return [_user(r) for r in rows]


def set_password(bind: Engine | Connection, username: str, password: str) -> User:
    """Change a password (and end that user's open sessions)."""
    hashed = hash_password(password)
    with transaction(bind) as conn:
        row = conn.execute(
            text(
                "UPDATE app_user SET password_hash = :h, session_epoch = session_epoch + 1, "
                f"updated_at = now() WHERE username = :u RETURNING {_COLUMNS}"
            ),
            {"h": hashed, "u": username},
        ).first()
    if row is None:
        raise AccountError(f"no user {username!r}: 'weijian users list' lists them")
    return _user(row)


def set_disabled(bind: Engine | Connection, username: str, disabled: bool = True) -> User:
    """Disable (or re-enable) an account; disabling ends its open sessions at once."""
    with transaction(bind) as conn:
        row = conn.execute(
            text(
                "UPDATE app_user SET disabled = :d, session_epoch = session_epoch + 1, "
                f"updated_at = now() WHERE username = :u RETURNING {_COLUMNS}"
            ),
            {"d": disabled, "u": username},
        ).first()
    if row is None:
        raise AccountError(f"no user {username!r}: 'weijian users list' lists them")
    return _user(row)


def authenticate(bind: Engine | Connection, username: str, password: str) -> User | None:
    """The enabled account whose password is ``password``, else None (same cost either way)."""
    with transaction(bind) as conn:
        row = conn.execute(
            text(f"SELECT {_COLUMNS}, password_hash FROM app_user WHERE username = :u"),
            {"u": (username or "").strip()},
        ).first()
        stored = row.password_hash if row is not None else _DUMMY_HASH
        try:
            _HASHER.verify(stored, password or "")
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        if row is None or row.disabled:
            return None
        if _HASHER.check_needs_rehash(stored):
            conn.execute(
                text("UPDATE app_user SET password_hash = :h WHERE id = :i"),
                {"h": _HASHER.hash(password), "i": row.id},
            )
        conn.execute(text("UPDATE app_user SET last_login_at = now() WHERE id = :i"), {"i": row.id})
    return _user(row)


#: The demo log-ins (documented in the README; for the demo district only, never production).
DEMO_PASSWORDS: dict[WebRole, tuple[str, str]] = {
    WebRole.REVIEWER: ("reviewer", "demo-reviewer-2026"),
    WebRole.APPROVER: ("approver", "demo-approver-2026"),
    WebRole.STREET_TOWN: ("jiezhen", "demo-jiezhen-2026"),
    WebRole.ANALYST: ("analyst", "demo-analyst-2026"),
    WebRole.ADMIN: ("admin", "demo-admin-2026"),
}


def ensure_demo_users(bind: Engine | Connection, street_town: str | None = None) -> list[DemoUser]:
    """Create (or repair) one demo account per role with the documented passwords; idempotent.

    The 街镇 user is bound to ``street_town`` (code or name; default the first 街镇 by code),
    so the 街镇 boundaries must be loaded first. An existing demo account is re-enabled and
    given its documented password and role again, so the printed log-ins always work.
    """
    out: list[DemoUser] = []
    with transaction(bind) as conn:
        town = (
            street_town
            or conn.execute(text("SELECT code FROM street_town ORDER BY code LIMIT 1")).scalar()
        )
        if town is None:
            raise AccountError("no 街镇 loaded: load the district first (weijian demo)")
        for role, (username, password) in DEMO_PASSWORDS.items():
            code = _street_town_code(conn, str(town), role) if role == WebRole.STREET_TOWN else None
            conn.execute(
                text(
                    "INSERT INTO app_user (username, display_name, password_hash, role, "
                    "street_town_code) VALUES (:u, :d, :h, :r, :s) ON CONFLICT (username) DO "
                    "UPDATE SET password_hash = EXCLUDED.password_hash, role = EXCLUDED.role, "
                    "street_town_code = EXCLUDED.street_town_code, disabled = false, "
                    "updated_at = now()"
                ),
                {
                    "u": username,
                    "d": f"演示{role.zh}",
                    "h": _HASHER.hash(password),
                    "r": role.value,
                    "s": code,
                },
            )
            out.append(DemoUser(username, password, role.value, code))
    return out

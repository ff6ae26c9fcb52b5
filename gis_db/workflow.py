"""The one state machine of detections and cases: who may do what, from which state, and the record.

Two machines, each a table ``(state, action) -> Rule``:

- detection (a detected change under review): ``new`` → ``confirmed`` (入库: creates a case, or
  attaches the detection as evidence to the case it matched) | ``false_positive`` | ``bad_imagery``;
  a reviewer's rejection can be reopened.
- case: ``open`` → ``dispatched`` (to its 街镇) → ``verified`` (on site) → ``disposed``
  (拆/转/缓/注记) → ``write_off_requested`` → ``written_off`` (销项, by a second person, never
  the requester) → re-inspection due within N days → ``reinspected_clean``, or ``rebound``
  (reopens; dispatch again).

Every transition appends one history row (actor, role, time, from, to, comment, evidence) in the
same transaction as the state change; history rows are never updated (a database trigger refuses).

Concurrency is optimistic: a transition reads the row's ``version`` and updates with
``WHERE id = :id AND version = :v``. Of two reviewers acting on the same row at the same moment,
the second's update waits for the first's row lock, then matches no row, and gets a
:class:`~gis_db.errors.ConflictError`; no update is lost. A caller holding a version read earlier
(a review screen) passes ``expected_version``.

Every function takes an Engine (one transaction of its own) or a Connection (joins the caller's
transaction, so a batch either happens entirely or not at all).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from gis_db.domain import CaseState, DetectionState, Disposal, LabelledEnum, MatchClass, Role
from gis_db.errors import (
    ConflictError,
    IllegalTransitionError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
)

#: Default of MatchingSettings.reinspection_days: re-inspection due this many days after 销项.
DEFAULT_REINSPECTION_DAYS = 30
#: How long a transition waits for another transaction's row lock before giving up (conflict).
LOCK_TIMEOUT = "5s"
#: Advisory lock serialising case creation from detections, so that two confirmations of the
#: same structure (from two runs) can never create two cases.
_CASE_CREATION_LOCK = 0x5743_0001
#: Time zone of the office's calendar (re-inspection due dates, case numbers).
OFFICE_TZ = "Asia/Shanghai"

ACTIVE_CASE_STATES: tuple[CaseState, ...] = (
    CaseState.OPEN,
    CaseState.DISPATCHED,
    CaseState.VERIFIED,
    CaseState.DISPOSED,
    CaseState.WRITE_OFF_REQUESTED,
    CaseState.REBOUND,
)
CLOSED_CASE_STATES: tuple[CaseState, ...] = (CaseState.WRITTEN_OFF, CaseState.REINSPECTED_CLEAN)


class CaseAction(LabelledEnum):
    """案件操作: an action on a case."""

    DISPATCH = ("dispatch", "派单")
    VERIFY = ("verify", "查实")
    DISPOSE = ("dispose", "处置")
    REQUEST_WRITE_OFF = ("request_write_off", "申请销项")
    WRITE_OFF = ("write_off", "销项")
    REJECT_WRITE_OFF = ("reject_write_off", "退回销项")
    REINSPECT_CLEAN = ("reinspect_clean", "复查无反弹")
    REPORT_REBOUND = ("report_rebound", "反弹回潮")


class DetectionAction(LabelledEnum):
    """图斑核查操作: an action on a detected change."""

    CONFIRM = ("confirm", "确认入库")
    FALSE_POSITIVE = ("false_positive", "标记误报")
    BAD_IMAGERY = ("bad_imagery", "影像问题")
    REOPEN = ("reopen", "重新核查")


@dataclass(frozen=True)
class Rule:
    """Where an action leads and who may take it."""

    to: str
    roles: frozenset[Role]
    needs_evidence: bool = False
    needs_disposal: bool = False
    second_person: bool = False


_OFFICE = frozenset({Role.OFFICE})
_FIELD = frozenset({Role.OFFICE, Role.STREET_TOWN})
_ANYONE = frozenset({Role.OFFICE, Role.STREET_TOWN, Role.SYSTEM})

#: The case machine: (from state, action) -> rule. Nothing else is allowed.
CASE_RULES: dict[tuple[CaseState, CaseAction], Rule] = {
    (CaseState.OPEN, CaseAction.DISPATCH): Rule(CaseState.DISPATCHED, _OFFICE),
    (CaseState.REBOUND, CaseAction.DISPATCH): Rule(CaseState.DISPATCHED, _OFFICE),
    (CaseState.DISPATCHED, CaseAction.VERIFY): Rule(CaseState.VERIFIED, _FIELD),
    (CaseState.VERIFIED, CaseAction.DISPOSE): Rule(CaseState.DISPOSED, _FIELD, needs_disposal=True),
    (CaseState.DISPOSED, CaseAction.REQUEST_WRITE_OFF): Rule(
        CaseState.WRITE_OFF_REQUESTED, _FIELD, needs_evidence=True
    ),
    (CaseState.WRITE_OFF_REQUESTED, CaseAction.WRITE_OFF): Rule(
        CaseState.WRITTEN_OFF, _OFFICE, second_person=True
    ),
    (CaseState.WRITE_OFF_REQUESTED, CaseAction.REJECT_WRITE_OFF): Rule(CaseState.DISPOSED, _OFFICE),
    (CaseState.WRITTEN_OFF, CaseAction.REINSPECT_CLEAN): Rule(CaseState.REINSPECTED_CLEAN, _FIELD),
    (CaseState.WRITTEN_OFF, CaseAction.REPORT_REBOUND): Rule(CaseState.REBOUND, _ANYONE),
    (CaseState.REINSPECTED_CLEAN, CaseAction.REPORT_REBOUND): Rule(CaseState.REBOUND, _ANYONE),
}

#: The detection machine: (from state, action) -> rule.
DETECTION_RULES: dict[tuple[DetectionState, DetectionAction], Rule] = {
    (DetectionState.NEW, DetectionAction.CONFIRM): Rule(DetectionState.CONFIRMED, _FIELD),
    (DetectionState.NEW, DetectionAction.FALSE_POSITIVE): Rule(
        DetectionState.FALSE_POSITIVE, _FIELD
    ),
    (DetectionState.NEW, DetectionAction.BAD_IMAGERY): Rule(DetectionState.BAD_IMAGERY, _FIELD),
    (DetectionState.FALSE_POSITIVE, DetectionAction.REOPEN): Rule(DetectionState.NEW, _OFFICE),
    (DetectionState.BAD_IMAGERY, DetectionAction.REOPEN): Rule(DetectionState.NEW, _OFFICE),
}

#: Extra column assignments (SQL) made by a case action, beside state and version.
_CASE_EFFECTS: dict[CaseAction, dict[str, str]] = {
    CaseAction.DISPATCH: {"dispatched_at": "now()"},
    CaseAction.VERIFY: {"verified_at": "now()"},
    CaseAction.DISPOSE: {"disposal": ":disposal"},
    CaseAction.REQUEST_WRITE_OFF: {
        "write_off_requested_by": ":actor",
        "write_off_requested_at": "now()",
    },
    CaseAction.WRITE_OFF: {
        "written_off_by": ":actor",
        "written_off_at": "now()",
        "reinspection_due_on": f"(now() AT TIME ZONE '{OFFICE_TZ}')::date + :days",
    },
    CaseAction.REJECT_WRITE_OFF: {
        "write_off_requested_by": "NULL",
        "write_off_requested_at": "NULL",
    },
    CaseAction.REINSPECT_CLEAN: {"reinspected_at": "now()"},
    CaseAction.REPORT_REBOUND: {"reinspected_at": "now()"},
}


@dataclass(frozen=True)
class TransitionResult:
    """What one transition did. ``case_id`` is the case a confirmed detection created or joined."""

    id: int
    action: str
    from_state: str
    to_state: str
    version: int
    case_id: int | None = None
    case_created: bool = False


Evidence = str | Mapping[str, Any]
E = TypeVar("E", bound=LabelledEnum)


@contextmanager
def transaction(bind: Engine | Connection) -> Iterator[Connection]:
    """A connection in a transaction: a new one for an Engine, the caller's for a Connection."""
    if isinstance(bind, Engine):
        with bind.begin() as conn:
            yield conn
    elif bind.in_transaction():
        yield bind
    else:
        with bind.begin():
            yield bind


def allowed_case_actions(state: CaseState | str) -> list[CaseAction]:
    """The actions the case machine allows from ``state``."""
    return [a for (s, a) in CASE_RULES if s == CaseState(state)]


def allowed_detection_actions(state: DetectionState | str) -> list[DetectionAction]:
    """The actions the detection machine allows from ``state``."""
    return [a for (s, a) in DETECTION_RULES if s == DetectionState(state)]


def _evidence_json(evidence: Iterable[Evidence]) -> str:
    """Evidence references as a JSON array: strings (photo paths, scene ids) become {"ref": s}."""
    items = [{"ref": e} if isinstance(e, str) else dict(e) for e in evidence]
    return json.dumps(items, ensure_ascii=False, default=str)


def _parse(enum: type[E], value: object, what: str) -> E:
    try:
        return enum.parse(str(value))  # type: ignore[return-value]
    except ValueError as exc:
        raise InvalidInputError(f"{what}: {exc}") from None


def _check_rule(
    rules: Mapping[tuple[Any, Any], Rule],
    state: LabelledEnum,
    action: LabelledEnum,
    role: Role,
    subject: str,
    allowed: list[Any],
) -> Rule:
    rule = rules.get((state, action))
    if rule is None:
        options = ", ".join(f"{a.zh} ({a.value})" for a in allowed) or "none: the record is final"
        raise IllegalTransitionError(
            f"{subject} is {state.zh} ({state.value}): {action.zh} ({action.value}) is not "
            f"allowed from there. Allowed now: {options}"
        )
    if role not in rule.roles:
        raise PermissionDeniedError(
            f"role {role.zh} ({role.value}) may not {action.zh} ({action.value}) {subject}; "
            "allowed roles: " + ", ".join(f"{r.zh} ({r.value})" for r in sorted(rule.roles))
        )
    return rule


def _conflict(subject: str) -> ConflictError:
    return ConflictError(
        f"someone else changed {subject} at the same time; reload it and try again"
    )


@contextmanager
def _conflicts(subject: str) -> Iterator[None]:
    """Turn lock time-outs, serialisation failures and deadlocks into ConflictError."""
    try:
        yield
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) in ("55P03", "40001", "40P01"):
            raise _conflict(subject) from exc
        raise


def _append_history(
    conn: Connection,
    table: str,
    key: str,
    row_id: int,
    *,
    actor: str,
    role: Role,
    action: str,
    from_state: str | None,
    to_state: str | None,
    comment: str | None,
    evidence: str,
    changes: Mapping[str, Any] | None = None,
) -> None:
    conn.execute(
        text(
            f"INSERT INTO {table} ({key}, actor, role, action, from_state, to_state, changes, "
            "comment, evidence) VALUES (:id, :actor, :role, :action, :from_state, :to_state, "
            "CAST(:changes AS jsonb), :comment, CAST(:evidence AS jsonb))"
        ),
        {
            "id": row_id,
            "actor": actor,
            "role": role.value,
            "action": action,
            "from_state": from_state,
            "to_state": to_state,
            "comment": comment,
            "evidence": evidence,
            "changes": json.dumps(changes or {}, ensure_ascii=False, default=str),
        },
    )


def _check_actor(actor: str) -> str:
    actor = (actor or "").strip()
    if not actor:
        raise InvalidInputError(
            "actor is empty: every step is recorded with the name of who did it"
        )
    return actor


def transition_case(
    bind: Engine | Connection,
    case_id: int,
    action: CaseAction | str,
    *,
    actor: str,
    role: Role | str = Role.OFFICE,
    comment: str | None = None,
    evidence: Sequence[Evidence] = (),
    disposal: Disposal | str | None = None,
    expected_version: int | None = None,
    actor_unit: str | None = None,
    reinspection_days: int = DEFAULT_REINSPECTION_DAYS,
) -> TransitionResult:
    """Move case ``case_id`` by ``action``, appending one ``case_history`` row.

    ``evidence``: photo paths, scene ids, case-file numbers (strings) or mappings, stored in the
    history row. ``disposal`` is required by ``dispose``; ``request_write_off`` requires evidence.
    ``actor_unit``: the 街镇 code of a street/town user, who may act only on that 街镇's cases.
    ``reinspection_days``: write-off sets the re-inspection due date this many days ahead.

    Raises NotFoundError, IllegalTransitionError, PermissionDeniedError (wrong role, other
    街镇, or the write-off requester writing off), InvalidInputError, ConflictError.
    """
    action = _parse(CaseAction, action, "case action")
    role = _parse(Role, role, "role")
    actor = _check_actor(actor)
    subject = f"case {case_id}"
    with transaction(bind) as conn, _conflicts(subject):
        conn.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
        row = (
            conn.execute(
                text(
                    "SELECT case_number, state, version, street_town_code, write_off_requested_by "
                    "FROM inventory_case WHERE id = :id"
                ),
                {"id": case_id},
            )
            .mappings()
            .first()
        )
        if row is None:
            raise NotFoundError(f"case {case_id} does not exist")
        subject = f"case {row['case_number']} (id {case_id})"
        if expected_version is not None and row["version"] != expected_version:
            raise _conflict(subject)
        state = CaseState(row["state"])
        rule = _check_rule(CASE_RULES, state, action, role, subject, allowed_case_actions(state))
        if role == Role.STREET_TOWN and actor_unit and actor_unit != row["street_town_code"]:
            raise PermissionDeniedError(
                f"{subject} belongs to 街镇 {row['street_town_code']}, not to {actor_unit}: "
                "a 街镇 acts on its own cases only"
            )
        if rule.second_person and row["write_off_requested_by"] == actor:
            raise PermissionDeniedError(
                f"销项须由申请人以外的人员办理: {actor} requested the write-off of {subject}, so "
                "another office member must write it off"
            )
        changes: dict[str, Any] = {}
        if rule.needs_disposal:
            if disposal is None:
                raise InvalidInputError(
                    "dispose needs a disposal: one of "
                    + ", ".join(f"{d.zh} ({d.value})" for d in Disposal)
                )
            changes["disposal"] = _parse(Disposal, disposal, "disposal").value
        if rule.needs_evidence and not evidence:
            raise InvalidInputError(
                f"{action.zh} ({action.value}) needs evidence: give site photos, before/after "
                "scene ids or the case-file number"
            )
        if reinspection_days <= 0:
            raise InvalidInputError("reinspection_days must be positive")
        sets = ", ".join(f"{col} = {expr}" for col, expr in _CASE_EFFECTS[action].items())
        new = conn.execute(
            text(
                f"UPDATE inventory_case SET state = :to, version = version + 1, "
                f"updated_at = now(), {sets} WHERE id = :id AND version = :v "
                "RETURNING version, reinspection_due_on"
            ),
            {
                "to": rule.to,
                "id": case_id,
                "v": row["version"],
                "actor": actor,
                "disposal": changes.get("disposal"),
                "days": reinspection_days,
            },
        ).first()
        if new is None:
            raise _conflict(subject)
        if action == CaseAction.WRITE_OFF:
            changes["reinspection_due_on"] = new.reinspection_due_on.isoformat()
        _append_history(
            conn,
            "case_history",
            "case_id",
            case_id,
            actor=actor,
            role=role,
            action=action.value,
            from_state=state.value,
            to_state=rule.to,
            comment=comment,
            evidence=_evidence_json(evidence),
            changes=changes,
        )
    return TransitionResult(case_id, action.value, state.value, rule.to, new.version, case_id)


def transition_cases(
    bind: Engine | Connection,
    evidence_by_case: Mapping[int, Sequence[Evidence]],
    action: CaseAction | str,
    *,
    actor: str,
    role: Role | str = Role.SYSTEM,
    comment: str | None = None,
) -> list[int]:
    """Move many cases by one ``action`` in a few set-based statements (automatic transitions).

    The same rules as :func:`transition_case` (CASE_RULES and role), for actions that need no
    disposal, mandatory evidence or second person. Cases not in a state the action starts from
    (e.g. moved on by a person at the same moment) are left alone. Each moved case gets one
    history row with its own evidence. Returns the ids of the cases moved.
    """
    action = _parse(CaseAction, action, "case action")
    role = _parse(Role, role, "role")
    actor = _check_actor(actor)
    rules = {state: rule for (state, a), rule in CASE_RULES.items() if a == action}
    if any(r.needs_disposal or r.needs_evidence or r.second_person for r in rules.values()):
        raise InvalidInputError(f"{action.value} needs a person's input: use transition_case")
    if any(role not in r.roles for r in rules.values()):
        raise PermissionDeniedError(f"role {role.value} may not {action.value}")
    if not evidence_by_case:
        return []
    (to,) = {r.to for r in rules.values()}
    ids = list(evidence_by_case)
    sets = ", ".join(f"{col} = {expr}" for col, expr in _CASE_EFFECTS[action].items())
    with transaction(bind) as conn, _conflicts(f"{len(ids)} cases"):
        conn.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
        moved = (
            conn.execute(
                text(f"""
            WITH old AS (
                SELECT id, state FROM inventory_case
                WHERE id = ANY(:ids) AND state = ANY(:from_states) FOR UPDATE
            ), upd AS (
                UPDATE inventory_case c SET state = :to, version = c.version + 1,
                       updated_at = now(), {sets}
                FROM old WHERE c.id = old.id RETURNING c.id, old.state AS from_state
            ), ev AS (
                SELECT * FROM unnest(CAST(:ids AS bigint[]), CAST(:evidence AS jsonb[]))
                    AS e(case_id, evidence)
            )
            INSERT INTO case_history (case_id, actor, role, action, from_state, to_state,
                                      comment, evidence)
            SELECT upd.id, :actor, :role, :action, upd.from_state, :to, :comment, ev.evidence
            FROM upd JOIN ev ON ev.case_id = upd.id
            RETURNING case_id"""),
                {
                    "ids": ids,
                    "from_states": [s.value for s in rules],
                    "to": to,
                    "actor": actor,
                    "role": role.value,
                    "action": action.value,
                    "comment": comment,
                    "evidence": [_evidence_json(evidence_by_case[i]) for i in ids],
                },
            )
            .scalars()
            .all()
        )
    return sorted(int(i) for i in moved)


def review_detection(
    bind: Engine | Connection,
    detection_id: int,
    action: DetectionAction | str,
    *,
    actor: str,
    role: Role | str = Role.OFFICE,
    comment: str | None = None,
    evidence: Sequence[Evidence] = (),
    expected_version: int | None = None,
    overlap_threshold: float = 0.3,
) -> TransitionResult:
    """Move detection ``detection_id`` by ``action``, appending one ``detection_history`` row.

    ``confirm`` (入库) attaches the detection to the case it matched (known case, rebound,
    demolition evidence) or, for a new suspect, to an active case that now overlaps it by at
    least ``overlap_threshold`` (intersection over the smaller area; another run may have been
    confirmed meanwhile), else creates a new ``open`` case from it; the case's history records
    it too. A case is therefore never created twice for one structure.
    """
    action = _parse(DetectionAction, action, "detection action")
    role = _parse(Role, role, "role")
    actor = _check_actor(actor)
    subject = f"detection {detection_id}"
    with transaction(bind) as conn, _conflicts(subject):
        conn.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
        row = (
            conn.execute(
                text(
                    "SELECT run_id, state, version, match_class, matched_case_id FROM detection "
                    "WHERE id = :id"
                ),
                {"id": detection_id},
            )
            .mappings()
            .first()
        )
        if row is None:
            raise NotFoundError(f"detection {detection_id} does not exist")
        subject = f"detection {detection_id} of run {row['run_id']}"
        if expected_version is not None and row["version"] != expected_version:
            raise _conflict(subject)
        state = DetectionState(row["state"])
        rule = _check_rule(
            DETECTION_RULES, state, action, role, subject, allowed_detection_actions(state)
        )
        if action == DetectionAction.CONFIRM and row["match_class"] in (None, MatchClass.UNRELATED):
            raise IllegalTransitionError(
                f"{subject} is "
                + (
                    "not matched yet: run the matching of its run first"
                    if row["match_class"] is None
                    else "an unrelated change (a structure vanished where no case "
                    "is open): there is nothing to bring into the inventory"
                )
            )
        new = conn.execute(
            text(
                "UPDATE detection SET state = :to, version = version + 1, updated_at = now() "
                "WHERE id = :id AND version = :v RETURNING version"
            ),
            {"to": rule.to, "id": detection_id, "v": row["version"]},
        ).first()
        if new is None:
            raise _conflict(subject)
        case_id, created = None, False
        changes: dict[str, Any] = {}
        if action == DetectionAction.CONFIRM:
            case_id, created = _confirm_into_case(
                conn, detection_id, row, actor, role, overlap_threshold
            )
            changes = {"case_id": case_id, "case_created": created}
        _append_history(
            conn,
            "detection_history",
            "detection_id",
            detection_id,
            actor=actor,
            role=role,
            action=action.value,
            from_state=state.value,
            to_state=rule.to,
            comment=comment,
            evidence=_evidence_json(evidence),
            changes=changes,
        )
    return TransitionResult(
        detection_id, action.value, state.value, rule.to, new.version, case_id, created
    )


_RELATION = {
    MatchClass.KNOWN_CASE: "evidence",
    MatchClass.REBOUND: "rebound",
    MatchClass.DEMOLITION_EVIDENCE: "demolition",
}


def _confirm_into_case(
    conn: Connection,
    detection_id: int,
    row: Any,
    actor: str,
    role: Role,
    overlap_threshold: float,
) -> tuple[int, bool]:
    """Attach the detection to its case or create one; returns (case id, created)."""
    match_class = MatchClass(row["match_class"])
    found = row["matched_case_id"] if match_class in _RELATION else None
    relation = _RELATION.get(match_class, "evidence")
    if found is None:
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _CASE_CREATION_LOCK})
        found = conn.execute(
            text(
                "SELECT c.id FROM detection d JOIN inventory_case c "
                "ON ST_Intersects(c.geom, d.geom) WHERE d.id = :id AND c.state = ANY(:active) "
                "AND ST_Area(ST_Intersection(c.geom, d.geom)) "
                "    >= :t * LEAST(ST_Area(c.geom), d.area_m2) "
                "ORDER BY ST_Area(ST_Intersection(c.geom, d.geom)) DESC LIMIT 1"
            ),
            {
                "id": detection_id,
                "active": [s.value for s in ACTIVE_CASE_STATES],
                "t": overlap_threshold,
            },
        ).scalar()
    created = found is None
    evidence = _evidence_json([{"detection_id": detection_id, "run_id": row["run_id"]}])
    if found is None:
        case_id = int(
            conn.execute(
                text(f"""
            INSERT INTO inventory_case (case_number, construction_status, source, discovered_on,
                area_m2, street_town_code, village_code, remark, geom)
            SELECT 'YS' || to_char(s.acquired_at AT TIME ZONE '{OFFICE_TZ}', 'YYYY') || '-'
                       || lpad(nextval('suspect_case_number_seq')::text, 6, '0'),
                   'new',
                   CASE WHEN s.platform IN ('drone', 'satellite') THEN s.platform ELSE 'other' END,
                   (s.acquired_at AT TIME ZONE '{OFFICE_TZ}')::date,
                   d.area_m2, d.street_town_code, d.village_code,
                   '比对批次 ' || d.run_id || ' 图斑 ' || d.id || ' 确认入库', d.geom
            FROM detection d JOIN detection_run r ON r.id = d.run_id
                 JOIN scene s ON s.id = r.after_scene_id
            WHERE d.id = :id RETURNING id"""),
                {"id": detection_id},
            ).scalar_one()
        )
        relation = "origin"
        _append_history(
            conn,
            "case_history",
            "case_id",
            case_id,
            actor=actor,
            role=role,
            action="create",
            from_state=None,
            to_state=CaseState.OPEN.value,
            comment="由图斑确认入库",
            evidence=evidence,
        )
    else:
        case_id = int(found)
        state = conn.execute(
            text("SELECT state FROM inventory_case WHERE id = :id"), {"id": case_id}
        ).scalar_one()
        _append_history(
            conn,
            "case_history",
            "case_id",
            case_id,
            actor=actor,
            role=role,
            action="attach_evidence",
            from_state=state,
            to_state=state,
            comment=f"图斑佐证 ({relation})",
            evidence=evidence,
        )
    link_detection(conn, case_id, detection_id, relation, actor)
    return case_id, created


def link_detection(
    conn: Connection, case_id: int, detection_id: int, relation: str, actor: str
) -> None:
    """Record (once) that ``detection_id`` is evidence of ``case_id`` (append-only link)."""
    conn.execute(
        text(
            "INSERT INTO case_detection (case_id, detection_id, relation, linked_by) "
            "VALUES (:c, :d, :r, :a) ON CONFLICT (case_id, detection_id) DO NOTHING"
        ),
        {"c": case_id, "d": detection_id, "r": relation, "a": actor},
    )


def resolve_case(bind: Engine | Connection, ref: int | str) -> int:
    """The id of the case whose id or case number is ``ref``."""
    ref = str(ref).strip()
    with transaction(bind) as conn:
        found = conn.execute(
            text("SELECT id FROM inventory_case WHERE case_number = :r"), {"r": ref}
        ).scalar()
        if found is None and ref.isdigit():
            found = conn.execute(
                text("SELECT id FROM inventory_case WHERE id = :i"), {"i": int(ref)}
            ).scalar()
    if found is None:
        raise NotFoundError(f"no case with id or number {ref!r}")
    return int(found)


def history(
    bind: Engine | Connection, case_id: int | None = None, detection_id: int | None = None
) -> list[dict[str, Any]]:
    """The history rows of one case or one detection, oldest first."""
    if (case_id is None) == (detection_id is None):
        raise InvalidInputError("give exactly one of case_id and detection_id")
    table, key, value = (
        ("case_history", "case_id", case_id)
        if case_id is not None
        else ("detection_history", "detection_id", detection_id)
    )
    with transaction(bind) as conn:
        rows = (
            conn.execute(
                text(
                    f"SELECT id, at, actor, role, action, from_state, to_state, changes, comment, "
                    f"evidence FROM {table} WHERE {key} = :v ORDER BY at, id"
                ),
                {"v": value},
            )
            .mappings()
            .all()
        )
    return [dict(r) for r in rows]

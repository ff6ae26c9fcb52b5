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

The rules themselves (which action from which state, by whom) are in :mod:`gis_db.rules`, with
no database. This module is longer than 500 lines on purpose: every SQL transition of both
machines uses the one lock / version / rule check and the one history record written below, and
keeping them together is what makes a change to that protocol a change in one place.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, RowMapping, text
from sqlalchemy.exc import DBAPIError

from gis_db.domain import (
    OFFICE_TZ,
    CaseState,
    DetectionState,
    Disposal,
    LabelledEnum,
    MatchClass,
    Role,
)
from gis_db.engine import transaction
from gis_db.errors import (
    ConflictError,
    IllegalTransitionError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
)
from gis_db.rules import (
    ACTIVE_CASE_STATES,
    CASE_RULES,
    CLOSED_CASE_STATES,
    DEFAULT_REINSPECTION_DAYS,
    DETECTION_RULES,
    CaseAction,
    DetectionAction,
    Evidence,
    Rule,
    TransitionResult,
    allowed_case_actions,
    allowed_detection_actions,
    check_actor,
    check_rule,
    evidence_json,
    parse_label,
)

#: How long a transition waits for another transaction's row lock before giving up (conflict).
LOCK_TIMEOUT = "5s"
#: Advisory lock serialising case creation from detections, so that two confirmations of the
#: same structure (from two runs) can never create two cases.
_CASE_CREATION_LOCK = 0x5743_0001

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


def _conflict(subject: str, facts: Mapping[str, Any]) -> ConflictError:
    """The refusal of a change to a record someone else changed; ``facts`` identify it."""
    return ConflictError(
        f"someone else changed {subject} at the same time; reload it and try again",
        code="conflict",
        **facts,
    )


@contextmanager
def _conflicts(subject: str, facts: Mapping[str, Any]) -> Iterator[None]:
    """Turn lock time-outs, serialisation failures and deadlocks into ConflictError."""
    try:
        yield
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) in ("55P03", "40001", "40P01"):
            raise _conflict(subject, facts) from exc
        raise


@dataclass(frozen=True)
class _Machine:
    """What a transition reads of one machine's rows, and the rules it checks them against."""

    what: str
    #: SELECT of one row (``:id``) with at least ``state`` and ``version``
    select: str
    #: the append-only record: table and its key column
    history: str
    history_key: str
    rules: Mapping[tuple[Any, Any], Rule]
    state: Callable[[str], LabelledEnum]
    allowed: Callable[[Any], list[Any]]
    subject: Callable[[int, RowMapping], str]

    def facts(self, row_id: int, row: RowMapping | None = None) -> dict[str, Any]:
        """What identifies a record in a refusal's ``params``: machine, id, case number."""
        out: dict[str, Any] = {"what": self.what, "record_id": row_id}
        if row is not None and "case_number" in row:
            out["case_number"] = row["case_number"]
        return out


_CASE = _Machine(
    "case",
    "SELECT case_number, state, version, street_town_code, write_off_requested_by "
    "FROM inventory_case WHERE id = :id",
    "case_history",
    "case_id",
    CASE_RULES,
    CaseState,
    allowed_case_actions,
    lambda i, row: f"case {row['case_number']} (id {i})",
)
_DETECTION = _Machine(
    "detection",
    "SELECT run_id, state, version, match_class, matched_case_id FROM detection WHERE id = :id",
    "detection_history",
    "detection_id",
    DETECTION_RULES,
    DetectionState,
    allowed_detection_actions,
    lambda i, row: f"detection {i} of run {row['run_id']}",
)


def _set_lock_timeout(conn: Connection) -> None:
    conn.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))


def _lock_and_check(
    conn: Connection,
    machine: _Machine,
    row_id: int,
    action: LabelledEnum,
    role: Role,
    expected_version: int | None,
) -> tuple[RowMapping, str, Any, Rule]:
    """Read one row for a transition and check version, state and role against the rules.

    Returns the row, the subject named in messages, its current state and the rule to apply.
    """
    _set_lock_timeout(conn)
    row = conn.execute(text(machine.select), {"id": row_id}).mappings().first()
    if row is None:
        raise NotFoundError(
            f"{machine.what} {row_id} does not exist",
            code=f"{machine.what}_not_found",
            **machine.facts(row_id),
        )
    subject = machine.subject(row_id, row)
    facts = machine.facts(row_id, row)
    if expected_version is not None and row["version"] != expected_version:
        raise _conflict(subject, facts)
    state = machine.state(row["state"])
    rule = check_rule(
        machine.rules, state, action, role, subject, machine.allowed(state), facts=facts
    )
    return row, subject, state, rule


def _record(
    conn: Connection,
    machine: _Machine,
    row_id: int,
    actor: str,
    role: Role,
    action: LabelledEnum,
    state: LabelledEnum,
    rule: Rule,
    comment: str | None,
    evidence: Sequence[Evidence],
    changes: Mapping[str, Any],
) -> None:
    """The history row of one transition checked by :func:`_lock_and_check`."""
    _append_history(
        conn,
        machine.history,
        machine.history_key,
        row_id,
        actor=actor,
        role=role,
        action=action.value,
        from_state=state.value,
        to_state=rule.to,
        comment=comment,
        evidence=evidence_json(evidence),
        changes=changes,
    )


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
    action = parse_label(CaseAction, action, "case action")
    role = parse_label(Role, role, "role")
    actor = check_actor(actor)
    subject = f"case {case_id}"
    with transaction(bind) as conn, _conflicts(subject, _CASE.facts(case_id)):
        row, subject, state, rule = _lock_and_check(
            conn, _CASE, case_id, action, role, expected_version
        )
        if role == Role.STREET_TOWN and actor_unit and actor_unit != row["street_town_code"]:
            raise PermissionDeniedError(
                f"{subject} belongs to 街镇 {row['street_town_code']}, not to {actor_unit}: "
                "a 街镇 acts on its own cases only",
                code="other_street_town",
                street_town=row["street_town_code"],
                actor_unit=actor_unit,
                **_CASE.facts(case_id, row),
            )
        if rule.second_person and row["write_off_requested_by"] == actor:
            raise PermissionDeniedError(
                f"销项须由申请人以外的人员办理: {actor} requested the write-off of {subject}, so "
                "another office member must write it off",
                code="second_person_required",
                actor=actor,
                action=action.value,
                **_CASE.facts(case_id, row),
            )
        changes: dict[str, Any] = {}
        if rule.needs_disposal:
            if disposal is None:
                raise InvalidInputError(
                    "dispose needs a disposal: one of "
                    + ", ".join(f"{d.zh} ({d.value})" for d in Disposal),
                    code="disposal_required",
                    action=action.value,
                    **_CASE.facts(case_id, row),
                )
            changes["disposal"] = parse_label(Disposal, disposal, "disposal").value
        if rule.needs_evidence and not evidence:
            raise InvalidInputError(
                f"{action.zh} ({action.value}) needs evidence: give site photos, before/after "
                "scene ids or the case-file number",
                code="evidence_required",
                action=action.value,
                **_CASE.facts(case_id, row),
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
            raise _conflict(subject, _CASE.facts(case_id, row))
        if action == CaseAction.WRITE_OFF:
            changes["reinspection_due_on"] = new.reinspection_due_on.isoformat()
        _record(conn, _CASE, case_id, actor, role, action, state, rule, comment, evidence, changes)
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
    action = parse_label(CaseAction, action, "case action")
    role = parse_label(Role, role, "role")
    actor = check_actor(actor)
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
    with transaction(bind) as conn, _conflicts(f"{len(ids)} cases", {"what": "case"}):
        _set_lock_timeout(conn)
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
                    "evidence": [evidence_json(evidence_by_case[i]) for i in ids],
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
    action = parse_label(DetectionAction, action, "detection action")
    role = parse_label(Role, role, "role")
    actor = check_actor(actor)
    subject = f"detection {detection_id}"
    with transaction(bind) as conn, _conflicts(subject, _DETECTION.facts(detection_id)):
        row, subject, state, rule = _lock_and_check(
            conn, _DETECTION, detection_id, action, role, expected_version
        )
        if action == DetectionAction.CONFIRM and row["match_class"] in (None, MatchClass.UNRELATED):
            raise IllegalTransitionError(
                f"{subject} is "
                + (
                    "not matched yet: run the matching of its run first"
                    if row["match_class"] is None
                    else "an unrelated change (a structure vanished where no case "
                    "is open): there is nothing to bring into the inventory"
                ),
                code="detection_not_matched"
                if row["match_class"] is None
                else "detection_unrelated",
                action=action.value,
                **_DETECTION.facts(detection_id, row),
            )
        new = conn.execute(
            text(
                "UPDATE detection SET state = :to, version = version + 1, updated_at = now() "
                "WHERE id = :id AND version = :v RETURNING version"
            ),
            {"to": rule.to, "id": detection_id, "v": row["version"]},
        ).first()
        if new is None:
            raise _conflict(subject, _DETECTION.facts(detection_id, row))
        case_id, created = None, False
        changes: dict[str, Any] = {}
        if action == DetectionAction.CONFIRM:
            case_id, created = _confirm_into_case(
                conn, detection_id, row, actor, role, overlap_threshold
            )
            changes = {"case_id": case_id, "case_created": created}
        _record(
            conn,
            _DETECTION,
            detection_id,
            actor,
            role,
            action,
            state,
            rule,
            comment,
            evidence,
            changes,
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
    evidence = evidence_json([{"detection_id": detection_id, "run_id": row["run_id"]}])
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


__all__ = [
    "ACTIVE_CASE_STATES",
    "CASE_RULES",
    "CLOSED_CASE_STATES",
    "DEFAULT_REINSPECTION_DAYS",
    "DETECTION_RULES",
    "LOCK_TIMEOUT",
    "OFFICE_TZ",
    "CaseAction",
    "DetectionAction",
    "Evidence",
    "Rule",
    "TransitionResult",
    "allowed_case_actions",
    "allowed_detection_actions",
    "history",
    "link_detection",
    "resolve_case",
    "review_detection",
    "transaction",
    "transition_case",
    "transition_cases",
]

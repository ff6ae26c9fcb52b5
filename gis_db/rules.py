"""The rules of the two state machines (detections and cases), without any database access.

Each machine is a table ``(state, action) -> Rule``: where the action leads, which roles may take
it, and whether it needs evidence, a disposal or a second person. :mod:`gis_db.workflow` applies
these rules to the rows in one transaction each and keeps the record; the review application and
the command line read them to offer only the actions that are allowed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from gis_db.domain import CaseState, DetectionState, LabelledEnum, Role
from gis_db.errors import IllegalTransitionError, InvalidInputError, PermissionDeniedError

#: Default of MatchingSettings.reinspection_days: re-inspection due this many days after 销项.
DEFAULT_REINSPECTION_DAYS = 30
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


def allowed_case_actions(state: CaseState | str) -> list[CaseAction]:
    """The actions the case machine allows from ``state``."""
    return [a for (s, a) in CASE_RULES if s == CaseState(state)]


def allowed_detection_actions(state: DetectionState | str) -> list[DetectionAction]:
    """The actions the detection machine allows from ``state``."""
    return [a for (s, a) in DETECTION_RULES if s == DetectionState(state)]


def evidence_json(evidence: Iterable[Evidence]) -> str:
    """Evidence references as a JSON array: strings (photo paths, scene ids) become {"ref": s}."""
    items = [{"ref": e} if isinstance(e, str) else dict(e) for e in evidence]
    return json.dumps(items, ensure_ascii=False, default=str)


def parse_label(enum: type[E], value: object, what: str) -> E:
    """The member of ``enum`` named by ``value`` (code or Chinese label); a clear error if none."""
    try:
        return enum.parse(str(value))  # type: ignore[return-value]
    except ValueError as exc:
        raise InvalidInputError(
            f"{what}: {exc}", code="unknown_label", vocabulary=enum.__name__, value=str(value)
        ) from None


def check_rule(
    rules: Mapping[tuple[Any, Any], Rule],
    state: LabelledEnum,
    action: LabelledEnum,
    role: Role,
    subject: str,
    allowed: list[Any],
    facts: Mapping[str, Any] | None = None,
) -> Rule:
    """The rule for ``action`` from ``state``; refused when the machine or the role forbids it.

    ``facts``: what identifies the record (e.g. ``what``, ``record_id``, ``case_number``), added
    to the refusal's ``params`` beside the state, the action and what is allowed (as codes).
    """
    rule = rules.get((state, action))
    known = dict(facts or {})
    if rule is None:
        options = ", ".join(f"{a.zh} ({a.value})" for a in allowed) or "none: the record is final"
        raise IllegalTransitionError(
            f"{subject} is {state.zh} ({state.value}): {action.zh} ({action.value}) is not "
            f"allowed from there. Allowed now: {options}",
            code="illegal_transition",
            state=state.value,
            action=action.value,
            allowed=[a.value for a in allowed],
            **known,
        )
    if role not in rule.roles:
        raise PermissionDeniedError(
            f"role {role.zh} ({role.value}) may not {action.zh} ({action.value}) {subject}; "
            "allowed roles: " + ", ".join(f"{r.zh} ({r.value})" for r in sorted(rule.roles)),
            code="role_not_allowed",
            role=role.value,
            action=action.value,
            roles=[r.value for r in sorted(rule.roles)],
            **known,
        )
    return rule


def check_actor(actor: str) -> str:
    """``actor`` stripped; refused when empty (every step records who did it)."""
    actor = (actor or "").strip()
    if not actor:
        raise InvalidInputError(
            "actor is empty: every step is recorded with the name of who did it"
        )
    return actor

"""The state machine of cases and detections.

Every legal and illegal transition, roles, the second-person rule for 销项, evidence, and the
append-only record.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine, text

from gis_db import matching, workflow
from gis_db.domain import CaseState, DetectionState
from gis_db.errors import (
    ConflictError,
    IllegalTransitionError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
)
from gis_db.stats import office_today
from gis_db.workflow import CASE_RULES, DETECTION_RULES, CaseAction, DetectionAction
from weijian_testdata.runs import add_case, add_street_town, detection_ids, make_run, rect

#: Arguments that satisfy each action's requirements (disposal, evidence).
ARGS = {
    CaseAction.DISPOSE: {"disposal": "拆除"},
    CaseAction.REQUEST_WRITE_OFF: {"evidence": ["photos/site-1.jpg", {"scene_id": 7}]},
}


def _case(engine: Engine, state: CaseState, requested_by: str | None = None) -> int:
    case_id = add_case(engine, f"C-{state}", rect(0, 0), state=state.value)
    if requested_by:
        with engine.begin() as conn:
            conn.execute(
                text("UPDATE inventory_case SET write_off_requested_by = :a WHERE id = :i"),
                {"a": requested_by, "i": case_id},
            )
    return case_id


def _state_and_history(engine: Engine, case_id: int) -> tuple[str, list[tuple]]:
    with engine.connect() as conn:
        state = conn.execute(
            text("SELECT state FROM inventory_case WHERE id = :i"), {"i": case_id}
        ).scalar_one()
        rows = conn.execute(
            text(
                "SELECT actor, role, action, from_state, to_state, evidence "
                "FROM case_history WHERE case_id = :i ORDER BY id"
            ),
            {"i": case_id},
        ).all()
    return state, [tuple(r) for r in rows]


@pytest.mark.parametrize(("state", "action"), list(CASE_RULES), ids=lambda v: str(v))
def test_every_legal_case_transition(engine: Engine, state: CaseState, action: CaseAction) -> None:
    case_id = _case(engine, state, requested_by="alice")
    result = workflow.transition_case(
        engine, case_id, action, actor="bob", role="office", comment="ok", **ARGS.get(action, {})
    )
    rule = CASE_RULES[(state, action)]
    assert (result.from_state, result.to_state, result.version) == (state, rule.to, 2)
    now, rows = _state_and_history(engine, case_id)
    assert now == rule.to
    assert rows == [
        (
            "bob",
            "office",
            action.value,
            state.value,
            rule.to,
            [{"ref": "photos/site-1.jpg"}, {"scene_id": 7}]
            if action == CaseAction.REQUEST_WRITE_OFF
            else [],
        )
    ]


ILLEGAL_CASE = [(s, a) for s in CaseState for a in CaseAction if (s, a) not in CASE_RULES]


@pytest.mark.parametrize(("state", "action"), ILLEGAL_CASE, ids=lambda v: str(v))
def test_every_illegal_case_transition_is_refused(
    engine: Engine, state: CaseState, action: CaseAction
) -> None:
    case_id = _case(engine, state, requested_by="alice")
    with pytest.raises(IllegalTransitionError, match="not allowed from there"):
        workflow.transition_case(engine, case_id, action, actor="bob", **ARGS.get(action, {}))
    assert _state_and_history(engine, case_id) == (state.value, [])


def test_full_life_from_open_to_reinspected(engine: Engine) -> None:
    case_id = _case(engine, CaseState.OPEN)
    steps = [
        (CaseAction.DISPATCH, "office", "lead", {}),
        (CaseAction.VERIFY, "street_town", "yuepu", {"evidence": ["photos/a.jpg"]}),
        (CaseAction.DISPOSE, "street_town", "yuepu", {"disposal": "demolish"}),
        (CaseAction.REQUEST_WRITE_OFF, "street_town", "yuepu", {"evidence": ["photos/b.jpg"]}),
        (CaseAction.WRITE_OFF, "office", "lead", {}),
        (CaseAction.REINSPECT_CLEAN, "street_town", "yuepu", {}),
    ]
    for action, role, actor, kwargs in steps:
        workflow.transition_case(
            engine, case_id, action, actor=actor, role=role, reinspection_days=20, **kwargs
        )
    with engine.connect() as conn:
        case = (
            conn.execute(text("SELECT * FROM inventory_case WHERE id = :i"), {"i": case_id})
            .mappings()
            .one()
        )
    assert case["state"] == "reinspected_clean" and case["version"] == 7
    assert case["disposal"] == "demolish"
    assert case["write_off_requested_by"] == "yuepu" and case["written_off_by"] == "lead"
    assert case["reinspection_due_on"] == office_today() + timedelta(days=20)
    hist = workflow.history(engine, case_id=case_id)
    assert [h["action"] for h in hist] == [s[0].value for s in steps]
    assert hist[4]["changes"]["reinspection_due_on"] == case["reinspection_due_on"].isoformat()
    assert hist[2]["changes"] == {"disposal": "demolish"}


def test_write_off_needs_a_second_person(engine: Engine) -> None:
    case_id = _case(engine, CaseState.WRITE_OFF_REQUESTED, requested_by="alice")
    with pytest.raises(PermissionDeniedError, match="申请人以外"):
        workflow.transition_case(engine, case_id, "write_off", actor="alice")
    assert _state_and_history(engine, case_id)[0] == "write_off_requested"
    workflow.transition_case(engine, case_id, "销项", actor="carol")
    assert _state_and_history(engine, case_id)[0] == "written_off"


def test_requester_is_recorded_by_request(engine: Engine) -> None:
    case_id = _case(engine, CaseState.DISPOSED)
    workflow.transition_case(engine, case_id, "request_write_off", actor="dave", evidence=["x.jpg"])
    with pytest.raises(PermissionDeniedError):
        workflow.transition_case(engine, case_id, "write_off", actor="dave")


@pytest.mark.parametrize(
    ("state", "action"),
    [(CaseState.OPEN, "dispatch"), (CaseState.WRITE_OFF_REQUESTED, "write_off")],
)
def test_street_town_role_may_not_dispatch_or_write_off(
    engine: Engine, state: CaseState, action: str
) -> None:
    case_id = _case(engine, state, requested_by="alice")
    with pytest.raises(PermissionDeniedError, match="may not"):
        workflow.transition_case(engine, case_id, action, actor="bob", role="street_town")


def test_street_town_acts_on_its_own_cases_only(engine: Engine) -> None:
    add_street_town(engine, "ST1", "月浦镇", rect(-100, -100, 300, 300))
    case_id = add_case(engine, "C-own", rect(0, 0), state="dispatched", street_town="ST1")
    with pytest.raises(PermissionDeniedError, match="own cases"):
        workflow.transition_case(
            engine, case_id, "verify", actor="x", role="街镇", actor_unit="ST2"
        )
    workflow.transition_case(engine, case_id, "verify", actor="x", role="街镇", actor_unit="ST1")


def test_requirements_and_bad_input(engine: Engine) -> None:
    verified = _case(engine, CaseState.VERIFIED)
    with pytest.raises(InvalidInputError, match="disposal"):
        workflow.transition_case(engine, verified, "dispose", actor="a")
    with pytest.raises(InvalidInputError, match="disposal"):
        workflow.transition_case(engine, verified, "dispose", actor="a", disposal="burn")
    disposed = add_case(engine, "C-d2", rect(50, 0), state="disposed")
    with pytest.raises(InvalidInputError, match="needs evidence"):
        workflow.transition_case(engine, disposed, "request_write_off", actor="a")
    with pytest.raises(InvalidInputError, match="actor"):
        workflow.transition_case(engine, disposed, "request_write_off", actor=" ", evidence=["x"])
    with pytest.raises(InvalidInputError, match="case action"):
        workflow.transition_case(engine, disposed, "explode", actor="a")
    with pytest.raises(NotFoundError):
        workflow.transition_case(engine, 999_999, "dispatch", actor="a")


def test_stale_version_is_a_conflict(engine: Engine) -> None:
    case_id = _case(engine, CaseState.OPEN)
    workflow.transition_case(engine, case_id, "dispatch", actor="a", expected_version=1)
    with pytest.raises(ConflictError, match="reload"):
        workflow.transition_case(engine, case_id, "verify", actor="b", expected_version=1)


def test_resolve_case_by_number_or_id(engine: Engine) -> None:
    case_id = _case(engine, CaseState.OPEN)
    assert workflow.resolve_case(engine, "C-open") == case_id
    assert workflow.resolve_case(engine, str(case_id)) == case_id
    with pytest.raises(NotFoundError):
        workflow.resolve_case(engine, "nope")


# --- detections ---------------------------------------------------------------------------


def _matched_detection(engine: Engine, state: DetectionState = DetectionState.NEW) -> int:
    run_id = make_run(engine, [rect(500, 500)], tag=str(state))
    matching.match_run(engine, run_id)
    (det,) = detection_ids(engine, run_id)
    if state != DetectionState.NEW:
        with engine.begin() as conn:
            conn.execute(
                text("UPDATE detection SET state = :s WHERE id = :i"), {"s": state.value, "i": det}
            )
    return det


@pytest.mark.parametrize(("state", "action"), list(DETECTION_RULES), ids=lambda v: str(v))
def test_every_legal_detection_transition(
    engine: Engine, state: DetectionState, action: DetectionAction
) -> None:
    det = _matched_detection(engine, state)
    result = workflow.review_detection(engine, det, action, actor="rev", evidence=["s.jpg"])
    assert result.to_state == DETECTION_RULES[(state, action)].to
    (row,) = workflow.history(engine, detection_id=det)
    assert (row["from_state"], row["to_state"], row["evidence"]) == (
        state.value,
        result.to_state,
        [{"ref": "s.jpg"}],
    )


ILLEGAL_DET = [
    (s, a) for s in DetectionState for a in DetectionAction if (s, a) not in DETECTION_RULES
]


@pytest.mark.parametrize(("state", "action"), ILLEGAL_DET, ids=lambda v: str(v))
def test_every_illegal_detection_transition_is_refused(
    engine: Engine, state: DetectionState, action: DetectionAction
) -> None:
    det = _matched_detection(engine, state)
    with pytest.raises(IllegalTransitionError):
        workflow.review_detection(engine, det, action, actor="rev")
    assert workflow.history(engine, detection_id=det) == []


def test_confirming_a_new_suspect_creates_one_open_case(engine: Engine) -> None:
    det = _matched_detection(engine)
    result = workflow.review_detection(engine, det, "确认入库", actor="rev")
    assert result.case_created and result.case_id is not None
    with engine.connect() as conn:
        case = (
            conn.execute(text("SELECT * FROM inventory_case WHERE id = :i"), {"i": result.case_id})
            .mappings()
            .one()
        )
        link = conn.execute(
            text("SELECT relation FROM case_detection WHERE detection_id = :d"), {"d": det}
        ).scalar_one()
    assert case["state"] == "open" and case["construction_status"] == "new"
    assert case["case_number"].startswith("YS2026-") and case["source"] == "drone"
    assert link == "origin"
    (created,) = workflow.history(engine, case_id=result.case_id)
    assert created["action"] == "create" and created["evidence"][0]["detection_id"] == det


def test_confirming_a_known_case_attaches_evidence(engine: Engine) -> None:
    case_id = add_case(engine, "K-1", rect(500, 500), state="dispatched")
    run_id = make_run(engine, [rect(501, 501)])
    matching.match_run(engine, run_id)
    (det,) = detection_ids(engine, run_id)
    result = workflow.review_detection(engine, det, "confirm", actor="rev")
    assert (result.case_id, result.case_created) == (case_id, False)
    (row,) = workflow.history(engine, case_id=case_id)
    assert (
        row["action"] == "attach_evidence" and row["from_state"] == row["to_state"] == "dispatched"
    )


def test_confirm_never_duplicates_a_case_across_runs(engine: Engine) -> None:
    first = make_run(engine, [rect(500, 500)], tag="one")
    second = make_run(engine, [rect(501, 500)], tag="two")
    matching.match_run(engine, first)
    matching.match_run(engine, second)  # both new suspects: no case existed yet
    a = workflow.review_detection(engine, detection_ids(engine, first)[0], "confirm", actor="r")
    b = workflow.review_detection(engine, detection_ids(engine, second)[0], "confirm", actor="r")
    assert a.case_created and not b.case_created and a.case_id == b.case_id


def test_unmatched_detection_cannot_be_confirmed(engine: Engine) -> None:
    run_id = make_run(engine, [rect(0, 0)])
    with pytest.raises(IllegalTransitionError, match="not matched yet"):
        workflow.review_detection(engine, detection_ids(engine, run_id)[0], "confirm", actor="r")


def test_history_tables_are_append_only(engine: Engine) -> None:
    det = _matched_detection(engine)
    workflow.review_detection(engine, det, "confirm", actor="r")
    for statement in (
        "UPDATE detection_history SET actor = 'x'",
        "DELETE FROM case_detection",
        "DELETE FROM detection_history",
    ):
        with pytest.raises(Exception, match="append-only"), engine.begin() as conn:
            conn.execute(text(statement))

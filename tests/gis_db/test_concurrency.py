"""Two reviewers on the same case or detection at the same moment, through two real connections.

Exactly one succeeds, the other gets a ConflictError, and no update is lost.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, text

from gis_db import matching, workflow
from gis_db.errors import ConflictError, IllegalTransitionError
from weijian_testdata.runs import add_case, detection_ids, make_run, rect


def _race(
    engine: Engine, attempts: list[Callable[[], Any]]
) -> tuple[list[Any], list[BaseException]]:
    """Run the attempts in threads released together; their results and errors."""
    barrier = threading.Barrier(len(attempts))
    results: list[Any] = []
    errors: list[BaseException] = []

    def worker(fn: Callable[[], Any]) -> None:
        barrier.wait()
        try:
            results.append(fn())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(fn,)) for fn in attempts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results, errors


def test_second_writer_waits_for_the_first_then_conflicts(engine: Engine) -> None:
    """Deterministic interleaving: A holds its uncommitted transition while B tries."""
    case_id = add_case(engine, "C-1", rect(0, 0), state="open")
    outcome: dict[str, Any] = {}
    with engine.connect() as a:
        a.begin()
        workflow.transition_case(a, case_id, "dispatch", actor="alice")  # row locked, not committed

        def reviewer_b() -> None:
            try:
                outcome["b"] = workflow.transition_case(engine, case_id, "dispatch", actor="bob")
            except ConflictError as exc:
                outcome["b"] = exc

        b = threading.Thread(target=reviewer_b)
        b.start()
        time.sleep(0.5)
        assert b.is_alive()  # B read version 1 and now waits on A's row lock
        a.commit()
        b.join(10)
    assert isinstance(outcome["b"], ConflictError)
    assert "same time" in str(outcome["b"])
    rows = workflow.history(engine, case_id=case_id)
    assert [(r["actor"], r["to_state"]) for r in rows] == [("alice", "dispatched")]


def test_two_reviewers_on_one_case(engine: Engine) -> None:
    for attempt in range(5):
        case_id = add_case(engine, f"C-{attempt}", rect(30 * attempt, 0), state="verified")
        results, errors = _race(
            engine,
            [
                lambda c=case_id: workflow.transition_case(
                    engine, c, "dispose", actor="a", disposal="demolish", expected_version=1
                ),
                lambda c=case_id: workflow.transition_case(
                    engine, c, "dispose", actor="b", disposal="convert", expected_version=1
                ),
            ],
        )
        assert len(results) == 1 and len(errors) == 1
        assert isinstance(errors[0], ConflictError)
        with engine.connect() as conn:
            disposal, version = conn.execute(
                text("SELECT disposal, version FROM inventory_case WHERE id = :i"), {"i": case_id}
            ).one()
        (row,) = workflow.history(engine, case_id=case_id)
        assert version == 2 and row["changes"]["disposal"] == disposal  # the winner's, not lost


def test_two_reviewers_on_one_detection_make_one_case(engine: Engine) -> None:
    run_id = make_run(engine, [rect(200 * i, 0) for i in range(5)])
    matching.match_run(engine, run_id)
    for det in detection_ids(engine, run_id):
        results, errors = _race(
            engine,
            [
                lambda d=det: workflow.review_detection(engine, d, "confirm", actor="a"),
                lambda d=det: workflow.review_detection(engine, d, "false_positive", actor="b"),
            ],
        )
        assert len(results) == 1 and [type(e) for e in errors] in (
            [ConflictError],
            [IllegalTransitionError],
        )
        assert len(workflow.history(engine, detection_id=det)) == 1
    with engine.connect() as conn:
        confirmed = conn.execute(
            text("SELECT count(*) FROM detection WHERE state = 'confirmed'")
        ).scalar_one()
        cases = conn.execute(text("SELECT count(*) FROM inventory_case")).scalar_one()
    assert cases == confirmed

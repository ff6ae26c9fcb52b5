"""Matching in PostGIS: every match class, precedence, threshold, tolerance, units, rebounds."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import Engine, text

from gis_db import matching, workflow
from gis_db.errors import InvalidInputError
from weijian_testdata.runs import (
    add_case,
    add_permit,
    add_street_town,
    add_village,
    make_run,
    rect,
)


def _classes(engine: Engine, run_id: int) -> list[tuple]:
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                text(
                    "SELECT match_class, matched_case_id, matched_permit_id, street_town_code, "
                    "village_code FROM detection WHERE run_id = :r ORDER BY seq"
                ),
                {"r": run_id},
            )
        ]


def test_every_match_class(engine: Engine) -> None:
    known = add_case(engine, "K", rect(0, 0, 20, 20), state="verified")
    gone = add_case(engine, "W", rect(100, 0, 20, 20), state="written_off")
    clean = add_case(engine, "R", rect(200, 0, 20, 20), state="reinspected_clean")
    to_demolish = add_case(engine, "D", rect(300, 0, 20, 20), state="disposed")
    permit = add_permit(engine, "P", rect(400, 0, 40, 40), date(2026, 1, 1), date(2027, 1, 1))
    add_permit(engine, "P-old", rect(500, 0, 40, 40), date(2020, 1, 1), date(2021, 1, 1))
    add_permit(engine, "P-future", rect(600, 0, 40, 40), date(2026, 12, 1))
    run_id = make_run(
        engine,
        [
            rect(2, 2, 15, 15),  # known case
            rect(101, 1, 18, 18),  # rebound on written off
            rect(201, 1, 18, 18),  # rebound on re-inspected clean
            rect(300, 0, 20, 20),  # disappeared on an active case: demolition evidence
            rect(405, 5, 10, 10),  # inside a valid permit
            rect(505, 5, 10, 10),  # permit expired before the after image: new suspect
            rect(605, 5, 10, 10),  # permit not yet valid: new suspect
            rect(900, 900, 10, 10),  # nothing there: new suspect
            rect(1200, 900, 10, 10),  # disappeared where no case: unrelated
            rect(100, 0, 20, 20),  # disappeared on a written-off case: unrelated
        ],
        kinds=[
            "appeared",
            "changed",
            "appeared",
            "disappeared",
            "appeared",
            "appeared",
            "appeared",
            "appeared",
            "disappeared",
            "disappeared",
        ],
    )
    summary = matching.match_run(engine, run_id)
    assert [c[:3] for c in _classes(engine, run_id)] == [
        ("known_case", known, None),
        ("rebound", gone, None),
        ("rebound", clean, None),
        ("demolition_evidence", to_demolish, None),
        ("permitted", None, permit),
        ("new_suspect", None, None),
        ("new_suspect", None, None),
        ("new_suspect", None, None),
        ("unrelated", None, None),
        ("unrelated", None, None),
    ]
    assert summary.counts == {
        "new_suspect": 3,
        "known_case": 1,
        "rebound": 2,
        "demolition_evidence": 1,
        "permitted": 1,
        "unrelated": 2,
    }
    assert sorted(summary.rebound_case_ids) == sorted([gone, clean])


def test_rebound_reopens_the_case_with_system_history(engine: Engine) -> None:
    gone = add_case(engine, "W", rect(0, 0, 20, 20), state="written_off")
    run_id = make_run(engine, [rect(0, 0, 10, 10), rect(10, 10, 10, 10)])
    matching.match_run(engine, run_id)
    (row,) = workflow.history(engine, case_id=gone)
    assert (row["actor"], row["role"], row["action"], row["from_state"], row["to_state"]) == (
        "system",
        "system",
        "report_rebound",
        "written_off",
        "rebound",
    )
    assert len(row["evidence"]) == 2 and row["evidence"][0]["run_id"] == run_id
    with engine.connect() as conn:
        assert (
            conn.execute(
                text("SELECT state FROM inventory_case WHERE id = :i"), {"i": gone}
            ).scalar_one()
            == "rebound"
        )
        assert (
            conn.execute(
                text("SELECT count(*) FROM case_detection WHERE relation = 'rebound'")
            ).scalar_one()
            == 2
        )
    # matching again changes nothing
    again = matching.match_run(engine, run_id)
    assert again.already_matched and again.counts["rebound"] == 2
    assert len(workflow.history(engine, case_id=gone)) == 1


def test_precedence_permit_over_rebound_over_known(engine: Engine) -> None:
    add_case(engine, "active", rect(0, 0, 20, 20), state="open")
    gone = add_case(engine, "gone", rect(0, 0, 20, 20), state="written_off")
    run_id = make_run(engine, [rect(0, 0, 20, 20)])
    matching.match_run(engine, run_id)
    assert _classes(engine, run_id)[0][:2] == ("rebound", gone)

    permit = add_permit(engine, "P", rect(0, 0, 20, 20), date(2026, 1, 1))
    run2 = make_run(engine, [rect(0, 0, 20, 20)], tag="b")
    matching.match_run(engine, run2)
    assert _classes(engine, run2)[0][:3] == ("permitted", None, permit)


def test_overlap_is_intersection_over_the_smaller_area(engine: Engine) -> None:
    big = add_case(engine, "big", rect(0, 0, 200, 200))
    # a 10 m square wholly inside a 40,000 m² case: overlap 1 over the smaller area
    run_id = make_run(engine, [rect(50, 50, 10, 10), rect(195, 50, 40, 10)])
    matching.match_run(engine, run_id, tolerance_m=0)
    classes = _classes(engine, run_id)
    assert classes[0][:2] == ("known_case", big)
    assert classes[1][0] == "new_suspect"  # 5 of 40 m inside: 0.125 < 0.3
    with engine.connect() as conn:
        overlap = conn.execute(
            text("SELECT match_overlap FROM detection WHERE run_id = :r ORDER BY seq LIMIT 1"),
            {"r": run_id},
        ).scalar_one()
    assert overlap == pytest.approx(1.0)


@pytest.mark.parametrize(("tolerance", "expected"), [(0.0, "new_suspect"), (2.0, "known_case")])
def test_tolerance_buffer_absorbs_misregistration(
    engine: Engine, tolerance: float, expected: str
) -> None:
    add_case(engine, "shed", rect(0, 0, 4, 4))
    run_id = make_run(engine, [rect(3, 0, 4, 4)])  # the same 4 m shed seen 3 m off: 25 % raw
    matching.match_run(engine, run_id, tolerance_m=tolerance, overlap_threshold=0.3)
    assert _classes(engine, run_id)[0][0] == expected


def test_units_of_largest_overlap(engine: Engine) -> None:
    add_street_town(engine, "A", "月浦镇", rect(-100, -100, 200, 300))
    add_street_town(engine, "B", "罗店镇", rect(100, -100, 200, 300))
    add_village(engine, "A1", "一村", "A", rect(-100, -100, 200, 300))
    add_village(engine, "B1", "二村", "B", rect(100, -100, 200, 300))
    run_id = make_run(engine, [rect(90, 0, 30, 10), rect(70, 0, 40, 10), rect(5000, 0)])
    matching.match_run(engine, run_id)
    assert [c[3:] for c in _classes(engine, run_id)] == [("B", "B1"), ("A", "A1"), (None, None)]


def test_bad_arguments(engine: Engine) -> None:
    run_id = make_run(engine, [rect(0, 0)])
    with pytest.raises(InvalidInputError):
        matching.match_run(engine, run_id, overlap_threshold=0)
    with pytest.raises(InvalidInputError):
        matching.match_run(engine, run_id, tolerance_m=-1)

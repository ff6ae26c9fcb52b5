"""The analysts' API (gis_db.query) on a real PostGIS: filters by 街镇 and 居村, typos refused."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from gis_db.errors import InvalidInputError
from gis_db.query import load_cases
from weijian_testdata.runs import add_case, add_street_town, add_village, rect


def _district(engine: Engine) -> None:
    add_street_town(engine, "310113104", "月浦镇", rect(-1000, -1000, 1000, 2000))
    add_street_town(engine, "310113101", "罗店镇", rect(0, -1000, 1000, 2000))
    add_village(engine, "310113104001", "月浦村", "310113104", rect(-1000, -1000, 500, 500))
    add_case(engine, "YP-1", rect(-900, -900), street_town="310113104")
    add_case(engine, "YP-2", rect(-800, -900), street_town="310113104")


def test_a_street_town_by_name_or_code_and_one_without_cases(engine: Engine) -> None:
    _district(engine)
    assert load_cases(engine, street_town="月浦镇").case_number.tolist() == ["YP-1", "YP-2"]
    assert len(load_cases(engine, street_town=["310113104"])) == 2
    assert load_cases(engine, street_town="罗店镇").empty  # loaded, no case: no error


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ({"street_town": "月浦"}, r"no 街镇 with code or name '月浦'; did you mean 月浦镇\?"),
        ({"street_town": ["月浦镇", "罗店"]}, r"'罗店'; did you mean 罗店镇"),
        ({"village": "月埔村"}, r"no 居村 with code or name '月埔村'; did you mean 月浦村"),
    ],
)
def test_a_misspelt_street_town_or_village_is_refused_not_an_empty_frame(
    engine: Engine, filters: dict[str, object], message: str
) -> None:
    """Before, a typo returned no case: "月浦 has none" and "月浦 is no 街镇" looked alike."""
    _district(engine)
    with pytest.raises(InvalidInputError, match=message):
        load_cases(engine, **filters)  # type: ignore[arg-type]

"""Times on the pages and the static map are the office's (Shanghai) wall clock."""

from __future__ import annotations

from datetime import UTC, datetime

from web_map.labels import local_time


def test_a_moment_is_shown_on_the_shanghai_calendar() -> None:
    # a scene taken at midnight in Shanghai is stored as 16:00 UTC the day before
    taken = datetime(2025, 3, 9, 16, 0, tzinfo=UTC)
    assert local_time(taken, "%Y-%m-%d") == "2025-03-10"
    assert local_time(taken) == "2025-03-10 00:00"
    assert local_time(None) == ""

"""``scripts/review_loop.py --teaching``: the table of what the office's reviews would teach."""

from __future__ import annotations

import re

import pytest

from change_detection.data import find_pairs, load_pair, matches
from change_detection.weights import shipped_weights
from tests.scripts.conftest import load_script
from weijian_testdata.rasters import CHANGE_PAIRS


@pytest.mark.slow
def test_teaching_signal_prints_one_row_with_cores_off_and_one_as_set(
    capsys: pytest.CaptureFixture[str],
) -> None:
    if not (CHANGE_PAIRS / "dsifn_256" / "A").is_dir():
        pytest.fail(f"the real change pairs are missing at {CHANGE_PAIRS}")
    files = find_pairs([CHANGE_PAIRS / "dsifn_256", CHANGE_PAIRS / "levir_256"])
    district = [
        load_pair(f) for f in files if matches(f.name, ["dsifn_256/2_4", "levir_256/train_412_*"])
    ]
    assert len(district) == 2
    load_script("review_loop").teaching_signal(shipped_weights("tinysiam"), district)
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("| cores | detections | confirmable")
    rows = [line.strip("|").split("|") for line in lines[2:]]
    assert [row[0].strip() for row in rows] == ["off", "0.6"]  # the settings' core threshold
    for row in rows:
        detections, confirmable = int(row[1]), int(row[2])
        assert 0 < confirmable <= detections
        shares = [float(m) for m in re.findall(r"([\d.]+)%", "|".join(row[3:]))]
        assert len(shares) == 3 and all(0 <= s <= 100 for s in shares)
        assert 0 < float(row[4]) <= 1  # median IoU of a confirmed polygon with its building(s)
    # seeded cores split joined houses and drop weak regions: the two rows differ
    assert rows[0][1:] != rows[1][1:]

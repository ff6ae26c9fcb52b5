"""Seeded test data shared by the test suite and the benchmarks (never shipped in the wheel).

- :mod:`weijian_testdata.inventory`: inventory cases, 街镇 grids and the files offices send;
- :mod:`weijian_testdata.runs`: scenes, detection runs and cases written to a test database;
- :mod:`weijian_testdata.rasters`: small georeferenced test rasters and the real change pairs.

Real data comes from ``../shared/data`` found relative to this repository (:data:`SHARED_DATA`),
never from an absolute machine path. Importable from the repository root (the editable install
puts it on ``sys.path``); nothing here imports the test suite.
"""

from __future__ import annotations

from pathlib import Path

#: The repository root.
REPO_ROOT = Path(__file__).resolve().parents[1]
#: The shared read-only data beside the repository (``../shared/data``).
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

"""Every notebook under notebooks/ runs top to bottom in a real Jupyter kernel."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))


@pytest.mark.slow
def run_notebook(path: Path, folder: Path) -> nbformat.NotebookNode:
    """Execute the notebook at ``path`` in a real Jupyter kernel, working in ``folder``."""
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(folder)}}
    ).execute()
    return notebook


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(
    path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("WEIJIAN_DATABASE_URL", db_url)
    notebook = run_notebook(path, tmp_path)
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any(o.output_type == "execute_result" for o in outputs)
    # nothing for the analyst to puzzle over (e.g. geopandas' "centroid in a geographic CRS")
    warned = [o.text for o in outputs if o.output_type == "stream" and "Warning" in o.text]
    assert not warned, warned


def test_there_are_notebooks() -> None:
    assert NOTEBOOKS, "notebooks/ holds no notebook"


@pytest.mark.slow
def test_trends_notebook_changes_nothing_on_an_office_run(
    db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """On a run that is not the demo's, nothing reviewed yet: the notebook reviews nothing.

    Before, it confirmed the three largest new suspects of whatever run was newest: decisions
    in the office's permanent record, made by opening an analysis notebook.
    """
    from sqlalchemy import create_engine, text

    from gis_db.matching import match_run
    from weijian_testdata.runs import add_street_town, make_run, random_rects, rect

    engine = create_engine(db_url)
    try:
        add_street_town(engine, "310113104", "月浦镇", rect(-2000, -2000, 4000, 4000))
        run_id = make_run(engine, random_rects(12, seed=3))
        match_run(engine, run_id)
        monkeypatch.setenv("WEIJIAN_DATABASE_URL", db_url)
        run_notebook(next(p for p in NOTEBOOKS if p.stem == "trends_by_street_town"), tmp_path)
        with engine.connect() as conn:
            states = conn.execute(
                text("SELECT state, count(*) FROM detection GROUP BY state")
            ).all()
            history = conn.execute(text("SELECT count(*) FROM detection_history")).scalar()
    finally:
        engine.dispose()
    assert [tuple(s) for s in states] == [("new", 12)]
    assert history == 0

"""``weijian scene`` and ``weijian pair`` through the real entry point (one-line errors, exit 1)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ingest import describe_scene
from weijian.cli import app
from weijian_testdata import rasters as data_gen

runner = CliRunner()


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("cli")
    before = data_gen.make_ground(d / "baoshan_20230601.tif", size=384)
    after = data_gen.resample_to(
        before, d / "baoshan_20240315.tif", "EPSG:32651", 1.0, offset_m=(0.6, -0.4)
    )
    return before, after


def _weijian(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    code = "from weijian.cli import main; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "WEIJIAN_CONFIG": ""} | {"PYTHONPATH": str(Path.cwd())},
        timeout=300,
        check=False,
    )


def test_scene_add_writes_stac_and_prints_json(images: tuple[Path, Path]) -> None:
    before, _ = images
    result = runner.invoke(app, ["scene", "add", str(before), "--json"])
    assert result.exit_code == 0, result.output
    scene = json.loads(result.output)
    assert scene["gsd_m"] == pytest.approx(0.5, rel=1e-3) and scene["platform"] == "satellite"
    assert scene["acquired"] == "2023-06-01T00:00:00+08:00" and scene["acquired_from"] == "filename"
    stac = before.with_name("baoshan_20230601.stac.json")
    assert json.loads(stac.read_text())["properties"]["proj:code"] == "EPSG:4549"


def test_scene_info_table(images: tuple[Path, Path]) -> None:
    result = runner.invoke(app, ["scene", "info", str(images[1])])
    assert result.exit_code == 0, result.output
    assert "EPSG:32651" in result.output and "2024-03-15" in result.output


def test_pair_prepare_writes_cogs_and_report(images: tuple[Path, Path], tmp_path: Path) -> None:
    before, after = images
    result = runner.invoke(
        app, ["pair", "prepare", str(before), str(after), "--out", str(tmp_path / "out")]
    )
    assert result.exit_code == 0, result.output
    assert "shift dx=+0.6" in result.output.replace("\n", "")
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["shift"]["dx_m"] == pytest.approx(0.6, abs=0.1)
    assert report["shift"]["dy_m"] == pytest.approx(-0.4, abs=0.1)
    coreg = report["coregistration"]
    assert coreg["model_applied"] == "translation" and coreg["confident"] is True
    assert coreg["blocks_agreeing"] >= 4 and coreg["confidence"] >= 0.5
    assert coreg["residual_px"] is not None and coreg["residual_px"] < 0.5
    assert "translation applied" in result.output.replace("\n", " ")
    assert {p.name for p in (tmp_path / "out").iterdir()} == {
        "before.tif",
        "after.tif",
        "pair.json",
        "report.json",
    }


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: (d / "x.tif").write_bytes(b"garbage" * 50) and d / "x.tif", "cannot be opened"),
        (lambda d: d / "missing.tif", "does not exist"),
    ],
)
def test_errors_are_one_line_and_exit_1(tmp_path: Path, make, message: str) -> None:  # type: ignore[no-untyped-def]
    path = make(tmp_path)
    proc = _weijian("scene", "info", str(path), cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_pair_error_no_overlap(images: tuple[Path, Path], tmp_path: Path) -> None:
    far = data_gen.write_raster(
        tmp_path / "far_20240101.tif",
        data_gen.texture(64, 64),
        crs="EPSG:4549",
        transform=data_gen.ground_transform(0.5, offset_m=(9000, 0)),
    )
    proc = _weijian(
        "pair", "prepare", str(images[0]), str(far), "--out", str(tmp_path / "o"), cwd=tmp_path
    )
    assert (
        proc.returncode == 1 and "do not overlap" in proc.stderr and "Traceback" not in proc.stderr
    )


def test_impossible_coordinates_one_line_from_scene_add_and_pair_prepare(
    images: tuple[Path, Path], tmp_path: Path
) -> None:
    """Longitude 500 in EPSG:4326: refused with one line by both commands, nothing written."""
    from affine import Affine

    bad = data_gen.write_raster(
        tmp_path / "lon500_20240101.tif",
        data_gen.texture(64, 64),
        crs="EPSG:4326",
        transform=Affine(1e-5, 0, 500.0, 0, -1e-5, 31.35),
    )
    for args in (
        ("scene", "add", str(bad)),
        ("pair", "prepare", str(images[0]), str(bad), "--out", str(tmp_path / "o")),
    ):
        proc = _weijian(*args, cwd=tmp_path)
        assert proc.returncode == 1, proc.stderr
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "impossible in WGS 84" in lines[0], proc.stderr
    assert not (tmp_path / "o").exists() and not bad.with_name("lon500_20240101.stac.json").exists()


def test_pair_prepare_not_confident_warns_in_one_line(tmp_path: Path) -> None:
    """A real pair with little unchanged ground: one warning line, no shift, in the report."""
    a, b, _ = data_gen.real_pair_geotiffs(tmp_path, "0_2", "dsifn_256", after_offset_m=(3.0, 0.0))
    proc = _weijian("pair", "prepare", str(a), str(b), "--out", str(tmp_path / "o"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if "not confident" in line]
    assert len(lines) == 1 and "georeference kept as is" in lines[0], proc.stdout
    assert "none applied" in proc.stdout
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["coregistration"]["model_applied"] == "none"
    assert report["shift"]["dx_m"] == 0.0 and report["shift"]["dy_m"] == 0.0


def test_scene_info_rounds_the_gsd_and_says_how_to_get_the_checksum(tmp_path: Path) -> None:
    """A GSD of about 0.4999 m reads 0.50 m; no blank checksum row; --json keeps full values."""
    path = data_gen.make_ground(tmp_path / "baoshan_20240601.tif", size=64, gsd_m=0.4999)
    table = runner.invoke(app, ["scene", "info", str(path)], env={"COLUMNS": "120"})
    assert table.exit_code == 0, table.output
    gsd = describe_scene(path).gsd_m
    assert round(gsd, 4) != round(gsd, 2)  # the raw figure has more digits than staff need
    assert "0.50 m" in table.output and f"{gsd:.4f}" not in table.output
    assert "sha256" in table.output and "--checksum" in table.output
    rows = [line for line in table.output.splitlines() if "sha256" in line]
    assert all("│" not in line for line in rows), rows  # a hint below the table, not a row
    plain = json.loads(runner.invoke(app, ["scene", "info", str(path), "--json"]).output)
    assert plain["gsd_m"] == gsd and plain["sha256"] is None  # full precision

    summed = runner.invoke(app, ["scene", "info", str(path), "--checksum"], env={"COLUMNS": "120"})
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert summed.exit_code == 0, summed.output
    assert digest in summed.output and "--checksum" not in summed.output
    as_json = runner.invoke(app, ["scene", "info", str(path), "--checksum", "--json"])
    assert json.loads(as_json.output)["sha256"] == digest

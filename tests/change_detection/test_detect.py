"""Whole-pair detection: seams, georeferencing, resolution, outputs, re-runs and bad inputs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from PIL import Image

import ingest
from change_detection import detect_pair, load_model, predict_proba
from change_detection.detect import (
    PROBA_NAME,
    SCALE,
    DetectResult,
    Plan,
    assemble_block,
    block_name,
    read_meta,
    resolve_pair,
    tile_key,
    write_blocks_vrt,
)
from change_detection.errors import (
    InputError,
    OutputExistsError,
    PairInputError,
    SchedulerError,
)
from tests.change_detection import detect_data as dd
from tests.change_detection.conftest import REAL_PAIRS
from tests.conftest import skip_or_fail
from weijian_testdata import rasters as data_gen


def _diff_detect(pair_dir: Path, out: Path, **options: Any) -> DetectResult:
    """``detect_pair`` with the difference network in 128 px tiles overlapping by 16, no bar."""
    small: dict[str, Any] = {"tile_px": 128, "overlap_px": 16, "progress": False}
    return detect_pair(pair_dir, dd.diff_model(), out, **(small | options))


@pytest.fixture(scope="module")
def roof(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, tuple[float, ...], str]:
    """A 400 px pair warped into EPSG:32651 with one new 30 x 20 m roof; aligned to EPSG:4549."""
    return dd.roof_pair(tmp_path_factory.mktemp("roof"), size=400)


@pytest.fixture(scope="module")
def roof_result(
    roof: tuple[Path, tuple[float, ...], str], tmp_path_factory: pytest.TempPathFactory
) -> DetectResult:
    pair_dir, _, _ = roof
    out = tmp_path_factory.mktemp("roof_out")
    return _diff_detect(pair_dir, out)


def test_synthetic_roof_found_within_one_pixel_in_every_crs(
    roof: tuple[Path, tuple[float, ...], str], roof_result: DetectResult
) -> None:
    _, box, crs = roof
    truth = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)  # in EPSG:32651
    frame = roof_result.polygons
    assert len(frame) == 1 and frame.crs.to_epsg() == 4549
    c = frame.geometry.iloc[0].centroid
    x, y = dd.to_crs(c.x, c.y, "EPSG:4549", crs)
    assert np.hypot(x - truth[0], y - truth[1]) < 0.5  # 1 px at 0.5 m
    assert frame.area_m2.iloc[0] == pytest.approx(600, rel=0.05)
    # the GeoJSON in EPSG:4326
    exported = gpd.read_file(roof_result.geojson_path)
    assert exported.crs.to_epsg() == 4326
    lon, lat = exported.geometry.iloc[0].centroid.coords[0]
    x, y = dd.to_crs(lon, lat, "EPSG:4326", crs)
    assert np.hypot(x - truth[0], y - truth[1]) < 0.5
    # the GeoPackage in the working CRS
    gpkg = gpd.read_file(roof_result.gpkg_path)
    assert gpkg.crs.to_epsg() == 4549 and len(gpkg) == 1
    for column in ("score_mean", "score_max", "area_m2", "change_kind", "tile_id", "run_id"):
        assert column in gpkg.columns
    assert gpkg.score_max.iloc[0] >= gpkg.score_mean.iloc[0] > 0.9


def test_probability_cog_on_the_working_grid_with_nodata_and_overviews(
    roof: tuple[Path, tuple[float, ...], str], roof_result: DetectResult
) -> None:
    pair = ingest.AlignedPair.load(roof[0] / "pair.json")
    with rasterio.open(roof_result.proba_path) as src:
        assert src.crs.to_epsg() == 4549
        assert tuple(src.transform)[:6] == pytest.approx(pair.transform)
        assert (src.width, src.height) == (pair.width, pair.height)
        assert src.nodata == 255 and src.dtypes[0] == "uint8"
        assert src.overviews(1)  # built for QGIS
        assert src.profile.get("tiled")
        data = src.read(1)
    # the corners of the grid lie outside the warped footprint: nodata there, never a polygon
    assert (data == 255).any()
    assert (data[data != 255] <= SCALE).all()
    meta = roof_result.meta
    assert meta["status"] == "complete" and meta["network_gsd_m"] == 0.5
    assert set(meta["timings_s"]) >= {"open", "infer_blend", "cog", "vectorize", "write", "total"}
    assert meta["counts"]["polygons"] == 1 and meta["weights_checksum"]
    assert json.loads(roof_result.meta_path.read_text())["status"] == "complete"


def test_building_across_a_tile_seam_is_one_polygon(tmp_path: Path) -> None:
    # tiles of 128 px overlapping by 16: a seam region spans columns 112-128; the roof crosses it
    pair_dir, _, _ = dd.roof_pair(tmp_path, size=300, crs="EPSG:4549", roof_m=(50, 30, 70, 45))
    result = _diff_detect(pair_dir, tmp_path / "out")
    assert len(result.polygons) == 1
    assert result.polygons.area_m2.iloc[0] == pytest.approx(20 * 15, rel=0.06)


def test_pair_at_another_gsd_is_run_at_the_networks_gsd(tmp_path: Path) -> None:
    pair_dir, box, crs = dd.roof_pair(
        tmp_path, size=300, working_gsd_m=1.0, roof_m=(40, 30, 80, 60)
    )
    result = detect_pair(
        pair_dir, dd.diff_model(), tmp_path / "out", tile_px=64, overlap_px=8, progress=False
    )
    meta = result.meta
    assert meta["pair_gsd_m"] == 1.0 and meta["network_gsd_m"] == 0.5
    assert meta["resampled_for_network"] is True
    with rasterio.open(result.proba_path) as src:
        assert src.transform.a == 1.0  # the output stays on the pair's grid
    assert len(result.polygons) == 1
    c = result.polygons.geometry.iloc[0].centroid
    x, y = dd.to_crs(c.x, c.y, "EPSG:4549", crs)
    assert np.hypot(x - (box[0] + box[2]) / 2, y - (box[1] + box[3]) / 2) < 1.0


@pytest.mark.slow
def test_mosaic_equals_whole_image_inference_away_from_the_edges(tmp_path: Path) -> None:
    """A 1024 px real pair in 512 px tiles (the default size) against one whole-image pass.

    The network has global context (squeeze-excitation), so a tile never equals the whole image
    exactly; the blended mosaic must agree closely everywhere, seams included.
    """
    if not (REAL_PAIRS / "levir_1024" / "A").is_dir():
        skip_or_fail(f"the real change pairs are missing at {REAL_PAIRS}")
    name = "test_7"
    a, b, _ = data_gen.real_pair_geotiffs(tmp_path, name=name, folder="levir_1024")
    pair = ingest.prepare_pair(
        a, b, working_crs="EPSG:4549", gsd_m=0.5, coregister=False, histogram_match=False
    )
    model = load_model()
    result = detect_pair(pair, model, tmp_path / "out", tile_px=512, overlap_px=64, progress=False)
    with rasterio.open(result.proba_path) as src:
        mosaic = src.read(1).astype(np.float32) / SCALE
    whole = predict_proba(
        model,
        np.asarray(Image.open(REAL_PAIRS / "levir_1024" / "A" / f"{name}.png"))[..., :3],
        np.asarray(Image.open(REAL_PAIRS / "levir_1024" / "B" / f"{name}.png"))[..., :3],
    )
    inner = (slice(32, -32), slice(32, -32))
    diff = np.abs(mosaic[inner] - whole[inner])
    assert diff.mean() < 0.01, diff.mean()
    assert np.percentile(diff, 99) < 0.1, np.percentile(diff, 99)
    seam = np.abs(mosaic[:, 448:512] - whole[:, 448:512])[32:-32]  # the tiles' overlap
    assert seam.mean() < 2 * diff.mean() + 0.005, (seam.mean(), diff.mean())
    changed_t, changed_w = mosaic >= model.threshold, whole >= model.threshold
    iou = (changed_t & changed_w).sum() / (changed_t | changed_w).sum()
    assert iou > 0.9, iou


def test_rerun_identical_changes_nothing_and_other_params_are_refused(
    roof: tuple[Path, tuple[float, ...], str], roof_result: DetectResult
) -> None:
    again = _diff_detect(roof[0], roof_result.out_dir)
    assert again.meta["finished_at"] == roof_result.meta["finished_at"]
    assert again.polygons.geometry.iloc[0].equals(roof_result.polygons.geometry.iloc[0])
    with pytest.raises(OutputExistsError, match="overwrite"):
        _diff_detect(roof[0], roof_result.out_dir, threshold=0.9)


def test_output_folder_of_another_pair_refused_unless_overwrite(
    roof_result: DetectResult, tmp_path: Path
) -> None:
    other, _, _ = dd.roof_pair(tmp_path, size=200, crs="EPSG:4549", roof_m=(10, 10, 30, 30))
    out = tmp_path / "shared_out"
    shutil.copytree(roof_result.out_dir, out)
    with pytest.raises(OutputExistsError, match="another pair"):
        _diff_detect(other, out)
    result = _diff_detect(other, out, overwrite=True)
    assert json.dumps(read_meta(out)["pair"]) == json.dumps(result.meta["pair"])


def test_missing_and_corrupt_pair_json(tmp_path: Path) -> None:
    with pytest.raises(PairInputError, match="weijian pair prepare"):
        detect_pair(tmp_path / "nowhere", dd.diff_model(), tmp_path / "o", progress=False)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "pair.json").write_text('{"crs": "EPSG:4549", "tra')
    with pytest.raises(PairInputError, match=r"pair\.json"):
        detect_pair(tmp_path / "bad", dd.diff_model(), tmp_path / "o", progress=False)
    assert not (tmp_path / "o").exists()


def test_missing_source_image(roof: tuple[Path, tuple[float, ...], str], tmp_path: Path) -> None:
    spec = json.loads((roof[0] / "pair.json").read_text())
    spec["after"]["source"] = str(tmp_path / "gone_20240601.tif")
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "pair.json").write_text(json.dumps(spec))
    with pytest.raises(PairInputError, match=r"gone_20240601\.tif"):
        detect_pair(tmp_path / "p", dd.diff_model(), tmp_path / "o", progress=False)


def test_corrupt_source_image(roof: tuple[Path, tuple[float, ...], str], tmp_path: Path) -> None:
    spec = json.loads((roof[0] / "pair.json").read_text())
    broken = tmp_path / "broken_20240601.tif"
    data = Path(spec["after"]["source"]).read_bytes()
    broken.write_bytes(data[: len(data) // 2])  # a copy cut short: tiles missing
    spec["after"]["source"] = str(broken)
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "pair.json").write_text(json.dumps(spec))
    with pytest.raises(PairInputError, match=r"broken_20240601\.tif"):
        detect_pair(tmp_path / "p", dd.diff_model(), tmp_path / "o", progress=False)


def test_weights_for_another_number_of_bands(tmp_path: Path) -> None:
    ground = data_gen.write_raster(
        tmp_path / "g_20230601.tif",
        data_gen.texture(128, 128, bands=5),
        crs="EPSG:4549",
        transform=data_gen.ground_transform(0.5),
    )
    later = data_gen.write_raster(
        tmp_path / "g_20240601.tif",
        data_gen.texture(128, 128, seed=2, bands=5),
        crs="EPSG:4549",
        transform=data_gen.ground_transform(0.5),
    )
    pair = ingest.prepare_pair(ground, later, coregister=False)
    with pytest.raises(InputError, match="5 bands"):
        detect_pair(pair, dd.diff_model(), tmp_path / "o", progress=False)


def test_pair_without_common_valid_area(
    roof: tuple[Path, tuple[float, ...], str], tmp_path: Path
) -> None:
    from dataclasses import replace

    from shapely.geometry import box

    pair = ingest.AlignedPair.load(roof[0] / "pair.json")
    far = replace(pair, footprint_wkt=box(0, 0, 10, 10).wkt)  # nowhere near the grid
    with pytest.raises(PairInputError, match="no common valid area"):
        detect_pair(far, dd.diff_model(), tmp_path / "o", progress=False)


def test_unreachable_scheduler_named_within_the_timeout(
    roof: tuple[Path, tuple[float, ...], str], tmp_path: Path
) -> None:
    import socket
    import time

    with socket.socket() as s:  # a free port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    t0 = time.perf_counter()
    with pytest.raises(SchedulerError, match=address):
        detect_pair(
            roof[0],
            dd.diff_model(),
            tmp_path / "o",
            scheduler=address,
            scheduler_timeout_s=2,
            progress=False,
        )
    assert time.perf_counter() - t0 < 30
    meta = read_meta(tmp_path / "o")
    assert meta is None or meta["status"] == "incomplete"
    assert not (tmp_path / "o" / PROBA_NAME).exists()


def _cli(*args: str, cwd: Path, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*dd.WEIJIAN, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env=dd.weijian_env(cwd, **env),
    )


@pytest.mark.slow
def test_killed_run_resumes_without_recomputing_and_ends_identical(tmp_path: Path) -> None:
    pair_dir, _, _ = dd.roof_pair(tmp_path, size=640, crs="EPSG:4549")
    args = ("detect", str(pair_dir), "--no-db", "--no-progress", "--tile-px", "128")
    env = {"WEIJIAN_DETECTION__BATCH_SIZE": "1", "WEIJIAN_DETECTION__OVERLAP_PX": "16"}
    out = tmp_path / "killed"
    proc = _cli(*args, "--out", str(out), cwd=tmp_path, **env)
    work = out / ".detect-work"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        done = len(list(work.glob("tiles/*.npy"))) + len(list(work.glob("block_*.tif")))
        if done >= 8:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed: make the pair larger"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert read_meta(out)["status"] == "incomplete"
    assert not (out / PROBA_NAME).exists()
    resumed = _cli(*args, "--out", str(out), cwd=tmp_path, **env)
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read() if resumed.stderr else ""
    full = _cli(*args, "--out", str(tmp_path / "full"), cwd=tmp_path, **env)
    assert full.wait(timeout=600) == 0
    meta = read_meta(out)
    assert meta["status"] == "complete" and not work.exists()
    assert meta["counts"]["tiles_resumed"] >= 4
    assert meta["counts"]["tiles_computed"] < meta["counts"]["tiles"]
    with rasterio.open(out / PROBA_NAME) as a, rasterio.open(tmp_path / "full" / PROBA_NAME) as b:
        assert np.array_equal(a.read(1), b.read(1))
    left = gpd.read_file(out / "changes.gpkg")
    right = gpd.read_file(tmp_path / "full" / "changes.gpkg")
    assert len(left) == len(right) >= 1
    assert all(g.equals_exact(h, 1e-9) for g, h in zip(left.geometry, right.geometry, strict=True))


@pytest.fixture()
def dask_cluster(tmp_path: Path) -> Iterator[str]:
    """A real dask.distributed scheduler and two single-thread worker processes on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(dd.REPO)}
    bin_dir = Path(sys.executable).parent
    scheduler = subprocess.Popen(
        [
            str(bin_dir / "dask"),
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-dashboard",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    workers = subprocess.Popen(
        [
            str(bin_dir / "dask"),
            "worker",
            address,
            "--nworkers",
            "2",
            "--nthreads",
            "1",
            "--no-dashboard",
            "--host",
            "127.0.0.1",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        from distributed import Client

        with Client(address, timeout=120) as client:
            client.wait_for_workers(2, timeout=180)
        yield address
    finally:
        for proc in (workers, scheduler):
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.mark.slow
def test_dask_cluster_output_equals_single_process_output(
    dask_cluster: str, tmp_path: Path
) -> None:
    pair_dir, _, _ = dd.roof_pair(tmp_path, size=320, crs="EPSG:4549")
    model = load_model()
    kw = {"tile_px": 128, "overlap_px": 16, "batch_size": 2, "progress": False}
    single = detect_pair(pair_dir, model, tmp_path / "single", **kw)
    spread = detect_pair(pair_dir, model, tmp_path / "dask", scheduler=dask_cluster, **kw)
    assert spread.meta["counts"]["tiles_computed"] == single.meta["counts"]["tiles"] >= 9
    with rasterio.open(single.proba_path) as a, rasterio.open(spread.proba_path) as b:
        x, y = a.read(1).astype(int), b.read(1).astype(int)
    assert np.abs(x - y).max() <= 1  # thread count may change the last float bit
    assert (x == y).mean() > 0.999
    assert len(single.polygons) == len(spread.polygons)
    assert np.allclose(single.polygons.area_m2, spread.polygons.area_m2, rtol=0.02)
    local = detect_pair(pair_dir, model, tmp_path / "local", workers=2, **kw)  # LocalCluster
    with rasterio.open(local.proba_path) as c:
        assert np.abs(c.read(1).astype(int) - x).max() <= 1


def test_out_of_disk_space_leaves_nothing_marked_complete(tmp_path: Path) -> None:
    """A real write failure: the child process may not write files over 40 kB (EFBIG)."""
    import resource

    pair_dir, _, _ = dd.roof_pair(tmp_path, size=256, crs="EPSG:4549")

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (40_000, 40_000))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    out = tmp_path / "out"
    args = ["detect", str(pair_dir), "--out", str(out), "--no-db", "--no-progress"]
    done = subprocess.run(
        [*dd.WEIJIAN, *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=dd.weijian_env(
            tmp_path,
            PYTHONDONTWRITEBYTECODE="1",  # no truncated .pyc under the file-size limit
            WEIJIAN_DETECTION__TILE_PX="128",
            WEIJIAN_DETECTION__OVERLAP_PX="16",
        ),
        preexec_fn=small_files,
        timeout=600,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "out of disk space" in done.stderr and "Traceback" not in done.stderr
    meta = read_meta(out)
    assert meta is None or meta["status"] == "incomplete"
    assert not (out / PROBA_NAME).exists() and not (out / "changes.gpkg").exists()
    assert not list(out.glob(".detect-work/**/*.tmp*"))
    result = detect_pair(  # the same run as the command's (its default engine), resumed
        pair_dir,
        load_model(),
        out,
        tile_px=128,
        overlap_px=16,
        engine="onnxruntime",
        progress=False,
    )
    assert result.meta["status"] == "complete"


def test_progress_callback_counts_every_tile_and_pixel(
    roof: tuple[Path, tuple[float, ...], str], tmp_path: Path
) -> None:
    calls: list[tuple[int, int, int]] = []
    result = _diff_detect(
        roof[0], tmp_path / "o", progress=lambda done, total, px: calls.append((done, total, px))
    )
    done, total, px = calls[-1]
    assert done == total == result.meta["counts"]["tiles"]
    assert px == result.meta["counts"]["tile_px_total"]
    assert [c[0] for c in calls] == sorted(c[0] for c in calls)


def test_blocks_narrower_than_the_pair_blend_exactly_like_one_wide_block(tmp_path: Path) -> None:
    """Blending memory is one block; blocks cut at any tile step give the same raster exactly."""
    pair_dir, _, _ = dd.roof_pair(tmp_path, size=300, crs="EPSG:4549")
    pair = resolve_pair(pair_dir)
    wide = Plan.build(pair, 64, 8)  # one block per row of tiles: the pair is narrower than a block
    narrow = Plan.build(pair, 64, 8, block_px=112)  # blocks two tile steps wide
    assert len({b[2] for b in wide.blocks}) == 1 and len({b[2] for b in narrow.blocks}) == 3
    assert max(b[3] - b[2] for b in narrow.blocks) == 112
    rng = np.random.default_rng(0)
    parts = tmp_path / "tiles"
    parts.mkdir()
    for t in wide.tasks:
        part = rng.random((2, t.height, t.width)).astype(np.float16)
        part[:, :3, :5] = np.nan  # outside the valid area
        np.save(parts / f"{tile_key(t)}.npy", part)
    mosaics, counts = {}, {}
    for name, plan in (("wide", wide), ("narrow", narrow)):
        work = tmp_path / name
        work.mkdir()
        counts[name] = sum(
            assemble_block(plan, k, parts, work / block_name(k)) for k in range(len(plan.blocks))
        )
        with rasterio.open(write_blocks_vrt(plan, work, work / "b.vrt", bands=(1, 2))) as src:
            mosaics[name] = src.read()
    assert np.array_equal(mosaics["wide"], mosaics["narrow"])
    assert counts["wide"] == counts["narrow"] == (mosaics["wide"][0] != 255).sum() > 0
    assert (mosaics["wide"][0] == 255).any()  # the NaN corners that no other tile covers


def test_local_cluster_leaves_the_callers_environment_as_it_was(
    roof: tuple[Path, tuple[float, ...], str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dask's nanny sets MALLOC_TRIM_THRESHOLD_, OMP_NUM_THREADS, ... in the caller's os.environ.

    Analysts call ``detect_pair`` from a notebook: every process they start afterwards inherited
    those (with MALLOC_TRIM_THRESHOLD_ a spawned process needed ~25 % more CPU for the network).
    """
    for key in ("MALLOC_TRIM_THRESHOLD_", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "PYTHONHASHSEED"):
        monkeypatch.delenv(key, raising=False)  # unset: Dask would set them
    before = dict(os.environ)
    result = _diff_detect(roof[0], tmp_path / "o", workers=2)
    assert result.meta["counts"]["tiles_computed"] == result.meta["counts"]["tiles"]
    assert dict(os.environ) == before


def test_seeded_core_polygons_in_blocks_equal_the_whole_array(
    roof: tuple[Path, tuple[float, ...], str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``detect``'s block-wise polygons with seeded cores equal the whole array's.

    Regions and objects that cross block borders (blocks of 64 px here) come out once, whole.
    """
    from scipy import ndimage

    from change_detection import detect as detect_module
    from change_detection.vectorize import VectorizeParams, polygons_from_proba

    pair = resolve_pair(roof[0])
    plan = Plan.build(pair, 128, 16)
    rng = np.random.default_rng(5)
    field = ndimage.gaussian_filter(rng.standard_normal((pair.height, pair.width)), 5)
    stored = np.round(254 / (1 + np.exp(-field / field.std() * 3))).astype(np.uint8)
    stored[:20, :30] = 255  # nodata
    cue = rng.integers(100, 156, stored.shape, dtype=np.uint8)
    raster = tmp_path / "blocks.tif"
    with rasterio.open(
        raster, "w", driver="GTiff", width=pair.width, height=pair.height, count=2, dtype="uint8"
    ) as dst:
        dst.write(np.stack([stored, cue]))
    params = VectorizeParams(threshold=0.6, core_threshold=0.85, min_area_m2=2.0, grow_margin=0.2)
    valid = stored != 255
    whole = polygons_from_proba(
        np.where(valid, stored / np.float32(SCALE), np.nan).astype(np.float32),
        pair.affine,
        params,
        valid=valid,
        cue=(cue.astype(np.float32) - 128.0) / detect_module.CUE_SCALE,
        footprint=pair.footprint,
    )
    monkeypatch.setattr(detect_module, "VECTOR_BLOCK_PX", 64)
    blocked = detect_module.vectorize_blocks(plan, raster, params)
    assert len(whole) > 20 and len(blocked) == len(whole)
    lines = [pair.affine @ (x, 0) for x in range(64, pair.width, 64)]
    assert any(
        r["geometry"].bounds[0] < x < r["geometry"].bounds[2] for r in whole for x, _ in lines
    )
    for a, b in zip(whole, blocked, strict=True):
        assert (a["n_px"], a["change_kind"]) == (b["n_px"], b["change_kind"])
        assert a["score_mean"] == pytest.approx(b["score_mean"], abs=1e-9)
        assert a["geometry"].symmetric_difference(b["geometry"]).area < 1e-6


def test_detect_records_the_seeded_core_settings_and_refuses_cores_under_the_threshold(
    roof: tuple[Path, tuple[float, ...], str], roof_result: DetectResult, tmp_path: Path
) -> None:
    from change_detection.vectorize import VectorizeParams

    cored = VectorizeParams(threshold=0.5, core_threshold=0.8, core_min_area_m2=3, grow_margin=0.1)
    result = _diff_detect(roof[0], tmp_path / "o", vectorize=cored)
    recorded = result.meta["vectorize"]
    assert (recorded["core_threshold"], recorded["core_min_area_m2"]) == (0.8, 3)
    assert recorded["grow_margin"] == 0.1 and result.meta["threshold"] == 0.5
    assert roof_result.meta["vectorize"]["core_threshold"] == 0.0  # the library default: off
    assert result.meta["run_id"] != roof_result.meta["run_id"]  # in the run key
    assert len(result.polygons) == 1  # the roof: one core, one polygon
    with pytest.raises(InputError, match=r"core threshold 0\.4 is not above the threshold 0\.5"):
        _diff_detect(
            roof[0], tmp_path / "o2", vectorize=VectorizeParams(threshold=0.5, core_threshold=0.4)
        )

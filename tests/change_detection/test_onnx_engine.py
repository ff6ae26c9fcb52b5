"""The ONNX Runtime engine matches torch within 1e-3 on real tiles and through detect_pair."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image

import ingest
from change_detection import detect_pair, load_model, predict_proba
from change_detection.detect import InferSpec, model_proba
from change_detection.onnx_engine import TOLERANCE, export_onnx, onnx_session
from tests.change_detection.conftest import REAL_PAIRS
from tests.conftest import skip_or_fail
from weijian_testdata import rasters as data_gen


def _real(name_index: int = 0) -> tuple[str, np.ndarray, np.ndarray]:
    if not (REAL_PAIRS / "levir_256" / "A").is_dir():
        skip_or_fail(f"the real change pairs are missing at {REAL_PAIRS}")
    name = sorted((REAL_PAIRS / "levir_256" / "A").glob("*.png"))[name_index].stem
    a = np.asarray(Image.open(REAL_PAIRS / "levir_256" / "A" / f"{name}.png"))[..., :3]
    b = np.asarray(Image.open(REAL_PAIRS / "levir_256" / "B" / f"{name}.png"))[..., :3]
    return name, a, b


def test_onnx_probabilities_match_torch_on_real_tiles() -> None:
    model = load_model(device="cpu")
    session = onnx_session(export_onnx(model))
    spec = InferSpec("torch", 255.0, 1.0, 256, tuple(model.mean), tuple(model.std))
    batch_b, batch_a = [], []
    for i in range(2):
        _, a, b = _real(i)
        mean = np.asarray(model.mean, np.float32).reshape(3, 1, 1)
        std = np.asarray(model.std, np.float32).reshape(3, 1, 1)
        batch_b.append((np.moveaxis(a, -1, 0).astype(np.float32) - mean) / std)
        batch_a.append((np.moveaxis(b, -1, 0).astype(np.float32) - mean) / std)
    xb, xa = np.stack(batch_b), np.stack(batch_a)
    ref = model_proba(model, xb, xa, spec)
    got = model_proba(session, xb, xa, replace(spec, engine="onnxruntime"))
    assert np.abs(ref - got).max() < TOLERANCE


def test_detect_with_onnxruntime_equals_torch_to_the_stored_precision(tmp_path: Path) -> None:
    name, _, _ = _real(0)
    a, b, _ = data_gen.real_pair_geotiffs(tmp_path, name=name, folder="levir_256")
    pair = ingest.prepare_pair(a, b, coregister=False, histogram_match=False)
    model = load_model(device="cpu")
    kw = {"tile_px": 128, "overlap_px": 32, "progress": False}
    torch_run = detect_pair(pair, model, tmp_path / "torch", **kw)
    onnx_run = detect_pair(pair, model, tmp_path / "onnx", engine="onnxruntime", **kw)
    assert onnx_run.meta["engine"] == "onnxruntime"
    with rasterio.open(torch_run.proba_path) as x, rasterio.open(onnx_run.proba_path) as y:
        diff = np.abs(x.read(1).astype(int) - y.read(1).astype(int))
    assert diff.max() <= 1  # uint8 steps of 1/254: rounding of values within 1e-3
    assert len(torch_run.polygons) == len(onnx_run.polygons)
    assert np.allclose(torch_run.polygons.area_m2, onnx_run.polygons.area_m2, rtol=0.02)


def test_tta_in_both_engines_agrees_within_the_tolerance() -> None:
    """Test-time augmentation is the same shared step for torch and ONNX Runtime."""
    model = load_model(device="cpu")
    session = onnx_session(export_onnx(model))
    spec = InferSpec("torch", 255.0, 1.0, 256, tuple(model.mean), tuple(model.std), tta=True)
    _, a, b = _real(1)
    mean = np.asarray(model.mean, np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(model.std, np.float32).reshape(1, 3, 1, 1)
    xb = (np.moveaxis(a, -1, 0)[None].astype(np.float32) - mean) / std
    xa = (np.moveaxis(b, -1, 0)[None].astype(np.float32) - mean) / std
    ref = model_proba(model, xb, xa, spec)
    got = model_proba(session, xb, xa, replace(spec, engine="onnxruntime"))
    assert np.abs(ref - got).max() < TOLERANCE
    # TTA really ran: it is not the plain prediction, and it is the shared predict_proba's TTA
    plain = model_proba(model, xb, xa, replace(spec, tta=False))
    assert np.abs(ref - plain).max() > 10 * TOLERANCE
    assert np.abs(ref[0] - predict_proba(model, a, b, tta=True)).max() < 1e-5


def test_detect_with_tta_in_onnxruntime_equals_torch(tmp_path: Path) -> None:
    name, _, _ = _real(1)
    a, b, _ = data_gen.real_pair_geotiffs(tmp_path, name=name, folder="levir_256")
    pair = ingest.prepare_pair(a, b, coregister=False, histogram_match=False)
    model = load_model(device="cpu")
    kw = {"tile_px": 128, "overlap_px": 32, "progress": False, "tta": True}
    torch_run = detect_pair(pair, model, tmp_path / "torch", **kw)
    onnx_run = detect_pair(pair, model, tmp_path / "onnx", engine="onnxruntime", **kw)
    plain = detect_pair(
        pair,
        model,
        tmp_path / "plain",
        engine="onnxruntime",
        progress=False,
        tile_px=128,
        overlap_px=32,
    )
    assert torch_run.meta["tta"] is True and onnx_run.meta["tta"] is True
    assert plain.run_id != onnx_run.run_id
    with (
        rasterio.open(torch_run.proba_path) as x,
        rasterio.open(onnx_run.proba_path) as y,
        rasterio.open(plain.proba_path) as z,
    ):
        tx, oy, pz = (d.read(1).astype(int) for d in (x, y, z))
    assert np.abs(tx - oy).max() <= 1  # uint8 steps of 1/254
    assert np.abs(oy - pz).max() > 1  # the augmented mosaic is another one


def test_ensemble_file_in_both_engines_and_with_tta(tmp_path: Path) -> None:
    """The shipped three-seed ensemble: its own ONNX export, torch and ONNX Runtime agree."""
    from change_detection.detect import weights_checksum

    single, ensemble = load_model("tinysiam", "cpu"), load_model("tinysiam_ensemble", "cpu")
    # the export cache tells the ensemble from its first member (parameters of every member)
    one, three = export_onnx(single, cache_dir=tmp_path), export_onnx(ensemble, cache_dir=tmp_path)
    assert one != three and len(three) > 2 * len(one)  # (exports are also cached in memory)
    _, a, b = _real(1)
    a, b = a[:64, :64], b[:64, :64]  # TTA runs the three members 8 times: a small tile
    mean = np.asarray(ensemble.mean, np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(ensemble.std, np.float32).reshape(1, 3, 1, 1)
    xb = (np.moveaxis(a, -1, 0)[None].astype(np.float32) - mean) / std
    xa = (np.moveaxis(b, -1, 0)[None].astype(np.float32) - mean) / std
    spec = InferSpec("torch", 255.0, 1.0, 64, tuple(ensemble.mean), tuple(ensemble.std), tta=True)
    session = onnx_session(three)
    for tta in (False, True):
        ref = model_proba(ensemble, xb, xa, replace(spec, tta=tta))
        got = model_proba(session, xb, xa, replace(spec, engine="onnxruntime", tta=tta))
        assert np.abs(ref - got).max() < TOLERANCE, tta

    # detect_pair given the file's name, in both engines; the run records the ensemble
    name, _, _ = _real(0)
    pa, pb, _ = data_gen.real_pair_geotiffs(tmp_path, name=name, folder="levir_256")
    pair = ingest.prepare_pair(pa, pb, coregister=False, histogram_match=False)
    kw = {"tile_px": 128, "overlap_px": 32, "progress": False}
    torch_run = detect_pair(pair, "tinysiam_ensemble", tmp_path / "torch", **kw)
    onnx_run = detect_pair(pair, "tinysiam_ensemble", tmp_path / "onnx", engine="onnxruntime", **kw)
    with rasterio.open(torch_run.proba_path) as x, rasterio.open(onnx_run.proba_path) as y:
        assert np.abs(x.read(1).astype(int) - y.read(1).astype(int)).max() <= 1
    meta = onnx_run.meta
    assert meta["network"] == "tinysiam" and meta["threshold"] == ensemble.threshold == 0.31
    assert meta["weights_checksum"] == weights_checksum(ensemble) != weights_checksum(single)
    assert meta["weights_metadata"]["ensemble_size"] == 3
    assert [m["seed"] for m in meta["weights_metadata"]["members"]] == [0, 1, 2]

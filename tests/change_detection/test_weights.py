"""Weights files: round trip with metadata, shipped weights, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from change_detection import load_model
from change_detection.errors import DeviceError, UnknownNetworkError, WeightsError
from change_detection.networks import NETWORKS, build_network
from change_detection.weights import resolve_device, save_weights, shipped_weights


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_round_trip_keeps_parameters_and_metadata(tmp_path: Path, name: str) -> None:
    torch.manual_seed(0)
    net = build_network(name).eval()
    meta = {
        "mean": [100.0, 110.0, 120.0],
        "std": [50.0, 51.0, 52.0],
        "gsd_m": 0.5,
        "threshold": 0.42,
        "training_data": ["x"],
    }
    path = save_weights(tmp_path / "w.pt", net, name, meta)
    model = load_model(path, device="cpu")
    assert model.network == name and model.threshold == 0.42
    assert model.mean == meta["mean"] and model.std == meta["std"] and model.gsd_m == 0.5
    for (k, a), b in zip(net.state_dict().items(), model.net.state_dict().values(), strict=True):
        assert b.dtype == a.dtype, k
        # float16 storage: parameters agree to half precision
        torch.testing.assert_close(b, a, rtol=1e-3, atol=1e-3)
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(model.net(x, x), net(x, x), rtol=0.05, atol=0.05)


def test_unknown_network_in_file(tmp_path: Path) -> None:
    path = save_weights(tmp_path / "w.pt", build_network("tinysiam"), "tinysiam", {})
    blob = torch.load(path, weights_only=True)
    blob["network"] = "mystery_net"
    torch.save(blob, path)
    with pytest.raises(UnknownNetworkError, match="mystery_net"):
        load_model(path, device="cpu")


def test_not_a_weights_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not torch")
    with pytest.raises(WeightsError, match="not a readable"):
        load_model(bad, device="cpu")
    torch.save({"something": 1}, bad)
    with pytest.raises(WeightsError, match="not a weijian"):
        load_model(bad, device="cpu")
    with pytest.raises(WeightsError, match="does not exist"):
        load_model(tmp_path / "none.pt", device="cpu")


def test_cuda_without_gpu_is_a_clear_error() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(DeviceError, match="--device cpu"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_shipped_weights_load_with_metadata(name: str) -> None:
    path = shipped_weights(name)
    assert path.stat().st_size < 8 * 2**20  # a few MB at most
    model = load_model(name, device="cpu")
    meta = model.metadata
    assert meta["network"] == name
    for key in (
        "mean",
        "std",
        "gsd_m",
        "threshold",
        "training_data",
        "split",
        "code_version",
        "metrics_heldout",
        "metrics_validation",
    ):
        assert key in meta, key
    held = set(meta["split"]["heldout"])
    assert {"levir_1024/test_102", "levir_256/test_102_0512_0000"} <= held
    assert not held & set(meta["split"]["train"])
    assert 0 < model.threshold < 1

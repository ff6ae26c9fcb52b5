"""Weights files: round trip with metadata, shipped weights, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from change_detection import load_model
from change_detection.errors import DeviceError, UnknownNetworkError, WeightsError
from change_detection.networks import NETWORKS, build_network
from change_detection.weights import (
    ENSEMBLE_FORMAT,
    FORMAT,
    resolve_device,
    save_weights,
    shipped_names,
    shipped_weights,
)


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


def _member(seed: int, **kwargs: object) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_network("tinysiam", **kwargs).eval()


MEMBER_META = {"mean": [100.0, 110.0, 120.0], "std": [50.0, 51.0, 52.0], "gsd_m": 0.5}


def test_ensemble_file_round_trip(tmp_path: Path) -> None:
    """Several members in one file: a ProbabilityEnsemble of the member network, float16."""
    from change_detection.networks import ProbabilityEnsemble

    members = [_member(0), _member(1), _member(2)]
    meta = {**MEMBER_META, "threshold": 0.31, "members": [{"seed": i} for i in range(3)]}
    path = save_weights(tmp_path / "e.pt", ProbabilityEnsemble(members), "tinysiam", meta)
    assert torch.load(path, weights_only=True)["format"] == ENSEMBLE_FORMAT
    model = load_model(path, device="cpu")
    assert isinstance(model.net, ProbabilityEnsemble) and model.ensemble_size == 3
    assert model.network == "tinysiam" and model.threshold == 0.31
    assert model.metadata["ensemble_size"] == 3 and model.mean == MEMBER_META["mean"]
    x, y = torch.randn(1, 3, 32, 32), torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        expected = torch.stack([torch.sigmoid(m(x, y)) for m in members]).mean(0)
        torch.testing.assert_close(torch.sigmoid(model.net(x, y)), expected, rtol=0, atol=0.01)
    # a wider member network keeps its constructor arguments
    wide = {"widths": (24, 32, 64, 128), "decoder": 64}
    save_weights(
        tmp_path / "w.pt",
        ProbabilityEnsemble([_member(0, **wide), _member(1, **wide)]),
        "tinysiam",
        MEMBER_META,
        wide,
    )
    assert load_model(tmp_path / "w.pt", "cpu").ensemble_size == 2
    single = load_model(save_weights(tmp_path / "s.pt", members[0], "tinysiam", MEMBER_META))
    assert single.ensemble_size == 1 and torch.load(tmp_path / "s.pt")["format"] == FORMAT


def test_ensemble_errors_are_one_clear_line(tmp_path: Path) -> None:
    from change_detection.evaluation import build_ensemble, ensemble_model
    from change_detection.weights import save_ensemble_weights

    with pytest.raises(WeightsError, match="at least one member"):
        save_ensemble_weights(tmp_path / "e.pt", [], "tinysiam", MEMBER_META)
    with pytest.raises(WeightsError, match="at least one weights file"):
        ensemble_model([])
    with pytest.raises(WeightsError, match="at least one weights file"):
        build_ensemble([], tmp_path / "e.pt", [tmp_path])
    a = save_weights(tmp_path / "a.pt", _member(0), "tinysiam", MEMBER_META)
    fc = save_weights(
        tmp_path / "fc.pt", build_network("fc_siam_diff"), "fc_siam_diff", MEMBER_META
    )
    wide = {"widths": (24, 32, 64, 128), "decoder": 64}
    w = save_weights(tmp_path / "w.pt", _member(1, **wide), "tinysiam", MEMBER_META, wide)
    other = save_weights(
        tmp_path / "o.pt", _member(2), "tinysiam", {**MEMBER_META, "mean": [90.0] * 3}
    )
    cases = [(fc, "same network built alike"), (w, "same network built alike"), (other, "mean")]
    for path, message in cases:
        with pytest.raises(WeightsError, match=message):
            ensemble_model([load_model(a, "cpu"), load_model(path, "cpu")])
    both = ensemble_model([load_model(a, "cpu"), load_model(a, "cpu")])
    nested = save_weights(tmp_path / "n.pt", both.net, "tinysiam", both.metadata)
    with pytest.raises(WeightsError, match="itself an ensemble"):
        ensemble_model([load_model(a, "cpu"), load_model(nested, "cpu")])
    alone = ensemble_model([load_model(nested, "cpu")], threshold=0.2)  # e.g. one teacher file
    assert alone.ensemble_size == 2 and alone.threshold == 0.2
    blob = torch.load(nested, weights_only=True)
    blob["members"] = []
    torch.save(blob, tmp_path / "empty.pt")
    with pytest.raises(WeightsError, match="without members"):
        load_model(tmp_path / "empty.pt", "cpu")
    blob["members"] = [build_network("fc_siam_diff").state_dict()]
    torch.save(blob, tmp_path / "misfit.pt")
    with pytest.raises(WeightsError, match=r"member 0\) do not fit"):
        load_model(tmp_path / "misfit.pt", "cpu")


def test_build_ensemble_chooses_its_threshold_on_validation(tiny_folder: Path) -> None:
    """The validation rule of the training command; members' provenance; no leaked pairs."""
    from change_detection.evaluation import build_ensemble
    from ingest.scene import sha256_file

    split = {"validation": ["tiny/p0", "tiny/p1"], "train": ["tiny/p2", "tiny/p3"]}
    paths = []
    for seed in (0, 1):
        meta = {**MEMBER_META, "split": split, "config": {"seed": seed}, "threshold": 0.4}
        paths.append(save_weights(tiny_folder / f"m{seed}.pt", _member(seed), "tinysiam", meta))
    out = tiny_folder / "ens.pt"
    _, summary = build_ensemble(paths, out, [tiny_folder])
    loaded = load_model(out, "cpu")
    assert loaded.ensemble_size == 2 and loaded.threshold == summary["best_threshold"]
    assert summary["pairs"] == ["tiny/p0", "tiny/p1"]
    assert loaded.metadata["metrics_validation"]["f1"] == round(summary["f1"], 4)
    members = loaded.metadata["members"]
    assert [m["seed"] for m in members] == [0, 1]
    assert members[1]["sha256"] == sha256_file(paths[1]) and members[0]["threshold"] == 0.4
    leaky = {**split, "train": ["tiny/p0", "tiny/p2"]}
    bad = save_weights(
        tiny_folder / "leak.pt", _member(3), "tinysiam", {**MEMBER_META, "split": leaky}
    )
    with pytest.raises(WeightsError, match="trained on validation pair"):
        build_ensemble([paths[0], bad], tiny_folder / "x.pt", [tiny_folder])
    assert not (tiny_folder / "x.pt").exists()


def test_shipped_ensemble_is_the_three_seeds_and_the_default() -> None:
    """``tinysiam_ensemble``: member 0 is the single shipped file; ``load_model()`` gives it."""
    from ingest.scene import sha256_file

    assert "tinysiam_ensemble" in shipped_names()
    model = load_model("tinysiam_ensemble", device="cpu")
    assert model.ensemble_size == 3 and model.network == "tinysiam"
    assert shipped_weights("tinysiam_ensemble").stat().st_size < 3 * 2**20
    members = model.metadata["members"]
    assert members[0]["sha256"] == sha256_file(shipped_weights("tinysiam"))
    assert [m["seed"] for m in members] == [0, 1, 2]
    assert (
        model.metadata["validation_pairs"] == load_model("tinysiam").metadata["split"]["validation"]
    )
    single = load_model("tinysiam", "cpu").net.state_dict()
    for key, value in model.net.members[0].state_dict().items():  # type: ignore[index]
        assert torch.equal(value, single[key]), key
    assert load_model(device="cpu").ensemble_size == 3  # decision 0022: the default
    assert load_model("tinysiam", device="cpu").ensemble_size == 1
    assert load_model(Path("tinysiam_ensemble"), device="cpu").ensemble_size == 3

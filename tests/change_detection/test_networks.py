"""Networks: shapes, gradient flow, budgets, registry, and torchvision's compiled operators."""

from __future__ import annotations

import pytest
import torch

from change_detection.errors import ChangeDetectionError, UnknownNetworkError
from change_detection.networks import NETWORKS, build_network, count_gmacs, count_parameters


def test_torchvision_compiled_ops_run() -> None:
    """A CPU-only local torch wheel breaks torchvision's C++ ops; the locked build must be used."""
    from torchvision.ops import nms

    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], dtype=torch.float)
    keep = nms(boxes, torch.tensor([0.9, 0.8, 0.7]), iou_threshold=0.5)
    assert keep.tolist() == [0, 2]


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_shapes_and_gradients(name: str) -> None:
    torch.manual_seed(0)
    net = build_network(name)
    a, b = torch.randn(2, 3, 64, 96), torch.randn(2, 3, 64, 96)
    out = net(a, b)
    assert out.shape == (2, 1, 64, 96)
    out.mean().backward()
    for pname, p in net.named_parameters():
        assert p.grad is not None, f"no gradient reaches {pname}"
        assert torch.isfinite(p.grad).all()
    assert sum(float(p.grad.abs().sum()) for p in net.parameters() if p.grad is not None) > 0


def test_budgets_are_measured() -> None:
    tiny, fc = build_network("tinysiam"), build_network("fc_siam_diff")
    assert count_parameters(tiny) <= 3_000_000
    assert count_gmacs(tiny) <= 6.0
    # the baseline matches the published FC-Siam-diff size (1.35 M parameters)
    assert 1.30e6 < count_parameters(fc) < 1.40e6


def test_unknown_network_says_what_exists() -> None:
    with pytest.raises(UnknownNetworkError, match="tinysiam") as info:
        build_network("resnet_bit")
    assert isinstance(info.value, ChangeDetectionError) and isinstance(info.value, KeyError)


def test_fc_siam_diff_dropout_is_an_option_with_the_same_parameters() -> None:
    """Dropout is off by default (it stalled training) and does not change the weights layout."""
    plain, dropped = build_network("fc_siam_diff"), build_network("fc_siam_diff", dropout=0.2)
    assert not any(isinstance(m, torch.nn.Dropout2d) for m in plain.modules())
    assert any(isinstance(m, torch.nn.Dropout2d) for m in dropped.modules())
    assert plain.state_dict().keys() == dropped.state_dict().keys()
    x = torch.randn(1, 3, 32, 32)
    plain.train()
    torch.testing.assert_close(plain(x, x), plain(x, x))  # no random masks in training mode


def test_probability_ensemble_averages_probabilities() -> None:
    """sigmoid(ensemble) is the members' mean probability, stable for extreme logits."""
    from change_detection.networks import ProbabilityEnsemble

    torch.manual_seed(0)
    members = [build_network("tinysiam").eval() for _ in range(3)]
    a, b = torch.randn(1, 3, 32, 32), torch.randn(1, 3, 32, 32)
    ensemble = ProbabilityEnsemble(members).eval()
    with torch.no_grad():
        expected = torch.stack([torch.sigmoid(m(a, b)) for m in members]).mean(0)
        got = torch.sigmoid(ensemble(a, b))
        assert torch.allclose(got, expected, atol=1e-6)
        assert torch.allclose(ProbabilityEnsemble(members[:1])(a, b), members[0](a, b), atol=1e-5)

    class Constant(torch.nn.Module):
        def __init__(self, value: float) -> None:
            super().__init__()
            self.value = value

        def forward(self, before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
            return torch.full((1, 1, 2, 2), self.value)

    extreme = ProbabilityEnsemble([Constant(200.0), Constant(-200.0)])
    x = torch.zeros(1, 3, 2, 2)
    assert torch.allclose(torch.sigmoid(extreme(x, x)), torch.full((1, 1, 2, 2), 0.5))
    with pytest.raises(ValueError, match="at least one"):
        ProbabilityEnsemble([])


def test_ensemble_model_checks_its_members() -> None:
    """Members of other input normalisation are refused; the metadata sums their size."""
    from change_detection.evaluation import ensemble_model
    from change_detection.weights import ChangeModel

    meta = {"mean": [100.0, 100.0, 100.0], "std": [50.0, 50.0, 50.0], "gsd_m": 0.5, "epoch": 3}
    one = ChangeModel("tinysiam", build_network("tinysiam").eval(), dict(meta))
    two = ChangeModel("tinysiam", build_network("tinysiam").eval(), dict(meta))
    both = ensemble_model([one, two])
    assert both.metadata["parameters"] == 2 * count_parameters(one.net)
    assert both.threshold == 0.5 and [m["epoch"] for m in both.metadata["members"]] == [3, 3]
    other = ChangeModel("tinysiam", build_network("tinysiam"), {**meta, "mean": [90.0] * 3})
    with pytest.raises(ChangeDetectionError, match="same recipe"):
        ensemble_model([one, other])

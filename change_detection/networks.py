"""Siamese change-detection networks, written here from torch/torchvision building blocks.

Both networks take two co-registered images of the same place, ``before`` and ``after``, each a
float tensor ``(N, 3, H, W)`` already normalised (see :mod:`change_detection.weights`), and return
per-pixel change *logits* ``(N, 1, H, W)``; ``sigmoid`` gives the change probability. ``H`` and
``W`` must be multiples of :data:`STRIDE` (16) pixels.

* ``tinysiam``: our lightweight network. A shared-weight MobileNetV2-style encoder (inverted
  residual blocks) gives features at 1/2, 1/4, 1/8 and 1/16 resolution for each epoch; at every
  scale a *fusion* block mixes ``[f_a, f_b, |f_a - f_b|]`` with a 1x1 convolution and a
  depthwise 3x3 convolution plus squeeze-and-excitation; a top-down decoder (upsample + add +
  depthwise-separable convolution) carries coarse context to fine scales, and a full-resolution
  head mixes the decoded features with the raw pixel difference so building edges stay sharp
  (the idea TinyCD uses, in our own form).
* ``fc_siam_diff``: the FC-Siam-diff baseline (Daudt et al., ICIP 2018): a plain 4-level
  convolutional encoder shared by both epochs, skip connections carrying ``|f_a - f_b|`` into a
  transposed-convolution decoder.

:func:`build_network` picks a network by name from :data:`NETWORKS`; :func:`count_parameters`
and :func:`count_gmacs` measure size and cost. :class:`ProbabilityEnsemble` averages the
probabilities of several trained networks (e.g. the same recipe trained with several seeds).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import Conv2dNormActivation, SqueezeExcitation

from change_detection.errors import UnknownNetworkError

#: Input height and width must be multiples of this many pixels (the encoders' total stride).
STRIDE = 16


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, depthwise 3x3 (stride ``stride``), 1x1 project, residual."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, expand: int = 4) -> None:
        super().__init__()
        hidden = c_in * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(Conv2dNormActivation(c_in, hidden, 1, activation_layer=nn.ReLU6))
        layers += [
            Conv2dNormActivation(
                hidden, hidden, 3, stride=stride, groups=hidden, activation_layer=nn.ReLU6
            ),
            Conv2dNormActivation(hidden, c_out, 1, activation_layer=None),
        ]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, c_in, H, W)`` -> ``(N, c_out, H / stride, W / stride)``."""
        y = self.block(x)
        return x + y if self.residual else y


def _separable(c_in: int, c_out: int) -> nn.Sequential:
    """Depthwise 3x3 then pointwise 1x1, each with batch norm and ReLU."""
    return nn.Sequential(
        Conv2dNormActivation(c_in, c_in, 3, groups=c_in),
        Conv2dNormActivation(c_in, c_out, 1),
    )


class TinyEncoder(nn.Module):
    """Shared encoder of ``tinysiam``: features at strides 2, 4, 8, 16 with ``widths`` channels."""

    def __init__(self, widths: tuple[int, int, int, int] = (16, 24, 48, 96)) -> None:
        super().__init__()
        w1, w2, w3, w4 = widths
        self.stage1 = nn.Sequential(
            Conv2dNormActivation(3, w1, 3, stride=2, activation_layer=nn.ReLU6),
            InvertedResidual(w1, w1, expand=1),
        )
        self.stage2 = nn.Sequential(InvertedResidual(w1, w2, 2), InvertedResidual(w2, w2))
        self.stage3 = nn.Sequential(
            InvertedResidual(w2, w3, 2), InvertedResidual(w3, w3), InvertedResidual(w3, w3)
        )
        self.stage4 = nn.Sequential(
            InvertedResidual(w3, w4, 2), InvertedResidual(w4, w4), InvertedResidual(w4, w4)
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Features of ``(N, 3, H, W)`` images at strides 2, 4, 8 and 16."""
        f1 = self.stage1(x)
        f2 = self.stage2(f1)
        f3 = self.stage3(f2)
        f4 = self.stage4(f3)
        return [f1, f2, f3, f4]


class TemporalFusion(nn.Module):
    """Fuse one scale of both epochs: ``[f_a, f_b, |f_a - f_b|]`` -> 1x1 -> depthwise 3x3 + SE."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.mix = Conv2dNormActivation(3 * c_in, c_out, 1)
        self.local = Conv2dNormActivation(c_out, c_out, 3, groups=c_out)
        self.attention = SqueezeExcitation(c_out, max(c_out // 4, 8))

    def forward(self, fa: torch.Tensor, fb: torch.Tensor) -> torch.Tensor:
        """One fused ``(N, c_out, h, w)`` map from both epochs' features at one scale."""
        x = self.mix(torch.cat([fa, fb, (fa - fb).abs()], dim=1))
        return self.attention(x + self.local(x))


class TinySiam(nn.Module):
    """Our lightweight Siamese change network (see the module docstring)."""

    def __init__(
        self, widths: tuple[int, int, int, int] = (16, 24, 48, 96), decoder: int = 48
    ) -> None:
        super().__init__()
        self.encoder = TinyEncoder(widths)
        self.fusions = nn.ModuleList(TemporalFusion(w, decoder) for w in widths)
        self.decoders = nn.ModuleList(_separable(decoder, decoder) for _ in widths[:-1])
        self.to_head = Conv2dNormActivation(decoder, 16, 1)
        # full-resolution head: decoded features (16) + before, after, |after - before| (9)
        self.head = nn.Sequential(
            Conv2dNormActivation(16 + 9, 16, 3),
            nn.Conv2d(16, 1, 1),
        )

    def forward(self, before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
        """Change logits ``(N, 1, H, W)`` for ``(N, 3, H, W)`` before/after images."""
        n = before.shape[0]
        feats = self.encoder(torch.cat([before, after], dim=0))  # one pass for both epochs
        fused = [fuse(f[:n], f[n:]) for fuse, f in zip(self.fusions, feats, strict=True)]
        x = fused[-1]
        for skip, refine in zip(reversed(fused[:-1]), reversed(self.decoders), strict=True):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = refine(x + skip)
        x = F.interpolate(
            self.to_head(x), size=before.shape[-2:], mode="bilinear", align_corners=False
        )
        return self.head(torch.cat([x, before, after, (after - before).abs()], dim=1))


def _conv_bn_relu(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


def _convs(widths: tuple[int, ...], drop: nn.Module) -> nn.Sequential:
    """3x3 conv + BN + ReLU from each width to the next, each followed by ``drop``."""
    layers: list[nn.Module] = []
    for c_in, c_out in itertools.pairwise(widths):
        layers += [*_conv_bn_relu(c_in, c_out), drop]
    return nn.Sequential(*layers)


class FCSiamDiff(nn.Module):
    """FC-Siam-diff (Daudt, Le Saux & Boulch 2018), with the original 16-32-64-128 widths.

    ``dropout``: ``Dropout2d`` rate after every convolution. The paper used 0.2; the default here
    is 0 because in the shared encoder the two epochs get different dropout masks, so every
    skip ``|f_a - f_b|`` carries dropout noise, and with our short training the network then
    did not learn (loss stuck near 1.05; see ``docs/decisions/0008-change-detection-network.md``).
    """

    def __init__(
        self, widths: tuple[int, int, int, int] = (16, 32, 64, 128), dropout: float = 0.0
    ) -> None:
        super().__init__()
        w1, w2, w3, w4 = widths
        drop: nn.Module = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.enc = nn.ModuleList(
            [
                _convs((3, w1, w1), drop),
                _convs((w1, w2, w2), drop),
                _convs((w2, w3, w3, w3), drop),
                _convs((w3, w4, w4, w4), drop),
            ]
        )
        self.up = nn.ModuleList(
            [
                nn.ConvTranspose2d(w4, w4, 3, stride=2, padding=1, output_padding=1),
                nn.ConvTranspose2d(w3, w3, 3, stride=2, padding=1, output_padding=1),
                nn.ConvTranspose2d(w2, w2, 3, stride=2, padding=1, output_padding=1),
                nn.ConvTranspose2d(w1, w1, 3, stride=2, padding=1, output_padding=1),
            ]
        )
        self.dec = nn.ModuleList(
            [
                _convs((2 * w4, w4, w4, w3), drop),
                _convs((2 * w3, w3, w3, w2), drop),
                _convs((2 * w2, w2, w1), drop),
                nn.Sequential(*_conv_bn_relu(2 * w1, w1), drop, nn.Conv2d(w1, 1, 3, padding=1)),
            ]
        )

    def forward(self, before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
        """Change logits ``(N, 1, H, W)`` for ``(N, 3, H, W)`` before/after images."""
        n = before.shape[0]
        x = torch.cat([before, after], dim=0)  # one pass of the shared encoder for both epochs
        skips: list[torch.Tensor] = []
        for stage in self.enc:
            x = stage(x)
            skips.append((x[:n] - x[n:]).abs())
            x = F.max_pool2d(x, 2)
        x = x[n:]  # the decoder starts from the later epoch's deepest features, as in the paper
        for up, dec, skip in zip(self.up, self.dec, reversed(skips), strict=True):
            x = dec(torch.cat([up(x), skip], dim=1))
        return x


class ProbabilityEnsemble(nn.Module):
    """Several change networks of the same input normalisation as one: their probabilities averaged.

    ``forward`` returns the logit of the mean of the members' sigmoid probabilities, computed
    stably as ``logsumexp(logsigmoid(z)) - logsumexp(logsigmoid(-z))`` over the members, so
    ``sigmoid(ensemble(a, b))`` is exactly the averaged probability and the module can stand
    wherever one network's logits are expected (inference, evaluation, ONNX export).
    """

    def __init__(self, members: Sequence[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member network")
        self.members = nn.ModuleList(members)

    def forward(self, before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
        """Logits (N, 1, H, W) of the members' mean change probability."""
        z = torch.stack([m(before, after) for m in self.members], dim=0)
        return torch.logsumexp(F.logsigmoid(z), dim=0) - torch.logsumexp(F.logsigmoid(-z), dim=0)


#: Registry of networks by name: name -> constructor taking keyword arguments.
NETWORKS: dict[str, Callable[..., nn.Module]] = {
    "tinysiam": TinySiam,
    "fc_siam_diff": FCSiamDiff,
}


def build_network(name: str, **kwargs: Any) -> nn.Module:
    """A freshly initialised network by registry name (``tinysiam`` or ``fc_siam_diff``)."""
    try:
        factory = NETWORKS[name]
    except KeyError:
        raise UnknownNetworkError(
            f"unknown network {name!r}: choose one of {', '.join(sorted(NETWORKS))}"
        ) from None
    return factory(**kwargs)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_gmacs(model: nn.Module, size: int = 256) -> float:
    """Multiply-accumulates (GMAC, 1e9) of one forward pass on one ``size`` x ``size`` pair.

    Measured with :class:`torch.utils.flop_counter.FlopCounterMode`, which counts a
    multiply-add as 2 FLOPs: we report half of its figure, the convention (thop/ptflops "FLOPs")
    of the published change-detection tables. Element-wise operations are not counted.
    """
    from torch.utils.flop_counter import FlopCounterMode

    device = next(model.parameters()).device
    x = torch.zeros(1, 3, size, size, device=device)
    was_training = model.training
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x, x)
    model.train(was_training)
    return counter.get_total_flops() / 2 / 1e9

"""Weights files: a network's parameters plus the metadata needed to use them.

A weights file is a ``torch.save`` dict readable with ``weights_only=True``::

    {"format": "weijian-change-weights/1", "network": "tinysiam", "network_kwargs": {...},
     "state_dict": {...float16 tensors...}, "metadata": {...}}

``metadata`` holds at least ``mean`` and ``std`` (per RGB channel, 0..255 scale: the network sees
``(pixel - mean) / std``), ``gsd_m`` (training ground sample distance, m/px) and ``threshold`` (the
best-F1 change-probability cut on validation data), and for trained weights the training data,
split, configuration, metrics and code version. Parameters are stored as float16 (half the size)
and converted back to float32 at load.

The shipped weights live in the package (``change_detection/weights/<network>.pt``) and load with
no network access: ``load_model()`` or ``load_model("fc_siam_diff")``.
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from change_detection.errors import DeviceError, UnknownNetworkError, WeightsError
from change_detection.networks import NETWORKS, build_network

FORMAT = "weijian-change-weights/1"
DEFAULT_NETWORK = "tinysiam"


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` -> CUDA when available else CPU; ``cuda`` without a GPU is an error."""
    name = str(device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DeviceError(
            "--device cuda was asked for but torch sees no CUDA GPU on this machine: "
            "use --device cpu (or auto), or check the NVIDIA driver with nvidia-smi"
        )
    if not (name == "cpu" or name.startswith("cuda")):
        raise DeviceError(f"unknown device {name!r}: use cpu, cuda or auto")
    return torch.device(name)


@dataclass
class ChangeModel:
    """A network ready for inference (eval mode, on ``device``) with its metadata."""

    network: str
    net: nn.Module
    metadata: dict[str, Any] = field(default_factory=dict)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def threshold(self) -> float:
        """Best-F1 change-probability threshold recorded with the weights (0.5 if none)."""
        return float(self.metadata.get("threshold", 0.5))

    @property
    def mean(self) -> list[float]:
        """Per-channel RGB mean subtracted from pixels, 0..255 scale."""
        return [float(v) for v in self.metadata.get("mean", [127.5] * 3)]

    @property
    def std(self) -> list[float]:
        """Per-channel RGB standard deviation dividing pixels, 0..255 scale."""
        return [float(v) for v in self.metadata.get("std", [64.0] * 3)]

    @property
    def gsd_m(self) -> float:
        """Ground sample distance of the training imagery, metres per pixel."""
        return float(self.metadata.get("gsd_m", 0.5))


def save_weights(
    path: Path | str,
    net: nn.Module,
    network: str,
    metadata: dict[str, Any],
    network_kwargs: dict[str, Any] | None = None,
) -> Path:
    """Write ``net``'s parameters (float16) and ``metadata`` (JSON-like values) to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        k: (v.detach().to("cpu", torch.float16) if v.is_floating_point() else v.detach().cpu())
        for k, v in net.state_dict().items()
    }
    torch.save(
        {
            "format": FORMAT,
            "network": network,
            "network_kwargs": network_kwargs or {},
            "state_dict": state,
            "metadata": metadata,
        },
        path,
    )
    return path


def shipped_weights(network: str = DEFAULT_NETWORK) -> Path:
    """Path of the weights shipped inside the package for ``network``."""
    if network not in NETWORKS:
        raise UnknownNetworkError(
            f"unknown network {network!r}: choose one of {', '.join(sorted(NETWORKS))}"
        )
    resource = importlib.resources.files("change_detection") / "weights" / f"{network}.pt"
    path = Path(str(resource))
    if not path.is_file():
        raise WeightsError(
            f"no shipped weights for {network!r} in this installation ({path}); train some with "
            "`weijian train DATA --out DIR --network NAME` and pass --weights DIR/model.pt"
        )
    return path


def network_kwargs_of(path: Path | str) -> dict[str, Any]:
    """The network constructor arguments stored in a weights file (``{}`` for the defaults)."""
    blob = torch.load(Path(path), map_location="cpu", weights_only=True)
    return dict(blob.get("network_kwargs", {})) if isinstance(blob, dict) else {}


def load_model(
    name_or_path: str | Path | None = None,
    device: str | torch.device = "auto",
    registry: Path | str | None = None,
) -> ChangeModel:
    """Load a network for inference.

    ``name_or_path``: ``None`` (the current model of ``registry`` when it has one, else the
    shipped default network, ``tinysiam``), a network name (its shipped weights), or the path
    of a weights file. ``registry``: a model registry folder (see
    :mod:`change_detection.registry`; its file's checksum is checked). Float16 parameters
    become float32.
    """
    current = None
    if name_or_path is None and registry is not None:
        from change_detection.registry import Registry

        current = Registry(registry).current_path()
    if current is not None:
        path = current
    elif name_or_path is None:
        path = shipped_weights()
    elif isinstance(name_or_path, str) and name_or_path in NETWORKS:
        path = shipped_weights(name_or_path)
    else:
        path = Path(name_or_path)
    if not path.is_file():
        raise WeightsError(
            f"weights file {path} does not exist: give a file written by `weijian train` or a "
            f"network name ({', '.join(sorted(NETWORKS))}) for the shipped weights"
        )
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"{path} is not a readable torch weights file ({exc})") from exc
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise WeightsError(
            f"{path} is not a weijian change-detection weights file (format {FORMAT}); "
            "checkpoints from `weijian train` are DIR/model.pt or DIR/best.pt"
        )
    network = str(blob["network"])
    if network not in NETWORKS:
        raise UnknownNetworkError(
            f"{path} holds weights of network {network!r}, which this version does not know "
            f"(known: {', '.join(sorted(NETWORKS))}); upgrade weijian or retrain"
        )
    torch_device = resolve_device(device)
    net = build_network(network, **blob.get("network_kwargs", {}))
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in blob["state_dict"].items()}
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise WeightsError(f"{path}: parameters do not fit network {network!r} ({exc})") from exc
    net.to(torch_device).eval()
    return ChangeModel(network, net, dict(blob.get("metadata", {})), torch_device)

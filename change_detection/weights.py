"""Weights files: a network's parameters plus the metadata needed to use them.

A weights file is a ``torch.save`` dict readable with ``weights_only=True``::

    {"format": "weijian-change-weights/1", "network": "tinysiam", "network_kwargs": {...},
     "state_dict": {...float16 tensors...}, "metadata": {...}}

``metadata`` holds at least ``mean`` and ``std`` (per RGB channel, 0..255 scale: the network sees
``(pixel - mean) / std``), ``gsd_m`` (training ground sample distance, m/px) and ``threshold`` (the
best-F1 change-probability cut on validation data), and for trained weights the training data,
split, configuration, metrics and code version. Parameters are stored as float16 (half the size)
and converted back to float32 at load.

An *ensemble* weights file holds several members of the same network (same ``network_kwargs``,
``mean``/``std`` and ``gsd_m``, e.g. the shipped recipe trained with seeds 0, 1 and 2) whose change
probabilities are averaged (:class:`change_detection.networks.ProbabilityEnsemble`)::

    {"format": "weijian-change-ensemble/1", "network": "tinysiam", "network_kwargs": {...},
     "members": [{...float16 state_dict...}, ...], "metadata": {...}}

Its ``metadata`` is the shared ``mean``/``std``/``gsd_m``, the ensemble's own ``threshold`` (chosen
on validation data for the averaged probability), ``ensemble_size`` and ``members`` (per member:
source file and SHA-256, seed, epoch, own threshold and validation figures). A separate format
string keeps older versions from reading an ensemble as one network: they refuse it clearly.
:func:`load_model` reads both formats; for an ensemble ``model.net`` is a ``ProbabilityEnsemble``
and ``model.network`` the members' network name, so network and band checks work unchanged.

The shipped weights live in the package (``change_detection/weights/<name>.pt``) and load with
no network access: ``load_model()``, ``load_model("fc_siam_diff")`` or
``load_model("tinysiam_ensemble")`` (the three-seed ensemble, not the default).
"""

from __future__ import annotations

import importlib.resources
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from change_detection.errors import DeviceError, UnknownNetworkError, WeightsError
from change_detection.networks import NETWORKS, ProbabilityEnsemble, build_network

FORMAT = "weijian-change-weights/1"
#: format of a file holding several members of one network (probabilities averaged)
ENSEMBLE_FORMAT = "weijian-change-ensemble/1"
DEFAULT_NETWORK = "tinysiam"
#: weights files shipped in the package that are not named after a network: name -> network
SHIPPED_ENSEMBLES: dict[str, str] = {"tinysiam_ensemble": "tinysiam"}
#: the shipped weights used when none are named (``load_model()``, and ``weijian`` with no
#: ``detection.weights`` and no registry model, for the default network): the three-seed
#: ensemble since decision 0022 (``"tinysiam"`` is the single network, faster, 3x less work)
DEFAULT_WEIGHTS = "tinysiam_ensemble"


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
    #: constructor arguments of the network (of each member for an ensemble)
    network_kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def ensemble_size(self) -> int:
        """Member networks whose probabilities are averaged (1 for a single network)."""
        return len(self.net.members) if isinstance(self.net, ProbabilityEnsemble) else 1

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


def _half_state(net: nn.Module) -> dict[str, torch.Tensor]:
    return {
        k: (v.detach().to("cpu", torch.float16) if v.is_floating_point() else v.detach().cpu())
        for k, v in net.state_dict().items()
    }


def save_weights(
    path: Path | str,
    net: nn.Module,
    network: str,
    metadata: dict[str, Any],
    network_kwargs: dict[str, Any] | None = None,
) -> Path:
    """Write ``net``'s parameters (float16) and ``metadata`` (JSON-like values) to ``path``.

    A :class:`ProbabilityEnsemble` of ``network`` members is written as an ensemble file
    (:func:`save_ensemble_weights`), so a fine-tuned or averaged ensemble stays one.
    """
    if isinstance(net, ProbabilityEnsemble):
        return save_ensemble_weights(path, list(net.members), network, metadata, network_kwargs)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "format": FORMAT,
            "network": network,
            "network_kwargs": network_kwargs or {},
            "state_dict": _half_state(net),
            "metadata": metadata,
        },
        path,
    )
    return path


def save_ensemble_weights(
    path: Path | str,
    members: Sequence[nn.Module],
    network: str,
    metadata: dict[str, Any],
    network_kwargs: dict[str, Any] | None = None,
) -> Path:
    """Write an ensemble weights file: each member's parameters (float16) and ``metadata``.

    ``members`` are networks of ``network`` built with the same ``network_kwargs``; the
    metadata's ``mean``/``std``/``gsd_m`` apply to all of them and its ``threshold`` to their
    averaged probability. ``ensemble_size`` is set. The file is written under a temporary name
    and renamed, so an interrupted write leaves no half-written ensemble.
    """
    if not members:
        raise WeightsError("an ensemble needs at least one member network: give weights files")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = {
        "format": ENSEMBLE_FORMAT,
        "network": network,
        "network_kwargs": network_kwargs or {},
        "members": [_half_state(m) for m in members],
        "metadata": {**metadata, "ensemble_size": len(members)},
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(blob, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def shipped_names() -> list[str]:
    """Names accepted for weights shipped in the package: the networks and the ensembles."""
    return sorted([*NETWORKS, *SHIPPED_ENSEMBLES])


def default_shipped(network: str = DEFAULT_NETWORK) -> str:
    """The shipped weights' name used for ``network`` when no file is named.

    :data:`DEFAULT_WEIGHTS` for the default network (``tinysiam``), else the network's own.
    """
    return DEFAULT_WEIGHTS if network == DEFAULT_NETWORK else network


def shipped_weights(network: str = DEFAULT_NETWORK) -> Path:
    """Path of the weights shipped in the package under ``network`` (:func:`shipped_names`)."""
    if network not in NETWORKS and network not in SHIPPED_ENSEMBLES:
        raise UnknownNetworkError(
            f"unknown network {network!r}: choose one of {', '.join(shipped_names())}"
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
    """Load a network (or an ensemble of networks) for inference.

    ``name_or_path``: ``None`` (the current model of ``registry`` when it has one, else the
    shipped default, :data:`DEFAULT_WEIGHTS`: ``tinysiam_ensemble``), a shipped name (a network's
    shipped weights, or ``tinysiam_ensemble``; also as a ``Path`` that is not an existing
    file), or the path of a weights file (single network or ensemble). ``registry``: a model
    registry folder (see :mod:`change_detection.registry`; its file's checksum is checked).
    Float16 parameters become float32.
    """
    current = None
    if name_or_path is None and registry is not None:
        from change_detection.registry import Registry

        current = Registry(registry).current_path()
    if current is not None:
        path = current
    elif name_or_path is None:
        path = shipped_weights(default_shipped())
    elif str(name_or_path) in shipped_names() and (
        isinstance(name_or_path, str) or not Path(name_or_path).is_file()
    ):
        path = shipped_weights(str(name_or_path))
    else:
        path = Path(name_or_path)
    if not path.is_file():
        raise WeightsError(
            f"weights file {path} does not exist: give a file written by `weijian train` or a "
            f"shipped name ({', '.join(shipped_names())})"
        )
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"{path} is not a readable torch weights file ({exc})") from exc
    if not isinstance(blob, dict) or blob.get("format") not in (FORMAT, ENSEMBLE_FORMAT):
        raise WeightsError(
            f"{path} is not a weijian change-detection weights file (format {FORMAT} or "
            f"{ENSEMBLE_FORMAT}); checkpoints from `weijian train` are DIR/model.pt or DIR/best.pt"
        )
    network = str(blob["network"])
    if network not in NETWORKS:
        raise UnknownNetworkError(
            f"{path} holds weights of network {network!r}, which this version does not know "
            f"(known: {', '.join(sorted(NETWORKS))}); upgrade weijian or retrain"
        )
    torch_device = resolve_device(device)
    kwargs = dict(blob.get("network_kwargs", {}))
    states = blob["members"] if blob["format"] == ENSEMBLE_FORMAT else [blob["state_dict"]]
    if not states:
        raise WeightsError(f"{path} is an ensemble file without members: build it again")
    nets: list[nn.Module] = []
    for i, raw in enumerate(states):
        net = build_network(network, **kwargs)
        state = {k: (v.float() if v.is_floating_point() else v) for k, v in raw.items()}
        try:
            net.load_state_dict(state)
        except RuntimeError as exc:
            which = f" (member {i})" if blob["format"] == ENSEMBLE_FORMAT else ""
            raise WeightsError(
                f"{path}: parameters{which} do not fit network {network!r} ({exc})"
            ) from exc
        nets.append(net)
    model_net: nn.Module = nets[0] if blob["format"] == FORMAT else ProbabilityEnsemble(nets)
    model_net.to(torch_device).eval()
    return ChangeModel(network, model_net, dict(blob.get("metadata", {})), torch_device, kwargs)

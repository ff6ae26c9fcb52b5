"""The ONNX Runtime engine: the network exported to ONNX and run by onnxruntime on the CPU.

:func:`export_onnx` traces the network (both epochs as inputs, batch and image size dynamic),
checks on a seeded input that ONNX Runtime's change probabilities match torch's within
:data:`TOLERANCE` (refusing the export otherwise), and returns the model bytes, which are small
(~1.2 MB for tinysiam) and are what Dask workers receive. :func:`onnx_session` opens them;
:func:`onnx_logits` runs a batch. Measured side by side in ``benchmarks/detect.py``.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from change_detection.errors import EngineError
from change_detection.weights import ChangeModel

#: Largest accepted difference of change probabilities between ONNX Runtime and torch.
TOLERANCE = 1e-3
_EXPORTS: dict[str, bytes] = {}


def _require_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise EngineError(
            f"--engine onnxruntime needs the onnxruntime package ({exc}): run `uv sync` or use "
            "--engine torch"
        ) from None
    return onnxruntime


def onnx_session(model_bytes: bytes, threads: int | None = None) -> Any:
    """An onnxruntime CPU session for exported model bytes, with ``threads`` intra-op threads."""
    ort = _require_onnxruntime()
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    options.enable_cpu_mem_arena = False  # measured: ~180 MB less peak RSS, same speed
    # Idle intra-op threads sleep instead of spinning: the cores are shared with reading,
    # blending and other processes. Measured with 2 threads on 2 cores at load 3.7: 0.82-0.84
    # against 0.64-0.76 Mpx/s and 3.3 against 4.4 CPU-s for the same 8 batches.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


def onnx_logits(session: Any, before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Logits ``(N, 1, H, W)`` of normalised float32 ``(N, 3, H, W)`` inputs (padded to 16)."""
    h, w = before.shape[-2:]
    ph, pw = (-h) % 16, (-w) % 16
    if ph or pw:
        pad = ((0, 0), (0, 0), (0, ph), (0, pw))
        before = np.pad(before, pad, mode="reflect" if ph < h and pw < w else "edge")
        after = np.pad(after, pad, mode="reflect" if ph < h and pw < w else "edge")
    out = session.run(
        None,
        {
            "before": np.ascontiguousarray(before, np.float32),
            "after": np.ascontiguousarray(after, np.float32),
        },
    )[0]
    return np.asarray(out[..., :h, :w])


def export_onnx(
    model: ChangeModel, check_px: int = 128, cache_dir: str | Path | None = None
) -> bytes:
    """ONNX bytes of ``model``'s network, checked against torch within :data:`TOLERANCE`.

    The export is cached in ``cache_dir`` (default :func:`default_cache_dir`) by parameters
    checksum and torch version; a cached model is checked again before use. Raises
    :class:`EngineError` when the export fails or its probabilities differ more.
    """
    _require_onnxruntime()
    net = model.net
    state = hashlib.sha256(model.network.encode())
    for key, value in sorted(net.state_dict().items()):
        state.update(key.encode() + value.detach().cpu().float().numpy().tobytes())
    key = state.hexdigest()
    if key in _EXPORTS:
        return _EXPORTS[key]
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cached = folder / f"{model.network}-{key[:24]}-torch{torch.__version__}.onnx"
    try:
        data = _export_checked(model, cached, check_px)
    finally:
        net.to(model.device)
    _EXPORTS[key] = data
    return data


def _export_checked(model: ChangeModel, cached: Path, check_px: int) -> bytes:
    cpu_net = model.net.to("cpu").eval()
    if cached.is_file():
        data = cached.read_bytes()
        try:
            _check(model, cpu_net, data, check_px)
            return data
        except Exception:  # damaged or stale cache entry: export again
            cached.unlink(missing_ok=True)
    example = torch.zeros(1, 3, 64, 64)
    buf = io.BytesIO()
    axes = {0: "n", 2: "h", 3: "w"}
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                cpu_net,
                (example, example),
                buf,  # type: ignore[arg-type]
                input_names=["before", "after"],
                output_names=["logits"],
                dynamic_axes={"before": axes, "after": axes, "logits": axes},
                opset_version=17,
                dynamo=False,
            )
    except Exception as exc:
        raise EngineError(
            f"the {model.network} network could not be exported to ONNX ({exc}): use --engine torch"
        ) from None
    data = buf.getvalue()
    _check(model, cpu_net, data, check_px)
    folder = cached.parent
    tmp = cached.with_name(cached.name + f".{os.getpid()}.tmp")
    try:  # a cache only: a read-only or full home folder just means exporting again next time
        folder.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data)
        os.replace(tmp, cached)
    except OSError:
        try:
            tmp.unlink(missing_ok=True)  # no half-written cache entry left behind
        except OSError:
            pass
    return data


def default_cache_dir() -> Path:
    """Where exported models are kept: ``$XDG_CACHE_HOME/weijian/onnx`` (``~/.cache/...``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "weijian" / "onnx"


def _check(model: ChangeModel, cpu_net: torch.nn.Module, data: bytes, check_px: int) -> None:
    """Refuse ONNX bytes whose probabilities differ from torch's by more than the tolerance."""
    rng = np.random.default_rng(0)
    xb = rng.normal(0, 1, (2, 3, check_px, check_px)).astype(np.float32)
    xa = xb + rng.normal(0, 0.5, xb.shape).astype(np.float32)
    with torch.inference_mode():
        ref = torch.sigmoid(cpu_net(torch.from_numpy(xb), torch.from_numpy(xa))).numpy()
    got = 1 / (1 + np.exp(-onnx_logits(onnx_session(data), xb, xa)))
    worst = float(np.abs(ref - got).max())
    if worst > TOLERANCE:
        raise EngineError(
            f"ONNX Runtime's probabilities differ from torch's by up to {worst:.2e} (> "
            f"{TOLERANCE:g}) for {model.network}: use --engine torch"
        )

"""Change detection between two co-registered images: networks, training, evaluation, inference.

Used alone from Python::

    from change_detection import load_model, predict_proba
    model = load_model()                      # shipped tinysiam weights, CPU or GPU
    proba = predict_proba(model, before, after)   # (H, W) float32 in 0..1
    changed = proba >= model.threshold

    result = detect_pair("pair_dir/", model, "out/")   # a whole aligned orthophoto pair
    result.polygons                                     # GeoDataFrame, working CRS

This package imports nothing of weijian's other packages; its functions take plain arguments.
"""

from typing import TYPE_CHECKING, Any

from change_detection.errors import ChangeDetectionError
from change_detection.inference import predict_proba
from change_detection.networks import NETWORKS, build_network
from change_detection.weights import ChangeModel, load_model

if TYPE_CHECKING:
    from change_detection.detect import DetectResult, detect_pair


def __getattr__(name: str) -> Any:
    """``detect_pair`` and ``DetectResult``, imported on first use.

    They need GDAL (rasterio) and the vector stack, which training, evaluation and
    ``predict_proba`` do not: a training machine needs only torch, torchvision, Pillow, NumPy
    and SciPy.
    """
    if name in ("DetectResult", "detect_pair"):
        from change_detection import detect

        return getattr(detect, name)
    raise AttributeError(f"module 'change_detection' has no attribute {name!r}")


__all__ = [
    "NETWORKS",
    "ChangeDetectionError",
    "ChangeModel",
    "DetectResult",
    "build_network",
    "detect_pair",
    "load_model",
    "predict_proba",
]

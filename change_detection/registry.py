"""A registry of change-detection weights with a safety gate: list, show, promote, roll back.

Layout under the registry folder (``<data_dir>/models`` in weijian)::

    registry.json           {"current": "v2" | null, "history": [{"action", "version", "at", ...}]}
    v1/model.pt             a weights file (see change_detection.weights), never changed
    v1/entry.json           version, network, ensemble_size (and members), bands, sha256, size,
                            parent, lineage, evaluations

Versions are ``v1``, ``v2``, ... in the order they were added. The *current* model is the one
:func:`change_detection.weights.load_model` uses by default when given the registry; with no
current model the shipped weights are used. :meth:`Registry.promote` makes a candidate current
only when it scores at least as well as the current model on a fixed evaluation set: pixel F1
at each model's own stored threshold, without many more false-positive objects or many fewer
buildings found whole (:meth:`Promotion.refusal`; an ensemble of the same network and band count
is judged like any candidate); :meth:`Registry.rollback` returns to the model that was
current before the last promotion. Files are written to a temporary name and renamed, so an
interrupted command leaves no half-written entry or index.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from change_detection.data import Pair
from change_detection.errors import ChangeDetectionError, WeightsError
from change_detection.weights import ChangeModel, default_shipped, load_model, shipped_weights
from ingest.scene import sha256_file

INDEX = "registry.json"
SHIPPED = "shipped"  #: the name under which the package's own weights appear
#: the gate also refuses a candidate with more than this share more false-positive objects ...
MAX_FP_RISE = 0.25
#: ... plus this many (a few objects either way are noise on a small evaluation set)
FP_SLACK = 2
#: the gate also refuses a candidate that finds this share fewer changed buildings whole ...
MAX_BUILDING_LOSS = 0.10
#: ... minus this many (decision 0027: the recall of a few dozen buildings moves by whole ones)
BUILDING_SLACK = 2


class RegistryError(ChangeDetectionError, ValueError):
    """A registry operation cannot be done (unknown version, nothing to roll back to, ...)."""


class PromotionRefused(RegistryError):
    """The candidate scores worse than the current model, or does not fit in its place."""


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=1, ensure_ascii=False, default=str)
    os.replace(tmp, path)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Scores:
    """Figures of one model on the evaluation set (pixel F1 decides)."""

    f1: float
    precision: float
    recall: float
    object_recall: float
    fp_objects_per_km2: float
    threshold: float
    pairs: int
    fp_objects: int = 0  #: false-positive objects counted on the whole set
    found: int = 0  #: labelled changed buildings matched whole (IoU >= 0.5) on the whole set
    true_objects: int = 0  #: labelled changed buildings on the whole set

    @classmethod
    def of(cls, summary: dict[str, Any]) -> Scores:
        """From :func:`change_detection.evaluation.evaluate_pairs`' summary."""
        obj = summary["objects"]
        return cls(
            f1=float(summary["f1"]),
            precision=float(summary["precision"]),
            recall=float(summary["recall"]),
            object_recall=float(obj["recall"]),
            fp_objects_per_km2=float(obj["false_positives_per_km2"]),
            threshold=float(summary["threshold"]),
            pairs=len(summary["pairs"]),
            fp_objects=int(obj["false_positive_objects"]),
            found=int(obj["found"]),
            true_objects=int(obj["true_objects"]),
        )

    def line(self) -> str:
        """One readable line of the figures."""
        return (
            f"pixel F1 {self.f1:.3f} (P {self.precision:.3f}, R {self.recall:.3f}), object "
            f"recall {self.object_recall:.3f}, {self.fp_objects_per_km2:.0f} false-positive "
            f"objects/km² at threshold {self.threshold:.2f}"
        )


@dataclass(frozen=True)
class Promotion:
    """What :meth:`Registry.promote` decided and on which figures."""

    version: str
    previous: str
    candidate: Scores
    current: Scores

    @property
    def margin(self) -> float:
        """Candidate pixel F1 minus current pixel F1."""
        return self.candidate.f1 - self.current.f1

    def refusal(self) -> str | None:
        """Why the gate refuses the candidate (one line), or ``None`` when it may be promoted.

        Refused when its pixel F1 is lower than the current model's; or, with pixel F1 at least
        as high, when it produces more than :data:`MAX_FP_RISE` + :data:`FP_SLACK` more
        false-positive objects, or finds more than :data:`MAX_BUILDING_LOSS` +
        :data:`BUILDING_SLACK` fewer labelled buildings whole (decision 0027).
        """
        cand, cur, version, current = self.candidate, self.current, self.version, self.previous
        if cand.f1 < cur.f1:
            return (
                f"{version} was not promoted: pixel F1 {cand.f1:.4f} against {cur.f1:.4f} for "
                f"the current model {current} on {cand.pairs} evaluation pairs "
                f"({self.margin:+.4f}); object recall {cand.object_recall:.3f} against "
                f"{cur.object_recall:.3f}, false-positive objects/km² "
                f"{cand.fp_objects_per_km2:.0f} against {cur.fp_objects_per_km2:.0f}"
            )
        if cand.fp_objects > (1 + MAX_FP_RISE) * cur.fp_objects + FP_SLACK:
            return (
                f"{version} was not promoted: {cand.fp_objects} false-positive objects against "
                f"{cur.fp_objects} for the current model {current} on {cand.pairs} evaluation "
                f"pairs (more than {MAX_FP_RISE:.0%} + {FP_SLACK} more: each is a wasted site "
                f"visit), although its pixel F1 is {cand.f1:.4f} against {cur.f1:.4f}"
            )
        if cand.found < (1 - MAX_BUILDING_LOSS) * cur.found - BUILDING_SLACK:
            return (
                f"{version} was not promoted: it finds {cand.found} of {cand.true_objects} "
                f"changed buildings whole against {cur.found} for the current model {current} "
                f"on {cand.pairs} evaluation pairs (more than {MAX_BUILDING_LOSS:.0%} + "
                f"{BUILDING_SLACK} fewer: each is a new building nobody is sent to), although "
                f"its pixel F1 is {cand.f1:.4f} against {cur.f1:.4f}"
            )
        return None


class Registry:
    """The weights registry in folder ``root`` (created on first write)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    # -- reading ------------------------------------------------------------------------------
    def _index(self) -> dict[str, Any]:
        path = self.root / INDEX
        if not path.is_file():
            return {"current": None, "history": []}
        try:
            data: dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise RegistryError(f"{path} is not readable JSON ({exc}): restore it") from exc
        return data

    def versions(self) -> list[str]:
        """All registered versions, oldest first."""
        if not self.root.is_dir():
            return []
        found = [p.name for p in self.root.iterdir() if (p / "entry.json").is_file()]
        return sorted(found, key=lambda v: int(v[1:]) if v[1:].isdigit() else 0)

    def entry(self, version: str) -> dict[str, Any]:
        """The metadata of ``version`` (``shipped`` for the package's weights)."""
        if version == SHIPPED:
            model = load_model(None, device="cpu")
            shipped = shipped_weights(default_shipped())
            return {
                "version": SHIPPED,
                "path": str(shipped),
                "network": model.network,
                "ensemble_size": model.ensemble_size,
                "sha256": sha256_file(shipped),
                "bands": len(model.mean),
                "threshold": model.threshold,
                "source": "shipped with the package",
            }
        path = self.root / version / "entry.json"
        if not path.is_file():
            known = ", ".join(self.versions()) or "none yet"
            raise RegistryError(
                f"model version {version!r} is not in the registry {self.root} (versions: {known})"
            )
        data: dict[str, Any] = json.loads(path.read_text())
        data["path"] = str(self.root / version / "model.pt")
        return data

    def entries(self) -> list[dict[str, Any]]:
        """Metadata of every registered version, oldest first."""
        return [self.entry(v) for v in self.versions()]

    @property
    def current(self) -> str | None:
        """The current version, or ``None`` (the shipped weights are used)."""
        value = self._index().get("current")
        return str(value) if value else None

    @property
    def history(self) -> list[dict[str, Any]]:
        """Promotions and rollbacks, oldest first."""
        return list(self._index().get("history", []))

    def weights_path(self, version: str) -> Path:
        """The weights file of ``version``, after checking its checksum."""
        entry = self.entry(version)
        path = Path(entry["path"])
        if not path.is_file():
            raise RegistryError(f"{path} of model {version} is missing: restore it from a backup")
        if version != SHIPPED and sha256_file(path) != entry["sha256"]:
            raise RegistryError(
                f"{path} of model {version} does not match its recorded SHA-256: the file was "
                "changed or damaged; restore it from a backup or roll back"
            )
        return path

    def current_path(self) -> Path | None:
        """The checked weights file of the current model, or ``None`` when there is none."""
        current = self.current
        return self.weights_path(current) if current else None

    def load(self, version: str, device: str = "auto") -> ChangeModel:
        """Load ``version`` (checksum checked)."""
        if version == SHIPPED:
            return load_model(None, device)
        return load_model(self.weights_path(version), device)

    # -- writing ------------------------------------------------------------------------------
    def add(
        self,
        weights: Path | str,
        source: str = "",
        parent: str | None = None,
        lineage: dict[str, Any] | None = None,
    ) -> str:
        """Copy a weights file into the registry as a new (not current) version; returns it.

        The file must load as weijian change weights. ``parent``: the version it was fine-tuned
        from; ``lineage``: runs and decisions it learned from (kept in ``entry.json``).
        """
        weights = Path(weights)
        model = load_model(weights, device="cpu")  # refuses files that are not ours
        existing = self.versions()
        number = max((int(v[1:]) for v in existing if v[1:].isdigit()), default=0) + 1
        version = f"v{number}"
        folder = self.root / version
        tmp = self.root / f".{version}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        shutil.copyfile(weights, tmp / "model.pt")
        meta = model.metadata
        entry: dict[str, Any] = {
            "version": version,
            "network": model.network,
            "ensemble_size": model.ensemble_size,
            "bands": len(model.mean),
            "gsd_m": model.gsd_m,
            "threshold": model.threshold,
            "sha256": sha256_file(tmp / "model.pt"),
            "size_bytes": (tmp / "model.pt").stat().st_size,
            "added_at": _now(),
            "source": source or str(weights),
            "parent": parent,
            "lineage": lineage or meta.get("lineage") or {},
            "trained_at": meta.get("trained_at") or meta.get("built_at"),
            "code_version": meta.get("code_version"),
            "evaluations": [],
        }
        if model.ensemble_size > 1:  # each member's provenance and the ensemble's own figures
            entry["members"] = meta.get("members", [])
            entry["metrics_validation"] = meta.get("metrics_validation")
        _write_json(tmp / "entry.json", entry)
        os.replace(tmp, folder)
        return version

    def _record_evaluation(self, version: str, scores: Scores, set_name: str) -> None:
        if version == SHIPPED:
            return
        path = self.root / version / "entry.json"
        entry: dict[str, Any] = json.loads(path.read_text())
        entry.setdefault("evaluations", []).append(
            {"at": _now(), "set": set_name, **scores.__dict__}
        )
        _write_json(path, entry)

    def promote(
        self,
        version: str,
        pairs: Sequence[Pair],
        gsd_m: float | None = None,
        min_area_m2: float = 10.0,
        actor: str = "",
        set_name: str = "",
    ) -> Promotion:
        """Make ``version`` current if it scores at least as well as the current model.

        Both models are scored on ``pairs`` (the fixed evaluation set, at ``gsd_m`` m/px) at
        their own stored thresholds. Refused (:class:`PromotionRefused`, saying by how much)
        when :meth:`Promotion.refusal` gives a reason (lower pixel F1, many more false-positive
        objects, many fewer buildings found whole), or when it is another network or band count
        than the current model. Nothing changes when refused.
        """
        from change_detection.evaluation import evaluate_pairs

        if not pairs:
            raise RegistryError("the evaluation set is empty: give pairs to compare the models on")
        if version == SHIPPED:
            raise RegistryError(
                "the shipped weights are not promoted: use rollback to return to them"
            )
        current = self.current or SHIPPED
        if version == current:
            raise RegistryError(f"{version} is already the current model")
        cand_entry, cur_entry = self.entry(version), self.entry(current)
        if cand_entry["network"] != cur_entry["network"]:
            raise PromotionRefused(
                f"{version} is a {cand_entry['network']} model but the current model {current} "
                f"is {cur_entry['network']}: a candidate must be the same network (retrain it "
                "from the current model)"
            )
        if cand_entry.get("bands", 3) != cur_entry.get("bands", 3):
            raise PromotionRefused(
                f"{version} takes {cand_entry.get('bands')} bands but the current model "
                f"{current} takes {cur_entry.get('bands')}: not interchangeable"
            )
        try:
            candidate = self.load(version, "cpu")
            incumbent = self.load(current, "cpu")
        except WeightsError as exc:
            raise RegistryError(str(exc)) from exc
        cand = Scores.of(evaluate_pairs(candidate, pairs, None, gsd_m, min_area_m2))
        cur = Scores.of(evaluate_pairs(incumbent, pairs, None, gsd_m, min_area_m2))
        self._record_evaluation(version, cand, set_name)
        self._record_evaluation(current, cur, set_name)
        result = Promotion(version, current, cand, cur)
        refusal = result.refusal()
        if refusal:
            raise PromotionRefused(refusal)
        index = self._index()
        index["current"] = version
        index.setdefault("history", []).append(
            {
                "action": "promote",
                "version": version,
                "previous": current,
                "at": _now(),
                "by": actor,
                "set": set_name,
                "f1": cand.f1,
                "previous_f1": cur.f1,
            }
        )
        _write_json(self.root / INDEX, index)
        return result

    def rollback(self, actor: str = "") -> tuple[str, str]:
        """Return to the model that was current before the last promotion: ``(from, to)``."""
        index = self._index()
        current = index.get("current")
        if not current:
            raise RegistryError(
                "no promoted model to roll back: the shipped weights are already in use"
            )
        promotions = [h for h in index.get("history", []) if h.get("action") == "promote"]
        last = next((h for h in reversed(promotions) if h["version"] == current), None)
        previous = last["previous"] if last else SHIPPED
        index["current"] = None if previous == SHIPPED else previous
        index.setdefault("history", []).append(
            {
                "action": "rollback",
                "version": previous,
                "previous": current,
                "at": _now(),
                "by": actor,
            }
        )
        _write_json(self.root / INDEX, index)
        return str(current), str(previous)

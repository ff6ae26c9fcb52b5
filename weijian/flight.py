"""The per-flight pipeline: one orthophoto in, a matched detection run and its publication out.

Why one file of ~1,200 lines: the seven steps share the private run context and the state record
(what a step wrote, its checksums, how it is checked on a resume); they read best side by side in
the order they run. The next natural cut, when it grows, is the publish step and its HTML report.

``run_flight`` chains the stages for one new image (the *after* scene) as named steps:

=========== ===================================================================== ==============
step        what it does                                                          writes
=========== ===================================================================== ==============
check       describe both scenes, pick the earlier one (``before="auto"``), refuse check.json
            bad flights (impossible coordinates, outside the district, dates in
            the wrong order, GSD too coarse for the model)
align       put both on the working grid (``ingest.prepare_pair``); refuse a pair  pair.json,
            whose radiometry cannot be matched                                    align.json
catalogue   register both scenes in the ``scene`` table (first database write)   (database)
detect      ``change_detection.detect_pair`` (resumable per tile; Dask scheduler) detect/
load        scenes, run and detections into PostGIS (idempotent)                  (database)
match       ``gis_db.matching.match_run``: classes against the inventory          (database)
publish     dispatch packages per 街镇, static map, HTML run report              dispatch/,
                                                                                  map.html,
                                                                                  report.html
=========== ===================================================================== ==============

Every finished step is recorded in ``flight_state.json`` in the flight's folder, with the
SHA-256 of each file it wrote (and, for database steps, what to check in the database). A run
started again skips each step whose record still holds (files unchanged, rows present) and
redoes the first one that does not, and all after it: a flight killed at any point (even with
``kill -9``) resumes where it stopped; a finished flight run again does nothing and says so.
Nothing is written to the database before ``check`` and ``align`` have accepted the flight.

This module reads no settings: the command line builds a :class:`FlightConfig` from them.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ingest.scene import sha256_file
from weijian.errors import WeijianError

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from change_detection.vectorize import VectorizeParams
    from ingest import AlignedPair, Scene

#: Exit codes of ``weijian flight run`` / ``watch`` (documented in the README).
EXIT_DONE = 0
EXIT_BAD_INPUT = 2
EXIT_STEP_FAILED = 3

STEPS: tuple[str, ...] = ("check", "align", "catalogue", "detect", "load", "match", "publish")
#: Chinese labels of the steps for the progress display.
STEP_LABELS: dict[str, str] = {
    "check": "检查影像",
    "align": "配准",
    "catalogue": "影像登记",
    "detect": "变化检测",
    "load": "入库",
    "match": "违建库比对",
    "publish": "发布",
}
STATE_FILE = "flight_state.json"
STATE_VERSION = 1
#: A scene's ground sample distance may be at most this many times the model's training GSD.
MAX_GSD_RATIO = 2.0
#: With ``before="auto"``: the earlier scene must cover at least this share of the new one.
MIN_COVER_FRACTION = 0.5
#: Demolition evidence (see :func:`_step_detect`): ``cases`` runs the epochs-swapped detection
#: only around the inventory's active cases, ``full`` over the whole pair, ``off`` not at all
#: (only the forward pass's own ``change_kind``).
DEMOLITION_MODES = ("cases", "full", "off")
#: ``cases``: ground around each active case that the swapped pass looks at, m.
DEMOLITION_MARGIN_M = 30.0
#: Before/after chips shown in the run report.
REPORT_CHIPS = 6


class FlightError(WeijianError):
    """Root error of the flight pipeline."""

    exit_code = EXIT_STEP_FAILED


class FlightRefusedError(FlightError, ValueError):
    """The flight was refused before any time was spent on it (bad input); nothing was stored."""

    exit_code = EXIT_BAD_INPUT


class FlightStepError(FlightError, RuntimeError):
    """A step of an accepted flight failed; running the flight again resumes at that step."""

    exit_code = EXIT_STEP_FAILED

    def __init__(self, step: str, message: str) -> None:
        """``step``: the failed step's name; ``message``: what went wrong and what to do."""
        super().__init__(f"step {step} ({STEP_LABELS.get(step, step)}) failed: {message}")
        self.step = step


def _default_polygons() -> VectorizeParams:
    """The settings' default polygon clean-up (decisions 0024, 0029), threshold to be set."""
    from weijian.settings import DetectionSettings

    return DetectionSettings().vectorize_params(0.5)


@dataclass(frozen=True)
class FlightConfig:
    """Plain values the pipeline needs (the command line fills them from the settings).

    Distances in metres in ``working_crs``; ``output_root`` holds one folder per flight.
    """

    output_root: Path
    working_crs: str = "EPSG:4549"
    gsd_m: float = 0.5
    min_overlap_fraction: float = 0.2
    max_shift_m: float = 5.0
    histogram_match: bool = True
    coregistration_min_blocks: int = 4
    coregistration_min_confidence: float = 0.5
    coregistration_affine: bool = True
    network: str = "tinysiam"
    weights: Path | None = None
    device: str = "auto"
    threshold: float | None = None
    #: the polygon clean-up (``DetectionSettings.vectorize_params``: what ``weijian detect``
    #: draws); its ``threshold`` is replaced by the weights' own or ``threshold`` at detection
    polygons: VectorizeParams = field(default_factory=_default_polygons)
    overlap_threshold: float = 0.3
    tolerance_m: float = 2.0
    workers: int = 1
    scheduler: str | None = None
    engine: str = "torch"
    tta: bool = False
    max_gsd_ratio: float = MAX_GSD_RATIO
    min_cover_fraction: float = MIN_COVER_FRACTION
    demolition: str = "cases"
    demolition_margin_m: float = DEMOLITION_MARGIN_M


@dataclass
class StepOutcome:
    """What happened to one step in this invocation: ``ran`` or ``skipped`` (already done)."""

    name: str
    status: Literal["ran", "skipped"]
    seconds: float


@dataclass
class FlightResult:
    """The outcome of :func:`run_flight`; ``summary()`` is the ``--json`` output."""

    name: str
    folder: Path
    nothing_to_do: bool
    steps: list[StepOutcome]
    state: dict[str, Any]

    @property
    def run_id(self) -> int | None:
        """The detection run's id in the database."""
        load = self.state["steps"].get("load")
        return int(load["result"]["run_id"]) if load else None

    def summary(self) -> dict[str, Any]:
        """JSON-ready summary: status, scenes, run id, counts per class, files, step times."""
        steps = self.state["steps"]
        check = steps.get("check", {}).get("result", {})
        publish = steps.get("publish", {}).get("result", {})
        return {
            "flight": self.name,
            "folder": str(self.folder),
            "status": "nothing to do" if self.nothing_to_do else "done",
            "exit_code": EXIT_DONE,
            "run_id": self.run_id,
            "before": check.get("before"),
            "after": check.get("after"),
            "counts": steps.get("match", {}).get("result", {}).get("counts", {}),
            "by_street_town": publish.get("by_street_town", {}),
            "report": publish.get("report"),
            "map": publish.get("map"),
            "dispatch": publish.get("dispatch"),
            "steps": {
                s.name: {"status": s.status, "seconds": round(s.seconds, 3)} for s in self.steps
            },
            "step_seconds": {
                name: round(float(rec.get("seconds", 0.0)), 3) for name, rec in steps.items()
            },
        }


class FlightProgress:
    """Receives progress from :func:`run_flight` (the command line draws it; default: silent)."""

    def step_started(self, step: str) -> None:
        """``step`` begins."""

    def step_finished(self, step: str, status: Literal["ran", "skipped"], seconds: float) -> None:
        """``step`` ended (``skipped``: its earlier result still holds)."""

    def advance(self, step: str, done: int, total: int) -> None:
        """Work inside ``step``: ``done`` of ``total`` units."""


# ---------------------------------------------------------------------------------------------
# files and the state record


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename (never half-written)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def remove_stale_temp_files(folder: Path) -> list[Path]:
    """Remove ``.NAME.PID.tmp`` files left in ``folder`` by a writer that was killed (kill -9).

    Only files whose writing process no longer exists are removed, so a writer still running is
    never disturbed. Returns the removed paths.
    """
    removed = []
    for tmp in folder.glob(".*.tmp"):
        pid_text = tmp.name.rsplit(".", 2)[-2]
        if not pid_text.isdigit():
            continue
        try:
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
        except PermissionError:
            continue
    return removed


class FlightState:
    """The per-flight record ``<folder>/flight_state.json``: finished steps, outputs' SHA-256."""

    def __init__(self, folder: Path, data: dict[str, Any]) -> None:
        """Wrap ``data`` read from (or to be written to) ``folder``."""
        self.folder = folder
        self.data = data

    @classmethod
    def open(cls, folder: Path, name: str) -> FlightState:
        """Read the record in ``folder``, or start an empty one (not written until a step ends)."""
        path = folder / STATE_FILE
        if folder.is_dir():
            remove_stale_temp_files(folder)
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except ValueError:
                data = None
            if isinstance(data, dict) and data.get("version") == STATE_VERSION:
                return cls(folder, data)
        return cls(folder, {"version": STATE_VERSION, "flight": name, "key": None, "steps": {}})

    @property
    def steps(self) -> dict[str, Any]:
        """Finished steps by name."""
        return dict(self.data["steps"])

    def save(self) -> None:
        """Write the record atomically."""
        self.folder.mkdir(parents=True, exist_ok=True)
        write_atomic(
            self.folder / STATE_FILE, json.dumps(self.data, ensure_ascii=False, indent=1) + "\n"
        )

    def record(
        self, step: str, seconds: float, outputs: list[Path], result: dict[str, Any]
    ) -> None:
        """Mark ``step`` finished with its output files (checksummed now) and result."""
        self.data["steps"][step] = {
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "seconds": round(seconds, 3),
            "outputs": {
                str(p.relative_to(self.folder)): sha256_file(p) for p in sorted(set(outputs))
            },
            "result": result,
        }
        self.save()

    def forget_from(self, step: str) -> None:
        """Drop the records of ``step`` and every later step (they must run again)."""
        for later in STEPS[STEPS.index(step) :]:
            self.data["steps"].pop(later, None)

    def files_hold(self, step: str) -> bool:
        """Whether every file ``step`` wrote is still there with the recorded checksum."""
        rec = self.data["steps"].get(step)
        if rec is None:
            return False
        for rel, digest in rec["outputs"].items():
            path = self.folder / rel
            if not path.is_file() or sha256_file(path) != digest:
                return False
        return True


# ---------------------------------------------------------------------------------------------
# checks that refuse a flight


def check_coordinates(scene: Scene) -> None:
    """Refuse a raster whose bounds are impossible for its CRS (``ingest.check_plausible_bounds``).

    ``describe_scene`` already applies it; this repeats it for a scene described elsewhere.
    Raises :class:`FlightRefusedError`.
    """
    from ingest import IngestError, check_plausible_bounds

    try:
        check_plausible_bounds(scene.crs, scene.bounds, name=scene.path)
    except IngestError as exc:
        raise FlightRefusedError(str(exc)) from exc


def _refuse_ingest(what: str, exc: Exception) -> FlightRefusedError:
    return FlightRefusedError(f"{what}: {exc}")


def check_radiometry(pair: AlignedPair) -> None:
    """Refuse a pair whose histograms could not be matched (no common pixels, a flat band)."""
    if not pair.histogram:
        raise FlightRefusedError(
            f"{pair.after.source}: its radiometry could not be matched to {pair.before.source} "
            "(no common valid pixels in the sample tiles): check both images' nodata/alpha masks"
        )
    for band, (after_q, before_q) in enumerate(pair.histogram, start=1):
        for label, quantiles, src in (
            ("after", after_q, pair.after.source),
            ("before", before_q, pair.before.source),
        ):
            if max(quantiles) - min(quantiles) <= 0:
                raise FlightRefusedError(
                    f"{src}: band {band} of the {label} image is flat over the common area "
                    "(one value everywhere), so its radiometry cannot be matched: re-export the "
                    "orthophoto (an empty or saturated image?)"
                )


# ---------------------------------------------------------------------------------------------
# the pipeline


#: Settings that do not change a flight's results (how it runs, where it is written).
_RUNTIME_ONLY = ("output_root", "workers", "scheduler", "device")


def config_fingerprint(config: FlightConfig) -> str:
    """SHA-256 of the settings that shape a flight's results (not how or where it runs)."""
    values = {k: v for k, v in asdict(config).items() if k not in _RUNTIME_ONLY}
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()


def flight_name(after: str | Path) -> str:
    """Default flight name: the after image's file (or folder) name without suffix."""
    path = Path(after)
    return path.stem if path.is_file() else path.name


@dataclass
class _Context:
    engine: Engine
    config: FlightConfig
    folder: Path
    state: FlightState
    progress: FlightProgress
    after: Path
    before: str
    model: Any = None
    pair: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


def run_flight(
    engine: Engine,
    after: str | Path,
    *,
    before: str | Path = "auto",
    name: str | None = None,
    config: FlightConfig,
    progress: FlightProgress | None = None,
) -> FlightResult:
    """Run (or resume) the flight of ``after`` and return what happened.

    ``before``: the earlier image, or ``"auto"`` for the most recent earlier scene in the
    catalogue covering at least ``config.min_cover_fraction`` of ``after``. ``name``: the
    flight's folder under ``config.output_root`` (default: the after image's name).
    Raises :class:`FlightRefusedError` (bad input, nothing stored) or :class:`FlightStepError`.
    """
    if config.demolition not in DEMOLITION_MODES:
        raise FlightRefusedError(
            f"flight.demolition is {config.demolition!r}: use one of {', '.join(DEMOLITION_MODES)}"
        )
    after_path = Path(after)
    if not after_path.exists():
        raise FlightRefusedError(f"{after_path} does not exist: give the new orthophoto's path")
    name = name or flight_name(after_path)
    folder = Path(config.output_root) / name
    ctx = _Context(
        engine=engine,
        config=config,
        folder=folder,
        state=FlightState.open(folder, name),
        progress=progress or FlightProgress(),
        after=after_path,
        before=str(before),
    )
    outcomes: list[StepOutcome] = []
    redo = False
    for step in STEPS:
        ctx.progress.step_started(step)
        started = time.perf_counter()
        if not redo and _still_holds(ctx, step):
            _restore(ctx, step)
            outcome = StepOutcome(step, "skipped", time.perf_counter() - started)
        else:
            if not redo:
                ctx.state.forget_from(step)
                redo = True
            try:
                outputs, result = _run_step(ctx, step)
            except FlightStepError:
                import traceback

                folder.mkdir(parents=True, exist_ok=True)
                stamp = datetime.now(UTC).isoformat(timespec="seconds")
                with open(folder / "error.log", "a", encoding="utf-8") as log:
                    log.write(f"--- {stamp} step {step}\n{traceback.format_exc()}\n")
                raise
            seconds = time.perf_counter() - started
            ctx.state.record(step, seconds, outputs, result)
            outcome = StepOutcome(step, "ran", seconds)
        ctx.progress.step_finished(step, outcome.status, outcome.seconds)
        outcomes.append(outcome)
    return FlightResult(name, folder, not redo, outcomes, ctx.state.data)


def _run_step(ctx: _Context, step: str) -> tuple[list[Path], dict[str, Any]]:
    runner: Callable[[_Context], tuple[list[Path], dict[str, Any]]] = _RUNNERS[step]
    try:
        return runner(ctx)
    except FlightError:
        raise
    except Exception as exc:
        if step in ("check", "align") and _is_bad_input(exc):
            raise FlightRefusedError(str(exc)) from exc
        if _is_domain_error(exc):
            raise FlightStepError(step, str(exc)) from exc
        raise FlightStepError(step, f"{type(exc).__name__}: {exc}") from exc


def _is_domain_error(exc: BaseException) -> bool:
    import sys

    from weijian.cli import ROOT_ERRORS

    roots = tuple(getattr(sys.modules[mod], cls) for mod, cls in ROOT_ERRORS if mod in sys.modules)
    return bool(roots) and isinstance(exc, roots)


def _is_bad_input(exc: BaseException) -> bool:
    from ingest import IngestError

    return isinstance(exc, IngestError)


def _still_holds(ctx: _Context, step: str) -> bool:
    """Whether ``step``'s record is there, belongs to these inputs and still holds."""
    rec = ctx.state.steps.get(step)
    if rec is None:
        return False
    if step == "check":
        if rec["result"].get("config") != config_fingerprint(ctx.config):
            return False  # other settings: everything is done again
        # the inputs must be the same files (size and modification time, then checksum)
        inputs = rec["result"].get("inputs", {})
        after = inputs.get("after", {})
        if not _same_file(ctx.after, after):
            return False
        if ctx.before != "auto" and not _same_file(Path(ctx.before), inputs.get("before", {})):
            return False
    if not ctx.state.files_hold(step):
        return False
    checker = _DB_CHECKS.get(step)
    return checker(ctx, rec["result"]) if checker else True


def _same_file(path: Path, recorded: dict[str, Any]) -> bool:
    if not recorded or not path.exists():
        return False
    from ingest.raster import resolve_source

    source = Path(resolve_source(path)) if path.is_dir() else path
    st = source.stat()
    if recorded.get("size") == st.st_size and recorded.get("mtime_ns") == st.st_mtime_ns:
        return True
    return bool(recorded.get("sha256")) and sha256_file(source) == recorded["sha256"]


def _file_identity(scene: Scene) -> dict[str, Any]:
    st = Path(scene.source).stat()
    return {
        "path": scene.path,
        "source": scene.source,
        "sha256": scene.sha256,
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
    }


def _restore(ctx: _Context, step: str) -> None:
    """Reload what later steps need from a skipped step."""
    if step == "align":
        from ingest import AlignedPair

        ctx.pair = AlignedPair.load(ctx.folder / "pair.json")


# --- check ------------------------------------------------------------------------------------


def _describe(path: str | Path, what: str) -> Scene:
    from ingest import AcquisitionDateWarning, IngestError, describe_scene

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AcquisitionDateWarning)
            scene = describe_scene(path)
    except IngestError as exc:
        raise _refuse_ingest(f"{what} image", exc) from exc
    check_coordinates(scene)
    if scene.acquired is None:
        raise FlightRefusedError(
            f"{path}: no acquisition date (sidecar NAME.json, a date in the file name such as "
            "_20260315, or the TIFF tag): add one so that the flight can be ordered in time"
        )
    return scene


def _load_model(ctx: _Context) -> Any:
    if ctx.model is None:
        from change_detection import load_model
        from change_detection.weights import default_shipped

        source: str | Path = ctx.config.weights or default_shipped(ctx.config.network)
        ctx.model = load_model(source, device=ctx.config.device)
    return ctx.model


def _scene_summary(scene: Scene) -> dict[str, Any]:
    return {
        "path": scene.path,
        "sha256": scene.sha256,
        "acquired": scene.acquired.isoformat() if scene.acquired else None,
        "gsd_m": round(scene.gsd_m, 4),
        "platform": scene.platform,
        "size_px": [scene.width, scene.height],
    }


def _pick_before(ctx: _Context, after: Scene) -> Path:
    """The most recent earlier catalogued scene covering enough of ``after`` (its path)."""
    import shapely
    from sqlalchemy import text

    from gis_db.schema import working_srid

    footprint = after.footprint_in(ctx.config.working_crs)
    with ctx.engine.connect() as conn:
        srid = working_srid(conn)
        rows = conn.execute(
            text(
                "WITH a AS (SELECT ST_GeomFromWKB(:f, :srid) AS g) "
                "SELECT s.path, s.acquired_at, s.checksum, "
                "ST_Area(ST_Intersection(s.footprint, a.g)) / NULLIF(ST_Area(a.g), 0) AS cover "
                "FROM scene s, a WHERE s.acquired_at < :t AND s.checksum <> :c "
                "AND ST_Intersects(s.footprint, a.g) ORDER BY s.acquired_at DESC, s.id DESC"
            ),
            {
                "f": shapely.to_wkb(footprint),
                "srid": srid,
                "t": after.acquired,
                "c": after.sha256,
            },
        ).all()
    best_cover = 0.0
    for row in rows:
        cover = float(row.cover or 0.0)
        best_cover = max(best_cover, cover)
        if cover >= ctx.config.min_cover_fraction and row.path and Path(row.path).exists():
            return Path(row.path)
    if not rows:
        raise FlightRefusedError(
            f"{after.path}: no earlier scene in the catalogue overlaps it: register the last "
            "imagery of this area first (`weijian scene add FILE --register`) or give --before FILE"
        )
    raise FlightRefusedError(
        f"{after.path}: no earlier catalogued scene (still on disk) covers at least "
        f"{ctx.config.min_cover_fraction:.0%} of it (best {best_cover:.0%}): give --before FILE"
    )


def _check_district(ctx: _Context, scene: Scene) -> list[str]:
    """Names of the 街镇 the scene's footprint touches; refuses when there is none."""
    import shapely
    from sqlalchemy import text

    from gis_db.schema import working_srid

    footprint = scene.footprint_in(ctx.config.working_crs)
    with ctx.engine.connect() as conn:
        srid = working_srid(conn)
        total = conn.execute(text("SELECT count(*) FROM street_town")).scalar_one()
        if total == 0:
            raise FlightRefusedError(
                "the database holds no 街镇 boundaries: import them first "
                "(`weijian admin import 街镇.shp --level street_town`)"
            )
        names = (
            conn.execute(
                text(
                    "SELECT name FROM street_town "
                    "WHERE ST_Intersects(geom, ST_GeomFromWKB(:f, :srid)) ORDER BY code"
                ),
                {"f": shapely.to_wkb(footprint), "srid": srid},
            )
            .scalars()
            .all()
        )
    if not names:
        lon, lat = scene.footprint_in("EPSG:4326").centroid.coords[0]
        raise FlightRefusedError(
            f"{scene.path}: it lies at lon {lon:.4f}, lat {lat:.4f}, outside every 街镇 of the "
            "district: check the image's CRS, or that the right district's boundaries are loaded"
        )
    return [str(n) for n in names]


def _step_check(ctx: _Context) -> tuple[list[Path], dict[str, Any]]:
    after = _describe(ctx.after, "after")
    towns = _check_district(ctx, after)
    chosen_auto = ctx.before == "auto"
    before_path = _pick_before(ctx, after) if chosen_auto else Path(ctx.before)
    if not before_path.exists():
        raise FlightRefusedError(f"{before_path} does not exist: give the earlier image's path")
    before = _describe(before_path, "before")
    assert before.acquired is not None and after.acquired is not None
    if before.sha256 and before.sha256 == after.sha256:
        raise FlightRefusedError(
            f"{before.path} and {after.path} are the same image: give the earlier imagery"
        )
    if before.acquired >= after.acquired:
        raise FlightRefusedError(
            f"the before image {before.path} ({before.acquired:%Y-%m-%d %H:%M}) is not earlier "
            f"than the after image {after.path} ({after.acquired:%Y-%m-%d %H:%M}): swap them"
        )
    model = _load_model(ctx)
    limit = model.gsd_m * ctx.config.max_gsd_ratio
    for scene in (before, after):
        if scene.gsd_m > limit:
            raise FlightRefusedError(
                f"{scene.path}: its GSD {scene.gsd_m:.2f} m is coarser than the model can use "
                f"({model.network} was trained at {model.gsd_m:g} m; at most {limit:g} m): "
                "use finer imagery"
            )
    ctx.extra["scenes"] = {"before": before, "after": after}
    result = {
        "config": config_fingerprint(ctx.config),
        "inputs": {"after": _file_identity(after), "before": _file_identity(before)},
        "before": {**_scene_summary(before), "chosen": "auto" if chosen_auto else "given"},
        "after": _scene_summary(after),
        "street_towns": towns,
        "model": {"network": model.network, "gsd_m": model.gsd_m},
    }
    path = ctx.folder / "check.json"
    ctx.folder.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(result, ensure_ascii=False, indent=1))
    # a flight folder holding another flight's record is refused rather than mixed
    key = hashlib.sha256(f"{before.sha256}|{after.sha256}".encode()).hexdigest()
    old = ctx.state.data.get("key")
    if old and old != key:
        raise FlightRefusedError(
            f"{ctx.folder} holds another flight (other images): give this one another --name"
        )
    ctx.state.data["key"] = key
    return [path], result


def _scenes(ctx: _Context) -> dict[str, Scene]:
    """Both described scenes (described again when ``check`` was skipped)."""
    if "scenes" not in ctx.extra:
        from ingest import describe_scene

        inputs = ctx.state.steps["check"]["result"]["inputs"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ctx.extra["scenes"] = {
                k: describe_scene(inputs[k]["path"], checksum=False) for k in ("before", "after")
            }
        for k in ("before", "after"):
            # the checksum was verified by check's record (size and time, or SHA-256)
            object.__setattr__(ctx.extra["scenes"][k], "sha256", inputs[k]["sha256"])
    return dict(ctx.extra["scenes"])


# --- align ------------------------------------------------------------------------------------


def _step_align(ctx: _Context) -> tuple[list[Path], dict[str, Any]]:
    from ingest import IngestError, prepare_pair, write_report

    scenes = _scenes(ctx)
    cfg = ctx.config
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            pair = prepare_pair(
                scenes["before"],
                scenes["after"],
                working_crs=cfg.working_crs,
                gsd_m=cfg.gsd_m,
                min_overlap_fraction=cfg.min_overlap_fraction,
                max_shift_m=cfg.max_shift_m,
                histogram_match=cfg.histogram_match,
                progress=lambda step, done, total: ctx.progress.advance("align", done, total),
                coregistration_min_blocks=cfg.coregistration_min_blocks,
                coregistration_min_confidence=cfg.coregistration_min_confidence,
                coregistration_affine=cfg.coregistration_affine,
            )
        except IngestError as exc:
            raise _refuse_ingest("align", exc) from exc
    if cfg.histogram_match:
        check_radiometry(pair)
    ctx.pair = pair
    pair_path = pair.save(ctx.folder / "pair.json")
    report = write_report(pair, ctx.folder)
    align_path = ctx.folder / "align.json"
    os.replace(report, align_path)
    notes = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    return [pair_path, align_path], {
        "grid_px": [pair.width, pair.height],
        "shift_m": list(pair.shift_m),
        "overlap_fraction": round(pair.overlap_fraction, 4),
        "warnings": notes,
    }


# --- catalogue --------------------------------------------------------------------------------


def catalogue_scene(engine: Engine, scene: Scene, working_crs: str) -> int:
    """Register a described scene in the database's catalogue (``scene`` table); its id.

    Idempotent (by SHA-256). The footprint is stored in ``working_crs`` (metres); the STAC Item
    goes with it. The scene needs an acquisition date-time.
    """
    from gis_db.domain import ScenePlatform
    from gis_db.runs import register_scene
    from ingest import stac_item

    if scene.acquired is None:
        raise FlightRefusedError(
            f"{scene.path}: no acquisition date: give it (--acquired 2026-03-15) to catalogue it"
        )
    platform = ScenePlatform.parse(scene.platform) if scene.platform else ScenePlatform.OTHER
    return register_scene(
        engine,
        checksum=scene.sha256,
        footprint=scene.footprint_in(working_crs),
        acquired_at=scene.acquired,
        platform=platform,
        gsd_m=scene.gsd_m,
        path=Path(scene.source).resolve(),
        stac_item=stac_item(scene).to_dict(include_self_link=False),
        crs=working_crs,
    )


def _register(ctx: _Context, scene: Scene) -> int:
    return catalogue_scene(ctx.engine, scene, ctx.config.working_crs)


def _step_catalogue(ctx: _Context) -> tuple[list[Path], dict[str, Any]]:
    scenes = _scenes(ctx)
    ids = {k: _register(ctx, s) for k, s in scenes.items()}
    return [], {"before_scene_id": ids["before"], "after_scene_id": ids["after"]}


def _check_catalogue(ctx: _Context, result: dict[str, Any]) -> bool:
    from sqlalchemy import text

    with ctx.engine.connect() as conn:
        found = conn.execute(
            text("SELECT count(*) FROM scene WHERE id = ANY(:ids)"),
            {"ids": [result["before_scene_id"], result["after_scene_id"]]},
        ).scalar_one()
    return int(found) == 2


# --- detect -----------------------------------------------------------------------------------


def _pair(ctx: _Context) -> AlignedPair:
    if ctx.pair is None:
        from ingest import AlignedPair

        ctx.pair = AlignedPair.load(ctx.folder / "pair.json")
    return ctx.pair


def detection_available() -> bool:
    """Whether this installation has the orthophoto-scale detection step (issue 9)."""
    try:
        _detect_api()
    except FlightError:
        return False
    return True


def _detect_api() -> tuple[Callable[..., Any], Callable[..., Any]]:
    """``change_detection.detect_pair`` and ``weijian.detect_run.load_detect_output``."""
    try:
        from change_detection.detect import detect_pair
        from weijian.detect_run import load_detect_output
    except ImportError as exc:
        raise FlightError(
            f"this installation has no orthophoto-scale detection ({exc}): update weijian"
        ) from exc
    return detect_pair, load_detect_output


def reversed_pair(pair: AlignedPair) -> AlignedPair:
    """The same pair with the epochs swapped (later image first), on the same working grid.

    The later image is read unshifted and the earlier one shifted back by the pair's shift, so
    the two stay registered to each other; polygons found on it lie in the later image's frame,
    ``-shift_m`` away from the earlier one's (see :func:`_step_detect`). Histogram tables are
    swapped so the earlier image is matched to the later one.
    """
    dx, dy = pair.shift_m
    tables = [(b, a) for a, b in pair.histogram] if pair.histogram else None
    # an affine co-registration model maps the later epoch only: swapped, the pair keeps the
    # translation part (``shift_m``) of it, reversed
    return replace(
        pair,
        before=pair.after,
        after=pair.before,
        shift_m=(-dx, -dy),
        histogram=tables,
        coregistration=None,
    )


def active_cases_area(engine: Engine, pair: AlignedPair, margin_m: float) -> tuple[Any, int]:
    """The pair's footprint within ``margin_m`` of an active inventory case, and their number.

    Working CRS, metres. Demolition evidence can only arise on an active case, so this is where
    the epochs-swapped pass needs to look. An empty geometry when no active case lies there.
    """
    import shapely
    from sqlalchemy import text

    from gis_db.schema import working_srid
    from gis_db.workflow import ACTIVE_CASE_STATES

    footprint = pair.footprint
    with engine.connect() as conn:
        srid = working_srid(conn)
        geoms = (
            conn.execute(
                text(
                    "SELECT ST_AsBinary(ST_Buffer(geom, :m, 'join=mitre')) FROM inventory_case "
                    "WHERE state = ANY(:active) "
                    "AND ST_Intersects(geom, ST_Buffer(ST_GeomFromWKB(:f, :srid), :m))"
                ),
                {
                    "f": shapely.to_wkb(footprint),
                    "srid": srid,
                    "m": margin_m,
                    "active": [s.value for s in ACTIVE_CASE_STATES],
                },
            )
            .scalars()
            .all()
        )
    if not geoms:
        return shapely.Polygon(), 0
    area = shapely.union_all(shapely.from_wkb([bytes(g) for g in geoms]))
    return shapely.make_valid(area.intersection(footprint)), len(geoms)


def _reverse_pass_pair(ctx: _Context) -> AlignedPair | None:
    """The epochs-swapped pair of the demolition pass (``None``: no pass to run).

    ``cases``: its footprint is cut to the ground near active cases, so only the tiles there are
    computed; the area is recorded in ``detect_reverse_area.json`` before the pass and reused
    when the step resumes, so a resumed pass computes the same tiles.
    """
    import shapely

    mode = ctx.config.demolition
    if mode == "off":
        return None
    pair = reversed_pair(_pair(ctx))
    if mode == "full":
        return pair
    record = ctx.folder / "detect_reverse_area.json"
    # the record belongs to this flight's settings and aligned pair; another's is not reused
    key = hashlib.sha256(
        f"{config_fingerprint(ctx.config)}|{sha256_file(ctx.folder / 'pair.json')}".encode()
    ).hexdigest()
    area_wkt = None
    if record.is_file():
        try:
            saved = json.loads(record.read_text(encoding="utf-8"))
            area_wkt = saved["area_wkt"] if saved.get("key") == key else None
        except (ValueError, KeyError):
            area_wkt = None
    if area_wkt is None:
        area, n_cases = active_cases_area(ctx.engine, _pair(ctx), ctx.config.demolition_margin_m)
        area_wkt = "" if area.is_empty else shapely.to_wkt(area, rounding_precision=3)
        write_atomic(
            record,
            json.dumps(
                {
                    "key": key,
                    "active_cases": n_cases,
                    "margin_m": ctx.config.demolition_margin_m,
                    "area_m2": round(area.area, 1),
                    "share_of_pair": round(area.area / max(_pair(ctx).footprint.area, 1e-9), 4),
                    "area_wkt": area_wkt,
                }
            ),
        )
    ctx.extra["reverse_area"] = record
    if not area_wkt:
        return None
    return replace(pair, footprint_wkt=area_wkt)


def _detect_once(ctx: _Context, pair: AlignedPair, out_dir: Path, done: int, total: int) -> Any:
    detect_pair, _ = _detect_api()
    cfg = ctx.config

    def report(tiles: int, of: int, pixels: int) -> None:
        ctx.progress.advance("detect", done * of + tiles, total * of)

    model = _load_model(ctx)
    # the weights' own threshold unless detection.threshold is set (given vectorize parameters,
    # detect_pair takes their threshold: it must be the weights' here, not the dataclass default)
    threshold = model.threshold if cfg.threshold is None else cfg.threshold
    return detect_pair(
        pair,
        model,
        out_dir,
        threshold=threshold,
        workers=cfg.workers,
        scheduler=cfg.scheduler,
        engine=cfg.engine,
        tta=cfg.tta,
        vectorize=cfg.polygons,  # at ``threshold``
        overwrite=True,  # the flight's own folder: a stale result of other settings is replaced
        progress=report,
    )


def _step_detect(ctx: _Context) -> tuple[list[Path], dict[str, Any]]:
    """Detection: the pair as is, and (``demolition``) again with the epochs swapped.

    The shipped networks learned one direction only, a structure appearing (LEVIR-CD labels new
    buildings): on a swapped pair they find what was there before and is gone after. Those
    polygons are loaded as ``disappeared``, which matching turns into demolition evidence where
    they overlap an active case. With ``demolition="cases"`` (the default) the swapped pass only
    computes the tiles near active cases, since nothing elsewhere can become demolition evidence
    (see docs/decisions/0006-flight-pipeline.md for the measurement).
    """
    passes = [("detect", _pair(ctx))]
    reverse = _reverse_pass_pair(ctx)
    if reverse is not None:
        passes.append(("detect_reverse", reverse))
    outputs: list[Path] = []
    if "reverse_area" in ctx.extra:
        outputs.append(ctx.extra["reverse_area"])
    metas: dict[str, Any] = {}
    for i, (folder, pair) in enumerate(passes):
        started = time.perf_counter()
        # the swapped pass keeps the forward pass's tiling: near the cases it computes exactly
        # the tiles the whole-pair pass would (256 px tiles were cheaper but found less)
        result = _detect_once(ctx, pair, ctx.folder / folder, i, len(passes))
        outputs += [result.proba_path, result.gpkg_path, result.geojson_path, result.meta_path]
        meta = dict(result.meta)
        metas[folder] = {
            "n_polygons": len(result.polygons),
            "seconds": round(time.perf_counter() - started, 3),
            **{
                k: meta.get(k)
                for k in ("network", "weights_checksum", "threshold", "network_gsd_m", "key")
            },
        }
    summary: dict[str, Any] = {"passes": metas, "meta": metas["detect"]}
    if "reverse_area" in ctx.extra:
        area = json.loads(ctx.extra["reverse_area"].read_text(encoding="utf-8"))
        summary["reverse_area"] = {k: v for k, v in area.items() if k not in ("area_wkt", "key")}
    return outputs, summary


# --- load -------------------------------------------------------------------------------------

#: Detections of the reversed pass are numbered from here (``seq``) within a run.
REVERSE_SEQ_OFFSET = 1_000_000


def detections_frame(forward: Any, reverse: Any | None, shift_m: tuple[float, float]) -> Any:
    """The run's detections: forward polygons, then the reversed pass's as ``disappeared``.

    ``forward``/``reverse``: :class:`change_detection.DetectResult`; reversed polygons are moved
    by ``-shift_m`` into the earlier image's frame (working CRS, metres), and those touching a
    forward polygon are dropped (a site where something also appeared was rebuilt, not cleared).
    """
    import geopandas as gpd
    import pandas as pd

    def frame(result: Any, kinds: list[str], offset: int) -> gpd.GeoDataFrame:
        polys = result.polygons
        out = gpd.GeoDataFrame(
            {
                "seq": polys["seq"].astype("int64") + offset,
                "score": polys["score_mean"].clip(0.0, 1.0),
                "change_kind": kinds,
            },
            geometry=polys.geometry.to_numpy(),
            crs=polys.crs,
        )
        return out

    fwd_kinds = [
        k if k in ("appeared", "disappeared") else "changed"
        for k in forward.polygons["change_kind"]
    ]
    parts = [frame(forward, fwd_kinds, 0)]
    if reverse is not None and len(reverse.polygons):
        back = frame(reverse, ["disappeared"] * len(reverse.polygons), REVERSE_SEQ_OFFSET)
        dx, dy = shift_m
        if dx or dy:
            back = back.set_geometry(back.geometry.translate(-dx, -dy))
        # where the network also sees something appear, the site was rebuilt, not cleared
        touching = gpd.sjoin(back, parts[0][["geometry"]], predicate="intersects").index
        parts.append(back.drop(index=touching.unique()))
    return gpd.GeoDataFrame(pd.concat(parts, ignore_index=True), crs=forward.polygons.crs)


def _step_load(ctx: _Context) -> tuple[list[Path], dict[str, Any]]:
    """Scenes, run and detections into PostGIS (idempotent, as ``load_detect_output``)."""
    from change_detection.detect import DetectResult
    from gis_db.runs import create_run, get_run, load_detections
    from weijian.detect_run import register_pair_scenes, run_params

    pair = _pair(ctx)
    forward = DetectResult.open(ctx.folder / "detect")
    passes = ctx.state.steps["detect"]["result"].get("passes", {})
    reverse = (
        DetectResult.open(ctx.folder / "detect_reverse") if "detect_reverse" in passes else None
    )
    before_id, after_id = register_pair_scenes(ctx.engine, pair)
    params = run_params(forward.meta)
    if reverse is not None:
        params["demolition_pass"] = reverse.meta["key"]
    run_id = create_run(
        ctx.engine,
        before_scene_id=before_id,
        after_scene_id=after_id,
        network=forward.meta["network"],
        weights_checksum=forward.meta["weights_checksum"],
        params=params,
    )
    frame = detections_frame(forward, reverse, pair.shift_m)
    load_detections(ctx.engine, run_id, frame, timings=forward.meta.get("timings_s"))
    run = get_run(ctx.engine, run_id)
    return [], {"run_id": run_id, "n_detections": int(run["n_detections"] or 0)}


def _check_load(ctx: _Context, result: dict[str, Any]) -> bool:
    from sqlalchemy import text

    with ctx.engine.connect() as conn:
        n = conn.execute(
            text(
                "SELECT n_detections FROM detection_run WHERE id = :r AND status <> 'created' "
                "AND (SELECT count(*) FROM detection WHERE run_id = :r) = n_detections"
            ),
            {"r": result["run_id"]},
        ).scalar()
    return n is not None and int(n) == int(result["n_detections"])


# --- match ------------------------------------------------------------------------------------


def _run_id(ctx: _Context) -> int:
    return int(ctx.state.steps["load"]["result"]["run_id"])


def _step_match(ctx: _Context) -> tuple[list[Path], dict[str, Any]]:
    from gis_db.matching import match_run

    summary = match_run(
        ctx.engine,
        _run_id(ctx),
        overlap_threshold=ctx.config.overlap_threshold,
        tolerance_m=ctx.config.tolerance_m,
    )
    return [], {"counts": summary.counts, "rebound_case_ids": summary.rebound_case_ids}


def _check_match(ctx: _Context, result: dict[str, Any]) -> bool:
    from sqlalchemy import text

    with ctx.engine.connect() as conn:
        status = conn.execute(
            text("SELECT status FROM detection_run WHERE id = :r"), {"r": _run_id(ctx)}
        ).scalar()
    return status == "matched"


# --- publish ----------------------------------------------------------------------------------


def counts_by_street_town(engine: Engine, run_id: int) -> dict[str, dict[str, int]]:
    """Detections of a run per 街镇 name and match class (未落入辖区 for none)."""
    from sqlalchemy import text

    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT COALESCE(s.name, '未落入辖区') AS town, d.match_class, count(*) AS n "
                "FROM detection d LEFT JOIN street_town s ON s.code = d.street_town_code "
                "WHERE d.run_id = :r GROUP BY 1, 2 ORDER BY 1, 2"
            ),
            {"r": run_id},
        ).all()
    out: dict[str, dict[str, int]] = {}
    for town, cls, n in rows:
        out.setdefault(str(town), {})[str(cls)] = int(n)
    return out


def _export_map(ctx: _Context, run_id: int, out: Path) -> Path | None:
    from web_map import export_map

    return Path(export_map(ctx.engine, run_id, out))


def _step_publish(ctx: _Context) -> tuple[list[Path], dict[str, Any]]:
    from gis_db.dispatch import write_dispatch_packages

    run_id = _run_id(ctx)
    dispatch_dir = ctx.folder / "dispatch"
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 3)
        clock = now

    packages = write_dispatch_packages(ctx.engine, run_id, dispatch_dir)
    lap("dispatch")
    outputs: list[Path] = []
    for p in packages:
        outputs += [p.gpkg, p.xlsx]
        outputs += sorted((p.folder / "chips").glob("*.png"))
    map_path = _export_map(ctx, run_id, ctx.folder / "map.html")
    if map_path is not None:
        outputs.append(map_path)
    lap("map")
    by_town = counts_by_street_town(ctx.engine, run_id)
    report = write_run_report(ctx, run_id, by_town, packages, map_path)
    outputs.append(report)
    lap("report")
    return outputs, {
        "timings_s": timings,
        "dispatch": str(dispatch_dir),
        "packages": {p.street_town: p.n_suspects for p in packages},
        "map": str(map_path) if map_path else None,
        "report": str(report),
        "by_street_town": by_town,
    }


def _code_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("weijian")
    except PackageNotFoundError:
        return "unknown"


def write_run_report(
    ctx: _Context,
    run_id: int,
    by_town: dict[str, dict[str, int]],
    packages: list[Any],
    map_path: Path | None,
) -> Path:
    """``report.html``: counts per class and 街镇, chips, step times, model and data versions."""
    from gis_db.domain import MatchClass
    from gis_db.runs import get_run

    esc = html.escape
    steps = ctx.state.steps
    check = steps["check"]["result"]
    detect = steps["detect"]["result"]
    counts = steps["match"]["result"]["counts"]
    run = get_run(ctx.engine, run_id)
    classes = [m for m in MatchClass]
    rows = []
    for town, per in sorted(by_town.items()):
        cells = "".join(f"<td>{per.get(m.value, 0)}</td>" for m in classes)
        rows.append(f"<tr><th>{esc(town)}</th>{cells}<td>{sum(per.values())}</td></tr>")
    total = "".join(f"<td>{counts.get(m.value, 0)}</td>" for m in classes)
    header = "".join(f"<th>{esc(m.zh)}<br><small>{m.value}</small></th>" for m in classes)
    chips = []
    for p in packages:
        for before_png in sorted((p.folder / "chips").glob("*_before.png")):
            after_png = before_png.with_name(before_png.name.replace("_before", "_after"))
            if after_png.is_file():
                chips.append(
                    (p.street_town, int(before_png.name.split("_")[0]), before_png, after_png)
                )
    # the worst first: rebounds (反弹回潮), then new suspects, each by score (file names sorted
    # "100" before "4" and showed arbitrary detections)
    from sqlalchemy import text

    with ctx.engine.connect() as conn:
        found = conn.execute(
            text("SELECT id, match_class, score FROM detection WHERE run_id = :r"),
            {"r": run_id},
        ).all()
    detected = {int(i): (str(c), float(sc or 0.0)) for i, c, sc in found}
    rank = {MatchClass.REBOUND.value: 0, MatchClass.NEW_SUSPECT.value: 1}
    chips.sort(
        key=lambda c: (
            rank.get(detected.get(c[1], ("", 0.0))[0], 2),
            -detected.get(c[1], ("", 0.0))[1],
            c[1],
        )
    )
    chips_html = []
    for town, det, b, a in chips[:REPORT_CHIPS]:
        imgs = "".join(
            f'<figure><img src="data:image/png;base64,{base64.b64encode(x.read_bytes()).decode()}"'
            f' alt="{label}"><figcaption>{label}</figcaption></figure>'
            for x, label in ((b, "前时相 before"), (a, "后时相 after"))
        )
        cls, score = detected.get(det, ("", 0.0))
        what = f" · {MatchClass(cls).zh} · {score:.2f}" if cls else ""
        chips_html.append(
            f'<div class="chip"><h4>图斑 {det}{esc(what)} · {esc(town)}</h4>{imgs}</div>'
        )
    timing_rows = (
        "".join(
            f"<tr><th>{esc(STEP_LABELS[s])} ({s})</th>"
            f"<td>{float(steps[s]['seconds']):.1f} s</td></tr>"
            for s in STEPS
            if s in steps
        )
        + "<tr><th>发布 (publish)</th><td>见 flight_state.json (this step)</td></tr>"
    )
    meta = detect.get("meta", {})
    versions = {
        "weijian": _code_version(),
        "network": run["network"],
        "weights SHA-256": run["weights_checksum"],
        "threshold": meta.get("threshold"),
        "model GSD (m)": check["model"]["gsd_m"],
        "demolition pass": f"epochs swapped ({ctx.config.demolition})"
        if "detect_reverse" in detect.get("passes", {})
        else "no",
        "before": f"{check['before']['path']} · {check['before']['acquired']} · "
        f"{check['before']['sha256'][:16]}…",
        "after": f"{check['after']['path']} · {check['after']['acquired']} · "
        f"{check['after']['sha256'][:16]}…",
    }
    version_rows = "".join(
        f"<tr><th>{esc(k)}</th><td>{esc(str(v))}</td></tr>" for k, v in versions.items()
    )
    map_link = (
        f'<p><a href="{esc(os.path.relpath(map_path, ctx.folder))}">地图 map</a></p>'
        if map_path
        else "<p>静态地图未生成 (no static map in this installation)</p>"
    )
    page = f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<title>比对批次 {run_id} · {esc(ctx.state.data["flight"])}</title>
<style>
body {{ font-family: "Noto Sans CJK SC", sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; margin-bottom: 1.5em; }}
td, th {{ border: 1px solid #bbb; padding: 4px 8px; text-align: right; }}
th {{ background: #f3f3f3; text-align: left; }}
.chip {{ display: inline-block; margin: 0 1em 1em 0; }}
figure {{ display: inline-block; margin: 0 4px; }} img {{ max-width: 240px; }}
</style></head><body>
<h1>航飞比对报告 flight report: {esc(ctx.state.data["flight"])}</h1>
<p>比对批次 run {run_id} · 图斑 detections {sum(counts.values())}</p>
{map_link}
<h2>按街镇与比对结果 counts per 街镇 and class</h2>
<table><tr><th>街镇</th>{header}<th>合计</th></tr>{"".join(rows)}
<tr><th>合计 total</th>{total}<td>{sum(counts.values())}</td></tr></table>
<h2>前后时相截图 before/after chips</h2>
{"".join(chips_html) or "<p>无 none</p>"}
<h2>各步骤用时 timings per step</h2>
<table>{timing_rows}</table>
<h2>模型与数据版本 model and data versions</h2>
<table>{version_rows}</table>
</body></html>
"""
    path = ctx.folder / "report.html"
    write_atomic(path, page)
    return path


_RUNNERS: dict[str, Callable[[_Context], tuple[list[Path], dict[str, Any]]]] = {
    "check": _step_check,
    "align": _step_align,
    "catalogue": _step_catalogue,
    "detect": _step_detect,
    "load": _step_load,
    "match": _step_match,
    "publish": _step_publish,
}

_DB_CHECKS: dict[str, Callable[[_Context, dict[str, Any]], bool]] = {
    "catalogue": _check_catalogue,
    "load": _check_load,
    "match": _check_match,
}

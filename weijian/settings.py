"""The one validated settings model of weijian.

Values come, highest priority first, from: keyword arguments, environment variables with the
``WEIJIAN_`` prefix (nested sections use ``__``, e.g. ``WEIJIAN_INGEST__MAX_SHIFT_M=3``), the
TOML file named by ``WEIJIAN_CONFIG`` (default ``./weijian.toml`` when it exists), then the
defaults below. Stage packages (ingest, change_detection, gis_db, web_map) never read settings
themselves: the command line and the pipeline read them here and pass plain values down.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from pyproj import CRS
from pyproj.exceptions import CRSError

from weijian.errors import ConfigurationError

if TYPE_CHECKING:
    from change_detection.vectorize import VectorizeParams


def default_data_dir() -> Path:
    """Where the embedded database and run outputs live when nothing is configured.

    As root the folder must be reachable by the ``postgres`` system user (``/root`` is not),
    so root gets ``/var/lib/weijian``; other users get ``$XDG_DATA_HOME/weijian``.
    """
    if os.geteuid() == 0:
        return Path("/var/lib/weijian")
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg) / "weijian"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IngestSettings(_Section):
    """Working grid and pair-alignment limits (metres in the working CRS)."""

    working_gsd_m: float = Field(
        0.5, gt=0, description="ground sample distance of the working grid, m"
    )
    min_overlap_fraction: float = Field(
        0.2,
        ge=0,
        le=1,
        description=(
            "refuse a pair whose valid overlap is below this share of the smaller footprint"
        ),
    )
    max_shift_m: float = Field(
        5.0, gt=0, description="refuse co-registration shifts larger than this, m"
    )
    coregistration_min_blocks: int = Field(
        4,
        ge=1,
        description="apply a co-registration shift only when at least this many blocks agree",
    )
    coregistration_min_confidence: float = Field(
        0.5,
        ge=0,
        le=1,
        description="... and at least this share of the blocks with a clear match agree",
    )
    coregistration_affine: bool = Field(
        True, description="allow an affine model when the shift varies across the image"
    )
    tile_size_px: int = Field(512, gt=0)
    tile_overlap_px: int = Field(32, ge=0)
    histogram_match: bool = True


class DetectionSettings(_Section):
    """Change-detection inference defaults."""

    device: Literal["cpu", "cuda", "auto"] = "auto"
    network: str = "tinysiam"
    weights: Path | None = Field(
        None, description="weights file; default: the weights shipped in the package"
    )
    threshold: float | None = Field(
        None, ge=0, le=1, description="default: the best-F1 threshold stored in the weights"
    )
    min_area_m2: float = Field(10.0, ge=0, description="drop change polygons smaller than this, m²")
    tile_px: int = Field(512, ge=32, description="side of the inference tiles, working-grid px")
    overlap_px: int = Field(
        64, ge=0, description="overlap of neighbouring tiles (blended), working-grid px"
    )
    batch_size: int = Field(
        2, gt=0, description="tiles per network call (each 512 px tile adds ~90 MB at peak)"
    )
    workers: int = Field(
        1, gt=0, description="local worker processes (1: in the calling process; >1: Dask)"
    )
    scheduler: str | None = Field(
        None, description="tcp://HOST:PORT of a dask.distributed scheduler; unset: local"
    )
    scheduler_timeout_s: float = Field(10.0, gt=0, description="give up reaching it after, s")
    engine: Literal["torch", "onnxruntime"] = Field(
        "onnxruntime",
        description="onnxruntime: the network exported to ONNX, several times faster on CPUs and "
        "checked within 1e-3 of torch; torch: for a GPU (device cuda)",
    )
    tta: bool = Field(
        False, description="test-time augmentation: mean over 8 flips/rotations (8x slower)"
    )
    opening_px: int = Field(1, ge=0, description="morphological opening radius, px")
    closing_px: int = Field(
        0,
        ge=0,
        description="morphological closing radius, px (0: a closing merges neighbouring houses, "
        "decision 0015)",
    )
    min_score_max: float = Field(
        0.0,
        ge=0,
        le=1,
        description="drop a polygon whose highest probability stays below this (a hysteresis "
        "seed; 0: keep all)",
    )
    max_hole_m2: float = Field(100.0, ge=0, description="fill holes smaller than this, m²")
    regularize: bool = Field(True, description="square off building-like outlines")
    core_threshold: float = Field(
        0.6,
        ge=0,
        le=1,
        description="seeded cores (decision 0024, chosen on validation): every polygon grows "
        "from a core where the probability reaches this, so neighbouring houses joined by a "
        "weak halo become separate polygons and a change without a core is dropped; must be "
        "above the threshold (0: off, plain connected regions)",
    )
    core_min_area_m2: float = Field(
        4.0, ge=0, description="with seeded cores: the smallest core that seeds a polygon, m²"
    )
    grow_margin: float = Field(
        0.2,
        ge=0,
        lt=1,
        description="with seeded cores: polygons grow down to the threshold minus this, never "
        "under half the threshold (the threshold is the weights' own unless "
        "detection.threshold is set; decision 0029: for the default weights, 0.31 -> 0.155)",
    )
    core_max_box_mpx: float = Field(
        16.0,
        gt=0,
        description="with seeded cores: a changed region whose bounding box exceeds this many "
        "megapixels is not split into objects (one polygon), so that memory stays bounded "
        "(about 33 bytes per pixel of the box)",
    )
    evaluation_data: list[Path] = Field(
        default_factory=list,
        description="LEVIR-layout folders of the fixed evaluation set of `weijian model promote`",
    )
    evaluation_only: list[str] = Field(
        default_factory=list,
        description="glob patterns <folder>/<stem> of the evaluation pairs (default: all)",
    )

    @model_validator(mode="after")
    def _core_above_threshold(self) -> DetectionSettings:
        if self.core_threshold > 0 and self.threshold is not None:
            if self.core_threshold <= self.threshold:
                raise ValueError(
                    f"core_threshold {self.core_threshold:g} is not above threshold "
                    f"{self.threshold:g}: a core must be more confident than the cut; raise "
                    "core_threshold (e.g. 0.7) or set it to 0 (no seeded cores)"
                )
        return self

    def vectorize_params(
        self, threshold: float, min_area_m2: float | None = None
    ) -> VectorizeParams:
        """The polygon clean-up of these settings at ``threshold`` (probability 0-1).

        ``min_area_m2`` (m² of ground) overrides the setting when given.
        """
        from change_detection.vectorize import VectorizeParams

        return VectorizeParams(
            threshold=threshold,
            min_area_m2=self.min_area_m2 if min_area_m2 is None else min_area_m2,
            opening_px=self.opening_px,
            closing_px=self.closing_px,
            min_score_max=self.min_score_max,
            max_hole_m2=self.max_hole_m2,
            regularize=self.regularize,
            core_threshold=self.core_threshold,
            core_min_area_m2=self.core_min_area_m2,
            grow_margin=self.grow_margin,
            core_max_box_px=round(self.core_max_box_mpx * 1e6),
        )


class MatchingSettings(_Section):
    """Matching detections to the inventory (overlap = intersection / smaller area)."""

    overlap_threshold: float = Field(0.3, gt=0, le=1)
    tolerance_m: float = Field(2.0, ge=0, description="buffer for misregistration, m")
    reinspection_days: int = Field(
        30, gt=0, description="re-inspection due this many days after a write-off"
    )


class WarningSettings(_Section):
    """Colour warnings (颜色预警) per 街镇: share of overdue work and rebounds."""

    yellow_new_suspects: int = Field(
        10, ge=0, description="open new suspects at or above this: yellow"
    )
    red_new_suspects: int = Field(30, ge=0, description="open new suspects at or above this: red")
    red_rebounds: int = Field(1, ge=0, description="rebounds in the period at or above this: red")
    yellow_overdue: int = Field(
        1, ge=0, description="overdue re-inspections at or above this: yellow"
    )


class WebSettings(_Section):
    """The review application (``weijian serve``)."""

    host: str = "127.0.0.1"
    port: int = Field(8000, gt=0, lt=65536)
    language: Literal["zh", "en"] = "zh"
    tk: str | None = Field(
        None,
        description="天地图 (Tianditu) browser key; without one the maps show the orthophotos only",
    )
    secret_key: SecretStr | None = Field(
        None,
        min_length=32,
        description="signs session cookies; unset: generated once into DATA_DIR/web/secret_key",
    )
    evidence_dir: Path | None = Field(
        None, description="folder of uploaded site photos; unset: DATA_DIR/evidence"
    )
    max_upload_mb: float = Field(10.0, gt=0, description="largest accepted site photo, MB")
    session_hours: float = Field(12.0, gt=0, description="a log-in lasts this many hours")
    login_max_failures: int = Field(
        5, gt=0, description="failed log-ins per user and client within 5 minutes before a pause"
    )
    secure_cookies: bool = Field(False, description="Secure session cookie (serve behind HTTPS)")


class FlightSettings(_Section):
    """The per-flight pipeline (``weijian flight``) and its watch folder."""

    output_dir: Path | None = Field(
        None, description="one folder per flight; default: <data_dir>/flights"
    )
    workers: int = Field(1, ge=1, description="local detection workers (processes)")
    scheduler: str | None = Field(
        None, description="dask.distributed scheduler address for detection, tcp://HOST:PORT"
    )
    max_gsd_ratio: float = Field(
        2.0, gt=0, description="refuse scenes coarser than this many times the model's GSD"
    )
    min_cover_fraction: float = Field(
        0.5, gt=0, le=1, description="--before auto: share of the new scene the earlier must cover"
    )
    demolition: Literal["cases", "full", "off"] = Field(
        "cases",
        description="demolition evidence: run detection again with the epochs swapped (the "
        "shipped networks only learned structures appearing) near active cases only ('cases'), "
        "over the whole flight ('full'), or not ('off')",
    )
    watch_settle_s: float = Field(
        30.0, ge=0, description="a watched file counts as complete once unchanged this long, s"
    )
    watch_poll_s: float = Field(10.0, gt=0, description="watch folder polling interval, s")


class Settings(BaseSettings):
    """Everything configurable in weijian, validated once."""

    model_config = SettingsConfigDict(
        env_prefix="WEIJIAN_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    database_url: str | None = Field(
        None, description="SQLAlchemy URL of a PostGIS database; unset: the embedded cluster"
    )
    data_dir: Path = Field(default_factory=default_data_dir)
    working_crs: str = Field(
        "EPSG:4549",
        description=(
            "projected CRS in metres for all stored geometry: an EPSG code or a PROJ/WKT string"
        ),
    )
    district_name: str = "宝山区"
    user: str = Field(default_factory=lambda: os.environ.get("USER", "staff"))
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "WARNING",
        description=(
            "how much of the stages' log the command line prints on stderr: WARNING shows only "
            "problems (progress and summaries are printed anyway); INFO adds step timings and "
            "row counts (also `weijian --verbose ...`)"
        ),
    )

    ingest: IngestSettings = Field(default_factory=IngestSettings)
    detection: DetectionSettings = Field(default_factory=DetectionSettings)
    matching: MatchingSettings = Field(default_factory=MatchingSettings)
    warnings: WarningSettings = Field(default_factory=WarningSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    flight: FlightSettings = Field(default_factory=FlightSettings)

    @field_validator("working_crs")
    @classmethod
    def _projected_metres(cls, value: str) -> str:
        try:
            crs = CRS.from_user_input(value)
        except CRSError as exc:
            raise ValueError(
                f"working_crs {value!r} is not a CRS PROJ understands: give an EPSG code such as "
                f"'EPSG:4549' or a PROJ/WKT string ({exc})"
            ) from exc
        if not crs.is_projected:
            raise ValueError(
                f"working_crs {value!r} is not projected: areas need metres, e.g. 'EPSG:4549' "
                "(CGCS2000 / 3-degree Gauss-Kruger CM 120E)"
            )
        unit = crs.axis_info[0].unit_name if crs.axis_info else "metre"
        if unit not in ("metre", "meter", "m"):
            raise ValueError(f"working_crs {value!r} has axis unit {unit!r}; it must be metres")
        return value

    @property
    def crs(self) -> CRS:
        """The working CRS as a pyproj object."""
        return CRS.from_user_input(self.working_crs)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Sources, highest first: arguments, ``WEIJIAN_`` environment, the TOML file if any."""
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config = config_file()
        if config is not None:
            try:
                sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config))
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                raise ConfigurationError(
                    f"{config} is not valid TOML ({exc}): fix that line (strings in double "
                    'quotes, sections as [matching]; see the README\'s "Configuration")'
                ) from None
        return tuple(sources)

    @field_validator("database_url")
    @classmethod
    def _postgresql_url(cls, value: str | None) -> str | None:
        if not value:
            return value
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            url = make_url(value)
        except ArgumentError:
            url = None
        if url is None or not url.drivername.startswith("postgres"):
            raise ValueError(
                "not a PostgreSQL URL: write it as postgresql://user:password@host:5432/db, or "
                "unset it to use the embedded cluster"
            )
        return value


def config_file() -> Path | None:
    """The TOML settings file in force: ``$WEIJIAN_CONFIG`` or ``./weijian.toml`` if present.

    Raises:
        ConfigurationError: ``WEIJIAN_CONFIG`` names a file that does not exist.
    """
    named = os.environ.get("WEIJIAN_CONFIG")
    if named:
        path = Path(named)
        if not path.is_file():
            raise ConfigurationError(
                f"WEIJIAN_CONFIG names {path}, which does not exist: give the path of your "
                "weijian.toml, or unset WEIJIAN_CONFIG"
            )
        return path
    local = Path("weijian.toml")
    return local if local.is_file() else None


#: ``WEIJIAN_...`` environment variables that are not settings: the settings file's name, and
#: variables of the test suite and the benchmarks (``WEIJIAN_TEST_...``, ``WEIJIAN_BENCH_...``).
NOT_SETTINGS = ("WEIJIAN_CONFIG",)
NOT_SETTINGS_PREFIXES = ("WEIJIAN_TEST_", "WEIJIAN_BENCH_")


def setting_names() -> list[str]:
    """Every environment variable that sets something: ``WEIJIAN_X`` and ``WEIJIAN_X__Y``."""
    names = []
    for name, field in Settings.model_fields.items():
        names.append(f"WEIJIAN_{name.upper()}")
        section = field.annotation
        if isinstance(section, type) and issubclass(section, BaseModel):
            names += [f"WEIJIAN_{name.upper()}__{sub.upper()}" for sub in section.model_fields]
    return names


def unknown_environment(environ: dict[str, str] | None = None) -> list[str]:
    """``WEIJIAN_...`` variables in the environment that name no setting (typos), sorted.

    Unknown keys inside a section (``WEIJIAN_DETECTION__THRESHHOLD``) are refused by the model
    itself; this finds the ones it never sees, e.g. ``WEIJIAN_DATABSE_URL``, which would
    otherwise leave the setting at its default without a word.
    """
    environ = dict(os.environ) if environ is None else environ
    sections = {f"WEIJIAN_{name.upper()}" for name in Settings.model_fields}
    unknown = []
    for key in environ:
        upper = key.upper()
        if not upper.startswith("WEIJIAN_") or upper in NOT_SETTINGS:
            continue
        if upper.startswith(NOT_SETTINGS_PREFIXES):
            continue
        if upper.split("__", 1)[0] not in sections:
            unknown.append(key)
    return sorted(unknown)


def _did_you_mean(name: str) -> str:
    close = difflib.get_close_matches(name.upper(), setting_names(), n=1, cutoff=0.75)
    return f" (did you mean {close[0]}?)" if close else ""


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (cached; call ``get_settings.cache_clear()`` after changing env).

    Invalid values raise ConfigurationError naming the environment variable to fix.
    """
    unknown = unknown_environment()
    if unknown:
        raise ConfigurationError(
            "invalid settings: "
            + "; ".join(f"{key} is not a setting{_did_you_mean(key)}" for key in unknown)
            + ': correct or unset it (the README\'s "Configuration" lists the settings)'
        )
    try:
        return Settings()
    except ValidationError as exc:
        problems = []
        for e in exc.errors():
            key = f"WEIJIAN_{'__'.join(str(p) for p in e['loc']).upper()}"
            if e["type"] == "extra_forbidden":
                problems.append(f"{key}: not a setting{_did_you_mean(key)}")
            else:
                problems.append(f"{key}: {e['msg']}")
        raise ConfigurationError(f"invalid settings: {'; '.join(problems)}") from None

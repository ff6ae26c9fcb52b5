"""gis_db: the system of record for illegal buildings (违建) in PostGIS, and what staff do with it.

Typical use (every function takes an Engine, or a Connection to join the caller's transaction)::

    import gis_db
    engine = gis_db.make_engine("postgresql://user:pw@host/db")
    gis_db.upgrade(engine, working_crs="EPSG:4549")       # schema, geometry in the working CRS
    report = gis_db.import_cases_file(engine, "ledger.xlsx", actor="王芳")
    cases = gis_db.load_cases(engine, street_town="月浦镇")  # a GeoDataFrame (working CRS, m)
    summary = gis_db.match_run(engine, run_id)              # detections vs inventory and permits
    gis_db.transition_case(engine, case_id, "dispatch", actor="王芳")

Modules: ``engine``/``embedded``/``schema`` (connecting, the embedded cluster, migrations),
``inventory``/``inventory_io``/``query`` (loading, files, reading), ``runs``/``matching``
(detection runs), ``rules``/``workflow`` (the state machines and their transitions),
``dispatch``/``stats`` (packages for the 街镇, figures). This package reads no settings and
imports no later stage; names are imported on first use, so ``import gis_db`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gis_db.dispatch import write_dispatch_packages
    from gis_db.domain import (
        OFFICE_TZ,
        CaseState,
        ChangeKind,
        ConstructionStatus,
        DetectionState,
        DiscoverySource,
        Disposal,
        Exemption,
        MatchClass,
        PriorityType,
        Role,
        RunStatus,
        ScenePlatform,
    )
    from gis_db.embedded import EmbeddedCluster
    from gis_db.engine import make_engine, transaction
    from gis_db.errors import (
        ConflictError,
        DatabaseUnavailableError,
        GisDbError,
        IllegalTransitionError,
        InvalidInputError,
        NotFoundError,
        PermissionDeniedError,
        SystemPackageMissingError,
    )
    from gis_db.inventory import (
        ImportReport,
        RowProblem,
        reassign_cases,
        upsert_cases,
        upsert_units,
    )
    from gis_db.inventory_io import (
        export_cases,
        import_cases_file,
        import_units_file,
        read_cases,
        read_units,
    )
    from gis_db.matching import MatchSummary, match_run
    from gis_db.query import load_cases, load_units, summary_by_street_town
    from gis_db.rules import (
        CaseAction,
        DetectionAction,
        TransitionResult,
        allowed_case_actions,
        allowed_detection_actions,
    )
    from gis_db.runs import create_run, get_run, list_runs, load_detections, register_scene
    from gis_db.schema import current_revision, downgrade, require_working_crs, stored_crs, upgrade
    from gis_db.stats import WarningThresholds, due_reinspections, unit_stats
    from gis_db.workflow import (
        history,
        resolve_case,
        review_detection,
        transition_case,
        transition_cases,
    )

#: Module -> the public names it defines (imported when a name is first used).
_MODULES: dict[str, tuple[str, ...]] = {
    "gis_db.errors": (
        "GisDbError",
        "DatabaseUnavailableError",
        "SystemPackageMissingError",
        "InvalidInputError",
        "NotFoundError",
        "ConflictError",
        "IllegalTransitionError",
        "PermissionDeniedError",
    ),
    "gis_db.domain": (
        "OFFICE_TZ",
        "CaseState",
        "ChangeKind",
        "ConstructionStatus",
        "DetectionState",
        "DiscoverySource",
        "Disposal",
        "Exemption",
        "MatchClass",
        "PriorityType",
        "Role",
        "RunStatus",
        "ScenePlatform",
    ),
    "gis_db.engine": (
        "make_engine",
        "transaction",
    ),
    "gis_db.embedded": ("EmbeddedCluster",),
    "gis_db.schema": (
        "current_revision",
        "downgrade",
        "require_working_crs",
        "stored_crs",
        "upgrade",
    ),
    "gis_db.inventory": (
        "ImportReport",
        "RowProblem",
        "reassign_cases",
        "upsert_cases",
        "upsert_units",
    ),
    "gis_db.inventory_io": (
        "export_cases",
        "import_cases_file",
        "import_units_file",
        "read_cases",
        "read_units",
    ),
    "gis_db.query": (
        "load_cases",
        "load_units",
        "summary_by_street_town",
    ),
    "gis_db.runs": (
        "create_run",
        "get_run",
        "list_runs",
        "load_detections",
        "register_scene",
    ),
    "gis_db.matching": (
        "MatchSummary",
        "match_run",
    ),
    "gis_db.rules": (
        "CaseAction",
        "DetectionAction",
        "TransitionResult",
        "allowed_case_actions",
        "allowed_detection_actions",
    ),
    "gis_db.workflow": (
        "history",
        "resolve_case",
        "review_detection",
        "transition_case",
        "transition_cases",
    ),
    "gis_db.dispatch": ("write_dispatch_packages",),
    "gis_db.stats": (
        "WarningThresholds",
        "due_reinspections",
        "unit_stats",
    ),
}
_EXPORTS = {name: module for module, names in _MODULES.items() for name in names}

__all__ = [
    "OFFICE_TZ",
    "CaseAction",
    "CaseState",
    "ChangeKind",
    "ConflictError",
    "ConstructionStatus",
    "DatabaseUnavailableError",
    "DetectionAction",
    "DetectionState",
    "DiscoverySource",
    "Disposal",
    "EmbeddedCluster",
    "Exemption",
    "GisDbError",
    "IllegalTransitionError",
    "ImportReport",
    "InvalidInputError",
    "MatchClass",
    "MatchSummary",
    "NotFoundError",
    "PermissionDeniedError",
    "PriorityType",
    "Role",
    "RowProblem",
    "RunStatus",
    "ScenePlatform",
    "SystemPackageMissingError",
    "TransitionResult",
    "WarningThresholds",
    "allowed_case_actions",
    "allowed_detection_actions",
    "create_run",
    "current_revision",
    "downgrade",
    "due_reinspections",
    "export_cases",
    "get_run",
    "history",
    "import_cases_file",
    "import_units_file",
    "list_runs",
    "load_cases",
    "load_detections",
    "load_units",
    "make_engine",
    "match_run",
    "read_cases",
    "read_units",
    "reassign_cases",
    "register_scene",
    "require_working_crs",
    "resolve_case",
    "review_detection",
    "stored_crs",
    "summary_by_street_town",
    "transaction",
    "transition_case",
    "transition_cases",
    "unit_stats",
    "upgrade",
    "upsert_cases",
    "upsert_units",
    "write_dispatch_packages",
]


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first use (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'gis_db' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])

"""Colours and bilingual labels shared by the pages, the map script and the static export."""

from __future__ import annotations

from datetime import datetime

from gis_db.domain import (
    SHANGHAI,
    CaseState,
    ChangeKind,
    DetectionState,
    Disposal,
    LabelledEnum,
    MatchClass,
    Role,
    RunStatus,
)
from gis_db.workflow import CaseAction, DetectionAction

MATCH_COLOURS: dict[str, str] = {
    MatchClass.NEW_SUSPECT.value: "#e31a1c",
    MatchClass.KNOWN_CASE.value: "#1f78b4",
    MatchClass.REBOUND.value: "#d01c8b",
    MatchClass.DEMOLITION_EVIDENCE.value: "#33a02c",
    MatchClass.PERMITTED.value: "#8c8c8c",
    MatchClass.UNRELATED.value: "#bdbdbd",
}
DETECTION_STATE_COLOURS: dict[str, str] = {
    DetectionState.NEW.value: "#ff7f00",
    DetectionState.CONFIRMED.value: "#e31a1c",
    DetectionState.FALSE_POSITIVE.value: "#8c8c8c",
    DetectionState.BAD_IMAGERY.value: "#a6761d",
}
CASE_STATE_COLOURS: dict[str, str] = {
    CaseState.OPEN.value: "#fb9a99",
    CaseState.DISPATCHED.value: "#fdbf6f",
    CaseState.VERIFIED.value: "#ff7f00",
    CaseState.DISPOSED.value: "#cab2d6",
    CaseState.WRITE_OFF_REQUESTED.value: "#6a3d9a",
    CaseState.WRITTEN_OFF.value: "#b2df8a",
    CaseState.REINSPECTED_CLEAN.value: "#33a02c",
    CaseState.REBOUND.value: "#e31a1c",
}
WARNING_COLOURS: dict[str, str] = {"green": "#2ca25f", "yellow": "#fec44f", "red": "#de2d26"}
WARNING_ZH: dict[str, str] = {"green": "绿色", "yellow": "黄色", "red": "红色"}


def english(member: LabelledEnum) -> str:
    """The English label of a domain code: ``write_off_requested`` -> ``write-off requested``."""
    return member.value.replace("_", " ").replace("write off", "write-off")


def label(member: LabelledEnum | None, lang: str) -> str:
    """The label of a domain value in ``lang`` (``zh`` or ``en``)."""
    if member is None:
        return ""
    return member.zh if lang == "zh" else english(member)


def enum_labels(enum: type[LabelledEnum], lang: str) -> dict[str, str]:
    """Code -> label in ``lang`` for every member of ``enum``."""
    return {m.value: label(m, lang) for m in enum}


def all_labels(lang: str) -> dict[str, dict[str, str]]:
    """Every label the map script needs, by vocabulary."""
    return {
        "match_class": enum_labels(MatchClass, lang),
        "detection_state": enum_labels(DetectionState, lang),
        "case_state": enum_labels(CaseState, lang),
        "disposal": enum_labels(Disposal, lang),
        "change_kind": enum_labels(ChangeKind, lang),
        "role": {
            **enum_labels(Role, lang),
            "staff": "工作人员" if lang == "zh" else "staff",  # rows imported from files
        },
        "run_status": enum_labels(RunStatus, lang),
        "case_action": {
            **enum_labels(CaseAction, lang),
            "create": "建档" if lang == "zh" else "created",
            "attach_evidence": "补充佐证" if lang == "zh" else "evidence attached",
            "import_create": "导入新增" if lang == "zh" else "imported",
            "import_update": "导入更新" if lang == "zh" else "import update",
        },
        "detection_action": enum_labels(DetectionAction, lang),
        "warning": WARNING_ZH if lang == "zh" else {k: k for k in WARNING_ZH},
    }


def colours() -> dict[str, dict[str, str]]:
    """Every colour table the map script needs."""
    return {
        "match_class": MATCH_COLOURS,
        "detection_state": DETECTION_STATE_COLOURS,
        "case_state": CASE_STATE_COLOURS,
        "warning": WARNING_COLOURS,
    }


def local_time(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """A moment as the office's (Shanghai) wall-clock time; empty for None."""
    if value is None:
        return ""
    if value.tzinfo is not None:
        value = value.astimezone(SHANGHAI)
    return value.strftime(fmt)

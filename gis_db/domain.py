"""The vocabulary of illegal-building control (DOMAIN.md) as code values with Chinese labels.

Values are stored as short English codes (stable across languages and exports); every screen
and export shows the Chinese label. ``parse`` accepts either the code or any Chinese label.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Self
from zoneinfo import ZoneInfo

#: Time zone of the office's calendar: re-inspection due dates, case numbers, statistics days
#: (the IANA name, as PostgreSQL's ``AT TIME ZONE`` takes it).
OFFICE_TZ = "Asia/Shanghai"
#: The same zone for Python date-times; naive date-times are taken as Shanghai local time.
#: (ingest.scene keeps its own UTC+8 constant: ingest imports no later stage.)
SHANGHAI = ZoneInfo(OFFICE_TZ)


class LabelledEnum(StrEnum):
    """A StrEnum whose members carry a Chinese label (``.zh``)."""

    zh: str

    def __new__(cls, value: str, zh: str = "") -> Self:  # noqa: D102 (the class says it)
        obj = str.__new__(cls, value)
        obj._value_ = value
        obj.zh = zh
        return obj

    @classmethod
    def parse(cls, text: str) -> LabelledEnum:
        """The member whose code or Chinese label is ``text`` (whitespace ignored)."""
        key = str(text).strip()
        for member in cls:
            if key in (member.value, member.zh) or key.lower() == member.value:
                return member
        raise ValueError(
            f"unknown {cls.__doc__.split(':')[0].strip() if cls.__doc__ else cls.__name__} "
            f"{text!r}; allowed: " + ", ".join(f"{m.zh} ({m.value})" for m in cls)
        )

    @classmethod
    def codes(cls) -> list[str]:
        """Every member's code (the stored value), in definition order."""
        return [m.value for m in cls]


class PriorityType(LabelledEnum):
    """重点类型: priority type (six categories) or non-priority."""

    COMMERCIAL = ("commercial", "经营性")
    PUBLIC_SAFETY = ("public_safety", "影响公共安全")
    STREET_RIVER = ("street_river", "沿街沿河")
    ECOLOGICAL = ("ecological", "占用生态及农用地")
    POLLUTING = ("polluting", "污染环境")
    OTHER_PRIORITY = ("other_priority", "其他重点")
    NON_PRIORITY = ("non_priority", "非重点类型")


class ConstructionStatus(LabelledEnum):
    """建设状态: existing stock, newly built, under construction."""

    EXISTING = ("existing", "存量")
    NEW = ("new", "新增")
    UNDER_CONSTRUCTION = ("under_construction", "在建")


class Exemption(LabelledEnum):
    """豁免: exemption from the 100 % removal target."""

    NONE = ("none", "无")
    HISTORICAL_UNLICENSED = ("historical_unlicensed", "历史遗留无证建筑")
    COURTYARD_ADDON = ("courtyard_addon", "居民自住天井违建")


class Disposal(LabelledEnum):
    """处置方式: how the case is (to be) handled."""

    DEMOLISH = ("demolish", "拆除")
    CONVERT = ("convert", "转化")
    DEFER = ("defer", "缓拆")
    ANNOTATE = ("annotate", "注记")
    FORCED_DEMOLITION = ("forced_demolition", "代为拆除")


class DiscoverySource(LabelledEnum):
    """发现来源: how the case was discovered."""

    DRONE = ("drone", "无人机")
    SATELLITE = ("satellite", "卫片")
    PATROL = ("patrol", "巡查")
    HOTLINE_12345 = ("hotline_12345", "12345热线")
    GRID_INSPECTION = ("grid_inspection", "网格巡查")
    OTHER = ("other", "其他")


class CaseState(LabelledEnum):
    """案件状态: where a case stands in its life (the state machine lives in gis_db.workflow)."""

    OPEN = ("open", "待派单")
    DISPATCHED = ("dispatched", "已派街镇")
    VERIFIED = ("verified", "已查实")
    DISPOSED = ("disposed", "已处置")
    WRITE_OFF_REQUESTED = ("write_off_requested", "申请销项")
    WRITTEN_OFF = ("written_off", "已销项")
    REINSPECTED_CLEAN = ("reinspected_clean", "复查无反弹")
    REBOUND = ("rebound", "反弹回潮")


class PermitIssuer(LabelledEnum):
    """审批部门: the bureau that approved a construction."""

    PLANNING = ("planning", "规划资源")
    HOUSING = ("housing", "房管")
    OTHER = ("other", "其他")


def check_constraint(column: str, enum: type[LabelledEnum], nullable: bool = False) -> str:
    """SQL CHECK expression restricting ``column`` to the enum's codes."""
    values = ", ".join(f"'{code}'" for code in enum.codes())
    expr = f"{column} IN ({values})"
    return f"({column} IS NULL OR {expr})" if nullable else expr


class DetectionState(LabelledEnum):
    """核查状态: where a detected change stands in review (rules in gis_db.workflow)."""

    NEW = ("new", "待核查")
    CONFIRMED = ("confirmed", "已确认")
    FALSE_POSITIVE = ("false_positive", "误报")
    BAD_IMAGERY = ("bad_imagery", "影像问题")


class MatchClass(LabelledEnum):
    """比对结果: what a detected change is, judged against the inventory (gis_db.matching)."""

    NEW_SUSPECT = ("new_suspect", "新增疑似")
    KNOWN_CASE = ("known_case", "已在库")
    REBOUND = ("rebound", "反弹回潮")
    DEMOLITION_EVIDENCE = ("demolition_evidence", "拆除佐证")
    PERMITTED = ("permitted", "已审批")
    UNRELATED = ("unrelated", "无关变化")


class ChangeKind(LabelledEnum):
    """变化类型: what the detector saw change, when it can tell."""

    APPEARED = ("appeared", "建筑新增")
    DISAPPEARED = ("disappeared", "建筑消失")
    CHANGED = ("changed", "变化未定向")


class ScenePlatform(LabelledEnum):
    """影像来源: the platform that took a scene."""

    DRONE = ("drone", "无人机")
    SATELLITE = ("satellite", "卫片")
    AERIAL = ("aerial", "航片")
    OTHER = ("other", "其他")


class RunStatus(LabelledEnum):
    """比对批次状态: how far a detection run has come."""

    CREATED = ("created", "已创建")
    LOADED = ("loaded", "已载入")
    MATCHED = ("matched", "已比对")
    FAILED = ("failed", "失败")


class Role(LabelledEnum):
    """角色: who acts on a case (the workflow's role requirements)."""

    OFFICE = ("office", "拆违办")
    STREET_TOWN = ("street_town", "街镇")
    SYSTEM = ("system", "系统")

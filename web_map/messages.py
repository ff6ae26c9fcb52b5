"""What staff read when the review application refuses something: one Chinese sentence per code.

Domain errors keep their English message (``str(exc)``: the command line, the logs, analysts, the
API's ``detail``). Errors a person can meet in the application also carry a stable ``code`` and
the values of the message (``params``, see :class:`gis_db.errors.CodedError`); this module is the
one place that turns them into the sentence shown on a page, in a form's red note, or in the
API's ``message`` field for the pages' scripts: what happened, and what to do about it.

Domain words come from the labels the pages already use (``LabelledEnum.zh`` through
:func:`web_map.labels.label`), never from a second table. An error whose code has no template
here (or whose template lacks a value) still gets a Chinese sentence, followed by the English
detail for the administrator; never a traceback.

To add one: give the raise site a ``code`` and the values (``raise NotFoundError("...",
code="scene_not_found", scene_id=3)``), then add ``"scene_not_found": lambda p: f"..."`` to
:data:`ZH` below, using ``p["scene_id"]``; a test that triggers it from a page asserts the text.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from gis_db.domain import CaseState, DetectionState, Disposal, LabelledEnum, MatchClass, Role
from gis_db.workflow import CaseAction, DetectionAction
from web_map.accounts import WebRole
from web_map.labels import label

#: A template: the error's params -> one or two Chinese sentences.
Template = Callable[[Mapping[str, Any]], str]

#: Said when an error has no template of its own; the English detail follows.
GENERIC_ZH = "操作未能完成"
#: What follows the generic sentence: the English detail, for the administrator.
DETAIL_ZH = "技术详情 (英文, 可转告系统管理员): "


def _zh(enum: type[LabelledEnum], code: str) -> str:
    """The page label of one domain code (``written_off`` -> ``已销项``)."""
    return label(enum(code), "zh")


def _is_case(p: Mapping[str, Any]) -> bool:
    return p.get("what", "case") == "case"


def _record(p: Mapping[str, Any]) -> str:
    """案件 BS-2026-001 / 图斑 12 / 该记录: the record a refusal is about."""
    if "what" not in p:
        return "该记录"
    if not _is_case(p):
        return f"图斑 {p['record_id']} " if "record_id" in p else "该图斑"
    if p.get("case_number"):
        return f"案件 {p['case_number']} "
    return f"案件 (序号 {p['record_id']}) " if "record_id" in p else "该案件"


def _state(p: Mapping[str, Any]) -> str:
    return _zh(CaseState if _is_case(p) else DetectionState, p["state"])


def _action(p: Mapping[str, Any], code: str | None = None) -> str:
    return _zh(CaseAction if _is_case(p) else DetectionAction, code or p["action"])


#: The vocabularies a refused value can belong to (``params["vocabulary"]``: the class name).
VOCABULARIES: dict[str, type[LabelledEnum]] = {
    e.__name__: e
    for e in (CaseAction, DetectionAction, Disposal, Role, CaseState, DetectionState, MatchClass)
}


def _unknown_label(p: Mapping[str, Any]) -> str:
    enum = VOCABULARIES[p["vocabulary"]]
    name = (enum.__doc__ or "").split(":")[0].strip()  # 处置方式: ... (as LabelledEnum.parse)
    choices = "、".join(label(m, "zh") for m in enum)
    return f"「{p['value']}」不是有效的{name}, 可选: {choices}。请刷新页面后从页面上选择。"


def _illegal_transition(p: Mapping[str, Any]) -> str:
    now = "、".join(f"「{_action(p, a)}」" for a in p.get("allowed", []))
    return (
        f"{_record(p)}当前状态为「{_state(p)}」, 不能办理「{_action(p)}」。"
        + (f"当前可办理: {now}。" if now else "该记录已办结, 不能再办理。")
        + "请刷新页面查看最新状态。"
    )


def _role_not_allowed(p: Mapping[str, Any]) -> str:
    roles = "、".join(f"「{_zh(Role, r)}」" for r in p["roles"])
    return (
        f"「{_zh(Role, p['role'])}」不能对{_record(p)}办理「{_action(p)}」, 只有{roles}可以办理。"
        "如需办理, 请联系相应人员。"
    )


def _not_found(what: str) -> Template:
    def template(p: Mapping[str, Any]) -> str:
        ref = p.get("record_id")
        scoped = "或不在您所在街镇的范围内" if p.get("scoped") else "或已被删除"
        return (
            f"{what}{f' (序号 {ref}) ' if ref is not None else ''}不存在, {scoped}。"
            "请从列表或地图重新进入; 若确认应能看到, 请联系系统管理员。"
        )

    return template


def _mb(value: Any) -> str:
    return f"{float(value):.1f} MB"


def _bad_parameters(p: Mapping[str, Any]) -> str:
    fields = "、".join(f"「{f}」" for f in p.get("fields", []) if f)
    return (
        "网址或表单中的参数有误"
        + (f" ({fields})" if fields else "")
        + ": 请从页面上的链接或按钮进入, 不要手动修改网址。"
    )


#: Error code -> the sentence staff read in Chinese.
ZH: dict[str, Template] = {
    # the workflow (gis_db.workflow, gis_db.rules)
    "illegal_transition": _illegal_transition,
    "conflict": lambda p: (
        f"{_record(p)}在您打开页面之后已被他人办理或修改, 本次操作未保存。"
        "请核对页面上的最新状态, 需要时重新办理。"
    ),
    "role_not_allowed": _role_not_allowed,
    "other_street_town": lambda p: (
        f"{_record(p)}属于其他街镇, 您只能办理本街镇的案件。如有疑问, 请联系拆违办。"
    ),
    "second_person_required": lambda p: (
        f"销项须由申请人以外的人员办理: {p['actor']} 申请了{_record(p)}的销项, "
        "请由拆违办的其他审批人员销项。"
    ),
    "disposal_required": lambda p: (
        f"办理「{_action(p)}」须选择处置方式 ("
        + "、".join(label(d, "zh") for d in Disposal)
        + "): 请选择后重新提交。"
    ),
    "evidence_required": lambda p: (
        f"办理「{_action(p)}」须提供佐证: 请上传现场照片, 或填写卷宗号等其他佐证后重新提交。"
    ),
    "detection_not_matched": lambda p: (
        f"{_record(p)}尚未与案件库比对, 不能「{_action(p)}」: 请先对该比对批次运行比对。"
    ),
    "detection_unrelated": lambda p: (
        f"{_record(p)}是无关变化 (原有建筑消失, 此处没有在办案件), 没有可确认入库的违建: "
        "请标记为误报或跳过。"
    ),
    "unknown_label": _unknown_label,
    "unknown_action": lambda p: f"没有「{p['value']}」这项操作: 请刷新页面, 使用页面上的按钮办理。",
    "case_not_found": _not_found("案件"),
    "detection_not_found": _not_found("图斑"),
    "run_not_found": _not_found("比对批次"),
    "evidence_not_found": _not_found("现场照片"),
    "photo_of_other_case": lambda p: (
        f"照片 (序号 {p['file_id']}) 属于其他案件, 不能作为本案件的佐证: 请上传本案件的照片。"
    ),
    # who is asking
    "login_required": lambda p: (
        "请先登录 (未登录, 或登录已过期、账号已停用): 登录后将回到您要打开的页面。"
    ),
    "login_failed": lambda p: "用户名或密码错误",  # the log-in form adds what to do
    "rate_limited": lambda p: (
        f"用户名 {p['username']} 登录失败次数过多, 已暂停登录: 请 {p['wait_s']} 秒后再试; "
        "忘记密码请联系系统管理员重置。"
    ),
    "csrf": lambda p: "页面已过期 (安全校验未通过), 本次提交未办理: 请刷新页面后重新提交。",
    "role_forbidden": lambda p: (
        f"您的角色「{_zh(WebRole, p['role'])}」无权办理「{_action(p)}」: "
        "如需办理, 请联系有权限的同事或系统管理员。"
    ),
    "read_only": lambda p: (
        f"您的角色「{_zh(WebRole, p['role'])}」只能查看, 不能上传或办理: "
        "如需办理, 请联系有权限的同事。"
    ),
    # site photos
    "upload_too_large": lambda p: (
        f"照片「{p['name']}」超过上限 {_mb(p['limit_mb'])}: "
        "请压缩照片或换一张较小的照片后重新上传。"
    ),
    "request_too_large": lambda p: (
        f"本次提交共 {_mb(p['size_mb'])}, 超过上限 {_mb(p['limit_mb'])}: "
        "请减少照片数量或压缩照片后重新提交。"
    ),
    "upload_unsupported": lambda p: (
        f"「{p['name']}」不是 JPEG、PNG 或 WebP 格式的照片, 不能上传: "
        "请用手机或相机拍摄的照片 (JPEG、PNG 或 WebP)。"
    ),
    "upload_empty": lambda p: f"「{p['name']}」是空文件: 请重新选择照片。",
    # maps and imagery (the pages' scripts show these)
    "bad_bbox": lambda p: "地图范围参数有误: 请刷新地图页面。",
    "imagery_unavailable": lambda p: (
        "该影像暂时无法读取 (影像文件缺失或不在该范围内): 请联系系统管理员检查影像文件。"
    ),
    # the application itself
    "page_not_found": lambda p: "该网址不存在: 请从首页或菜单进入。",
    "method_not_allowed": lambda p: "该网址不支持此操作: 请从页面上的链接或按钮进入。",
    "bad_parameters": _bad_parameters,
    "database_unavailable": lambda p: (
        "暂时无法连接数据库, 本次操作没有保存: 请稍后再试; 如果一直如此, "
        "请联系系统管理员检查数据库服务。"
    ),
    "internal_error": lambda p: (
        "系统内部出错, 本次操作没有完成: 请稍后再试; 如果一直如此, "
        "请把出错的时间和页面告诉系统管理员 (详情在服务器日志中)。"
    ),
}


def say(code: str, params: Mapping[str, Any], lang: str, english: str) -> str:
    """The sentence for error ``code`` with ``params`` in ``lang`` (``zh`` or ``en``).

    Args:
        code: the error's stable code (``illegal_transition``).
        params: the values its message names (codes, numbers, names).
        lang: ``zh`` for the Chinese sentence; any other value gives ``english``.
        english: the English message, said in English and after the generic Chinese sentence.
    """
    if lang != "zh":
        return english
    template = ZH.get(code)
    if template is not None:
        try:
            return template(params)
        except (KeyError, ValueError, TypeError):
            pass  # a raise site without the values: the generic sentence below
    return f"{GENERIC_ZH}。{DETAIL_ZH}{english}" if english else f"{GENERIC_ZH}。"


def code_of(exc: BaseException) -> str:
    """The stable code of an error (``internal_error`` for one that has none)."""
    return str(getattr(exc, "code", "internal_error"))


def explain(exc: BaseException, lang: str) -> str:
    """What a person reads about ``exc`` in ``lang``: see :func:`say`."""
    params = getattr(exc, "params", None)
    return say(code_of(exc), params if isinstance(params, Mapping) else {}, lang, str(exc))


def api_error(exc: BaseException, lang: str) -> dict[str, str]:
    """The JSON body of a refused API request.

    ``error`` (the exception's class) and ``code`` are stable and machine-readable; ``detail``
    is the English message; ``message`` is what the pages' scripts show, in ``lang``.
    """
    return {
        "error": type(exc).__name__,
        "code": code_of(exc),
        "detail": str(exc),
        "message": explain(exc, lang),
    }

"""``weijian demo``: the README's main job on the embedded defaults."""

from __future__ import annotations


def demo() -> None:
    """建立内置数据库, 载入示范区, 按街镇打印汇总。"""
    raise NotImplementedError

"""Moved to :mod:`weijian_testdata.rasters`; this path stays for branches still importing it."""

from weijian_testdata.rasters import *  # noqa: F403 (the whole module, under its old name)

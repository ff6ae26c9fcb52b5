"""Moved to :mod:`weijian_testdata.runs`; this path stays for branches still importing it."""

from weijian_testdata.runs import *  # noqa: F403 (the whole module, under its old name)

"""Moved to :mod:`weijian_testdata.inventory`; this path stays for branches still importing it."""

from weijian_testdata.inventory import *  # noqa: F403 (the whole module, under its old name)

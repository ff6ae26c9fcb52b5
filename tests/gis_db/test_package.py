"""The curated gis_db namespace: every public name resolves, and importing it stays cheap."""

from __future__ import annotations

import subprocess
import sys

import pytest

import gis_db


def test_every_public_name_resolves_to_its_module() -> None:
    assert sorted(gis_db.__all__) == sorted(gis_db._EXPORTS)
    for name in gis_db.__all__:
        value = getattr(gis_db, name)
        module = sys.modules[gis_db._EXPORTS[name]]
        assert getattr(module, name) is value


def test_import_gis_db_loads_no_geo_stack() -> None:
    code = (
        "import sys, gis_db, gis_db.embedded; "
        "print(sorted({'geopandas', 'pandas'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        _ = gis_db.no_such_name

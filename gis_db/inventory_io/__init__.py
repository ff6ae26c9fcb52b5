"""Reading, validating and writing inventory files: GeoPackage, Shapefile, GeoJSON, Excel, CSV.

Reading a user file (``read_cases`` / ``read_units``) gives a clean GeoDataFrame in the working
CRS with canonical columns and domain codes, plus the rows rejected and repaired. Rules:

* **Formats**: ``.gpkg``, ``.shp`` (also ``.zip`` holding one), ``.geojson``/``.json``,
  ``.xlsx``, ``.csv``/``.txt``. Excel and CSV carry geometry as a WKT column, or as
  longitude + latitude columns plus an area column (m²): such a case gets a square footprint of
  that area around the point, and the import says so.
* **Text encoding**: GeoPackage, GeoJSON and Excel are Unicode. A Shapefile's ``.dbf`` and a
  CSV are tried as UTF-8, then the encoding the ``.cpg`` names, then GBK (GB18030); text that
  none decodes, or that holds U+FFFD replacement characters (mojibake), is refused.
* **CRS**: the file's own CRS (``.prj``, GeoPackage SRS, GeoJSON = EPSG:4326, or a header such
  as ``WKT (EPSG:4549)``) is used and reported; ``--crs`` supplies one for files without it
  (a CSV of lon/lat without ``--crs`` is refused: CGCS2000 and a local grid cannot be told
  apart safely) and must agree with a declared one. Everything is reprojected to the working CRS.
* **Headers** map to fields through ``gis_db/mappings/inventory.toml`` (``--mapping`` adds to
  it). Unknown columns are ignored with a warning, or refused with ``strict=True``.
* **Rows** are numbered as the user sees them: sheet row / CSV line for Excel and CSV (the
  header is row 1), 1-based feature number for GIS files. Every problem names file, row, field.
* **Geometry**: polygons only; an invalid polygon is repaired with ``make_valid`` when the
  repair is polygonal and changes the area by less than 1 %, otherwise rejected; footprints must
  lie within the district (the 街镇 already loaded, else a Shanghai bounding box).

* **Files as offices send them** (issue 15; rules in docs/decisions/0009-inventory-import.md):
  spreadsheets are read cell by cell (header under title rows, total and blank rows skipped
  and listed, merged cells carried), Excel error values, uncalculated formulas and over-long
  cells refuse their row, case numbers are normalised (NFKC, zero-width, spaces) or refused
  (scientific notation, lost digits, look-alikes of stored numbers), GCJ-02/BD-09 lon/lat is
  converted to CGCS2000, shapefiles must come with their parts and may sit in a zipped folder.
  An unexpected error while reading becomes one line naming the file, never a traceback.

Without ``skip_invalid`` the first problem is raised as ``InvalidInputError`` and nothing is
written; with it, the problem rows are left out and listed in a report file (CSV, UTF-8 with
BOM so that Excel opens it).

The package, by concern (SQL only in ``importing`` and ``exporting``):

* ``mapping``: canonical fields, header aliases and value spellings (``--mapping``);
* ``readers``: GIS files, Excel and CSV as they are, and their text encodings, using
  ``sheets`` (spreadsheets as laid out) and ``shapefiles`` (parts, zips);
* ``cells`` and ``case_numbers``: what must not be stored, and case numbers as identities;
* ``problems``: row problems numbered as the user sees the rows;
* ``geometry``: CRS, polygons, extent and safe repair;
* ``validation``: a whole file (attributes, keys, geometry) to a clean frame, and the report;
* ``importing``: the working CRS and district from the database, then the upsert;
* ``exporting``: cases to GeoPackage, GeoJSON or Excel that import again unchanged.

Everything public is importable from ``gis_db.inventory_io`` as before the split.
"""

from gis_db.inventory import ImportReport, RowProblem, UnitLevel
from gis_db.inventory_io.exporting import EXPORT_HEADERS, EXPORT_LABELS, export_cases
from gis_db.inventory_io.geometry import MAX_REPAIR_AREA_CHANGE, SHANGHAI_LONLAT, shanghai_extent
from gis_db.inventory_io.importing import (
    DISTRICT_MARGIN_M,
    district_extent,
    import_cases_file,
    import_units_file,
)
from gis_db.inventory_io.mapping import (
    ENUM_FIELDS,
    REQUIRED,
    TEXT_FIELDS,
    FieldMapping,
    Kind,
    load_mapping,
    map_headers,
)
from gis_db.inventory_io.readers import TABLE_SUFFIXES, VECTOR_SUFFIXES, RawTable, read_table
from gis_db.inventory_io.validation import (
    ReadResult,
    read_cases,
    read_units,
    write_problem_report,
)

__all__ = [
    "DISTRICT_MARGIN_M",
    "ENUM_FIELDS",
    "EXPORT_HEADERS",
    "EXPORT_LABELS",
    "MAX_REPAIR_AREA_CHANGE",
    "REQUIRED",
    "SHANGHAI_LONLAT",
    "TABLE_SUFFIXES",
    "TEXT_FIELDS",
    "VECTOR_SUFFIXES",
    "FieldMapping",
    "ImportReport",
    "Kind",
    "RawTable",
    "ReadResult",
    "RowProblem",
    "UnitLevel",
    "district_extent",
    "export_cases",
    "import_cases_file",
    "import_units_file",
    "load_mapping",
    "map_headers",
    "read_cases",
    "read_table",
    "read_units",
    "shanghai_extent",
    "write_problem_report",
]

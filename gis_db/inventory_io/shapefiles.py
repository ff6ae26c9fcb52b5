"""Shapefiles as they travel: the parts that must go together, and zips made from folders.

A shapefile is several files: ``.shp`` (shapes), ``.shx`` (index), ``.dbf`` (attributes),
``.prj`` (CRS), often ``.cpg`` (text encoding). Offices send the ``.shp`` alone, or a zip made by
right-click compressing a folder (the files sit in a sub-folder, sometimes next to macOS's
``__MACOSX`` copies, names in GBK), or a zip of several shapefiles. This module names a missing
part as such and finds the shapefile in a zip (``--layer`` picks one of several).
"""

from __future__ import annotations

import zipfile
from pathlib import Path, PurePosixPath

from gis_db.errors import InvalidInputError

#: The parts a shapefile needs to be read, and what each holds.
REQUIRED_PARTS = {".shx": "index", ".dbf": "attribute table"}
#: Single-file formats also accepted inside a zip.
ZIPPED_SINGLE = (".gpkg", ".geojson", ".json")
#: Largest total size extracted from one zip, bytes (a guard against zip bombs).
MAX_UNZIPPED_BYTES = 4 * 1024**3
SEND_TOGETHER = (
    "a shapefile is several files (.shp, .shx, .dbf, .prj, often .cpg) that must travel "
    "together: send all of them, best compressed into one .zip"
)


def part(shp: Path, suffix: str) -> Path | None:
    """The file next to ``shp`` with the same name and ``suffix`` (any letter case), if any."""
    for candidate in (shp.with_suffix(suffix), shp.with_suffix(suffix.upper())):
        if candidate.is_file():
            return candidate
    if shp.parent.is_dir():
        for f in shp.parent.iterdir():
            if f.stem == shp.stem and f.suffix.lower() == suffix and f.is_file():
                return f
    return None


def check_parts(shp: Path, source: str) -> None:
    """Refuse a shapefile whose index or attribute table is missing, naming the file."""
    for suffix, what in REQUIRED_PARTS.items():
        if part(shp, suffix) is None:
            raise InvalidInputError(
                f"{source}: the shapefile's {what} {shp.stem}{suffix} is missing (it must lie "
                f"next to {shp.name}); {SEND_TOGETHER}"
            )


def no_prj_hint(shp: Path) -> str | None:
    """The sentence for a shapefile without ``.prj`` (None when it has one)."""
    if part(shp, ".prj") is not None:
        return None
    return f"{shp.stem}.prj (the shapefile's CRS) is missing next to {shp.name}"


def _member_name(info: zipfile.ZipInfo) -> str:
    """A member's name: UTF-8 when flagged, else the bytes tried as UTF-8 then GBK (Windows)."""
    if info.flag_bits & 0x800:
        return info.filename
    raw = info.filename.encode("cp437", errors="replace")
    for codec in ("utf-8", "gb18030"):
        try:
            return raw.decode(codec)
        except UnicodeDecodeError:
            continue
    return info.filename


def _junk(name: str) -> bool:
    p = PurePosixPath(name)
    return p.parts[:1] == ("__MACOSX",) or p.name.startswith("._") or p.name in ("Thumbs.db",)


def unzip_vector(path: Path, source: str, layer: str | None, dest: Path) -> tuple[Path, bool, str]:
    """Extract the one shapefile (or GeoPackage/GeoJSON) ``path`` holds into ``dest``.

    Returns the extracted file, whether ``layer`` was used to choose the shapefile (then it
    must not be passed on as a layer name) and the chosen file's path in the zip. Several
    shapefiles: ``layer`` names one by its file name (without ``.shp``) or its path in the
    zip; without it the import is refused listing them.
    """
    try:
        with zipfile.ZipFile(path) as zf:
            members = {
                _member_name(i): i
                for i in zf.infolist()
                if not i.is_dir() and not _junk(i.filename)
            }
            shps = sorted(n for n in members if n.lower().endswith(".shp"))
            if not shps:
                singles = sorted(n for n in members if n.lower().endswith(ZIPPED_SINGLE))
                if len(singles) != 1:
                    held = ", ".join(sorted(members)[:10]) or "nothing"
                    raise InvalidInputError(
                        f"{source}: the zip holds no shapefile (.shp) and not exactly one "
                        f"GeoPackage or GeoJSON (it holds: {held}); zip the inventory layer's "
                        "files, or send the file itself"
                    )
                chosen, used_layer = singles[0], False
            elif len(shps) == 1 and layer is None:
                chosen, used_layer = shps[0], False
            else:
                stems = {n: PurePosixPath(n).stem for n in shps}
                hits = [n for n in shps if layer in (stems[n], n, n[: -len(".shp")])]
                if len(shps) == 1 and not hits:
                    hits = shps  # --layer may then name a layer inside it; not ours to judge
                if len(hits) != 1:
                    listed = ", ".join(stems[n] for n in shps)
                    what = (
                        "choose one with --layer" if layer is None else f"no {layer!r} among them"
                    )
                    raise InvalidInputError(
                        f"{source}: the zip holds {len(shps)} shapefiles ({listed}); {what}, "
                        f"e.g. --layer {stems[shps[0]]}"
                    )
                chosen, used_layer = hits[0], len(shps) > 1
            stem = chosen.rsplit(".", 1)[0]
            siblings = (
                [n for n in members if n.rsplit(".", 1)[0] == stem]
                if chosen.lower().endswith(".shp")
                else [chosen]
            )
            if sum(members[n].file_size for n in siblings) > MAX_UNZIPPED_BYTES:
                raise InvalidInputError(
                    f"{source}: {chosen} unpacks to more than "
                    f"{MAX_UNZIPPED_BYTES // 1024**3} GB; send the layer unzipped"
                )
            dest.mkdir(parents=True, exist_ok=True)
            for n in siblings:
                target = dest / ("layer" + PurePosixPath(n).suffix.lower())
                target.write_bytes(zf.read(members[n]))
    except (zipfile.BadZipFile, OSError) as exc:
        raise InvalidInputError(
            f"{source}: not a readable zip file ({exc}); compress the files again"
        ) from exc
    out = dest / ("layer" + PurePosixPath(chosen).suffix.lower())
    if out.suffix == ".shp":
        for suffix, what in REQUIRED_PARTS.items():
            if part(out, suffix) is None:
                raise InvalidInputError(
                    f"{source}: the shapefile's {what} {PurePosixPath(stem).name}{suffix} is "
                    f"missing in the zip (next to {chosen}); {SEND_TOGETHER}"
                )
    return out, used_layer, chosen

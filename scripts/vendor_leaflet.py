"""Rebuild web_map/static/vendor from npm tarballs (run once; the output is committed).

    cd /tmp && npm pack leaflet@1.9.3 leaflet-side-by-side@2.0.0 leaflet.fullscreen@3.0.0 \
        leaflet.sync@0.2.4
    python scripts/vendor_leaflet.py /tmp

The pages and the static export must work with no internet access, so Leaflet and its plugins are
served by the application (and inlined by ``weijian map export``). Images referenced from CSS are
inlined as data URIs so that each file stands alone.
"""

from __future__ import annotations

import base64
import re
import sys
import tarfile
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "web_map" / "static" / "vendor"


def _members(tgz: Path) -> dict[str, bytes]:
    with tarfile.open(tgz) as tar:
        return {
            m.name.removeprefix("package/"): tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isfile()
        }


def _inline_urls(css: str, files: dict[str, bytes], prefix: str = "") -> str:
    def repl(match: re.Match[str]) -> str:
        name = match.group(1).strip("'\"")
        data = files.get(prefix + name)
        if data is None:
            return match.group(0)
        mime = "image/svg+xml" if name.endswith(".svg") else "image/png"
        return f"url(data:{mime};base64,{base64.b64encode(data).decode()})"

    return re.sub(r"url\(([^)]+)\)", repl, css)


def main(src: Path) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    leaflet = _members(src / "leaflet-1.9.3.tgz")
    (OUT / "leaflet.js").write_bytes(leaflet["dist/leaflet.js"])
    (OUT / "leaflet.css").write_text(
        _inline_urls(leaflet["dist/leaflet.css"].decode(), leaflet, "dist/"), encoding="utf-8"
    )
    sbs = _members(src / "leaflet-side-by-side-2.0.0.tgz")
    js = sbs["index.js"].decode()
    js = js.replace("var L = require('leaflet')", "var L = window.L")
    js = js.replace("require('./layout.css')\n", "").replace("require('./range.css')\n", "")
    js = js.replace("module.exports = L.Control.SideBySide", "")
    (OUT / "leaflet-side-by-side.js").write_text(f"(function () {{\n{js}\n}})();\n")
    css = sbs["layout.css"].decode() + "\n" + sbs["range.css"].decode()
    (OUT / "leaflet-side-by-side.css").write_text(_inline_urls(css, sbs), encoding="utf-8")
    full = _members(src / "leaflet.fullscreen-3.0.0.tgz")
    (OUT / "Control.FullScreen.js").write_bytes(full["Control.FullScreen.js"])
    (OUT / "Control.FullScreen.css").write_text(
        _inline_urls(full["Control.FullScreen.css"].decode(), full), encoding="utf-8"
    )
    sync = _members(src / "leaflet.sync-0.2.4.tgz")
    (OUT / "L.Map.Sync.js").write_bytes(sync["L.Map.Sync.js"])
    licences = []
    for tgz in (
        "leaflet-1.9.3",
        "leaflet-side-by-side-2.0.0",
        "leaflet.fullscreen-3.0.0",
        "leaflet.sync-0.2.4",
    ):
        files = _members(src / f"{tgz}.tgz")
        text = next((v for k, v in files.items() if k.upper().startswith("LICEN")), b"")
        licences.append(f"== {tgz} ==\n{text.decode()}\n")
    (OUT / "LICENSES.txt").write_text("\n".join(licences), encoding="utf-8")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp"))

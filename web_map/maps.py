"""Folium maps of a run: the review application's map page and the static, self-contained export.

Leaflet and its plugins are served from ``web_map/static/vendor`` (or inlined in an export):
Folium's CDN links are removed, so the pages work with no internet access. In the application,
detections and cases are not embedded: the map script fetches them by bounding box from the
API as the view moves. The export embeds them, capped at ``max_features`` per layer, and says so
on the page when a layer was capped.
"""

from __future__ import annotations

import base64
import html
import json
import re
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal

import folium
import folium.plugins
from branca.element import Element
from sqlalchemy import Connection, Engine, text

from gis_db.workflow import transaction
from web_map import geo, labels, queries
from web_map.errors import ImageryUnavailableError

STATIC = files("web_map") / "static"
#: Vendored scripts and styles, in load order (paths under /static/vendor).
VENDOR_CSS = ("leaflet.css", "leaflet-side-by-side.css", "Control.FullScreen.css")
VENDOR_JS = ("leaflet.js", "leaflet-side-by-side.js", "Control.FullScreen.js", "L.Map.Sync.js")
TIANDITU_URL = (
    "https://t{s}.tianditu.gov.cn/img_w/wmts?SERVICE=WMTS&REQUEST=GetTile&VERSION=1.0.0"
    "&LAYER=img&STYLE=default&TILEMATRIXSET=w&FORMAT=tiles&TILEMATRIX={z}&TILEROW={y}"
    "&TILECOL={x}&tk="
)
View = Literal["swipe", "dual"]
_REMOTE = re.compile(
    r"<script[^>]+src=\"https?://[^\"]+\"[^>]*></script>\s*|<link[^>]+href=\"https?://[^\"]+\"[^>]*/?>\s*"
)


@dataclass
class RenderedMap:
    """A rendered Folium figure and the JavaScript names of its map(s) and layers."""

    html: str
    map_names: list[str]
    layers: dict[str, str] = field(default_factory=dict)


def _local_only(element: Any) -> None:
    """Drop Folium's CDN assets from ``element`` and its children (the page brings its own)."""
    if hasattr(element, "default_js"):
        element.default_js = []
    if hasattr(element, "default_css"):
        element.default_css = []
    for child in list(getattr(element, "_children", {}).values()):
        _local_only(child)


def _strip_remote(page: str) -> str:
    return _REMOTE.sub("", page)


def _date(value: Any) -> str:
    """An acquisition date as the office's (Shanghai) calendar day; ``?`` when unknown."""
    return labels.local_time(value, "%Y-%m-%d") or "?"


def _new_map(bounds: geo.BBox, **kwargs: Any) -> folium.Map:
    w, s, e, n = bounds
    m = folium.Map(
        location=[(s + n) / 2, (w + e) / 2],
        tiles=None,
        prefer_canvas=True,
        control_scale=True,
        max_zoom=22,
        **kwargs,
    )
    m.fit_bounds([[s, w], [n, e]])
    return m


def _tile_layer(url: str, name: str, *, overlay: bool, show: bool = True) -> folium.TileLayer:
    return folium.TileLayer(
        tiles=url,
        attr=html.escape(name),
        name=name,
        overlay=overlay,
        control=True,
        show=show,
        max_zoom=22,
        max_native_zoom=22,
    )


def build_run_map(
    run: dict[str, Any],
    *,
    lang: str = "zh",
    view: View = "swipe",
    tianditu_key: str | None = None,
) -> RenderedMap:
    """The map page's Folium figure for ``run`` (from :func:`web_map.queries.run`).

    ``view="swipe"``: one map, before and after orthophotos with a swipe bar (SideBySideLayers);
    ``view="dual"``: two synchronised maps (DualMap), before on the left, after on the right.
    """
    zh = lang == "zh"
    bounds = (run["w"], run["s"], run["e"], run["n"])
    before_name = f"{'前时相' if zh else 'before'} {_date(run['before_at'])}"
    after_name = f"{'后时相' if zh else 'after'} {_date(run['after_at'])}"
    tiles = "/tiles/{scene}/{{z}}/{{x}}/{{y}}.png"
    layers: dict[str, str] = {}
    if view == "dual":
        dual = folium.plugins.DualMap(
            location=None, tiles=None, prefer_canvas=True, control_scale=True, max_zoom=22
        )
        maps = [dual.m1, dual.m2]
        for m, scene, name, key in (
            (dual.m1, run["before_scene_id"], before_name, "before"),
            (dual.m2, run["after_scene_id"], after_name, "after"),
        ):
            w, s, e, n = bounds
            m.fit_bounds([[s, w], [n, e]])
            if tianditu_key:
                _tile_layer(
                    TIANDITU_URL + tianditu_key, "天地图影像" if zh else "Tianditu", overlay=False
                ).add_to(m)
            layer = _tile_layer(tiles.format(scene=scene), name, overlay=True)
            layer.add_to(m)
            layers[key] = layer.get_name()
            folium.plugins.Fullscreen(position="topleft").add_to(m)
        figure = dual.m1.get_root()
    else:
        m = _new_map(bounds)
        maps = [m]
        if tianditu_key:
            _tile_layer(
                TIANDITU_URL + tianditu_key, "天地图影像" if zh else "Tianditu", overlay=False
            ).add_to(m)
        before = _tile_layer(tiles.format(scene=run["before_scene_id"]), before_name, overlay=True)
        after = _tile_layer(tiles.format(scene=run["after_scene_id"]), after_name, overlay=True)
        before.add_to(m)
        after.add_to(m)
        folium.plugins.SideBySideLayers(before, after).add_to(m)
        folium.plugins.Fullscreen(position="topleft").add_to(m)
        layers = {"before": before.get_name(), "after": after.get_name()}
        figure = m.get_root()
    _local_only(figure)
    page = _strip_remote(figure.render())
    return RenderedMap(page, [x.get_name() for x in maps], layers)


def vendor_tags(prefix: str = "/static/vendor/") -> str:
    """``<link>`` and ``<script>`` tags of the vendored assets, served by the application."""
    css = "".join(f'<link rel="stylesheet" href="{prefix}{n}">' for n in VENDOR_CSS)
    js = "".join(f'<script src="{prefix}{n}"></script>' for n in VENDOR_JS)
    return css + js


def inline_assets(
    names: tuple[str, ...] = VENDOR_CSS + VENDOR_JS, extra: tuple[str, ...] = ()
) -> str:
    """The vendored assets (and ``extra`` files under static/) inlined as style/script tags."""
    parts = []
    for name in [f"vendor/{n}" for n in names] + list(extra):
        body = (STATIC / name).read_text(encoding="utf-8").replace("</script", "<\\/script")
        tag = "style" if name.endswith(".css") else "script"
        parts.append(f"<{tag}>{body}</{tag}>")
    return "".join(parts)


def insert(page: str, *, head: str = "", body_start: str = "", body_end: str = "") -> str:
    """``page`` with extra HTML inserted.

    ``head`` goes at the end of <head>, ``body_start`` after <body>, ``body_end`` after Folium's
    script (before </html>).
    """
    page = page.replace("</head>", head + "</head>", 1)
    page = re.sub(r"<body>", lambda _: "<body>" + body_start, page, count=1)
    idx = page.rfind("</html>")  # Folium's own script follows </body>: run after it
    return page[:idx] + body_end + page[idx:] if idx >= 0 else page + body_end


def _script_json(value: Any) -> str:
    """JSON safe inside a <script> element."""
    return (
        json.dumps(value, ensure_ascii=False, default=str)
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
    )


def _data_uri_png(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def _count(conn: Connection, sql: str, params: dict[str, Any]) -> int:
    return int(conn.execute(text(sql), params).scalar_one())


def export_map(
    bind: Engine | Connection,
    run_id: int,
    out: Path,
    street_town: str | None = None,
    max_features: int = 5000,
    lang: str = "zh",
) -> Path:
    """Write one self-contained HTML map of run ``run_id`` (Folium) to ``out``; returns ``out``.

    Layers: the run's detections coloured by match class, the inventory cases inside the run's
    footprint coloured by state, the 街镇 boundaries, and before/after orthophoto overviews
    (image overlays, when the scenes' files are on disk). ``street_town`` (code or name): only
    that 街镇's records. Each vector layer is capped at ``max_features`` (highest scores first)
    and the page says so when it was. Leaflet is inlined: the file opens with no server and no
    internet. Written to a temporary file and renamed, so a failed export leaves nothing behind.
    """
    from gis_db.errors import InvalidInputError
    from web_map import tiles as tiles_mod

    if max_features < 1:
        raise InvalidInputError("max_features must be at least 1")
    zh = lang == "zh"
    out = Path(out)
    if out.is_dir():
        raise InvalidInputError(
            f"{out} is a folder: give the HTML file to write, e.g. {out / f'run{run_id}.html'}"
        )
    with transaction(bind) as conn:
        run = queries.run(conn, run_id)
        code = None
        if street_town:
            code = conn.execute(
                text("SELECT code FROM street_town WHERE code = :s OR name = :s LIMIT 1"),
                {"s": street_town},
            ).scalar()
            if code is None:
                from gis_db.errors import NotFoundError

                raise NotFoundError(f"no 街镇 with code or name {street_town!r}")
        footprint_bbox = (run["w"], run["s"], run["e"], run["n"])
        det = json.loads(
            geo.detections_geojson(conn, run_id, street_town=code, limit=max_features, detail=True)
        )
        n_det = _count(
            conn,
            "SELECT count(*) FROM detection WHERE run_id = :r "
            "AND (CAST(:st AS text) IS NULL OR street_town_code = :st)",
            {"r": run_id, "st": code},
        )
        cases = json.loads(
            geo.cases_geojson(conn, bbox=footprint_bbox, street_town=code, limit=max_features)
        )
        units = json.loads(geo.units_geojson(conn, street_town=code))
        overlays: list[tuple[str, bytes]] = []
        for key, scene in (("before", run["before_scene_id"]), ("after", run["after_scene_id"])):
            try:
                image = tiles_mod.scene_image(conn, scene)
                # fastest PNG compression: 4x quicker to write than the default, 6 % larger
                png = tiles_mod.render_part(
                    image,
                    footprint_bbox,
                    "EPSG:4326",
                    max_size=1600,
                    dst_crs="EPSG:3857",
                    zlevel=1,
                )
            except ImageryUnavailableError:
                continue
            at = run["before_at"] if key == "before" else run["after_at"]
            name = f"{'前时相' if zh else 'before'} {_date(at)}"
            if key == "after":
                name = f"{'后时相' if zh else 'after'} {_date(at)}"
            overlays.append((name, png))
    m = _new_map(footprint_bbox)
    w, s, e, n = footprint_bbox
    # the images go into the page after Folium has rendered it: given to Folium, each data URI
    # (megabytes) would be parsed as a Jinja template once more (about 1 s per image)
    images: dict[str, bytes] = {}
    for i, (name, png) in enumerate(overlays):
        placeholder = f"data:image/png;base64,wj-export-overlay-{i}"
        images[placeholder] = png
        folium.raster_layers.ImageOverlay(
            placeholder, bounds=[[s, w], [n, e]], name=name, overlay=True
        ).add_to(m)
    warn_col = labels.WARNING_COLOURS
    folium.GeoJson(
        units,
        name="街镇" if zh else "街镇 boundaries",
        style_function=lambda f: {
            "color": "#333",
            "weight": 2,
            "fill": True,
            "fillOpacity": 0.08,
            "fillColor": warn_col.get(f["properties"].get("warning") or "", "#999"),
        },
        tooltip=folium.GeoJsonTooltip(fields=["name"], aliases=["街镇"]),
    ).add_to(m)
    state_col = labels.CASE_STATE_COLOURS
    if cases["features"]:
        folium.GeoJson(
            cases,
            name="违建点位" if zh else "inventory cases",
            style_function=lambda f: {
                "color": state_col.get(f["properties"]["state"], "#666"),
                "weight": 1.5,
                "fillOpacity": 0.25,
            },
            popup=folium.GeoJsonPopup(
                fields=["case_number", "state", "address", "area_m2"],
                aliases=["案件编号", "状态", "地址", "面积(m²)"] if zh else None,
            ),
        ).add_to(m)
    match_col = labels.MATCH_COLOURS
    if det["features"]:
        folium.GeoJson(
            det,
            name="变化图斑" if zh else "detections",
            style_function=lambda f: {
                "color": match_col.get(f["properties"]["match_class"] or "", "#ff7f00"),
                "weight": 2,
                "fillOpacity": 0.15,
            },
            popup=folium.GeoJsonPopup(
                fields=["seq", "match_class", "state", "score", "area_m2"],
                aliases=["序号", "比对结果", "核查状态", "置信度", "面积(m²)"] if zh else None,
            ),
        ).add_to(m)
    folium.LayerControl(collapsed=False).add_to(m)
    folium.plugins.Fullscreen(position="topleft").add_to(m)
    notes = []
    if det.get("truncated"):
        notes.append(
            f"图斑较多: 仅显示置信度最高的 {max_features} 个 (共 {n_det} 个)"
            if zh
            else f"Too many detections: only the {max_features} highest-scoring of {n_det} shown"
        )
    if cases.get("truncated"):
        notes.append(
            f"违建点位较多: 仅显示 {max_features} 个" if zh else f"Cases capped at {max_features}"
        )
    title = f"比对批次 {run_id} ({_date(run['before_at'])} → {_date(run['after_at'])})" + (
        f" · {code}" if code else ""
    )
    legend = _legend_html(zh)
    banner = (
        f'<div class="wj-export-title"><b>{html.escape(title)}</b>'
        + "".join(f'<div class="wj-cap">{html.escape(t)}</div>' for t in notes)
        + "</div>"
    )
    m.get_root().html.add_child(Element(banner + legend))  # type: ignore[attr-defined]
    _local_only(m.get_root())
    page = _strip_remote(m.get_root().render())
    for placeholder, png in images.items():
        page = page.replace(f'"{placeholder}"', f'"{_data_uri_png(png)}"', 1)
    style = (
        "<style>.wj-export-title{position:fixed;top:8px;left:60px;z-index:1000;background:#fff;"
        "padding:6px 10px;border-radius:4px;box-shadow:0 1px 4px #0005;font:14px sans-serif}"
        ".wj-cap{color:#b00;margin-top:4px}.wj-legend{position:fixed;bottom:24px;right:10px;"
        "z-index:1000;background:#fff;padding:6px 10px;border-radius:4px;font:12px sans-serif;"
        "box-shadow:0 1px 4px #0005}.wj-legend i{display:inline-block;width:12px;height:12px;"
        "margin-right:4px;vertical-align:middle}</style>"
    )
    page = insert(page, head=f"<title>{html.escape(title)}</title>" + inline_assets() + style)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    try:
        tmp.write_text(page, encoding="utf-8")
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def _legend_html(zh: bool) -> str:
    from gis_db.domain import MatchClass

    rows = "".join(
        f'<div><i style="background:{labels.MATCH_COLOURS[m.value]}"></i>'
        f"{html.escape(m.zh if zh else labels.english(m))}</div>"
        for m in MatchClass
    )
    return f'<div class="wj-legend"><b>{"比对结果" if zh else "match class"}</b>{rows}</div>'

"""Benchmark: the review application's bounding-box API under load, and map drawing in Chromium.

    uv run --frozen python benchmarks/web.py [--cases 100000] [--detections 50000]
                                             [--clients 20] [--requests 2000] [--dense 10000]

Seeds a scratch database on the configured server (WEIJIAN_DATABASE_URL) or the embedded cluster
with 100,000 cases over a 30 x 30 km area of Baoshan (EPSG:4549) and one matched run of 50,000
detections (generators of benchmarks/match.py), plus a second run of 10,000 detections packed in
a 2.5 x 2.5 km square. Then:

1. API: ``weijian serve``'s application (one uvicorn process, as deployed) on loopback; 20
   concurrent clients (asyncio + httpx, logged in as an office reviewer) request
   ``/api/runs/N/detections?bbox=`` and ``/api/cases?bbox=`` for random views of 2.6 x 1.6 km
   (a 1280 x 800 px map at zoom 16); prints p50/p95/p99 latency, throughput and features per
   answer; then the same for a 街镇 user (scoped queries).
2. Map: Playwright drives /usr/bin/chromium (1280 x 800) to the dense run's map page, where all
   10,000 detections are in view; prints the time from navigation to the layers drawn (the page
   sets ``data-loaded`` after the canvas frame that shows them) and a pan's fetch-and-redraw time.

The scratch database is dropped at the end. Run it under ``nice``: it uses the whole machine.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import socket
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import shapely
from sqlalchemy import Engine, text

sys.path.insert(0, str(Path(__file__).resolve().parent))
from match import CRS, SPAN, X0, Y0, load_inventory, make_detections, scratch_database

PASSWORD = "bench-password-1"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def seed(engine: Engine, n_cases: int, n_det: int, n_dense: int) -> tuple[int, int]:
    """Cases, units, the big run and the dense run; returns (big run id, dense run id)."""
    from gis_db import matching, runs
    from web_map import accounts

    rng = np.random.default_rng(7)
    t = time.perf_counter()
    cases = load_inventory(engine, rng, n_cases)
    with engine.begin() as conn:  # cases get their 街镇 as the importer would set it
        conn.execute(
            text(
                "UPDATE inventory_case c SET street_town_code = s.code FROM street_town s "
                "WHERE ST_Intersects(s.geom, ST_Centroid(c.geom))"
            )
        )
        conn.execute(text("ANALYZE inventory_case"))
    print(f"  cases and units loaded         {time.perf_counter() - t:8.1f} s", flush=True)
    area = shapely.box(X0, Y0, X0 + SPAN, Y0 + SPAN)
    ids = []
    for tag, frame in (
        ("big", make_detections(rng, cases, n_det)),
        ("dense", _dense(rng, n_dense)),
    ):
        t = time.perf_counter()
        before = runs.register_scene(
            engine,
            checksum=f"b-{tag}",
            footprint=area,
            acquired_at=_dt(3),
            platform="drone",
            crs=CRS,
        )
        after = runs.register_scene(
            engine,
            checksum=f"a-{tag}",
            footprint=_footprint(frame) if tag == "dense" else area,
            acquired_at=_dt(6),
            platform="drone",
            crs=CRS,
        )
        run = runs.create_run(
            engine,
            before_scene_id=before,
            after_scene_id=after,
            network="tinysiam",
            weights_checksum=tag,
        )
        runs.load_detections(engine, run, frame)
        matching.match_run(engine, run)
        ids.append(run)
        print(f"  run {tag}: {len(frame):,} detections matched {time.perf_counter() - t:6.1f} s")
    with engine.begin() as conn:
        conn.execute(text("ANALYZE detection"))
    accounts.add_user(engine, "bench", PASSWORD, "reviewer")
    accounts.add_user(engine, "bench-st", PASSWORD, "street_town", street_town="ST05")
    return ids[0], ids[1]


def _dt(month: int):  # type: ignore[no-untyped-def]
    from datetime import datetime

    return datetime(2026, month, 1, 10, 0)


def _dense(rng: np.random.Generator, n: int):  # type: ignore[no-untyped-def]
    import geopandas as gpd

    side = 2500.0
    cx, cy = X0 + SPAN / 2 + rng.uniform(0, side, n), Y0 + SPAN / 2 + rng.uniform(0, side, n)
    w, h = rng.uniform(5, 25, (2, n))
    geoms = shapely.box(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
    return gpd.GeoDataFrame({"score": rng.uniform(0.5, 1, n)}, geometry=geoms, crs=CRS)


def _footprint(frame):  # type: ignore[no-untyped-def]
    x0, y0, x1, y1 = frame.total_bounds
    return shapely.box(x0, y0, x1, y1)


def _serve(url: str, port: int, secret: str, evidence: str) -> None:
    import uvicorn

    from gis_db.engine import make_engine
    from web_map import WebConfig, create_app

    engine = make_engine(url, pool_size=20, max_overflow=10)
    app = create_app(engine, WebConfig(secret_key=secret, evidence_dir=Path(evidence)))
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def lonlat_box(rng: np.random.Generator, w_m: float, h_m: float) -> str:
    from pyproj import Transformer

    tr = Transformer.from_crs(CRS, "EPSG:4326", always_xy=True)
    x = X0 + rng.uniform(0, SPAN - w_m)
    y = Y0 + rng.uniform(0, SPAN - h_m)
    w, s, e, n = tr.transform_bounds(x, y, x + w_m, y + h_m)
    return f"{w:.6f},{s:.6f},{e:.6f},{n:.6f}"


async def _login(client, base: str, user: str) -> str:  # type: ignore[no-untyped-def]
    page = await client.get(f"{base}/login")
    token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    resp = await client.post(
        f"{base}/login", data={"username": user, "password": PASSWORD, "csrf_token": token}
    )
    assert resp.status_code in (200, 303), resp.status_code
    return token


async def load_test(
    base: str, run_id: int, user: str, clients: int, requests: int, server_pid: int
) -> None:
    import httpx

    rng = np.random.default_rng(11)
    boxes = [lonlat_box(rng, 2600, 1600) for _ in range(requests)]
    urls = [
        f"{base}/api/runs/{run_id}/detections?bbox={b}"
        if i % 2 == 0
        else f"{base}/api/cases?bbox={b}"
        for i, b in enumerate(boxes)
    ]
    latencies: dict[str, list[float]] = {"detections": [], "cases": []}
    features: dict[str, list[int]] = {"detections": [], "cases": []}
    queue: asyncio.Queue[str] = asyncio.Queue()
    for u in urls:
        queue.put_nowait(u)

    sessions = [httpx.AsyncClient(follow_redirects=False, timeout=60) for _ in range(clients)]
    for client in sessions:  # log in first: argon2 verification is not what is measured
        await _login(client, base, user)
        await client.get(urls[0])  # warm this connection

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            url = queue.get_nowait()
            t = time.perf_counter()
            resp = await client.get(url)
            dt = time.perf_counter() - t
            assert resp.status_code == 200, (resp.status_code, resp.text[:200])
            kind = "detections" if "/detections" in url else "cases"
            latencies[kind].append(dt * 1000)
            features[kind].append(resp.text.count('"Feature"'))

    import psutil

    server = psutil.Process(server_pid)
    postgres = [p for p in psutil.process_iter(["name"]) if p.info["name"] == "postgres"]
    cpu0 = sum(server.cpu_times()[:2])
    pg0 = sum(sum(p.cpu_times()[:2]) for p in postgres if p.is_running())
    start = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in sessions))
    wall = time.perf_counter() - start
    cpu = sum(server.cpu_times()[:2]) - cpu0
    pg = sum(sum(p.cpu_times()[:2]) for p in postgres if p.is_running()) - pg0
    for client in sessions:
        await client.aclose()
    total = sum(len(v) for v in latencies.values())
    every = sorted(latencies["detections"] + latencies["cases"])
    q = statistics.quantiles(every, n=100)
    print(
        f"  {user}: {total} requests, {clients} clients, {total / wall:6.1f} req/s; "
        f"p50 {q[49]:6.1f} ms, p95 {q[94]:6.1f} ms, p99 {q[98]:6.1f} ms"
    )
    print(
        f"    CPU per request: application {cpu / total * 1000:5.1f} ms, PostgreSQL "
        f"(all backends, other sessions' work included) {pg / total * 1000:5.1f} ms; "
        f"load average during the run {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    for kind in ("detections", "cases"):
        qk = statistics.quantiles(latencies[kind], n=100)
        print(
            f"    {kind:<10s} p50 {qk[49]:6.1f} ms  p95 {qk[94]:6.1f} ms  "
            f"features per answer: median {int(np.median(features[kind]))}, "
            f"max {max(features[kind])}"
        )


def map_draw(base: str, run_id: int) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        ctx = browser.new_context(viewport={"width": 1280, "height": 800})
        page = ctx.new_page()
        page.goto(f"{base}/login")
        page.fill("input[name=username]", "bench")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{base}/")
        times, pans, counts, fetch_ms, draw_ms = [], [], [], [], []
        for _ in range(5):
            t = time.perf_counter()
            page.goto(f"{base}/runs/{run_id}/map")
            page.wait_for_function(
                "document.body.getAttribute('data-loaded') !== null", timeout=60000
            )
            times.append((time.perf_counter() - t) * 1000)
            counts.append(page.evaluate("window.WJ_STATUS.detections"))
            fetch_ms.append(page.evaluate("window.WJ_STATUS.fetchMs"))
            draw_ms.append(page.evaluate("window.WJ_STATUS.drawMs"))
            done = page.evaluate("document.body.getAttribute('data-loaded')")
            t = time.perf_counter()
            page.evaluate(
                "() => { window[Object.keys(window).find(k => k.startsWith('map_'))]"
                ".panBy([200, 0]); return null; }"
            )
            page.wait_for_function(
                f"document.body.getAttribute('data-loaded') !== '{done}'", timeout=60000
            )
            pans.append((time.perf_counter() - t) * 1000)
        page.screenshot(path="test-artifacts/benchmark-map-10k.png")
        browser.close()
    print(
        f"  map page with {counts[0]:,} detections in view: navigation to drawn "
        f"median {statistics.median(times):6.0f} ms (max {max(times):.0f}); "
        f"pan (150 ms debounce + fetch + redraw) median {statistics.median(pans):6.0f} ms"
    )
    print(
        f"    of which, at load: fetching both layers median {statistics.median(fetch_ms):.0f} ms, "
        f"building and drawing them median {statistics.median(draw_ms):.0f} ms"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, default=100_000)
    ap.add_argument("--detections", type=int, default=50_000)
    ap.add_argument("--dense", type=int, default=10_000)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--map-only", action="store_true", help="skip the API load test")
    args = ap.parse_args()
    Path("test-artifacts").mkdir(exist_ok=True)
    print(f"web benchmark: {args.cases:,} cases, {args.detections:,} detections")
    with scratch_database() as engine:
        big, dense = seed(engine, args.cases, args.detections, args.dense)
        port = free_port()
        url = engine.url.render_as_string(hide_password=False)
        ctx = mp.get_context("spawn")
        proc = ctx.Process(
            target=_serve, args=(url, port, "b" * 48, "test-artifacts/bench-evidence"), daemon=True
        )
        proc.start()
        base = f"http://127.0.0.1:{port}"
        try:
            import httpx

            for _ in range(300):
                try:
                    httpx.get(f"{base}/login", timeout=1)
                    break
                except httpx.HTTPError:
                    time.sleep(0.2)
            if not args.map_only:
                print("bounding-box API (views of 2.6 x 1.6 km, loopback):")
                asyncio.run(load_test(base, big, "bench", args.clients, args.requests, proc.pid))
                asyncio.run(
                    load_test(base, big, "bench-st", args.clients, args.requests // 2, proc.pid)
                )
            print("map drawing in Chromium (1280 x 800):")
            map_draw(base, dense)
        finally:
            proc.terminate()
            proc.join(10)
            engine.dispose()


if __name__ == "__main__":
    main()

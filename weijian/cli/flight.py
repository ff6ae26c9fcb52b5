"""``weijian flight``: the nightly batch job: one new orthophoto in, a matched, published run out.

weijian flight run AFTER.tif [--before FILE|auto] [--name NAME] [--json]
                             [--scheduler tcp://HOST:PORT] [--workers N] [--out-root DIR]
weijian flight watch INBOX/ [--once] [--settle 30] [--poll 10]

Exit codes (for schedulers): 0 done (or nothing to do), 2 bad input (the flight was refused
before anything was stored), 3 a step failed (run the same command again to resume).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

app = typer.Typer(
    help="航飞批处理: 新影像 → 配准 → 变化检测 → 入库比对 → 派单与报告 (一条命令)。",
    no_args_is_help=True,
)
out = Console()
err = Console(stderr=True)


def flight_config(
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    out_root: Path | None = None,
    engine: str | None = None,
) -> Any:
    """A FlightConfig from the settings in force (command-line values win)."""
    from weijian.flight import FlightConfig
    from weijian.learning import model_registry
    from weijian.settings import get_settings

    s = get_settings()
    return FlightConfig(
        output_root=out_root or s.flight.output_dir or s.data_dir / "flights",
        working_crs=s.working_crs,
        gsd_m=s.ingest.working_gsd_m,
        min_overlap_fraction=s.ingest.min_overlap_fraction,
        max_shift_m=s.ingest.max_shift_m,
        histogram_match=s.ingest.histogram_match,
        coregistration_min_blocks=s.ingest.coregistration_min_blocks,
        coregistration_min_confidence=s.ingest.coregistration_min_confidence,
        coregistration_affine=s.ingest.coregistration_affine,
        network=s.detection.network,
        # detection.weights, else the registry's current model, else the shipped weights
        weights=s.detection.weights or model_registry(s).current_path(),
        device=s.detection.device,
        threshold=s.detection.threshold,
        # what `weijian detect` draws; the threshold is set at detection (the weights' own)
        polygons=s.detection.vectorize_params(0.5),
        overlap_threshold=s.matching.overlap_threshold,
        tolerance_m=s.matching.tolerance_m,
        workers=workers or s.flight.workers,
        scheduler=scheduler or s.flight.scheduler,
        engine=engine or s.detection.engine,
        tta=s.detection.tta,
        max_gsd_ratio=s.flight.max_gsd_ratio,
        min_cover_fraction=s.flight.min_cover_fraction,
        demolition=s.flight.demolition,
    )


class _RichProgress:
    """One progress display for all steps: an overall bar and the current step's bar."""

    def __init__(self, progress: Progress) -> None:
        from weijian.flight import STEPS

        self.progress = progress
        self.overall = progress.add_task("航飞流程 flight", total=len(STEPS))
        self.tasks: dict[str, TaskID] = {}

    def step_started(self, step: str) -> None:
        from weijian.flight import STEP_LABELS

        self.tasks[step] = self.progress.add_task(f"  {STEP_LABELS[step]} {step}", total=None)

    def step_finished(self, step: str, status: Literal["ran", "skipped"], seconds: float) -> None:
        from weijian.flight import STEP_LABELS

        note = "已完成, 跳过 skipped" if status == "skipped" else f"{seconds:.1f} s"
        self.progress.update(
            self.tasks[step],
            description=f"  {STEP_LABELS[step]} {step}: {note}",
            total=1,
            completed=1,
        )
        self.progress.advance(self.overall)

    def advance(self, step: str, done: int, total: int) -> None:
        if step in self.tasks:
            self.progress.update(self.tasks[step], completed=done, total=total)


def _progress_display() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    )


def execute_flight(
    after: Path,
    *,
    before: str = "auto",
    name: str | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    out_root: Path | None = None,
    show_progress: bool = True,
    detection_engine: str | None = None,
) -> tuple[int, dict[str, Any]]:
    """Run one flight with the settings in force; returns (exit code, JSON summary).

    Never raises for a refused or failed flight: the summary says why.
    """
    from weijian.database import connect
    from weijian.flight import EXIT_STEP_FAILED, FlightError, FlightProgress, run_flight

    config = flight_config(
        workers=workers, scheduler=scheduler, out_root=out_root, engine=detection_engine
    )
    engine = connect()
    try:
        with _progress_display() as progress:
            reporter: Any = _RichProgress(progress) if show_progress else FlightProgress()
            try:
                result = run_flight(
                    engine, after, before=before, name=name, config=config, progress=reporter
                )
            except FlightError as exc:
                status = "refused" if exc.exit_code == 2 else "failed"
                return exc.exit_code, {
                    "status": status,
                    "exit_code": exc.exit_code,
                    "error": str(exc),
                }
    except Exception as exc:
        from weijian.cli import _is_domain_error

        if not _is_domain_error(exc):
            raise
        return EXIT_STEP_FAILED, {"status": "failed", "exit_code": 3, "error": str(exc)}
    finally:
        engine.dispose()
    return 0, result.summary()


def print_summary(summary: dict[str, Any]) -> None:
    """Print a flight's JSON summary as a table: counts per match class, images, outputs."""
    from gis_db.domain import MatchClass

    if summary["status"] == "nothing to do":
        out.print(f"[green]航飞 {summary['flight']}: 已全部完成, 无需重算 (nothing to do)[/]")
    table = Table(title=f"航飞 {summary['flight']} · 比对批次 run {summary['run_id']}")
    table.add_column("比对结果 class")
    table.add_column("图斑 detections", justify="right")
    for m in MatchClass:
        table.add_row(f"{m.zh} {m.value}", str(summary["counts"].get(m.value, 0)))
    out.print(table)
    before, after = summary["before"], summary["after"]
    out.print(f"前时相 before: {before['path']} ({before['acquired']}, {before['chosen']})")
    out.print(f"后时相 after:  {after['path']} ({after['acquired']})")
    out.print(f"报告 report:   {summary['report']}")
    out.print(f"派单包 dispatch: {summary['dispatch']}")
    out.print(f"地图 map:      {summary['map'] or '无 (review app not installed)'}")


@app.command("run")
def run(
    after: Annotated[Path, typer.Argument(help="the new orthophoto (file or folder of tiles)")],
    before: Annotated[
        str, typer.Option(help="earlier image, or 'auto': the latest earlier catalogued scene")
    ] = "auto",
    name: Annotated[
        str | None, typer.Option(help="flight name (its folder); default: AFTER's name")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON summary on stdout")] = False,
    scheduler: Annotated[
        str | None, typer.Option(help="dask.distributed scheduler for detection, tcp://HOST:PORT")
    ] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="local detection workers")] = None,
    out_root: Annotated[
        Path | None, typer.Option(help="folder of flight folders; default: settings")
    ] = None,
) -> None:
    """处理一次航飞: 登记、配准、检测、入库、比对、派单与报告 (process one flight).

    Exit codes: 0 done or nothing to do; 2 bad input (refused, nothing stored); 3 a step failed
    (run again to resume).
    """
    code, summary = execute_flight(
        after, before=before, name=name, workers=workers, scheduler=scheduler, out_root=out_root
    )
    if as_json:
        print(json.dumps(summary, ensure_ascii=False, indent=1, default=str))
    elif code == 0:
        print_summary(summary)
    if code != 0:
        label = "拒绝 refused" if code == 2 else "失败 failed"
        err.print(
            f"[bold red]{label}:[/] {escape(summary['error'])}", highlight=False, soft_wrap=True
        )
        raise typer.Exit(code)


@app.command("watch")
def watch(
    inbox: Annotated[Path, typer.Argument(help="folder the drone team drops orthophotos into")],
    once: Annotated[
        bool, typer.Option(help="process what is complete now, then exit (cron)")
    ] = False,
    settle: Annotated[
        float | None, typer.Option(help="seconds a file must stay unchanged; default: settings")
    ] = None,
    poll: Annotated[
        float | None, typer.Option(help="seconds between looks; default: settings")
    ] = None,
    out_root: Annotated[
        Path | None, typer.Option(help="folder of flight folders; default: settings")
    ] = None,
) -> None:
    """监视收件夹: 每个完整的新影像跑一次航飞, 移入 done/ 或 failed/ (watch an inbox)."""
    from weijian.settings import get_settings
    from weijian.watch import Outcome, Watcher

    cfg = get_settings().flight
    logging.getLogger("weijian").setLevel(logging.INFO)

    def process(item: Path) -> tuple[int, str, str | None]:
        err.print(f"航飞 flight: {item.name}")
        code, summary = execute_flight(item, out_root=out_root)
        if code == 0:
            counts = ", ".join(f"{k} {v}" for k, v in summary["counts"].items() if v)
            return code, f"run {summary['run_id']}: {counts}", summary["flight"]
        return code, summary["error"], None

    def show(o: Outcome) -> None:
        colour = {"done": "green", "failed": "red", "duplicate": "yellow"}[o.status]
        err.print(
            f"[{colour}]{escape(o.name)}: {o.status}[/] → {escape(str(o.moved_to))} · "
            f"{escape(o.message)}",
            highlight=False,
        )

    try:
        watcher = Watcher(inbox, process, settle_s=cfg.watch_settle_s if settle is None else settle)
    except FileNotFoundError as exc:
        err.print(f"[bold red]错误 error:[/] {escape(str(exc))}")
        raise typer.Exit(2) from None
    if once:
        outcomes = watcher.run_once()
        for o in outcomes:
            show(o)
        failed = [o for o in outcomes if o.status == "failed"]
        if failed:
            raise typer.Exit(max(o.exit_code for o in failed))
        return
    err.print(f"监视 watching {inbox} (Ctrl+C to stop)")
    try:
        watcher.run_forever(cfg.watch_poll_s if poll is None else poll, on_outcome=show)
    except KeyboardInterrupt:
        err.print("stopped")

"""The watch folder: complete files only, done/ and failed/ with a reason, never twice, restarts."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from subprocess import PIPE

import pytest
from sqlalchemy import Engine, text

from tests.weijian.flight_data import WEIJIAN, add_district, pair_files, run_weijian
from weijian.flight import EXIT_BAD_INPUT, EXIT_DONE
from weijian.watch import LEDGER, Watcher


class Clock:
    """A clock the test moves by hand (the watcher's time source)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _recorder(codes: dict[str, int]) -> tuple[list[str], object]:
    calls: list[str] = []

    def process(item: Path) -> tuple[int, str, str | None]:
        calls.append(item.name)
        code = codes.get(item.name, EXIT_DONE)
        return code, "ok" if code == EXIT_DONE else "refused: not in the district", item.stem

    return calls, process


def test_growing_file_waits_until_stable(tmp_path: Path) -> None:
    clock = Clock()
    calls, process = _recorder({})
    watcher = Watcher(tmp_path, process, settle_s=30, clock=clock)  # type: ignore[arg-type]
    image = tmp_path / "flight_20260310.tif"
    image.write_bytes(b"x" * 1000)
    assert watcher.poll() == []
    clock.now = 20
    with open(image, "ab") as f:  # still being copied
        f.write(b"y" * 1000)
    assert watcher.poll() == []
    clock.now = 45  # 25 s since the last change
    assert watcher.poll() == []
    clock.now = 51
    (outcome,) = watcher.poll()
    assert outcome.status == "done" and calls == ["flight_20260310.tif"]
    assert (tmp_path / "done" / "flight_20260310.tif").is_file() and not image.exists()


def test_failed_gets_a_reason_and_nothing_runs_twice(tmp_path: Path) -> None:
    clock = Clock()
    calls, process = _recorder({"bad_20260310.tif": EXIT_BAD_INPUT})
    watcher = Watcher(tmp_path, process, settle_s=0, clock=clock)  # type: ignore[arg-type]
    (tmp_path / "bad_20260310.tif").write_bytes(b"bad")
    (tmp_path / "good_20260310.tif").write_bytes(b"good")
    (tmp_path / "good_20260310.json").write_text('{"acquired": "2026-03-10"}')
    (tmp_path / "drone_tiles").mkdir()
    (tmp_path / "drone_tiles" / "t1.tif").write_bytes(b"tile")
    outcomes = {o.name: o for o in watcher.poll()}
    assert {n: o.status for n, o in outcomes.items()} == {
        "bad_20260310.tif": "failed",
        "good_20260310.tif": "done",
        "drone_tiles": "done",
    }
    reason = (tmp_path / "failed" / "bad_20260310.tif.reason.txt").read_text("utf-8")
    assert "not in the district" in reason and f"exit code {EXIT_BAD_INPUT}" in reason
    assert (tmp_path / "done" / "good_20260310.json").is_file()  # the sidecar went along
    assert (tmp_path / "done" / "drone_tiles" / "t1.tif").is_file()
    # the same file dropped again, under another name: recognised, not processed again
    (tmp_path / "good_copy.tif").write_bytes(b"good")
    (again,) = watcher.poll()
    assert again.status == "duplicate" and "already processed" in again.message
    assert sorted(calls) == ["bad_20260310.tif", "drone_tiles", "good_20260310.tif"]


def test_a_failed_item_dropped_again_after_the_fix_runs_again(tmp_path: Path) -> None:
    """README: "fix the cause and drop the file again": the cause may lie outside the file.

    Before, the ledger refused the same bytes as "already processed (failed)" for ever.
    """
    codes = {"flight_20260310.tif": EXIT_BAD_INPUT}  # e.g. no earlier scene catalogued yet
    calls, process = _recorder(codes)
    watcher = Watcher(tmp_path, process, settle_s=0)  # type: ignore[arg-type]
    (tmp_path / "flight_20260310.tif").write_bytes(b"flight")
    (first,) = watcher.poll()
    assert first.status == "failed" and first.exit_code == EXIT_BAD_INPUT
    codes.clear()  # the office catalogues the earlier imagery, then drops the file again
    shutil.copy(tmp_path / "failed" / "flight_20260310.tif", tmp_path / "flight_20260310.tif")
    (second,) = Watcher(tmp_path, process, settle_s=0).poll()  # type: ignore[arg-type]
    assert second.status == "done" and calls == ["flight_20260310.tif"] * 2
    assert (tmp_path / "done" / "flight_20260310.tif").is_file()
    entry = json.loads((tmp_path / LEDGER).read_text("utf-8"))["items"]
    assert [e["status"] for e in entry.values()] == ["done"]
    # once done, the same content is not run a third time
    (tmp_path / "again.tif").write_bytes(b"flight")
    (third,) = Watcher(tmp_path, process, settle_s=0).poll()  # type: ignore[arg-type]
    assert third.status == "duplicate" and len(calls) == 2


def test_restart_resumes_an_interrupted_item_and_keeps_the_ledger(tmp_path: Path) -> None:
    calls, process = _recorder({})
    image = tmp_path / "a_20260310.tif"
    image.write_bytes(b"a")
    # a watcher that died while running this item left it marked "processing"
    from ingest.scene import sha256_file

    ledger = {"items": {sha256_file(image): {"name": image.name, "status": "processing"}}}
    (tmp_path / LEDGER).write_text(json.dumps(ledger))
    watcher = Watcher(tmp_path, process, settle_s=0)  # type: ignore[arg-type]
    (outcome,) = watcher.poll()
    assert outcome.status == "done" and calls == [image.name]
    # a new watcher (after a restart) reads the ledger: the same content is never run again
    (tmp_path / "a_again.tif").write_bytes(b"a")
    restarted = Watcher(tmp_path, process, settle_s=0)  # type: ignore[arg-type]
    (dup,) = restarted.poll()
    assert dup.status == "duplicate" and calls == [image.name]


def test_watch_once_command_moves_a_refused_flight(
    db_url: str, engine: Engine, tmp_path: Path
) -> None:
    """``weijian flight watch --once`` on a real flight that is refused (no earlier scene)."""
    add_district(engine)
    inbox = tmp_path / "inbox"
    _, after = pair_files(inbox, size=256)
    (inbox / "test_7_20250310.tif").unlink()  # only the new image arrives
    once = ("flight", "watch", str(inbox), "--once", "--settle", "0")
    proc = run_weijian(*once, db_url=db_url, flights=tmp_path / "flights")
    assert proc.returncode == EXIT_BAD_INPUT, proc.stderr
    reason = (inbox / "failed" / f"{after.name}.reason.txt").read_text("utf-8")
    assert "no earlier scene in the catalogue" in reason
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM scene")).scalar_one() == 0
    # run again: nothing left to do
    proc = run_weijian(*once, db_url=db_url, flights=tmp_path / "flights")
    assert proc.returncode == EXIT_DONE, proc.stderr


def _wait_for(predicate: Callable[[], bool], proc: subprocess.Popen[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            _, err = proc.communicate()
            raise AssertionError(f"the watcher exited ({proc.returncode}): {err}")
        time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    raise AssertionError(f"timed out after {timeout} s; watcher said: {err}")


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGINT)  # Ctrl+C, as an operator (systemd sends SIGTERM)
    _, err = proc.communicate(timeout=60)
    return err


@pytest.mark.slow
def test_watch_processes_a_dropped_flight_once_across_a_restart(
    db_url: str, engine: Engine, tmp_path: Path
) -> None:
    """``weijian flight watch`` (running, not --once) on a real small flight.

    Processed once, moved to done/, and neither the moved file nor the same image dropped again
    after a restart is processed again (one run in PostGIS, the flight's record untouched).
    """
    from ingest import describe_scene
    from tests.weijian.flight_data import demo_crop_files
    from weijian.flight import STATE_FILE, catalogue_scene

    add_district(engine)
    images = tmp_path / "images"
    before, after, _ = demo_crop_files(images, size=256)
    catalogue_scene(engine, describe_scene(before), "EPSG:4549")  # last flight's imagery
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    flights = tmp_path / "flights"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("WEIJIAN_")},
        "WEIJIAN_DATABASE_URL": db_url,
        "WEIJIAN_DATA_DIR": str(tmp_path / "data"),
        "WEIJIAN_FLIGHT__OUTPUT_DIR": str(flights),
    }
    cmd = [WEIJIAN, "flight", "watch", str(inbox), "--settle", "1", "--poll", "0.5"]

    def watcher() -> subprocess.Popen[str]:
        return subprocess.Popen(cmd, env=env, text=True, stdout=PIPE, stderr=PIPE)

    first = watcher()
    # the drone team copies the file in (written under a hidden name, then renamed, as rsync)
    shutil.copy(after, inbox / f".{after.name}.part")
    os.replace(inbox / f".{after.name}.part", inbox / after.name)
    done = inbox / "done" / after.name
    _wait_for(done.is_file, first, timeout=300)
    _wait_for(lambda: "done" in (inbox / LEDGER).read_text("utf-8"), first, timeout=30)
    err = _stop(first)
    assert f"{after.name}: done" in err, err
    assert not (inbox / after.name).exists()
    ledger = json.loads((inbox / LEDGER).read_text("utf-8"))
    (entry,) = ledger["items"].values()
    assert entry["status"] == "done" and entry["exit_code"] == EXIT_DONE
    state_file = flights / entry["flight"] / STATE_FILE
    state = json.loads(state_file.read_text("utf-8"))
    assert set(state["steps"]) >= {"check", "align", "detect", "load", "match", "publish"}
    recorded = state_file.stat().st_mtime_ns
    with engine.connect() as conn:
        runs = conn.execute(text("SELECT id, status FROM detection_run")).all()
    assert [r.status for r in runs] == ["matched"]

    # restart: the watcher reads its ledger; the same image dropped again under another name
    second = watcher()
    shutil.copy(after, inbox / "again_20260310.tif")
    reason = inbox / "done" / "again_20260310.tif.reason.txt"
    _wait_for(reason.is_file, second, timeout=120)
    time.sleep(2)  # a few more polls: nothing else may happen
    err = _stop(second)
    assert "again_20260310.tif: duplicate" in err, err
    assert "already processed" in reason.read_text("utf-8")
    assert f"航飞 flight: {after.name}" not in err  # not run again
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM detection_run")).scalar_one() == 1
    assert state_file.stat().st_mtime_ns == recorded
    assert sorted(p.name for p in (inbox / "done").iterdir()) == sorted(
        [after.name, "again_20260310.tif", "again_20260310.tif.reason.txt"]
    )

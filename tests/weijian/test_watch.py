"""The watch folder: complete files only, done/ and failed/ with a reason, never twice, restarts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import Engine, text

from tests.weijian.flight_data import add_district, pair_files
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
    env = {
        **os.environ,
        "WEIJIAN_DATABASE_URL": db_url,
        "WEIJIAN_FLIGHT__OUTPUT_DIR": str(tmp_path / "flights"),
    }
    cmd = [str(Path(sys.executable).with_name("weijian")), "flight", "watch", str(inbox)]
    proc = subprocess.run(
        [*cmd, "--once", "--settle", "0"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=300,
    )
    assert proc.returncode == EXIT_BAD_INPUT, proc.stderr
    reason = (inbox / "failed" / f"{after.name}.reason.txt").read_text("utf-8")
    assert "no earlier scene in the catalogue" in reason
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM scene")).scalar_one() == 0
    # run again: nothing left to do
    proc = subprocess.run(
        [*cmd, "--once", "--settle", "0"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=300,
    )
    assert proc.returncode == EXIT_DONE, proc.stderr

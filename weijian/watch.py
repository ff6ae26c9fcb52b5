"""The watch folder: every orthophoto dropped in an inbox becomes one flight, exactly once.

An *item* is an image file in the inbox (``.tif``, ``.tiff``, ``.vrt``, ``.jp2``, ``.img``; a
``NAME.json`` date sidecar travels with it) or a folder of drone tiles (read as one mosaic). An
item is taken once it is complete: its size and modification time (for a folder: of every file
in it) have not changed for ``settle_s`` seconds. It then runs as a flight (``before="auto"``)
and is moved to ``done/`` or to ``failed/`` with ``NAME.reason.txt`` (the one-line reason and the
exit code). The ledger ``.weijian-watch.json`` in the inbox records each item's SHA-256 before it
runs, so an item is never processed twice once done, also when the same file is dropped again
under another name (an item that failed runs again when dropped again, after its cause is
fixed), and a watcher restarted after a crash resumes the flight it was running (the flight
itself is resumable).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from ingest.scene import sha256_file
from weijian.flight import EXIT_DONE, EXIT_STEP_FAILED, write_atomic

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".tif", ".tiff", ".vrt", ".jp2", ".img")
LEDGER = ".weijian-watch.json"
DONE, FAILED = "done", "failed"

#: What processing one item returns: (exit code, one-line message, flight name or None).
Processor = Callable[[Path], tuple[int, str, str | None]]


@dataclass(frozen=True)
class Outcome:
    """What happened to one item: ``done``, ``failed`` or ``duplicate`` (seen before)."""

    name: str
    status: Literal["done", "failed", "duplicate"]
    exit_code: int
    message: str
    moved_to: Path


def _signature(path: Path) -> tuple[int, int, int]:
    """(total size, latest modification time in ns, number of files) of a file or folder."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    stats = [p.stat() for p in files]
    return sum(s.st_size for s in stats), max((s.st_mtime_ns for s in stats), default=0), len(files)


def _item_checksum(path: Path) -> str:
    if path.is_file():
        return sha256_file(path)
    digest = hashlib.sha256()
    for p in sorted(q for q in path.rglob("*") if q.is_file() and q.suffix in IMAGE_SUFFIXES):
        if p.name.startswith("weijian_mosaic"):
            continue
        digest.update(f"{p.relative_to(path)}\0{sha256_file(p)}\n".encode())
    return digest.hexdigest()


class Watcher:
    """Watches ``inbox`` and hands each complete, new item to ``process``."""

    def __init__(
        self,
        inbox: Path,
        process: Processor,
        *,
        settle_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``settle_s``: seconds an item must stay unchanged before it is taken."""
        self.inbox = Path(inbox)
        if not self.inbox.is_dir():
            raise FileNotFoundError(f"{self.inbox} is not a folder: create the inbox first")
        self.process = process
        self.settle_s = settle_s
        self.clock = clock
        self._seen: dict[str, tuple[tuple[int, int, int], float]] = {}
        for sub in (DONE, FAILED):
            (self.inbox / sub).mkdir(exist_ok=True)
        self.ledger = self._read_ledger()

    # -- ledger -------------------------------------------------------------------------------

    def _read_ledger(self) -> dict[str, Any]:
        path = self.inbox / LEDGER
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                if isinstance(data, dict) and isinstance(data.get("items"), dict):
                    return data
            except ValueError:
                log.warning("%s is unreadable; starting a new ledger", path)
        return {"items": {}}

    def _save_ledger(self) -> None:
        write_atomic(
            self.inbox / LEDGER, json.dumps(self.ledger, ensure_ascii=False, indent=1) + "\n"
        )

    # -- scanning -----------------------------------------------------------------------------

    def items(self) -> list[Path]:
        """The inbox's candidate items (images and folders), by name."""
        out = []
        for p in sorted(self.inbox.iterdir()):
            if p.name.startswith(".") or p.name in (DONE, FAILED):
                continue
            if p.is_dir() or p.suffix.lower() in IMAGE_SUFFIXES:
                out.append(p)
        return out

    def stable_items(self) -> list[Path]:
        """Items unchanged for at least ``settle_s`` seconds since first seen in this state."""
        now = self.clock()
        ready = []
        present = set()
        for item in self.items():
            present.add(item.name)
            try:
                sig = _signature(item)
            except OSError:
                continue
            if sig[2] == 0:
                continue
            seen = self._seen.get(item.name)
            if seen is None or seen[0] != sig:
                self._seen[item.name] = (sig, now)
                if self.settle_s > 0:
                    continue
                seen = self._seen[item.name]
            if now - seen[1] >= self.settle_s:
                ready.append(item)
        for gone in set(self._seen) - present:
            del self._seen[gone]
        return ready

    # -- processing ---------------------------------------------------------------------------

    def _move(self, item: Path, where: str) -> Path:
        target_dir = self.inbox / where
        target = target_dir / item.name
        if target.exists():
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
            target = target_dir / f"{item.stem}.{stamp}{item.suffix}"
        shutil.move(str(item), str(target))
        for sidecar in (item.with_suffix(".json"), item.with_name(item.name + ".json")):
            if sidecar.is_file() and sidecar != item:
                shutil.move(
                    str(sidecar), str(target_dir / sidecar.name.replace(item.stem, target.stem, 1))
                )
        return target

    def handle(self, item: Path) -> Outcome:
        """Process one complete item and move it to done/ or failed/.

        Content processed successfully before (same SHA-256, any name) is moved to done/ with
        a reason file and not run again; content that failed before is run again.
        """
        checksum = _item_checksum(item)
        entries = self.ledger["items"]
        previous = entries.get(checksum)
        # done once is done; an item that failed runs again when dropped again (its cause may
        # have been outside the file: no earlier scene yet, the database down; decision 0031)
        if previous and previous.get("status") == DONE:
            moved = self._move(item, DONE)
            message = (
                f"already processed on {previous.get('finished_at')} as {previous.get('name')} "
                f"({previous['status']}): not processed again"
            )
            (moved.parent / f"{moved.name}.reason.txt").write_text(message + "\n", "utf-8")
            return Outcome(item.name, "duplicate", EXIT_DONE, message, moved)
        entries[checksum] = {
            "name": item.name,
            "status": "processing",
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        self._save_ledger()
        try:
            code, message, flight = self.process(item)
        except Exception as exc:  # one bad item must not stop the watcher
            log.exception("flight of %s failed unexpectedly", item)
            code, message, flight = EXIT_STEP_FAILED, f"{type(exc).__name__}: {exc}", None
        status: Literal["done", "failed"] = "done" if code == EXIT_DONE else "failed"
        moved = self._move(item, status)
        if status == FAILED:
            (moved.parent / f"{moved.name}.reason.txt").write_text(
                f"{message}\nexit code {code}\n", "utf-8"
            )
        entries[checksum] = {
            **entries[checksum],
            "status": status,
            "exit_code": code,
            "message": message,
            "flight": flight,
            "moved_to": str(moved.relative_to(self.inbox)),
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        self._save_ledger()
        return Outcome(item.name, status, code, message, moved)

    def poll(self) -> list[Outcome]:
        """Process every item that is complete now; returns what happened to each."""
        return [self.handle(item) for item in self.stable_items() if item.exists()]

    def run_once(self) -> list[Outcome]:
        """For cron: look, wait ``settle_s``, and process the items that did not change."""
        self.stable_items()
        if self.settle_s > 0 and self._seen:
            time.sleep(self.settle_s)
        return self.poll()

    def run_forever(
        self, poll_s: float = 10.0, on_outcome: Callable[[Outcome], None] | None = None
    ) -> None:
        """Poll every ``poll_s`` seconds until interrupted."""
        while True:
            for outcome in self.poll():
                if on_outcome:
                    on_outcome(outcome)
            time.sleep(poll_s)

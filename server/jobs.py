"""Async jobs kept in SQLite: accepted jobs survive a restart, unfinished ones resume.

A job's upload is written to `jobs_dir` and its row committed before `POST /v1/jobs` answers,
so a crash after the 202 loses nothing. One runner task takes queued jobs oldest first and
runs each through the engine like a stream (so live streams keep sharing the decoder); at
start-up, jobs left `running` by a dead process go back to `queued`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from server.errors import ApiError
from server.transcribe import FileParams, transcribe

log = logging.getLogger("minutes.server")

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,          -- queued | running | done | failed
    created TEXT NOT NULL,
    updated TEXT NOT NULL,
    filename TEXT NOT NULL,
    path TEXT NOT NULL,            -- the stored upload (removed once the job is over)
    params TEXT NOT NULL,          -- FileParams as JSON
    duration REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    result TEXT,                   -- the JSON result when done
    error TEXT                     -- {"code", "message"} when failed
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status, created);
"""
MAX_ATTEMPTS = 3  # a job that kills the server every time is failed, not retried forever


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class JobStore:
    """The SQLite table; every call is short, so it runs on the event loop under a lock."""

    def __init__(self, db: Path):
        db.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(db), check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(SCHEMA)

    def _exec(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def add(self, job_id: str, filename: str, path: Path, params: FileParams, duration: float) -> dict[str, Any]:
        now = _now()
        self._exec("INSERT INTO jobs (id, status, created, updated, filename, path, params, duration) "
                   "VALUES (?, 'queued', ?, ?, ?, ?, ?, ?)", (job_id, now, now, filename, str(path), params.to_json(), duration))
        return self.get(job_id)

    def get(self, job_id: str) -> dict[str, Any] | None:
        rows = self._exec("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return dict(rows[0]) if rows else None

    def list(self, limit: int = 100) -> list[dict[str, Any]]:
        return [dict(r) for r in self._exec("SELECT * FROM jobs ORDER BY created DESC LIMIT ?", (limit,))]

    def next_queued(self) -> dict[str, Any] | None:
        rows = self._exec("SELECT * FROM jobs WHERE status = 'queued' ORDER BY created, rowid LIMIT 1")
        return dict(rows[0]) if rows else None

    def set(self, job_id: str, **fields: Any) -> None:
        cols = ", ".join(f"{k} = ?" for k in fields)
        self._exec(f"UPDATE jobs SET {cols}, updated = ? WHERE id = ?", (*fields.values(), _now(), job_id))

    def requeue_unfinished(self) -> int:
        """Jobs a dead process left `running` go back to the queue (or fail after MAX_ATTEMPTS)."""
        err = json.dumps({"code": "internal", "message": f"the server died {MAX_ATTEMPTS} times running this job"})
        self._exec("UPDATE jobs SET status = 'failed', error = ?, updated = ? WHERE status = 'running' AND attempts >= ?",
                   (err, _now(), MAX_ATTEMPTS))
        rows = self._exec("UPDATE jobs SET status = 'queued', updated = ? WHERE status = 'running' RETURNING id", (_now(),))
        return len(rows)

    def counts(self) -> dict[str, int]:
        return {r["status"]: r["n"] for r in self._exec("SELECT status, COUNT(*) AS n FROM jobs GROUP BY status")}

    def close(self) -> None:
        with self._lock:
            self._db.close()


def public(job: dict[str, Any], with_result: bool = True) -> dict[str, Any]:
    """A job row as `GET /v1/jobs/{id}` shows it."""
    params = FileParams.from_json(job["params"])
    out = {
        "id": job["id"], "status": job["status"], "created": job["created"], "updated": job["updated"],
        "format": params.format, "filename": job["filename"], "duration": job["duration"],
        "error": json.loads(job["error"]) if job["error"] else None,
    }
    if with_result:
        out["result"] = json.loads(job["result"]) if job["result"] else None
    return out


class JobQueue:
    """The store plus the runner task."""

    def __init__(self, ctx: Any, db: Path, folder: Path):
        self.ctx = ctx
        self.store = JobStore(db)
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    def new_path(self, suffix: str) -> tuple[str, Path]:
        job_id = uuid.uuid4().hex
        suffix = suffix if suffix.isalnum() and len(suffix) <= 8 else "bin"
        return job_id, self.folder / f"{job_id}.{suffix}"

    def submit(self, job_id: str, filename: str, path: Path, params: FileParams, duration: float) -> dict[str, Any]:
        job = self.store.add(job_id, filename, path, params, duration)
        self._wake.set()
        return job

    def start(self) -> None:
        n = self.store.requeue_unfinished()
        if n:
            log.info("resuming %d unfinished job(s)", n)
        self._task = asyncio.create_task(self._run(), name="minutes-jobs")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self.store.close()

    async def _run(self) -> None:
        engine = self.ctx.engine
        while True:
            job = self.store.next_queued()
            waiting = job is not None and not engine.ready and FileParams.from_json(job["params"]).model is None
            if job is None or engine.status in ("starting", "loading") or waiting:  # no model yet: keep it queued
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), 1.0)
                except asyncio.TimeoutError:
                    pass
                continue
            await self._one(job)

    async def _one(self, job: dict[str, Any]) -> None:
        store = self.store
        store.set(job["id"], status="running", attempts=job["attempts"] + 1)
        path = Path(job["path"])
        try:
            with open(path, "rb") as fh:
                result = await transcribe(self.ctx, fh, FileParams.from_json(job["params"]))
            store.set(job["id"], status="done", result=json.dumps(result), error=None)
            log.info("job %s done (%.1f s of audio)", job["id"], result.get("duration", 0))
        except ApiError as exc:
            store.set(job["id"], status="failed", error=json.dumps({"code": exc.code, "message": exc.message}))
        except FileNotFoundError:
            store.set(job["id"], status="failed", error=json.dumps({"code": "internal", "message": "the upload is gone"}))
        except asyncio.CancelledError:
            raise  # shutting down: the job stays `running` and is resumed at the next start
        except Exception as exc:
            log.exception("job %s failed", job["id"])
            store.set(job["id"], status="failed", error=json.dumps({"code": "internal", "message": str(exc)}))
        if store.get(job["id"])["status"] in ("done", "failed"):
            path.unlink(missing_ok=True)

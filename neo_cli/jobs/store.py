"""The job store: one SQLite file (WAL mode) shared by every `neo jobs` command and supervisor.

Every state change is one `BEGIN IMMEDIATE` transaction that checks the status it starts from
(compare-and-set), so two processes racing on one job (a stop and a completion, two supervisors
for one slot) cannot both win. Readers never block writers (WAL). Connections are short-lived
(one per operation), so a killed process holds nothing open; SQLite's journal makes a transaction
cut short by kill -9 vanish as a whole.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from neo.errors import NeoError, UsageError

SCHEMA_VERSION = 1
STATUSES = ("STARTING", "INPROGRESS", "COMPLETED", "FAILED", "STOPPING", "STOPPED")
ACTIVE = ("STARTING", "INPROGRESS", "STOPPING")
TERMINAL = ("COMPLETED", "FAILED", "STOPPED")
SORT_KEYS = {  # SortBy -> the columns of a total order (the id breaks ties)
    "Name": ("name",),
    "CreationTime": ("creation_time", "id"),
    "Status": ("status", "creation_time", "id"),
}
BUSY_TIMEOUT_S = 30.0  # SQLite's own wait for a lock, per statement
MAX_LOCK_WAIT_S = 300.0  # our retries around it, for a store under heavy load

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    creation_time REAL NOT NULL,
    last_modified_time REAL NOT NULL,
    start_time REAL,
    end_time REAL,
    failure_reason TEXT,
    exit_code INTEGER,
    request TEXT NOT NULL,
    execution TEXT NOT NULL,
    artifact TEXT,
    digest TEXT,
    derived TEXT,
    host TEXT,
    boot_id TEXT,
    supervisor_pid INTEGER,
    supervisor_start INTEGER,
    worker TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    stop_requested_time REAL
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, creation_time, id);
CREATE INDEX IF NOT EXISTS jobs_creation ON jobs (creation_time, id);
"""


class ResourceInUse(UsageError):
    """A job of that name exists already (Neo's ResourceInUse)."""


class ResourceNotFound(UsageError):
    """No job of that name (Neo's ResourceNotFound)."""


class JobStoreError(NeoError):
    """The store cannot be opened, is not a job store, or stays locked: exit 2, as for any
    unusable input (pick another with --store)."""

    exit_code = 2


@dataclass
class JobRecord:
    """One row of the store. `request` holds Neo's request fields, `execution` ours."""

    name: str
    status: str
    creation_time: float
    last_modified_time: float
    request: dict[str, Any]
    execution: dict[str, Any]
    id: int | None = None
    start_time: float | None = None
    end_time: float | None = None
    failure_reason: str | None = None
    exit_code: int | None = None
    artifact: str | None = None
    digest: str | None = None
    derived: str | None = None
    host: str | None = None
    boot_id: str | None = None
    supervisor_pid: int | None = None
    supervisor_start: int | None = None
    worker: str | None = None
    attempts: int = 0
    stop_requested_time: float | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def backend(self) -> str:
        return str(self.execution.get("Backend", "local"))


_COLUMNS = tuple(f.name for f in fields(JobRecord) if f.name != "extra")
_JSON_COLUMNS = ("request", "execution")


def _row_to_record(row: sqlite3.Row) -> JobRecord:
    values = {k: row[k] for k in _COLUMNS}
    for k in _JSON_COLUMNS:
        values[k] = json.loads(values[k])
    return JobRecord(**values)


def default_store_path() -> Path:
    """$XDG_DATA_HOME/neo/jobs.db, or ~/.local/share/neo/jobs.db."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "neo" / "jobs.db"


def _is_lock_error(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


class JobStore:
    """The jobs of one store file. Cheap to create; every method opens its own connection."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        p = Path(path).expanduser() if path else default_store_path()
        if p.is_dir():
            p = p / "jobs.db"
        self.path = p.absolute()
        self._ready = False

    # -- plumbing --------------------------------------------------------------------------------

    @property
    def jobs_dir(self) -> Path:
        """Where the per-job directories (log, staging) live: beside the database."""
        return self.path.with_name(self.path.name + ".d")

    def job_dir(self, job: JobRecord) -> Path:
        return self.jobs_dir / f"{job.id:06d}-{job.name}"

    def _open(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except (OSError, sqlite3.Error) as e:
            raise JobStoreError(f"cannot open the job store {self.path}: {e}",
                                hint="choose another with --store PATH or NEO_JOB_STORE") from None
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        # FULL: a committed state change survives a power cut too, not only a killed process.
        conn.execute("PRAGMA synchronous = FULL")
        return conn

    def _retrying(self, fn):
        """Run fn(), retrying while another process holds the lock longer than busy_timeout."""
        deadline = time.monotonic() + MAX_LOCK_WAIT_S
        delay = 0.01
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as e:
                if not _is_lock_error(e) or time.monotonic() > deadline:
                    raise JobStoreError(f"job store {self.path}: {e}") from None
                time.sleep(delay)
                delay = min(delay * 2, 0.5)

    def _ensure(self) -> None:
        if self._ready:
            return

        def init() -> None:
            conn = self._open()
            try:
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise JobStoreError(f"job store {self.path}: cannot use WAL mode ({mode}); "
                                        "is it on a network file system?")
                conn.execute("BEGIN IMMEDIATE")
                try:
                    for stmt in filter(str.strip, _SCHEMA.split(";")):
                        conn.execute(stmt)
                    row = conn.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
                    if row is None:
                        conn.execute("INSERT INTO meta VALUES ('schema', ?)",
                                     (str(SCHEMA_VERSION),))
                    elif int(row[0]) != SCHEMA_VERSION:
                        raise JobStoreError(
                            f"job store {self.path} has schema version {row[0]}; this neo reads "
                            f"version {SCHEMA_VERSION}", hint="use another --store")
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
            finally:
                conn.close()

        try:
            self._retrying(init)
        except sqlite3.DatabaseError as e:
            raise JobStoreError(f"{self.path} is not a neo job store: {e}") from None
        self._ready = True

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        self._ensure()
        conn = self._retrying(self._open)
        try:
            yield conn
        finally:
            conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE: the write lock is taken up front, so it never
        fails half-way on a lock upgrade). Committed on success, rolled back on any error."""
        self._ensure()
        conn = self._retrying(self._open)
        try:
            self._retrying(lambda: conn.execute("BEGIN IMMEDIATE"))
            try:
                yield conn
                self._retrying(lambda: conn.execute("COMMIT"))
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        finally:
            conn.close()

    # -- reads -----------------------------------------------------------------------------------

    def get(self, name: str) -> JobRecord | None:
        with self._read() as conn:
            row = self._retrying(
                lambda: conn.execute("SELECT * FROM jobs WHERE name = ?", (name,)).fetchone())
        return None if row is None else _row_to_record(row)

    def get_by_id(self, job_id: int) -> JobRecord | None:
        with self._read() as conn:
            row = self._retrying(
                lambda: conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone())
        return None if row is None else _row_to_record(row)

    def require(self, name: str) -> JobRecord:
        job = self.get(name)
        if job is None:
            raise ResourceNotFound(
                f"ResourceNotFound: no compilation job named {name!r} in the job store "
                f"{self.path}", hint="`neo jobs list` shows the jobs; --store picks another store")
        return job

    def active(self) -> list[JobRecord]:
        """Jobs that are not finished (STARTING, INPROGRESS, STOPPING)."""
        marks = ",".join("?" * len(ACTIVE))
        with self._read() as conn:
            rows = self._retrying(lambda: conn.execute(
                f"SELECT * FROM jobs WHERE status IN ({marks}) ORDER BY id", ACTIVE).fetchall())
        return [_row_to_record(r) for r in rows]

    def query(self, *, status: str | None = None, name_contains: str | None = None,
              created_after: float | None = None, created_before: float | None = None,
              modified_after: float | None = None, modified_before: float | None = None,
              sort_by: str = "CreationTime", descending: bool = False,
              after: Sequence[Any] | None = None, limit: int | None = None) -> list[JobRecord]:
        """Jobs matching every given filter, in a total order; `after` is the sort key of the
        last job of the previous page (keyset paging: stable while jobs are added)."""
        where, args = [], []
        if status is not None:
            where.append("status = ?")
            args.append(status)
        if name_contains:
            where.append("instr(lower(name), lower(?)) > 0")
            args.append(name_contains)
        for col, op, value in (("creation_time", ">", created_after),
                               ("creation_time", "<", created_before),
                               ("last_modified_time", ">", modified_after),
                               ("last_modified_time", "<", modified_before)):
            if value is not None:
                where.append(f"{col} {op} ?")
                args.append(value)
        cols = SORT_KEYS[sort_by]
        if after is not None:
            where.append(f"({', '.join(cols)}) {'<' if descending else '>'} "
                         f"({', '.join('?' * len(cols))})")
            args.extend(after)
        order = ", ".join(f"{c} {'DESC' if descending else 'ASC'}" for c in cols)
        sql = "SELECT * FROM jobs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY {order}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self._read() as conn:
            rows = self._retrying(lambda: conn.execute(sql, args).fetchall())
        return [_row_to_record(r) for r in rows]

    @staticmethod
    def sort_key(job: JobRecord, sort_by: str) -> list[Any]:
        return [getattr(job, c) for c in SORT_KEYS[sort_by]]

    def integrity_check(self) -> str:
        """SQLite's PRAGMA integrity_check: "ok" for a sound file."""
        with self._read() as conn:
            return "; ".join(str(r[0]) for r in conn.execute("PRAGMA integrity_check"))

    # -- writes ----------------------------------------------------------------------------------

    def insert(self, job: JobRecord) -> JobRecord:
        """Add a job; a job of that name already there is Neo's ResourceInUse."""
        cols = [c for c in _COLUMNS if c != "id"]
        values = [json.dumps(getattr(job, c)) if c in _JSON_COLUMNS
                  else getattr(job, c) for c in cols]
        with self.transaction() as conn:
            try:
                cur = conn.execute(
                    f"INSERT INTO jobs ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                    values)
            except sqlite3.IntegrityError:
                raise ResourceInUse(
                    f"ResourceInUse: a compilation job named {job.name!r} already exists in "
                    f"{self.path}; job names are unique",
                    hint="pick another --name, or `neo jobs describe` the existing one") from None
            job.id = cur.lastrowid
        return job

    def transition(self, job_id: int, from_states: Sequence[str], to_state: str,
                   **values: Any) -> JobRecord | None:
        """Move a job to `to_state` if it is in one of `from_states` (compare-and-set, one
        transaction). Returns the updated job, or None when it was in another state."""
        assert to_state in STATUSES
        now = values.pop("now", None) or time.time()
        with self.transaction() as conn:
            row = conn.execute("SELECT status FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None or row["status"] not in from_states:
                return None
            sets = {"status": to_state, "last_modified_time": now, **values}
            if to_state in TERMINAL:
                sets.setdefault("end_time", now)
            self._update(conn, job_id, sets)
            row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _row_to_record(row)

    def update(self, job_id: int, *, touch: bool = True, **values: Any) -> None:
        """Set fields that are not the status (the supervisor's pid, the worker, attempts)."""
        assert "status" not in values
        if touch:
            values["last_modified_time"] = time.time()
        with self.transaction() as conn:
            self._update(conn, job_id, values)

    @staticmethod
    def _update(conn: sqlite3.Connection, job_id: int, values: dict[str, Any]) -> None:
        unknown = set(values) - set(_COLUMNS)
        assert not unknown, unknown
        data = {k: json.dumps(v) if k in _JSON_COLUMNS else v
                for k, v in values.items()}
        conn.execute(f"UPDATE jobs SET {', '.join(f'{k} = ?' for k in data)} WHERE id = ?",
                     [*data.values(), job_id])

    def set_supervisor(self, job_id: int, pid: int, started: int | None) -> bool:
        """Record the job's supervisor unless one is recorded already (creator and supervisor both
        try; a supervisor that took the job over from the queue must not be overwritten)."""
        with self.transaction() as conn:
            cur = conn.execute("UPDATE jobs SET supervisor_pid = ?, supervisor_start = ? "
                               "WHERE id = ? AND supervisor_pid IS NULL", (pid, started, job_id))
            return cur.rowcount == 1

    def claim_slot(self, job_id: int, host: str, max_parallel: int) -> JobRecord | None:
        """STARTING -> INPROGRESS for a local job when fewer than `max_parallel` local jobs of
        this host run and no older job waits ahead of it (first come, first served)."""
        now = time.time()
        with self.transaction() as conn:
            me = conn.execute("SELECT status FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if me is None or me["status"] != "STARTING":
                return None
            local = "json_extract(execution, '$.Backend') = 'local' AND host = ?"
            running = conn.execute(
                f"SELECT count(*) FROM jobs WHERE {local} AND status IN ('INPROGRESS', "
                "'STOPPING') AND start_time IS NOT NULL", (host,)).fetchone()[0]
            ahead = conn.execute(
                f"SELECT count(*) FROM jobs WHERE {local} AND status = 'STARTING' AND id < ?",
                (host, job_id)).fetchone()[0]
            if running + ahead >= max_parallel:
                return None
            self._update(conn, job_id, {"status": "INPROGRESS", "start_time": now,
                                        "last_modified_time": now, "attempts": 1})
            row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _row_to_record(row)

    def finish(self, job_id: int, from_states: Sequence[str], to_state: str,
               adopt_for: tuple[str, int, int | None] | None = None,
               **values: Any) -> tuple[JobRecord | None, JobRecord | None]:
        """`transition` to a final state; with `adopt_for` = (host, pid, start) the same
        transaction also hands the freed slot to the oldest local job waiting on that host,
        under that supervisor (which keeps its compiler loaded). Doing both at once means a
        waiting job never sees the slot free in between. Returns (finished, adopted)."""
        assert to_state in TERMINAL
        now = time.time()
        with self.transaction() as conn:
            row = conn.execute("SELECT status FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None or row["status"] not in from_states:
                return None, None
            self._update(conn, job_id, {"status": to_state, "last_modified_time": now,
                                        "end_time": now, **values})
            done = _row_to_record(conn.execute("SELECT * FROM jobs WHERE id = ?",
                                               (job_id,)).fetchone())
            adopted = self._adopt(conn, *adopt_for, now) if adopt_for else None
        return done, adopted

    def _adopt(self, conn: sqlite3.Connection, host: str, pid: int, started: int | None,
               now: float) -> JobRecord | None:
        local = "json_extract(execution, '$.Backend') = 'local' AND host = ?"
        row = conn.execute(f"SELECT * FROM jobs WHERE {local} AND status = 'STARTING' "
                           "ORDER BY id LIMIT 1", (host,)).fetchone()
        if row is None:
            return None
        job = _row_to_record(row)
        running = conn.execute(
            f"SELECT count(*) FROM jobs WHERE {local} AND status IN ('INPROGRESS', 'STOPPING') "
            "AND start_time IS NOT NULL", (host,)).fetchone()[0]
        if running >= int(job.execution.get("MaxParallel") or 1):
            return None
        self._update(conn, job.id, {"status": "INPROGRESS", "start_time": now,
                                    "last_modified_time": now, "attempts": 1,
                                    "supervisor_pid": pid, "supervisor_start": started,
                                    "worker": None})
        return _row_to_record(conn.execute("SELECT * FROM jobs WHERE id = ?",
                                           (job.id,)).fetchone())


__all__ = [
    "ACTIVE",
    "SORT_KEYS",
    "STATUSES",
    "TERMINAL",
    "JobRecord",
    "JobStore",
    "JobStoreError",
    "ResourceInUse",
    "ResourceNotFound",
    "default_store_path",
]

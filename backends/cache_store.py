"""The SQLite store behind :class:`~backends.caching.CachingBackend`: completions by key.

``JudgmentCache(path, *, timeout=2.0, namespace="", strict=False)``: one SQLite file
in WAL mode, shared by several threads and processes; what is stored, how keys are
made, and how errors are handled is told in :mod:`backends.caching`.
"""

from __future__ import annotations

import math
import os
import threading
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from backends.base import Completion, Result, TokenLogprob
from backends.errors import CacheError

if TYPE_CHECKING:
    import sqlite3

SCHEMA_VERSION = "2"
"""Stored in the file; a file of another schema is refused (``CacheError``).

Schema 1 (the judge's own cache, before it became a backend wrapper) stored whole
judgments; such a file is refused with this error.
"""
KEY_VERSION = 2
"""Part of every key: a change of what a key covers makes old entries unreachable."""

_CHUNK = 500  # keys per SELECT (SQLite's variable limit is 999 in old builds)
_LOCKED_WAIT = 0.05  # seconds an operation waits while the file stays locked
_BUSY_CODES = (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED (the primary code of an extended one)
_ORPHANS: list[Any] = []  # connections inherited through fork: never closed in the child


class CacheWarning(RuntimeWarning):
    """A cache read or write failed and was bypassed (once per store and kind of failure)."""


def is_locked(exc: BaseException) -> bool:
    """Whether a SQLite error says the file is locked or busy (not that it is damaged)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in _BUSY_CODES
    text = str(exc).lower()
    return "database is locked" in text or "database table is locked" in text


@dataclass(slots=True)
class CacheStats:
    """What a store did in this process.

    Attributes:
        hits: Requests answered from the file.
        misses: Requests not found (sent to the model).
        writes: Completions stored.
        errors: Reads or writes that failed and were bypassed.
    """

    hits: int = 0
    misses: int = 0
    writes: int = 0
    errors: int = 0


def dump_completion(completion: Completion) -> bytes:
    """A completion as the JSON stored (``cached`` is not: a hit sets it)."""
    logprobs = None
    if completion.logprobs is not None:
        logprobs = [
            [t.token, _finite(t.logprob), [[alt, _finite(lp)] for alt, lp in t.top]]
            for t in completion.logprobs
        ]
    return orjson.dumps(
        {
            "text": completion.text,
            "finish_reason": completion.finish_reason,
            "prompt_tokens": completion.prompt_tokens,
            "completion_tokens": completion.completion_tokens,
            "logprobs": logprobs,
            "model": completion.model,
            "latency_s": completion.latency_s,
            "attempts": completion.attempts,
        }
    )


def load_completion(value: str | bytes) -> Completion:
    """A stored completion, with ``cached=True``.

    Raises:
        ValueError: The value is not a stored completion.
    """
    try:
        data = orjson.loads(value)
        logprobs = data["logprobs"]
        return Completion(
            text=_typed(data["text"], str),
            finish_reason=_optional(data["finish_reason"], str),
            prompt_tokens=_optional(data["prompt_tokens"], int),
            completion_tokens=_optional(data["completion_tokens"], int),
            logprobs=None
            if logprobs is None
            else tuple(
                TokenLogprob(
                    _typed(token, str),
                    _logprob(logprob),
                    tuple((_typed(alt, str), _logprob(lp)) for alt, lp in top),
                )
                for token, logprob, top in logprobs
            ),
            model=_optional(data["model"], str),
            latency_s=_optional(data["latency_s"], float),
            attempts=_typed(data["attempts"], int),
            cached=True,
        )
    except (orjson.JSONDecodeError, TypeError, KeyError, ValueError) as exc:
        raise ValueError(f"not a stored completion: {exc}") from None


def _finite(logprob: float) -> float | None:
    """JSON has no infinity: a logprob of -inf (probability 0) is stored as null."""
    return logprob if math.isfinite(logprob) else None


def _logprob(value: Any) -> float:
    return -math.inf if value is None else float(_typed(value, (int, float)))


def _typed(value: Any, kind: type | tuple[type, ...]) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool):
        raise TypeError(f"unexpected {type(value).__name__}")
    return value


def _optional(value: Any, kind: type) -> Any:
    if value is None:
        return None
    if kind is float and isinstance(value, int):
        return float(value)
    return _typed(value, kind)


class JudgmentCache:
    """Completions stored in one SQLite file, looked up by the key of their request.

    Args:
        path: The SQLite file; created (with its folder) when missing.
        timeout: Seconds a read or write waits for another process's lock before it
            goes on without the cache (then only briefly while the file stays locked).
        namespace: Mixed into every key: separates models served under one name.
        strict: Raise :class:`CacheError` when a read or write fails, instead of
            warning and going on without the cache.

    Raises:
        CacheError: The file cannot be created or opened, is not a SQLite database, or
            is not a judgment cache of this schema (a locked file is none of these: it
            is bypassed with a :class:`CacheWarning` until it is free).

    Example:
        ```python
        cache = JudgmentCache("judgments.sqlite")
        judge = ThinkingRewardJudge(backend=backend, cache=cache)
        judge.batch(inputs)
        cache.stats   # CacheStats(hits=..., misses=..., writes=..., errors=...)
        ```
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        timeout: float = 2.0,
        namespace: str = "",
        strict: bool = False,
    ) -> None:
        if timeout < 0:
            raise ValueError(f"timeout must be >= 0, got {timeout}")
        self.path = Path(path)
        self.timeout = timeout
        self.namespace = namespace
        self.strict = strict
        self.stats = CacheStats()
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None
        self._pid = os.getpid()
        self._locked = False  # the last operation found the file locked
        self._waiting = timeout  # the busy timeout the connection has
        self._warned: set[str] = set()  # the kinds of failure warned about
        import sqlite3

        with self._lock:
            try:
                self._connect()  # check the file now, not at the first batch
            except sqlite3.Error as exc:  # locked: usable once it is free
                self._bypass(exc)

    def __repr__(self) -> str:
        return f"JudgmentCache({os.fspath(self.path)!r})"

    # -- pickling: the path and settings travel, the connection does not -----------------

    def __getstate__(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "timeout": self.timeout,
            "namespace": self.namespace,
            "strict": self.strict,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.stats = CacheStats()
        self._lock = threading.Lock()
        self._connection = None
        self._pid = os.getpid()
        self._locked = False
        self._waiting = self.timeout
        self._warned = set()

    # -- public API ---------------------------------------------------------------------

    def get_many(self, keys: Sequence[str]) -> dict[str, Completion]:
        """The stored completions of ``keys`` (those found, with ``cached=True``); counts
        hits and misses. An unreadable entry is a miss (the next store replaces it).
        """  # noqa: D205
        wanted = list(dict.fromkeys(keys))
        found: dict[str, Completion] = {}
        if wanted:
            for key, value in self._run(self._select, wanted, default=[]):
                try:
                    found[key] = load_completion(value)
                except ValueError:
                    continue
        hits = sum(key in found for key in keys)
        self.stats.hits += hits
        self.stats.misses += len(keys) - hits
        return found

    def get(self, key: str) -> Completion | None:
        """The stored completion of ``key``, or None."""
        return self.get_many([key]).get(key)

    def put_many(self, items: Iterable[tuple[str, Result]]) -> int:
        """Store completions (errors are skipped); returns how many were stored."""
        now = time.time()
        rows = [
            (key, dump_completion(result).decode(), now)
            for key, result in items
            if isinstance(result, Completion)
        ]
        if rows and self._run(self._insert, rows, default=None) is not None:
            self.stats.writes += len(rows)
            return len(rows)
        return 0

    def put(self, key: str, result: Result) -> bool:
        """Store one completion; False when it was not stored (an error, or a failure)."""
        return self.put_many([(key, result)]) == 1

    def __len__(self) -> int:
        return int(self._run(self._count, None, default=0))

    def clear(self) -> None:
        """Delete every stored completion."""
        self._run(self._delete_all, None, default=None)

    def close(self) -> None:
        """Close this process's connection (it reopens when used again)."""
        with self._lock:
            connection, self._connection = self._connection, None
            if connection is not None and self._pid == os.getpid():
                connection.close()

    def __enter__(self) -> JudgmentCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- SQLite -------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        """This process's connection, opened and checked on first use (lock held)."""
        import sqlite3  # here, not at import: `import backends` stays light

        if self._pid != os.getpid():  # forked: the parent's connection is not ours to use
            if self._connection is not None:
                _ORPHANS.append(self._connection)  # closing it could drop the parent's locks
            self._connection, self._pid = None, os.getpid()
        if self._connection is not None:
            return self._connection
        shown = os.fspath(self.path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(
                self.path, timeout=self._wait(), isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            raise CacheError(f"cannot open the judgment cache {shown!r}: {exc}") from exc
        try:
            _set_up(connection)
        except sqlite3.DatabaseError as exc:
            connection.close()
            if is_locked(exc):
                raise  # locked by another process: not unusable, bypassed until free
            raise CacheError(
                f"{shown!r} is not a usable judgment cache ({exc}); "
                "give another path or delete the file"
            ) from exc
        except CacheError as exc:
            connection.close()
            raise CacheError(f"{shown!r}: {exc}") from None
        self._connection = connection
        self._waiting = self._wait()
        return connection

    def _wait(self) -> float:
        """Seconds the next operation waits for a lock: short while the file stays locked."""
        return min(self.timeout, _LOCKED_WAIT) if self._locked else self.timeout

    def _run(self, operation: Any, argument: Any, *, default: Any) -> Any:
        """Run one operation on the connection; on a SQLite error, warn and bypass."""
        import sqlite3

        with self._lock:
            try:
                connection = self._connect()
                if self._waiting != self._wait():
                    self._waiting = self._wait()
                    connection.execute(f"PRAGMA busy_timeout = {int(self._waiting * 1000)}")
                result = operation(connection, argument)
            except (sqlite3.Error, CacheError) as exc:
                self.stats.errors += 1
                self._bypass(exc)
                return default
            self._locked = False
            return result

    def _bypass(self, exc: BaseException) -> None:
        """Go on without the cache after ``exc``: warn once per kind, or raise if strict.

        Raises:
            CacheError: ``strict`` is set.
        """
        shown = os.fspath(self.path)
        locked = is_locked(exc)
        self._locked = locked
        if locked:
            message = (
                f"the judgment cache {shown!r} is locked by another process ({exc}; waited "
                f"{self.timeout:g} s); the file is not damaged"
            )
            further = "going on without it while it stays locked"
        else:
            message = f"the judgment cache {shown!r} failed: {exc}"
            further = "going on without it"
        if self.strict:
            raise CacheError(message) from exc
        kind = "locked" if locked else "failed"
        if kind not in self._warned:
            self._warned.add(kind)
            warnings.warn(f"{message}; {further} (warned once)", CacheWarning, stacklevel=5)

    @staticmethod
    def _select(connection: sqlite3.Connection, keys: list[str]) -> list[tuple[str, str]]:
        rows: list[tuple[str, str]] = []
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            rows += connection.execute(
                f"SELECT key, value FROM completions WHERE key IN ({marks})",
                chunk,
            ).fetchall()
        return rows

    @staticmethod
    def _insert(connection: sqlite3.Connection, rows: list[tuple[str, str, float]]) -> bool:
        connection.execute("BEGIN IMMEDIATE")
        try:
            connection.executemany(
                "INSERT OR REPLACE INTO completions (key, value, created) VALUES (?, ?, ?)", rows
            )
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")
        return True

    @staticmethod
    def _count(connection: sqlite3.Connection, _: object) -> int:
        return int(connection.execute("SELECT count(*) FROM completions").fetchone()[0])

    @staticmethod
    def _delete_all(connection: sqlite3.Connection, _: object) -> None:
        connection.execute("DELETE FROM completions")


def _set_up(connection: sqlite3.Connection) -> None:
    """WAL mode, and the tables; refuse another database, or another schema."""
    tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    if tables and "meta" not in tables:
        raise CacheError(
            f"the file is a SQLite database but not a judgment cache (tables: "
            f"{', '.join(sorted(tables)[:5])}); give another path"
        )
    connection.execute("PRAGMA synchronous=NORMAL")
    if {"meta", "completions"} <= tables:  # made before: read, no write lock needed
        _check_schema(connection)
        if connection.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            connection.execute("PRAGMA journal_mode=WAL")
        return
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("BEGIN IMMEDIATE")
    try:
        connection.execute(
            "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)"
        )
        connection.execute(
            "INSERT OR IGNORE INTO meta (name, value) VALUES ('schema', ?)", (SCHEMA_VERSION,)
        )
        _check_schema(connection)
        connection.execute(
            "CREATE TABLE IF NOT EXISTS completions (key TEXT PRIMARY KEY, value TEXT NOT NULL, "
            "created REAL NOT NULL) WITHOUT ROWID"
        )
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


def _check_schema(connection: sqlite3.Connection) -> None:
    """Refuse a cache of another schema."""
    row = connection.execute("SELECT value FROM meta WHERE name = 'schema'").fetchone()
    schema = None if row is None else row[0]
    if schema != SCHEMA_VERSION:
        raise CacheError(
            f"the judgment cache has schema {schema!r}, not {SCHEMA_VERSION!r} (written by "
            "another version of thinking-reward-judge); delete it or give another path"
        )


__all__ = [
    "KEY_VERSION",
    "SCHEMA_VERSION",
    "CacheStats",
    "CacheWarning",
    "JudgmentCache",
    "dump_completion",
    "is_locked",
    "load_completion",
]

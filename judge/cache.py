"""A content-addressed on-disk cache of judgments: repeated work costs no model call.

::

    judge = ThinkingRewardJudge(backend=backend, cache="judgments.sqlite")
    judge.batch(inputs)   # judged by the model, stored
    judge.batch(inputs)   # served from the file: no request reaches the backend

**Key.** SHA-256 over canonical JSON of: the model name, the backend's model revision
when its ``describe()`` carries one (``model_revision`` or ``revision``), the rendered
messages' SHA-256 (``ThinkingScore.prompt_sha256``: images are in it as their encoded
bytes, so the key follows image *content*, not file names), the sampling fields the
backend sends (``Backend.sent_sampling``), the judge options that change the result
(``output_format``, ``constrained``, ``expected_score``, ``top_logprobs``) and the cache's
``namespace``. A served model name says nothing about the weights behind it: give a
different file or ``namespace`` to a different model served under the same name.

**Value.** The :class:`~judge.types.ThinkingScore` as JSON. Only successful judgments are
stored; a failure is never cached (a transient error must not stick), nor a judgment
whose expected score is missing because a continuation request failed. A hit is the
stored score with ``metadata["cache"] = "hit"`` (its latency and usage are those of the
original judgment); a judgment looked up and not found has ``metadata["cache"] = "miss"``.

**Concurrency.** One SQLite file in WAL mode, shared safely by several threads and
processes (a cache object can be pickled, e.g. into Ray actors or ``multiprocessing``
workers; each process opens its own connection). Reads are one ``SELECT`` per batch;
writes are one short ``INSERT OR REPLACE`` transaction per batch, waiting up to
``timeout`` seconds for another writer.

**Errors.** The file is checked when the cache is made: a file that is not a SQLite
database, or a database that is not this cache, raises :class:`CacheError`. Later, a read
or write that fails (locked beyond ``timeout``, disk full, file damaged meanwhile) warns
with :class:`CacheWarning` and is bypassed (a lookup misses, a result is not stored), so
a judgment never fails because of its cache; ``strict=True`` raises :class:`CacheError`
instead.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import ValidationError

from judge.errors import CacheError
from judge.types import ThinkingScore

if TYPE_CHECKING:
    import sqlite3

SCHEMA_VERSION = "1"
"""Stored in the file; a file of another schema is refused (``CacheError``)."""
KEY_VERSION = 1
"""Part of every key: a change of what a key covers makes old entries unreachable."""

_CHUNK = 500  # keys per SELECT (SQLite's variable limit is 999 in old builds)
_ORPHANS: list[Any] = []  # connections inherited through fork: never closed in the child


class CacheWarning(RuntimeWarning):
    """A cache read or write failed and was bypassed (the judgment went on without it)."""


@dataclass(slots=True)
class CacheStats:
    """What a cache object did in this process.

    Attributes:
        hits: Lookups answered from the file.
        misses: Lookups not found.
        writes: Judgments stored.
        errors: Reads or writes that failed and were bypassed.
    """

    hits: int = 0
    misses: int = 0
    writes: int = 0
    errors: int = 0


def judgment_key(
    *,
    model: str | None,
    prompt_sha256: str,
    sampling: Mapping[str, Any],
    options: Mapping[str, Any],
    revision: str | None = None,
    namespace: str = "",
) -> str:
    """The cache key of one judgment (hex SHA-256).

    Args:
        model: The model name the backend sends.
        prompt_sha256: SHA-256 of the rendered messages, images included.
        sampling: The sampling fields the backend sends.
        options: Judge options that change the result.
        revision: The model's revision, when the backend knows it; left out when None.
        namespace: Separates caches of different models served under one name.

    Returns:
        64 hex digits.
    """
    payload: dict[str, Any] = {
        "v": KEY_VERSION,
        "model": model,
        "prompt_sha256": prompt_sha256,
        "sampling": dict(sampling),
        "options": dict(options),
    }
    if revision is not None:
        payload["revision"] = revision
    if namespace:
        payload["namespace"] = namespace
    data = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS, default=repr)
    return hashlib.sha256(data).hexdigest()


class JudgmentCache:
    """Successful judgments stored in one SQLite file, looked up by content.

    Args:
        path: The SQLite file; created (with its folder) when missing.
        timeout: Seconds a read or write waits for another writer's lock.
        namespace: Mixed into every key: separates models served under one name.
        strict: Raise :class:`CacheError` when a read or write fails, instead of
            warning and going on without the cache.

    Raises:
        CacheError: The file cannot be created or opened, is not a SQLite database, or
            is not a judgment cache of this schema.

    Example:
        .. code-block:: python

            cache = JudgmentCache("judgments.sqlite")
            judge = ThinkingRewardJudge(backend=backend, cache=cache)
            judge.batch(inputs)
            cache.stats   # CacheStats(hits=..., misses=..., writes=..., errors=...)
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        timeout: float = 30.0,
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
        with self._lock:
            self._connect()  # check the file now, not at the first batch

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

    # -- public API ---------------------------------------------------------------------

    def key(
        self,
        *,
        model: str | None,
        prompt_sha256: str,
        sampling: Mapping[str, Any],
        options: Mapping[str, Any],
        revision: str | None = None,
    ) -> str:
        """The key of one judgment in this cache (see :func:`judgment_key`)."""
        return judgment_key(
            model=model,
            prompt_sha256=prompt_sha256,
            sampling=sampling,
            options=options,
            revision=revision,
            namespace=self.namespace,
        )

    def get_many(self, keys: Sequence[str]) -> dict[str, ThinkingScore]:
        """The stored judgments of ``keys`` (those found), each with
        ``metadata["cache"] = "hit"``; counts hits and misses.
        """  # noqa: D205
        wanted = list(dict.fromkeys(keys))
        found: dict[str, ThinkingScore] = {}
        if wanted:
            rows = self._run(self._select, wanted, default=[])
            for key, value in rows:
                try:
                    data = orjson.loads(value)
                    data["metadata"]["cache"] = "hit"
                    found[key] = ThinkingScore.model_validate(data)
                except (orjson.JSONDecodeError, TypeError, KeyError, ValidationError):
                    continue  # unreadable entry: a miss, replaced by the next store
        hits = sum(key in found for key in keys)
        self.stats.hits += hits
        self.stats.misses += len(keys) - hits
        return found

    def get(self, key: str) -> ThinkingScore | None:
        """The stored judgment of ``key``, or None."""
        return self.get_many([key]).get(key)

    def put_many(self, items: Iterable[tuple[str, ThinkingScore]]) -> int:
        """Store successful judgments (failed ones are skipped); returns how many."""
        now = time.time()
        rows = [
            (key, score.model_dump_json(exclude={"metadata": {"cache"}}), now)
            for key, score in items
            if score.ok
        ]
        if rows and self._run(self._insert, rows, default=None) is not None:
            self.stats.writes += len(rows)
            return len(rows)
        return 0

    def put(self, key: str, score: ThinkingScore) -> bool:
        """Store one judgment; False when it was not stored (a failure, or an error)."""
        return self.put_many([(key, score)]) == 1

    def __len__(self) -> int:
        return int(self._run(self._count, None, default=0))

    def clear(self) -> None:
        """Delete every stored judgment."""
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
        import sqlite3  # here, not at import: `import judge` stays light

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
                self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            raise CacheError(f"cannot open the judgment cache {shown!r}: {exc}") from exc
        try:
            _set_up(connection)
        except sqlite3.DatabaseError as exc:
            connection.close()
            raise CacheError(
                f"{shown!r} is not a usable judgment cache ({exc}); "
                "give another path or delete the file"
            ) from exc
        except CacheError as exc:
            connection.close()
            raise CacheError(f"{shown!r}: {exc}") from None
        self._connection = connection
        return connection

    def _run(self, operation: Any, argument: Any, *, default: Any) -> Any:
        """Run one operation on the connection; on a SQLite error, warn and bypass."""
        import sqlite3

        with self._lock:
            try:
                return operation(self._connect(), argument)
            except (sqlite3.Error, CacheError) as exc:
                self.stats.errors += 1
                message = f"the judgment cache {os.fspath(self.path)!r} failed: {exc}"
                if self.strict:
                    raise CacheError(message) from exc
                warnings.warn(f"{message}; going on without it", CacheWarning, stacklevel=4)
                return default

    @staticmethod
    def _select(connection: sqlite3.Connection, keys: list[str]) -> list[tuple[str, str]]:
        rows: list[tuple[str, str]] = []
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            rows += connection.execute(
                f"SELECT key, value FROM judgments WHERE key IN ({marks})",
                chunk,
            ).fetchall()
        return rows

    @staticmethod
    def _insert(connection: sqlite3.Connection, rows: list[tuple[str, str, float]]) -> bool:
        connection.execute("BEGIN IMMEDIATE")
        try:
            connection.executemany(
                "INSERT OR REPLACE INTO judgments (key, value, created) VALUES (?, ?, ?)", rows
            )
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")
        return True

    @staticmethod
    def _count(connection: sqlite3.Connection, _: object) -> int:
        return int(connection.execute("SELECT count(*) FROM judgments").fetchone()[0])

    @staticmethod
    def _delete_all(connection: sqlite3.Connection, _: object) -> None:
        connection.execute("DELETE FROM judgments")


def _set_up(connection: sqlite3.Connection) -> None:
    """WAL mode, and the tables; refuse another database, or another schema."""
    tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    if tables and not {"meta", "judgments"} <= tables:
        raise CacheError(
            f"the file is a SQLite database but not a judgment cache (tables: "
            f"{', '.join(sorted(tables)[:5])}); give another path"
        )
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute("BEGIN IMMEDIATE")
    try:
        connection.execute(
            "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)"
        )
        connection.execute(
            "CREATE TABLE IF NOT EXISTS judgments (key TEXT PRIMARY KEY, value TEXT NOT NULL, "
            "created REAL NOT NULL) WITHOUT ROWID"
        )
        connection.execute(
            "INSERT OR IGNORE INTO meta (name, value) VALUES ('schema', ?)", (SCHEMA_VERSION,)
        )
        (schema,) = connection.execute("SELECT value FROM meta WHERE name = 'schema'").fetchone()
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")
    if schema != SCHEMA_VERSION:
        raise CacheError(f"the judgment cache has schema {schema!r}, not {SCHEMA_VERSION!r}")


__all__ = [
    "KEY_VERSION",
    "SCHEMA_VERSION",
    "CacheError",
    "CacheStats",
    "CacheWarning",
    "JudgmentCache",
    "judgment_key",
]

"""Judge a stream of input records into a result file: bounded, concurrent, resumable.

The pipeline: one *producer* reads records (:mod:`judge.batch.formats`) and settles those
that need no judgment (already in the result file, repeated ids, unusable records); a few
*workers* take the rest from a bounded queue and call the judge; every result is
*finished* (appended to the :class:`~judge.batch.store.ResultFile`, counted, shown) as soon
as it is known.

**Duplicates.** An id that was already seen earlier in the same input is a duplicate: only
its first record is judged; the later ones are counted and named in the
:class:`BatchSummary` (and make the exit status 1) but not written, so that the output keeps
exactly one line per id. ``1`` and ``"1"`` are different ids. Memory stays bounded
whatever the input's length, apart from one set entry per id.

**Unusable records** (see :mod:`judge.batch.formats`) become error records (``score``
null, ``error_kind`` ``"input"``, ``metadata.input_line`` its 1-based line or row), never a
crash. Every record read is accounted for: the summary line counts records read and
scored + failed + skipped + duplicates add up to it (unless the run stopped).

**Changed records.** Each result line keeps the fingerprint of what was judged
(``input_sha256``: see :mod:`judge.batch.formats`). A record whose id has a result for
different content (the file was edited, or ``line:N`` ids moved) is *judged again*, its
new line replacing the old one, and counted in :attr:`BatchSummary.changed` (the summary
line says so): a resumed run never keeps a score for content that is no longer in the
input. Results written before fingerprints were kept resume as before, by id alone, and
are counted in :attr:`BatchSummary.unverified` ("not checked for changes").

**Resume.** Ids with a result in the output are skipped, so re-running the same command
after any kill (SIGKILL included) scores only what is missing and ends with exactly one
result per input id. A failure stays a failure on re-runs unless ``retry_failed`` is set:
then failed ids are judged again and the new result appended; a run that completes then
compacts the output to one line per id. The exit status describes the output as a whole:
1 when any input id's result (new, or kept from an earlier run) is a failure or an id was
repeated.

**Concurrency.** At most ``max_concurrency`` judgments are in flight. A judge on an HTTP
backend (:class:`~backends.base.AsyncBackend`) is fed one input per call, so a slow request
never holds up the others; a batch-native backend (the in-process engine) gets batches of
``max_concurrency`` inputs, the next one prepared while the engine runs the current one.

**One bad record vs a dead backend.** A result of kind ``unavailable`` (the backend cannot
run) stops the run at once. A ``connection`` failure (after the transport's own retries and
deadline) may be the record's own (a host that drops the connection for that request
only) or the backend's: the record is *held*, not written. Any answer from the backend
(a score, or a parse, constraint, context-length or server failure) proves it alive, and
the held records are then written as failures of their own (the run goes on, exit status
1). When ``5`` connection failures come in a row with no answer between, or the input
ends with records held, one *probe* (a tiny judgment with a question of its own, so no
cache can answer it) decides: answered, the held records fail on their own; not answered,
the backend as a whole is unreachable: nothing is written for the held records, the run
stops (``BatchSummary.aborted``, exit status 3) and a re-run picks up from there. A
backend that dies while a few results are in flight may leave those few written as
connection failures (``--retry-failed`` judges them again).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import stat
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from backends.base import AsyncBackend

# EXTENSIONS, BatchError, input_format_of: re-exported while judge.cli.main imports them
# from here (judge.batch is their public home).
from judge.batch.formats import EXTENSIONS as EXTENSIONS
from judge.batch.formats import BatchError as BatchError
from judge.batch.formats import InputFormat, InputRecord, count_records, read_records
from judge.batch.formats import input_format_of as input_format_of
from judge.batch.progress import Progress, ProgressMode, make_progress
from judge.batch.store import ResultFile
from judge.batch.summary import BatchSummary
from judge.errors import InputError
from judge.failures import FailureKind, ends_run
from judge.types import JudgeRunnable, ThinkingScore

_DUPLICATES_KEPT = 20  # duplicate ids named in the summary; the rest are only counted
_YIELD_EVERY = 256  # records read between two turns of the event loop
_WRAPPERS_SEEN = 8  # with_config / with_retry layers looked through to find the backend
_DOWN_AFTER = 5  # connection failures in a row (no answer between) before a probe decides
_ANSWERED = frozenset(
    {FailureKind.PARSE, FailureKind.CONSTRAINT, FailureKind.CONTEXT_LENGTH, FailureKind.SERVER}
)
"""Failure kinds that prove the backend answered (the request reached a working model)."""


class _BackendDown(Exception):
    """The backend as a whole cannot be used: the run stops."""

    def __init__(self, score: ThinkingScore, probe: ThinkingScore | None = None) -> None:
        super().__init__(score.error or "")
        self.score = score
        self.probe = probe


def _answered(score: ThinkingScore) -> bool:
    """Whether a result proves that the backend answered."""
    return score.ok or (score.error_kind is not None and FailureKind(score.error_kind) in _ANSWERED)


_END = object()


class _Run:
    """One batch run's state; every method runs on the event loop's thread."""

    def __init__(
        self,
        judge: JudgeRunnable,
        out: ResultFile,
        summary: BatchSummary,
        progress: Progress,
        *,
        retry_failed: bool,
        chunk_size: int,
    ) -> None:
        self.judge, self.out, self.summary, self.progress = judge, out, summary, progress
        self.retry_failed, self.chunk_size = retry_failed, chunk_size
        self.held: list[tuple[InputRecord, ThinkingScore]] = []  # connection failures
        self.in_a_row = 0  # connection failures since the backend last answered
        self.probing = asyncio.Lock()

    async def produce(self, records: Iterable[InputRecord], queue: asyncio.Queue[Any]) -> None:
        """Read records; settle the skipped, duplicate and unusable ones; queue the rest."""
        seen: set[str | int] = set()
        summary = self.summary
        for count, record in enumerate(records, start=1):
            if count % _YIELD_EVERY == 0:
                await asyncio.sleep(0)  # let results be written while a long skip runs
            summary.records += 1
            key = record.id
            if key in seen:
                summary.duplicates += 1
                if len(summary.duplicate_examples) < _DUPLICATES_KEPT:
                    summary.duplicate_examples.append((record.id, record.line))
                self.progress.update(failed=True)
                continue
            seen.add(key)
            previous = self.out.last_line.get(key)
            if previous is not None:
                _, ok, judged = previous
                if judged is not None and judged != record.fingerprint:
                    summary.changed += 1  # judged again: its new line replaces the old one
                elif ok or not self.retry_failed:
                    summary.skipped += 1
                    summary.skipped_failed += not ok
                    summary.unverified += judged is None
                    continue
            if record.error is not None:
                failure = ThinkingScore.failure(
                    InputError(record.error), metadata={"input_line": record.line}
                )
                self.finish(record, failure)
                continue
            await queue.put(record)

    async def work(self, queue: asyncio.Queue[Any]) -> None:
        """Take up to ``chunk_size`` queued records at a time and judge them."""
        while True:
            first = await queue.get()
            if first is _END:
                return
            chunk: list[InputRecord] = [first]
            last = False
            while len(chunk) < self.chunk_size and not queue.empty():
                record = queue.get_nowait()
                if record is _END:
                    last = True
                    break
                chunk.append(record)
            results = await self.judge.abatch(
                [record.item for record in chunk],  # type: ignore[misc]  # checked records
                config={"max_concurrency": len(chunk)},
                return_exceptions=True,
            )
            down: ThinkingScore | None = None
            for record, result in zip(chunk, results, strict=True):
                down = self.settle(record, _as_score(result)) or down
            if down is not None:
                raise _BackendDown(down)
            if self.in_a_row >= _DOWN_AFTER:
                await self.decide()
            if last:
                return

    def settle(self, record: InputRecord, score: ThinkingScore) -> ThinkingScore | None:
        """Write, hold (a connection failure) or return (a backend that cannot run) a result."""
        if score.error_kind == FailureKind.CONNECTION:
            self.held.append((record, score))
            self.in_a_row += 1
            return None
        if ends_run(score.error_kind):
            return score
        self.finish(record, score)
        if _answered(score):
            self.release()
        return None

    def release(self) -> None:
        """The backend answers: the held connection failures are the records' own."""
        held, self.held, self.in_a_row = self.held, [], 0
        for record, score in held:
            self.finish(record, score)

    async def decide(self) -> None:
        """Probe the backend about the held records: release them, or stop the run.

        Raises:
            _BackendDown: The probe was not answered either.
        """
        async with self.probing:
            if not self.held:  # an answer released them meanwhile
                return
            first = self.held[0][1]
            probe = _as_score(
                (
                    await self.judge.abatch(
                        [
                            {
                                "question": f"connectivity probe {os.urandom(8).hex()}",
                                "response": "ok",
                            }
                        ],
                        config={"max_concurrency": 1},
                        return_exceptions=True,
                    )
                )[0]
            )
            if not _answered(probe):
                raise _BackendDown(first, probe)
            self.release()

    def finish(self, record: InputRecord, score: ThinkingScore) -> None:
        """Write one result and count it."""
        self.out.append(record.id, score, record.fingerprint)
        if score.ok:
            self.summary.scored += 1
        else:
            self.summary.failed += 1
        cached = score.metadata.get("cache")
        if cached == "hit":
            self.summary.cache_hits += 1
        elif cached == "miss":
            self.summary.cache_misses += 1
        self.progress.update(failed=not score.ok)


def _as_score(result: ThinkingScore | BaseException) -> ThinkingScore:
    """A judge result; an exception (``raise_on_error`` judges) as a failed score."""
    if isinstance(result, ThinkingScore):
        return result
    return ThinkingScore.failure(result)


def _streams(judge: JudgeRunnable) -> bool:
    """Whether the judge's backend is an HTTP one, looking through Runnable wrappers."""
    runnable: object = judge
    for _ in range(_WRAPPERS_SEEN):
        backend = getattr(runnable, "backend", None)
        if backend is not None:
            return isinstance(backend, AsyncBackend)
        runnable = getattr(runnable, "bound", None)  # RunnableBinding, RunnableRetry
        if runnable is None:
            break
    return False


def _stopped(down: _BackendDown) -> str:
    """``BatchSummary.aborted`` for a failure that ends the run."""
    score = down.score
    if score.error_kind == FailureKind.CONNECTION:
        text = f"the backend is unreachable: {score.error}"
    else:
        text = f"the backend cannot be used: {score.error}"
    if down.probe is not None:
        text += f"; a probe request failed too: {down.probe.error}"
    return text


async def ajudge_records(
    judge: JudgeRunnable,
    records: Iterable[InputRecord],
    output: str | os.PathLike[str],
    *,
    max_concurrency: int = 64,
    chunk_size: int | None = None,
    retry_failed: bool = False,
    progress: Progress | None = None,
    total: int | None = None,
) -> BatchSummary:
    """Judge a stream of records into a result file, resuming what is there.

    See the module docstring and :mod:`judge.batch.store` for the rules.

    Args:
        judge: The judge to use (a ThinkingRewardJudge, or any Runnable from a judge input
            to a ThinkingScore).
        records: The input records (e.g. :func:`~judge.batch.formats.read_records`);
            consumed lazily, a few times ``max_concurrency`` of them held at once.
        output: The JSON Lines result file; created, or resumed when it exists.
        max_concurrency: Most judgments in flight at once.
        chunk_size: Inputs per judge call. Default: 1 for an HTTP backend
            (:class:`~backends.base.AsyncBackend`), ``max_concurrency`` otherwise.
        retry_failed: Judge again the ids whose existing result is a failure.
        progress: Where to show progress (see :func:`~judge.batch.progress.make_progress`);
            none by default.
        total: How many records ``records`` holds, if known (for the progress ETA).

    Returns:
        What the run did; :attr:`BatchSummary.exit_status` sums it up.

    Raises:
        BatchError: The output file is not a result file, or is being written by
            another run.
        ValueError: ``max_concurrency`` or ``chunk_size`` is less than 1.
        OSError: Writing the output failed (e.g. the disk is full); what was written
            stays, and a re-run resumes from it.
    """
    if max_concurrency < 1 or (chunk_size is not None and chunk_size < 1):
        raise ValueError("max_concurrency and chunk_size must be at least 1")
    streaming = _streams(judge)
    chunk = min(chunk_size or (1 if streaming else max_concurrency), max_concurrency)
    # A batch-native engine runs one batch at a time: a second worker prepares the next.
    workers = max(max_concurrency // chunk, 1 if streaming else 2)
    started = time.monotonic()
    out = ResultFile(Path(output))
    summary = BatchSummary(output=Path(output))
    progress = progress or Progress()
    try:
        done = out.done(retry_failed=retry_failed)
        progress.start(None if total is None else max(0, total - done))
        run = _Run(judge, out, summary, progress, retry_failed=retry_failed, chunk_size=chunk)
        await _pipeline(run, records, workers, queue_size=max(max_concurrency, chunk))
        await run.decide()  # records held at the end: theirs, or the backend's?
        if out.superseded:
            out.compact()
            summary.compacted = True
    except _BackendDown as exc:
        summary.aborted = _stopped(exc)
        summary.aborted_kind = exc.score.error_kind
    finally:
        summary.elapsed_s = time.monotonic() - started
        progress.close()
        out.close()
    return summary


async def _pipeline(
    run: _Run, records: Iterable[InputRecord], workers: int, *, queue_size: int
) -> None:
    """Run the reader and the workers until all is judged, or one of them fails."""
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=queue_size)

    async def produce() -> None:
        await run.produce(records, queue)
        for _ in range(workers):
            await queue.put(_END)

    tasks = [asyncio.ensure_future(produce())]
    tasks += [asyncio.ensure_future(run.work(queue)) for _ in range(workers)]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    errors = [t.exception() for t in tasks if t.done() and not t.cancelled() and t.exception()]
    if errors:
        raise errors[0]  # type: ignore[misc]


async def arun_batch(
    judge: JudgeRunnable,
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    *,
    input_format: InputFormat | None = None,
    max_concurrency: int = 64,
    chunk_size: int | None = None,
    retry_failed: bool = False,
    progress: ProgressMode | Progress = "off",
    image_root: str | os.PathLike[str] | None = None,
) -> BatchSummary:
    """Judge every record of an input file into a JSON Lines result file (async).

    See :mod:`judge.batch` for the formats, resume rules and exit statuses.

    Args:
        judge: The judge to use.
        input_path: JSON Lines, CSV or Parquet input.
        output_path: The result file; created, or resumed when it exists.
        input_format: The input's format; None: from its extension.
        max_concurrency: Most judgments in flight at once.
        chunk_size: Inputs per judge call (see :func:`ajudge_records`).
        retry_failed: Judge again the ids whose existing result is a failure.
        progress: A display mode for :func:`~judge.batch.progress.make_progress` (on
            standard error), or a :class:`~judge.batch.progress.Progress`.
        image_root: The folder relative image paths in the data are read from (the
            judge's own ``image_root`` decides which files may be read); None: the input
            file's folder.

    Returns:
        What the run did.

    Raises:
        BatchError: The input or output file is unusable (see
            :func:`~judge.batch.formats.read_records` and :func:`ajudge_records`), or both
            are the same file.
    """
    input_path, output_path = Path(input_path), Path(output_path)
    if output_path.exists() and input_path.exists() and output_path.samefile(input_path):
        raise BatchError(f"the output {os.fspath(output_path)!r} is the input file")
    records = read_records(input_path, input_format, image_root=image_root)
    display = progress if isinstance(progress, Progress) else make_progress(progress)
    total = None
    if display.shows and stat.S_ISREG(input_path.stat().st_mode):
        total = count_records(input_path, input_format)
    return await ajudge_records(
        judge,
        records,
        output_path,
        max_concurrency=max_concurrency,
        chunk_size=chunk_size,
        retry_failed=retry_failed,
        progress=display,
        total=total,
    )


def run_batch(
    judge: JudgeRunnable,
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    **kwargs: Any,
) -> BatchSummary:
    """Judge every record of an input file into a result file (see :func:`arun_batch`).

    Runs on a fresh event loop: in this thread when none is running here, else in a
    worker thread (so it also works from a notebook).
    """
    coroutine = arun_batch(judge, input_path, output_path, **kwargs)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="thinking-judge") as pool:
        return pool.submit(asyncio.run, coroutine).result()


__all__ = ["BatchSummary", "ajudge_records", "arun_batch", "run_batch"]

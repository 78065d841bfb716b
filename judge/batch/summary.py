"""What a ``thinking-judge batch`` run did: :class:`BatchSummary`, its counts and exit status.

Every record read is accounted for: unless the run stopped, ``scored + failed + skipped +
duplicates == records``, and :meth:`BatchSummary.describe` (the command's last line) says
how many records were read and what became of each.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from judge.failures import ExitStatus, FailureKind


@dataclass(slots=True)
class BatchSummary:
    """What a batch run did.

    Attributes:
        output: The result file.
        records: Input records read (blank lines not counted; an unreadable stretch of a
            file is one record). Unless the run stopped, ``scored + failed + skipped +
            duplicates`` is ``records``: every record is accounted for.
        scored: Records judged in this run with a score.
        failed: Records judged (or found unusable) in this run without a score.
        skipped: Records whose id already had a result in the output (not judged again).
        skipped_failed: Of ``skipped``, those whose result is a failure (kept because
            ``retry_failed`` was off).
        changed: Records whose id had a result for different content (another question,
            response or images): judged again, counted in ``scored`` or ``failed``.
        unverified: Of ``skipped``, those whose result has no fingerprint (written before
            fingerprints were kept): not checked for changes.
        duplicates: Records whose id appeared earlier in the input (not judged).
        duplicate_examples: ``(id, index)`` of the first few duplicates.
        compacted: Whether the output was rewritten with one line per id.
        aborted: Why the run stopped early (the backend cannot be used), or None.
        aborted_kind: The failure kind that stopped it (one of
            :data:`judge.failures.ENDS_RUN`), or None.
        elapsed_s: Wall time of the run.
        cache_hits: Judgments of this run answered from the judge's cache.
        cache_misses: Judgments of this run looked up in the cache and not found.
    """

    output: Path
    records: int = 0
    scored: int = 0
    failed: int = 0
    skipped: int = 0
    skipped_failed: int = 0
    changed: int = 0
    unverified: int = 0
    duplicates: int = 0
    duplicate_examples: list[tuple[str | int, int]] = field(default_factory=list)
    compacted: bool = False
    aborted: str | None = None
    aborted_kind: FailureKind | None = None
    elapsed_s: float = 0.0
    cache_hits: int = 0
    cache_misses: int = 0

    @property
    def rate(self) -> float:
        """Records judged per second in this run."""
        return (self.scored + self.failed) / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def not_judged(self) -> int:
        """Records read but not settled: in flight or waiting when the run stopped."""
        settled = self.scored + self.failed + self.skipped + self.duplicates
        return max(0, self.records - settled)

    @property
    def exit_status(self) -> ExitStatus:
        """The run's exit status (:class:`~judge.failures.ExitStatus`).

        OK: every input id has a score; FAILED: some failed or were repeated; UNAVAILABLE:
        the run was stopped because the backend cannot be used.
        """
        if self.aborted is not None:
            return ExitStatus.UNAVAILABLE
        if self.failed or self.skipped_failed or self.duplicates:
            return ExitStatus.FAILED
        return ExitStatus.OK

    def describe(self) -> str:
        """One human-readable line."""
        skipped = f"{self.skipped} skipped as done"
        if self.skipped_failed:
            skipped += f" ({self.skipped_failed} of them failures; --retry-failed retries them)"
        if self.unverified:
            skipped += (
                f" ({self.unverified} without a fingerprint, from an older result file: "
                "not checked for changes)"
            )
        parts = [f"{self.scored} scored", f"{self.failed} failed", skipped]
        if self.changed:
            parts.append(f"{self.changed} changed since judged (judged again)")
        if self.duplicates:
            shown = ", ".join(f"{i!r} (line {n})" for i, n in self.duplicate_examples[:5])
            parts.append(f"{self.duplicates} duplicate ids not judged: {shown}")
        if self.not_judged:
            parts.append(f"{self.not_judged} not judged (the run stopped)")
        if self.cache_hits or self.cache_misses:
            parts.append(f"cache: {self.cache_hits} hits, {self.cache_misses} misses")
        text = (
            f"{self.records} records read: {', '.join(parts)} "
            f"in {self.elapsed_s:.1f} s ({self.rate:.1f}/s); results in {self.output}"
        )
        if self.aborted is not None:
            text += f"; STOPPED: {self.aborted}; run the same command again to resume"
        return text


__all__ = ["BatchSummary"]

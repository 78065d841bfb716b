"""A backend's capabilities as the sans-I/O pipeline reads them, with no generate at all."""

from __future__ import annotations

from typing import Any

from backends.base import JudgeRequest


class Capabilities:
    """What the pipeline reads of a backend; it has no generate/agenerate at all."""

    name = "stub"
    supports_repetition_penalty = True
    supports_continuation = True

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "model": "m"}

    def sent_sampling(self, request: JudgeRequest) -> dict[str, Any]:
        return request.sampling()

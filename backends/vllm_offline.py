"""The in-process vLLM engine (``vllm.LLM``) as a backend.

A batch of judgments is ONE ``LLM.chat(conversations, sampling_params)`` call: vLLM
schedules the whole batch at once, with automatic prefix caching of the shared rubric.
vLLM is imported on first use, never at import time, with a message that names the
extra to install when it is missing.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import time
from collections.abc import Mapping, Sequence
from typing import Any

from backends._torch_compat import install_in_process_tree
from backends.base import Completion, JudgeRequest, Result, SyncBackend, TokenLogprob
from backends.errors import (
    BackendContextLengthError,
    BackendError,
    BackendUnavailableError,
    says_context_length,
)

INSTALL_HINT = (
    "install vLLM: pip install 'thinking-reward-judge[vllm]' on a machine with an NVIDIA GPU, "
    "or 'thinking-reward-judge[cpu]' on one without"
)


def import_vllm() -> Any:
    """Import vllm, or raise BackendUnavailableError saying which extra to install."""
    # A no-op unless pip mixed torch builds; also in the processes vLLM starts from here
    # (engine core, registry subprocess): see backends._torch_compat.
    install_in_process_tree()
    try:
        return importlib.import_module("vllm")
    except ImportError as exc:
        raise BackendUnavailableError(
            f"vLLM cannot be imported ({exc}); {INSTALL_HINT}", backend="vllm-offline"
        ) from exc


class VLLMOfflineBackend(SyncBackend):
    """Runs judgments on an in-process ``vllm.LLM``.

    Args:
        model: A model hub id or a local folder.
        llm: An already constructed ``vllm.LLM`` to use instead of loading ``model``.
        served_model_name: The model name to report (defaults to ``model``).
        **engine_kwargs: Passed to ``vllm.LLM`` (e.g. ``max_model_len``, ``dtype``,
            ``limit_mm_per_prompt``, ``enforce_eager``, ``tensor_parallel_size``).

    Example:
        ```python
        backend = VLLMOfflineBackend("bunny127/SophiaVL-R1-Thinking-Reward-Model-3B",
                                     max_model_len=8192)
        judge = ThinkingRewardJudge(backend=backend)
        ```
    """

    name = "vllm-offline"
    supports_structured_outputs = True
    supports_continuation = True

    def __init__(
        self,
        model: str,
        *,
        llm: Any | None = None,
        served_model_name: str | None = None,
        **engine_kwargs: Any,
    ) -> None:
        super().__init__()
        self.model_path = model
        self.model = served_model_name or model
        self.engine_kwargs = engine_kwargs
        self._llm = llm
        self._vllm_module: Any = None

    @property
    def _vllm(self) -> Any:
        """The vllm module, imported once."""
        if self._vllm_module is None:
            self._vllm_module = import_vllm()
        return self._vllm_module

    @property
    def llm(self) -> Any:
        """The engine, loaded on first use.

        Raises:
            BackendUnavailableError: vLLM is missing or the model cannot be loaded.
        """
        if self._llm is None:
            self._llm = self._load()
        return self._llm

    def load(self) -> VLLMOfflineBackend:
        """Load the engine now rather than on the first batch; returns self."""
        _ = self.llm
        return self

    def _load(self) -> Any:
        vllm = self._vllm
        try:
            return vllm.LLM(model=self.model_path, **self.engine_kwargs)
        except Exception as exc:  # vLLM raises many kinds; all mean "cannot load"
            raise BackendUnavailableError(
                f"cannot load model {self.model_path!r} in vLLM: {_first_line(exc)}",
                backend=self.name,
            ) from exc

    def generate(
        self, requests: Sequence[JudgeRequest], *, max_concurrency: int | None = None
    ) -> list[Result]:
        """Run the batch as one ``LLM.chat`` call; one result per request, in order.

        Continuations (``continue_final_message``) and new turns need different chat
        template flags, so a batch that mixes them is two calls.
        ``max_concurrency`` does not apply: the engine schedules the batch itself.
        """
        groups: dict[bool, list[int]] = {}
        for index, request in enumerate(requests):
            groups.setdefault(request.continue_final_message, []).append(index)
        if len(groups) <= 1:
            return self._chat(requests)
        results: list[Result | None] = [None] * len(requests)
        for indices in groups.values():
            for index, result in zip(
                indices, self._chat([requests[i] for i in indices]), strict=True
            ):
                results[index] = result
        return results  # type: ignore[return-value]  # every slot is filled

    def _chat(self, requests: Sequence[JudgeRequest]) -> list[Result]:
        """One ``LLM.chat`` call for requests that share ``continue_final_message``."""
        if not requests:
            return []
        try:
            llm = self.llm
            params = [self._sampling_params(r) for r in requests]
        except BackendError as exc:
            return [exc] * len(requests)
        continuing = requests[0].continue_final_message
        start = time.perf_counter()
        try:
            outputs = llm.chat(
                [r.messages for r in requests],
                params,
                use_tqdm=False,
                add_generation_prompt=not continuing,
                continue_final_message=continuing,
            )
        except Exception as exc:
            if len(requests) == 1:
                message = f"vLLM failed: {_first_line(exc)}"
                if says_context_length(str(exc)):
                    # status 400: what vLLM's server answers for the same engine error
                    return [BackendContextLengthError(message, status=400, backend=self.name)]
                return [BackendError(message, backend=self.name)]
            # One bad request fails the whole call: run each alone to isolate it.
            return [result for request in requests for result in self._chat([request])]
        latency = time.perf_counter() - start
        return [self._completion(output, latency) for output in outputs]

    def _sampling_params(self, request: JudgeRequest) -> Any:
        vllm = self._vllm
        fields = _field_names(vllm.SamplingParams)
        kwargs: dict[str, Any] = {
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
        }
        if request.repetition_penalty is not None:
            kwargs["repetition_penalty"] = request.repetition_penalty
        if request.top_logprobs is not None:
            kwargs["logprobs"] = request.top_logprobs
        for key, value in request.extra.items():
            if key == "structured_outputs" and key not in fields and "guided_decoding" in fields:
                # vLLM < 0.10.2 names it guided_decoding (GuidedDecodingParams).
                sampling = importlib.import_module("vllm.sampling_params")
                kwargs["guided_decoding"] = sampling.GuidedDecodingParams(**value)
                continue
            if key == "structured_outputs":
                value = _structured_outputs(value)
            elif key not in fields:
                raise BackendError(
                    f"vllm.SamplingParams has no field {key!r}; refusing to drop it silently",
                    backend=self.name,
                )
            kwargs[key] = value
        return vllm.SamplingParams(**kwargs)

    def _completion(self, output: Any, latency: float) -> Completion:
        choice = output.outputs[0]
        return Completion(
            text=choice.text,
            finish_reason=choice.finish_reason,
            prompt_tokens=len(output.prompt_token_ids or ()),
            completion_tokens=len(choice.token_ids),
            logprobs=_logprobs(choice) if choice.logprobs else None,
            model=self.model,
            latency_s=latency,
        )

    def describe(self) -> dict[str, Any]:
        """Backend, model and, once loaded, the vLLM version."""
        info = super().describe()
        if self._vllm_module is not None:
            info["vllm_version"] = getattr(self._vllm_module, "__version__", None)
        return info

    def close(self) -> None:
        """Drop the engine (vLLM frees its memory when the object goes away)."""
        self._llm = None


@functools.lru_cache(maxsize=4)
def _field_names(cls: type) -> frozenset[str]:
    """Field names of a msgspec Struct (vLLM >= 0.6) or a dataclass."""
    names = getattr(cls, "__struct_fields__", None)
    if names is None:
        names = tuple(f.name for f in dataclasses.fields(cls))
    return frozenset(names)


def _structured_outputs(value: Any) -> Any:
    if isinstance(value, Mapping):
        sampling = importlib.import_module("vllm.sampling_params")
        return sampling.StructuredOutputsParams(**value)
    return value


def _logprobs(choice: Any) -> tuple[TokenLogprob, ...]:
    tokens = []
    for token_id, position in zip(choice.token_ids, choice.logprobs, strict=False):
        chosen = position.get(token_id)
        ranked = sorted(position.values(), key=lambda lp: -lp.logprob)
        tokens.append(
            TokenLogprob(
                token=(chosen.decoded_token or "") if chosen else "",
                logprob=chosen.logprob if chosen else float("-inf"),
                top=tuple((lp.decoded_token or "", lp.logprob) for lp in ranked),
            )
        )
    return tuple(tokens)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300]}" if text else type(exc).__name__


__all__ = ["VLLMOfflineBackend", "import_vllm"]

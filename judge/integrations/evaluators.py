"""The judge as a LangSmith / LangChain evaluator.

Three shapes, one mapping underneath:

* :class:`ThinkingRunEvaluator`, a LangSmith ``RunEvaluator`` (``evaluate_run`` /
  ``aevaluate_run``), from ``judge.as_langsmith_evaluator()``: returns an
  ``EvaluationResult`` with ``key="thinking_reward"``, the score, a comment and a
  continuous 0..1 ``feedback_config``.
* an openevals-style function ``(*, inputs, outputs, reference_outputs=None,
  attachments=None, **kwargs) -> {"key", "score", "comment", "metadata"}``, sync or
  async, from ``judge.as_evaluator()`` (:func:`create_thinking_evaluator`,
  :func:`create_async_thinking_evaluator`): usable in ``langsmith.evaluate`` /
  ``langsmith.aevaluate``, in a ``@pytest.mark.langsmith`` test (where it logs its
  feedback, as openevals' evaluators do) and wherever a reflection loop wants a score
  and a non-empty comment.
* langchain-classic's ``StringEvaluator`` (``evaluate_strings`` /
  ``aevaluate_strings``), from ``judge.as_string_evaluator()``, when
  ``langchain-classic`` is installed (:class:`ThinkingStringEvaluator`, imported lazily).

**Input evaluation.** What the judge reads is found in the example and the run by
:func:`prepare_judge_input`: the question is ``inputs["question"]``, else the last user
message of ``inputs["messages"]``, else the only string input; the response is
``outputs["response"]``, else ``outputs["output"]``, else the last AI message of
``outputs["messages"]``, else the only string or message output (a message's reasoning,
kept apart by reasoning parsers as ``reasoning_content`` or reasoning blocks, is put
back as ``<think>…</think>``); images are ``inputs["image"]`` / ``inputs["images"]``,
else the example's image attachments. Give ``prepare=`` (called with the same keyword
arguments, returning a :class:`~judge.types.JudgeInput`) to map it your own way, as
LangChain's ``prepare_data`` does.

**Failures.** A judgment that failed (the model did not answer with a score, the
backend failed, the input was unusable) is never reported as a score: the result has
``score=None``, a comment that starts with ``"evaluation error"`` and says why, the
error and its type in the metadata, and ``extra={"error": True}`` (what LangSmith
itself records for an evaluator that failed). The ``StringEvaluator`` interface has no
error shape, so there the typed error is raised.

**The comment.** The model gives only a number, so the comment states the score, its
band in the model card's words and the rubric the model was trained on, e.g.
``"0.3/1: partial correctness or minor errors (rubric: logical soundness, correct
reasoning, error identification, language consistency, redundancy)"``.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from uuid import UUID

from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGeneration, Generation
from langchain_core.runnables import RunnableConfig
from langsmith.evaluation.evaluator import EvaluationResult, RunEvaluator
from langsmith.run_helpers import get_tracing_context, tracing_context

from backends.base import content_text
from judge.errors import InputError, ThinkingJudgeError
from judge.types import JudgeInput, ThinkingScore

if TYPE_CHECKING:
    from langsmith.schemas import Example, Run

    from judge.runnable import ThinkingRewardJudge

EVALUATION_KEY = "thinking_reward"
"""The feedback key the evaluators report under by default."""

RUBRIC: tuple[str, ...] = (
    "logical soundness",
    "correct reasoning",
    "error identification",
    "language consistency",
    "redundancy",
)
"""The criteria the model was trained to judge the thinking on (its model card)."""

FEEDBACK_CONFIG: dict[str, Any] = {"type": "continuous", "min": 0, "max": 1}
"""LangSmith's feedback configuration for the score: continuous, in [0, 1]."""

_IMAGE_KEYS = ("image", "images")
_MAX_RAW = 200


Prepare = Callable[..., JudgeInput]
"""``prepare(*, inputs, outputs, reference_outputs, attachments) -> JudgeInput``.

Maps an example and a run's outputs to the judge's input; :func:`prepare_judge_input`
is the default (see the module documentation).
"""


# --------------------------------------------------------------------------- reading text


def _reasoning(content: Any, extra: Mapping[str, Any]) -> str:
    """Reasoning a parser kept apart from the answer (vLLM, DeepSeek, Anthropic, v1 blocks)."""
    found = extra.get("reasoning_content") or extra.get("reasoning")
    if isinstance(found, str) and found:
        return found
    parts: list[str] = []
    if isinstance(content, list):
        for block in content:
            if not isinstance(block, Mapping):
                continue
            if block.get("type") == "reasoning":
                parts.append(str(block.get("reasoning") or ""))
            elif block.get("type") == "thinking":
                parts.append(str(block.get("thinking") or ""))
    return "".join(parts)


def _with_thinking(reasoning: str, text: str) -> str:
    if reasoning and "<think>" not in text:
        return f"<think>{reasoning}</think>{text}"
    return text


def _is_message_dict(value: Any) -> bool:
    return isinstance(value, Mapping) and "role" in value and "content" in value


def response_text(value: Any) -> str:
    """The text the judge reads from a response: a string, a message or a generation.

    A message's reasoning, when a reasoning parser kept it apart from the content
    (``additional_kwargs["reasoning_content"]``, reasoning or thinking blocks), is put
    back in front as ``<think>…</think>``: the judge scores the thinking.

    Args:
        value: A string, a LangChain message (``AIMessage``...), an OpenAI-style
            message dict, or a ``Generation`` / ``ChatGeneration``.

    Returns:
        The response text.

    Raises:
        InputError: ``value`` is none of these.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, BaseMessage):
        return _with_thinking(
            _reasoning(value.content, value.additional_kwargs), content_text(value.content)
        )
    if isinstance(value, ChatGeneration):
        return response_text(value.message)
    if isinstance(value, Generation):
        return value.text
    if _is_message_dict(value):
        return _with_thinking(_reasoning(value["content"], value), content_text(value["content"]))
    raise InputError(
        f"cannot read a response from a value of type {type(value).__name__}: give a "
        "string, a message or a generation"
    )


def _role(message: Any) -> str | None:
    if isinstance(message, BaseMessage):
        return {"human": "user", "ai": "assistant"}.get(message.type, message.type)
    if _is_message_dict(message):
        return str(message["role"])
    return None


def _last(messages: Any, role: str) -> Any:
    if isinstance(messages, Sequence) and not isinstance(messages, str):
        for message in reversed(messages):
            if _role(message) == role:
                return message
    return None


def _only_text(values: Mapping[str, Any], kinds: tuple[type, ...]) -> Any:
    found = [
        value
        for key, value in values.items()
        if key not in _IMAGE_KEYS and (isinstance(value, kinds) or _is_message_dict(value))
    ]
    return found[0] if len(found) == 1 else None


def question_text(inputs: Any) -> str:
    """The question in an example's (or a chain's) inputs.

    Args:
        inputs: A string; a list of messages (the last user message); or a mapping:
            its ``"question"``, else the last user message of its ``"messages"``, else
            its only string value (image fields aside).

    Returns:
        The question text.

    Raises:
        InputError: No question can be told apart.
    """
    if isinstance(inputs, str):
        return inputs
    if isinstance(inputs, Mapping) and not _is_message_dict(inputs):
        if inputs.get("question") is not None:
            question = inputs["question"]
            return question if isinstance(question, str) else response_text(question)
        message = _last(inputs.get("messages"), "user")
        if message is not None:
            return response_text(message)
        only = _only_text(inputs, (str, BaseMessage))
        if only is not None:
            return response_text(only)
        keys = ", ".join(map(repr, inputs)) or "none"
        raise InputError(
            f"cannot tell which input is the question (keys: {keys}); put it under "
            "'question' or pass prepare=..."
        )
    message = _last(inputs if isinstance(inputs, Sequence) else [inputs], "user")
    if message is not None:
        return response_text(message)
    raise InputError(
        f"cannot read a question from inputs of type {type(inputs).__name__}; pass prepare=..."
    )


def _response_of(outputs: Any) -> str:
    if outputs is None:
        raise InputError("the run has no outputs to judge")
    if isinstance(outputs, Mapping) and not _is_message_dict(outputs):
        for key in ("response", "output"):
            if outputs.get(key) is not None:
                value = outputs[key]
                if isinstance(value, Mapping) and not _is_message_dict(value):
                    return _response_of(value)
                return response_text(value)
        message = _last(outputs.get("messages"), "assistant")
        if message is not None:
            return response_text(message)
        only = _only_text(outputs, (str, BaseMessage, Generation))
        if only is not None:
            return response_text(only)
        keys = ", ".join(map(repr, outputs)) or "none"
        raise InputError(
            f"cannot tell which output is the response (keys: {keys}); put it under "
            "'response' or 'output', or pass prepare=..."
        )
    if isinstance(outputs, Sequence) and not isinstance(outputs, str):
        message = _last(outputs, "assistant")
        if message is None:
            raise InputError("the outputs hold no assistant message to judge")
        return response_text(message)
    return response_text(outputs)


def _attachment_image(name: str, attachment: Any) -> Any:
    """An image attachment's bytes (its reader, rewound) or its URL / data."""
    if not isinstance(attachment, Mapping):
        return attachment  # a URL or bytes given directly
    reader = attachment.get("reader")
    if reader is not None:
        reader.seek(0)
        data = reader.read()
        reader.seek(0)
        return bytes(data)
    for key in ("data", "presigned_url", "url"):
        if attachment.get(key):
            return attachment[key]
    raise InputError(f"the attachment {name!r} has neither a reader nor a URL")


def _is_image_attachment(attachment: Any) -> bool:
    if not isinstance(attachment, Mapping):
        return True
    return str(attachment.get("mime_type") or "").lower().startswith("image/")


def prepare_judge_input(
    *,
    inputs: Any,
    outputs: Any,
    reference_outputs: Any = None,
    attachments: Mapping[str, Any] | None = None,
) -> JudgeInput:
    """The default mapping from an example and a run's outputs to the judge's input.

    See the module documentation for where the question, the response and the images
    are looked for. ``reference_outputs`` are not used: the model judges the thinking,
    not agreement with a reference answer.

    Args:
        inputs: The example's (or the run's) inputs.
        outputs: The run's outputs.
        reference_outputs: The example's reference outputs (unused).
        attachments: The example's attachments (LangSmith ``AttachmentInfo`` mappings
            with a ``reader`` or a ``presigned_url``, openevals-style ``{"mime_type",
            "data"}`` mappings, or URLs / bytes); those whose MIME type is an image
            are sent when the inputs give no image.

    Returns:
        The judge input.

    Raises:
        InputError: The question or the response cannot be found.
    """
    item: dict[str, Any] = {"question": question_text(inputs), "response": _response_of(outputs)}
    if isinstance(inputs, Mapping) and any(inputs.get(k) is not None for k in _IMAGE_KEYS):
        item.update({k: inputs[k] for k in _IMAGE_KEYS if inputs.get(k) is not None})
    elif attachments:
        images = [
            _attachment_image(name, value)
            for name, value in attachments.items()
            if _is_image_attachment(value)
        ]
        if len(images) == 1:
            item["image"] = images[0]
        elif images:
            item["images"] = images
    return item  # type: ignore[return-value]


# --------------------------------------------------------------------------- the verdict


def _band(value: float) -> str:
    """The model card's words for a score."""
    if value <= 0.05:
        return "completely flawed reasoning"
    if value >= 0.95:
        return "perfectly sound reasoning"
    return "partial correctness or minor errors"


def score_comment(score: float, *, expected_from: float | None = None) -> str:
    """The comment for a score: the value, its band and the rubric.

    Args:
        score: The reported score in [0, 1].
        expected_from: The model's own answer, when ``score`` is the expected score.

    Returns:
        E.g. ``"0.3/1: partial correctness or minor errors (rubric: logical
        soundness, correct reasoning, error identification, language consistency,
        redundancy)"``.
    """
    shown = f"{score:g}" if expected_from is None else f"{score:.3g}"
    how = (
        "" if expected_from is None else f" (expected score; the model answered {expected_from:g})"
    )
    return f"{shown}/1{how}: {_band(score)} (rubric: {', '.join(RUBRIC)})"


@dataclass(frozen=True, slots=True)
class Verdict:
    """What an evaluator reports for one judgment, whatever its shape.

    Attributes:
        key: The feedback key.
        score: The score, or None when the judgment failed.
        comment: Never empty: the score's band and rubric, or why there is no score.
        metadata: The judgment's details (no prompt, no image).
        error: Whether this is an evaluation error.
    """

    key: str
    score: float | None
    comment: str
    metadata: dict[str, Any]
    error: bool

    def as_evaluation_result(self, source_run_id: UUID | None = None) -> EvaluationResult:
        """As a LangSmith ``EvaluationResult``."""
        return EvaluationResult(
            key=self.key,
            score=self.score,
            comment=self.comment,
            metadata=self.metadata,
            feedback_config=FEEDBACK_CONFIG,
            source_run_id=source_run_id,
            extra={"error": True} if self.error else None,
        )

    def as_dict(self) -> dict[str, Any]:
        """As an openevals ``EvaluatorResult`` (``extra`` added on an error)."""
        result: dict[str, Any] = {
            "key": self.key,
            "score": self.score,
            "comment": self.comment,
            "metadata": self.metadata,
        }
        if self.error:
            result["extra"] = {"error": True}
        return result


def verdict(
    result: ThinkingScore | ThinkingJudgeError,
    *,
    key: str = EVALUATION_KEY,
    use_expected_score: bool = True,
) -> Verdict:
    """Turn a judgment (or the error that prevented one) into what evaluators report.

    Args:
        result: The judge's ``ThinkingScore``, or the error raised before or instead
            of one.
        key: The feedback key.
        use_expected_score: Report the expected score when the judge computed one
            (``ThinkingRewardJudge(expected_score=True)``), else the model's answer.

    Returns:
        The verdict; ``score`` is None exactly when the judgment failed.
    """
    if isinstance(result, ThinkingJudgeError):
        error, error_type, details = str(result), type(result).__name__, {}
    elif result.score is None:
        error, error_type = str(result.error), result.error_type or "JudgmentError"
        details = _details(result)
    else:
        details = _details(result)
        if use_expected_score and result.expected_score is not None:
            value = result.expected_score
            comment = score_comment(value, expected_from=result.score)
        else:
            value, comment = result.score, score_comment(result.score)
        return Verdict(key, value, comment, details, error=False)
    details.update(error=error, error_type=error_type)
    comment = f"evaluation error, no score: {error_type}: {error}"
    return Verdict(key, None, comment, details, error=True)


def _details(score: ThinkingScore) -> dict[str, Any]:
    raw = score.raw if score.raw is None or len(score.raw) <= _MAX_RAW else score.raw[:_MAX_RAW]
    details = {
        "score": score.score,
        "expected_score": score.expected_score,
        "raw": raw,
        "model": score.model,
        "backend": score.backend,
        "prompt_sha256": score.prompt_sha256,
        "latency_s": score.latency_s,
    }
    return {k: v for k, v in details.items() if v is not None}


# --------------------------------------------------------------------------- evaluators


@dataclass(frozen=True, slots=True)
class _Evaluation:
    """The pure half of every evaluator: input in, verdict out."""

    key: str
    prepare: Prepare
    use_expected_score: bool

    def item(
        self, inputs: Any, outputs: Any, reference_outputs: Any, attachments: Any
    ) -> JudgeInput | InputError:
        try:
            return self.prepare(
                inputs=inputs,
                outputs=outputs,
                reference_outputs=reference_outputs,
                attachments=attachments,
            )
        except InputError as exc:
            return exc

    def verdict(self, result: ThinkingScore | ThinkingJudgeError) -> Verdict:
        return verdict(result, key=self.key, use_expected_score=self.use_expected_score)


def _evaluation(key: str, prepare: Prepare | None, use_expected: bool) -> _Evaluation:
    if not key:
        raise ValueError("an evaluator needs a non-empty feedback key")
    return _Evaluation(key, prepare or prepare_judge_input, use_expected)


@contextlib.contextmanager
def keep_runs_local() -> Iterator[None]:
    """Keep LangChain runs off the network while LangSmith traces in "local" mode.

    ``langsmith.evaluate(..., upload_results=False)`` runs the target and the evaluators
    with tracing ``enabled="local"``, which langchain-core's callback manager takes for
    "on": its tracer would send every LangChain run made there (a chat model in the
    target, the judge in an evaluator) to LangSmith. Inside this context manager
    LangChain tracing is off in that mode; in any other mode it changes nothing. The
    evaluators here use it around the judge; wrap a LangChain target's body in it.
    """
    if get_tracing_context().get("enabled") != "local":
        yield
        return
    with tracing_context(enabled=False):
        yield


def _judge(
    judge: ThinkingRewardJudge, item: JudgeInput | InputError, config: RunnableConfig | None
) -> ThinkingScore | ThinkingJudgeError:
    if isinstance(item, InputError):
        return item
    try:
        with keep_runs_local():
            return judge.invoke(item, config)
    except ThinkingJudgeError as exc:  # a judge built with raise_on_error=True
        return exc


async def _ajudge(
    judge: ThinkingRewardJudge, item: JudgeInput | InputError, config: RunnableConfig | None
) -> ThinkingScore | ThinkingJudgeError:
    if isinstance(item, InputError):
        return item
    try:
        with keep_runs_local():
            return await judge.ainvoke(item, config)
    except ThinkingJudgeError as exc:
        return exc


class ThinkingRunEvaluator(RunEvaluator):
    """The judge as a LangSmith ``RunEvaluator``.

    Build it with ``judge.as_langsmith_evaluator()``. Each run is judged once; the
    result is an ``EvaluationResult`` under ``key`` with a continuous 0..1
    ``feedback_config``, or, when the judgment failed, one with ``score=None``, the
    reason in ``comment`` and ``extra={"error": True}``.

    Args:
        judge: The judge.
        key: The feedback key.
        prepare: Maps ``inputs`` (the example's, else the run's), ``outputs`` (the
            run's), ``reference_outputs`` and ``attachments`` (the example's) to the
            judge input; defaults to :func:`prepare_judge_input`.
        use_expected_score: Report the expected score when the judge computes one.

    Example:
        .. code-block:: python

            from langsmith import evaluate

            evaluate(target, data="my-dataset", evaluators=[judge.as_langsmith_evaluator()])
    """

    def __init__(
        self,
        judge: ThinkingRewardJudge,
        *,
        key: str = EVALUATION_KEY,
        prepare: Prepare | None = None,
        use_expected_score: bool = True,
    ) -> None:
        self.judge = judge
        self._evaluation = _evaluation(key, prepare, use_expected_score)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(key={self.key!r}, judge={self.judge!r})"

    @property
    def key(self) -> str:
        """The feedback key."""
        return self._evaluation.key

    @property
    def feedback_keys(self) -> list[str]:
        """The one feedback key this evaluator reports (LangSmith reads it on errors)."""
        return [self.key]

    def _item(self, run: Run, example: Example | None) -> JudgeInput | InputError:
        inputs = example.inputs if example is not None else run.inputs
        return self._evaluation.item(
            inputs,
            run.outputs,
            example.outputs if example is not None else None,
            example.attachments if example is not None else None,
        )

    @staticmethod
    def _config(evaluator_run_id: UUID | None) -> RunnableConfig | None:
        return None if evaluator_run_id is None else {"run_id": evaluator_run_id}

    def evaluate_run(
        self,
        run: Run,
        example: Example | None = None,
        evaluator_run_id: UUID | None = None,
    ) -> EvaluationResult:
        """Judge one run.

        Args:
            run: The run whose outputs hold the response.
            example: The dataset example (its inputs hold the question).
            evaluator_run_id: The id to give the judge's run (it becomes the
                result's ``source_run_id``).

        Returns:
            The evaluation result; ``score`` is None when the judgment failed.
        """
        result = _judge(self.judge, self._item(run, example), self._config(evaluator_run_id))
        return self._evaluation.verdict(result).as_evaluation_result(evaluator_run_id)

    async def aevaluate_run(
        self,
        run: Run,
        example: Example | None = None,
        evaluator_run_id: UUID | None = None,
    ) -> EvaluationResult:
        """Judge one run (async); as :meth:`evaluate_run`."""
        item = self._item(run, example)
        result = await _ajudge(self.judge, item, self._config(evaluator_run_id))
        return self._evaluation.verdict(result).as_evaluation_result(evaluator_run_id)


def _test_case_active() -> bool:
    """Whether this runs inside a ``@pytest.mark.langsmith`` test that tracks feedback."""
    try:
        from langsmith.testing._internal import _TEST_CASE
    except ImportError:  # a langsmith without pytest support
        return False
    return _TEST_CASE.get() is not None


@contextlib.contextmanager
def _test_feedback(key: str) -> Iterator[Callable[[dict[str, Any]], None]]:
    """Inside a ``@pytest.mark.langsmith`` test, trace the judgment as feedback and log it.

    As openevals' evaluators do; elsewhere it does nothing.
    """
    if not _test_case_active():
        yield lambda _result: None
        return
    from langsmith import testing

    def log(result: dict[str, Any]) -> None:
        testing.log_feedback(key=result["key"], score=result["score"], comment=result["comment"])

    with testing.trace_feedback(name=key):
        yield log


EvaluatorResult = dict[str, Any]
"""``{"key", "score", "comment", "metadata"}`` (and ``"extra"`` on an error)."""


def create_thinking_evaluator(
    judge: ThinkingRewardJudge,
    *,
    key: str = EVALUATION_KEY,
    prepare: Prepare | None = None,
    use_expected_score: bool = True,
) -> Callable[..., EvaluatorResult]:
    """An openevals-style evaluator function around the judge.

    Args:
        judge: The judge.
        key: The feedback key (also the function's ``__name__``, which LangSmith
            shows).
        prepare: As for :class:`ThinkingRunEvaluator`.
        use_expected_score: Report the expected score when the judge computes one.

    Returns:
        ``evaluator(*, inputs=None, outputs, reference_outputs=None, attachments=None,
        **kwargs) -> {"key", "score", "comment", "metadata"}``; on a failed judgment
        ``score`` is None, ``comment`` says why and ``extra={"error": True}`` is added.

    Example:
        .. code-block:: python

            evaluator = judge.as_evaluator()
            evaluator(inputs={"question": "What is 2+2?"},
                      outputs={"response": "<think>2+2=4</think><answer>4</answer>"})
            langsmith.evaluate(target, data=examples, evaluators=[evaluator])
    """
    evaluation = _evaluation(key, prepare, use_expected_score)

    def evaluator(
        *,
        inputs: Any = None,
        outputs: Any,
        reference_outputs: Any = None,
        attachments: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> EvaluatorResult:
        with _test_feedback(evaluation.key) as log:
            item = evaluation.item(inputs, outputs, reference_outputs, attachments)
            result = evaluation.verdict(_judge(judge, item, None)).as_dict()
            log(result)
        return result

    return _named(evaluator, evaluation.key)


def create_async_thinking_evaluator(
    judge: ThinkingRewardJudge,
    *,
    key: str = EVALUATION_KEY,
    prepare: Prepare | None = None,
    use_expected_score: bool = True,
) -> Callable[..., Coroutine[Any, Any, EvaluatorResult]]:
    """The async form of :func:`create_thinking_evaluator` (for ``langsmith.aevaluate``)."""
    evaluation = _evaluation(key, prepare, use_expected_score)

    async def evaluator(
        *,
        inputs: Any = None,
        outputs: Any,
        reference_outputs: Any = None,
        attachments: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> EvaluatorResult:
        with _test_feedback(evaluation.key) as log:
            item = evaluation.item(inputs, outputs, reference_outputs, attachments)
            result = evaluation.verdict(await _ajudge(judge, item, None)).as_dict()
            log(result)
        return result

    return _named(evaluator, evaluation.key)


def _named(function: Callable[..., Any], key: str) -> Callable[..., Any]:
    function.__name__ = key
    function.__qualname__ = key
    return function


# --------------------------------------------------------------------------- StringEvaluator


def create_string_evaluator(
    judge: ThinkingRewardJudge, *, key: str = EVALUATION_KEY, use_expected_score: bool = True
) -> Any:
    """The judge as langchain-classic's ``StringEvaluator`` (see :class:`ThinkingStringEvaluator`).

    Raises:
        ImportError: langchain-classic is not installed.
    """
    return _string_evaluator_class()(judge, key=key, use_expected_score=use_expected_score)


@functools.cache
def _string_evaluator_class() -> type:
    """Define ``ThinkingStringEvaluator`` on first use: langchain-classic is optional."""
    try:
        from langchain_classic.evaluation.schema import StringEvaluator
    except ImportError as exc:
        raise ImportError(
            "the StringEvaluator interface needs langchain-classic: "
            "pip install 'thinking-reward-judge[langchain]'"
        ) from exc

    class ThinkingStringEvaluator(StringEvaluator):
        """The judge as langchain-classic's ``StringEvaluator``.

        ``input`` is the question (required), ``prediction`` the response (a string,
        a message or a generation); ``reference`` is not used. Pass ``image=`` or
        ``images=`` as keyword arguments for a multimodal question. Returns
        ``{"score", "value", "reasoning"}`` (``value`` is the score's band). The
        interface has no error shape, so a failed judgment raises its typed error
        (:class:`~judge.errors.JudgmentError`, :class:`~judge.errors.BackendError`,
        :class:`~judge.errors.InputError`), never a score.
        """

        def __init__(
            self,
            judge: ThinkingRewardJudge,
            *,
            key: str = EVALUATION_KEY,
            use_expected_score: bool = True,
        ) -> None:
            self.judge = judge.model_copy(update={"raise_on_error": True})
            self._evaluation = _evaluation(key, None, use_expected_score)

        @property
        def evaluation_name(self) -> str:
            return self._evaluation.key

        @property
        def requires_input(self) -> bool:
            return True

        @property
        def requires_reference(self) -> bool:
            return False

        def _item(self, prediction: Any, input: Any, kwargs: Mapping[str, Any]) -> JudgeInput:
            item: dict[str, Any] = {
                "question": question_text(input),
                "response": response_text(prediction),
            }
            item.update({k: kwargs[k] for k in _IMAGE_KEYS if kwargs.get(k) is not None})
            return item  # type: ignore[return-value]

        def _result(self, score: ThinkingScore) -> dict[str, Any]:
            found = self._evaluation.verdict(score)
            assert found.score is not None  # the judge raises on a failed judgment
            return {
                "score": found.score,
                "value": _band(found.score),
                "reasoning": found.comment,
            }

        def _evaluate_strings(
            self,
            *,
            prediction: Any,
            reference: Any = None,
            input: Any = None,
            **kwargs: Any,
        ) -> dict[str, Any]:
            item = self._item(prediction, input, kwargs)
            with keep_runs_local():
                score = self.judge.invoke(item, {"callbacks": kwargs.get("callbacks")})
            return self._result(score)

        async def _aevaluate_strings(
            self,
            *,
            prediction: Any,
            reference: Any = None,
            input: Any = None,
            **kwargs: Any,
        ) -> dict[str, Any]:
            item = self._item(prediction, input, kwargs)
            with keep_runs_local():
                score = await self.judge.ainvoke(item, {"callbacks": kwargs.get("callbacks")})
            return self._result(score)

    ThinkingStringEvaluator.__module__ = __name__
    return ThinkingStringEvaluator


def __getattr__(name: str) -> Any:
    if name == "ThinkingStringEvaluator":
        return _string_evaluator_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "EVALUATION_KEY",
    "FEEDBACK_CONFIG",
    "RUBRIC",
    "Prepare",
    "ThinkingRunEvaluator",
    "Verdict",
    "create_async_thinking_evaluator",
    "create_string_evaluator",
    "create_thinking_evaluator",
    "keep_runs_local",
    "prepare_judge_input",
    "question_text",
    "response_text",
    "score_comment",
    "verdict",
]

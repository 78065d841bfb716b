"""The public API is pinned, and importing it pulls in no heavy ML stack."""

from __future__ import annotations

import subprocess
import sys

import pytest

import backends
import judge

EXPECTED_JUDGE = [
    "DEFAULT_MODEL",
    "EVALUATION_KEY",
    "SCORE_GRID",
    "TEMPLATE_VERSION",
    "BackendError",
    "BestOfN",
    "CacheError",
    "ConstraintError",
    "EasyR1Reward",
    "FailureKind",
    "GRPOReward",
    "GroupReward",
    "ImageError",
    "InputError",
    "JudgeInput",
    "JudgmentCache",
    "JudgmentError",
    "RankedResponse",
    "RewardStep",
    "ScoreParseError",
    "SyncGRPOReward",
    "ThinkingJudgeError",
    "ThinkingRerank",
    "ThinkingRewardJudge",
    "ThinkingRunEvaluator",
    "ThinkingScore",
    "TruncatedAnswerError",
    "TrustGRPO",
    "VerlReward",
    "__version__",
    "best_of_n",
    "create_async_thinking_evaluator",
    "create_thinking_evaluator",
    "parse_score",
    "render_messages",
    "render_prompt",
    "trust_weight",
]


def test_judge_all():
    assert sorted(judge.__all__) == sorted(EXPECTED_JUDGE)
    assert judge.__all__ == sorted(judge.__all__, key=lambda n: (not n.isupper(), n))
    for name in judge.__all__:
        assert hasattr(judge, name), name


EXPECTED_BACKENDS = [
    "REGISTRY",
    "AsyncBackend",
    "Backend",
    "BackendConnectionError",
    "BackendError",
    "BackendHTTPError",
    "BackendResponseError",
    "BackendTimeoutError",
    "BackendUnavailableError",
    "ChatModelBackend",
    "Completion",
    "FakeBackend",
    "JudgeRequest",
    "OpenAICompatibleBackend",
    "SyncBackend",
    "ThinkingJudgeError",
    "TokenLogprob",
    "VLLMOfflineBackend",
    "VLLMServerBackend",
    "backend_class",
]


def test_backends_all():
    assert sorted(backends.__all__) == sorted(EXPECTED_BACKENDS)
    assert backends.__all__ == sorted(backends.__all__, key=lambda n: (not n.isupper(), n))


def test_version_comes_from_the_package_metadata():
    from importlib.metadata import version

    assert judge.__version__ == version("thinking-reward-judge")


def test_both_packages_are_typed():
    from pathlib import Path

    for package in (judge, backends):
        assert (Path(package.__file__).parent / "py.typed").is_file(), package.__name__


def test_backends_all_resolve():
    # Each name resolves (lazily, for the backend classes) to the object of that name.
    for name in backends.__all__:
        value = getattr(backends, name)
        assert getattr(value, "__name__", name) == name, (name, value)
    assert backends.backend_class("vllm-server") is backends.VLLMServerBackend
    for name in (
        "VLLMServerBackend",
        "VLLMOfflineBackend",
        "OpenAICompatibleBackend",
        "ChatModelBackend",
        "FakeBackend",
    ):
        assert name in backends.__all__


def test_registry_names():
    assert backends.backend_class("fake").__name__ == "FakeBackend"
    assert backends.backend_class("chat-model").__name__ == "ChatModelBackend"
    with pytest.raises(KeyError, match="vllm-server"):
        backends.backend_class("nope")


def test_import_judge_is_light():
    code = (
        "import sys, judge, backends, judge.cli; "
        "from backends import VLLMOfflineBackend, VLLMServerBackend; "
        "heavy = [m for m in ('vllm', 'torch', 'transformers') if m in sys.modules]; "
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr

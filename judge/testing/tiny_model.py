"""A tiny Qwen2.5-VL built offline, for testing without the real model.

:func:`build_tiny_model` writes a model folder with the layout, special tokens, chat
template and processor settings of Qwen2.5-VL (the architecture of the SophiaVL-R1
Thinking Reward Model) but with random weights and about 2 MB on disk, so that the
real vLLM server, the offline engine and transformers can be exercised on a CPU
without downloading anything. Its answers are junk: tests of the score path use
constrained decoding or logprobs, tests of the failure path use the junk.

Everything is made locally: the byte-level BPE tokenizer is trained on a fixed
selection of the Python standard library's source files, so no hub or network is
needed. torch, transformers and tokenizers are imported only when a model is built.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import sysconfig
import tempfile
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from tokenizers import Tokenizer

__all__ = [
    "QWEN2_5_VL_CHAT_TEMPLATE",
    "TINY_MODEL_VERSION",
    "build_tiny_model",
]

TINY_MODEL_VERSION = 1
"""Bumped whenever the built folder changes; older folders are then rebuilt."""

_MARKER_FILE = "tiny-model.json"

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

# Qwen2's pre-tokenizer split: digits one per token, so "0.7" is "0", ".", "7".
_QWEN2_SPLIT_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# Qwen2.5(-VL)'s added tokens, in Qwen's order (ids follow the BPE vocabulary), and
# whether each one is special.
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

# Sizes. The embedding has room to spare past the tokenizer, as in the real model.
_VOCAB_SIZE = 2048
_BPE_VOCAB_SIZE = 1984
_PATCH_SIZE = 14
_TEMPORAL_PATCH_SIZE = 2
_MERGE_SIZE = 2
_MIN_PIXELS = 3136
_MAX_PIXELS = 12845056
_IMAGE_MEAN = [0.48145466, 0.4578275, 0.40821073]
_IMAGE_STD = [0.26862954, 0.26130258, 0.27577711]

# The tokenizer's training text: these standard-library modules, in this order, cut
# to _CORPUS_MAX_CHARS in all. Missing modules are skipped.
_CORPUS_MODULES = (
    "argparse.py",
    "calendar.py",
    "csv.py",
    "dataclasses.py",
    "difflib.py",
    "fractions.py",
    "json/decoder.py",
    "json/encoder.py",
    "random.py",
    "statistics.py",
    "string.py",
    "textwrap.py",
)
_CORPUS_MAX_CHARS = 600_000


def build_tiny_model(
    path: str | os.PathLike[str],
    *,
    seed: int = 0,
    overwrite: bool = False,
) -> pathlib.Path:
    """Build a tiny random-weight Qwen2.5-VL model folder, fully offline.

    The folder loads in vLLM (``--model PATH``, or ``vllm.LLM(model=PATH)``) and in
    transformers (``AutoModelForImageTextToText``, ``AutoProcessor``). It is built in
    a temporary sibling folder and renamed into place, so ``path`` never holds half a
    model; a marker file records the builder version and the seed.

    Args:
        path: Folder to create. If it already holds a model built by this version of
            the builder with the same seed, it is returned as it is.
        seed: Seed for the random weights (the tokenizer does not depend on it).
        overwrite: Replace whatever ``path`` holds.

    Returns:
        The absolute path of the model folder.

    Raises:
        FileExistsError: ``path`` exists, is not empty and is not this model, and
            ``overwrite`` is false.
    """
    target = pathlib.Path(path).expanduser().absolute()
    if not overwrite:
        if _is_built(target, seed):
            return target
        if target.exists() and not _is_empty_dir(target):
            raise FileExistsError(
                f"{target} exists and is not a tiny model built with seed {seed} by builder "
                f"version {TINY_MODEL_VERSION}; pass overwrite=True to replace it"
            )
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = pathlib.Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the model is not
    try:
        _write_model_folder(staging, seed)
        _move_into_place(staging, target, seed=seed, replace=overwrite)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _is_built(folder: pathlib.Path, seed: int) -> bool:
    """Tell whether ``folder`` holds a complete model from this builder and seed."""
    try:
        marker = json.loads((folder / _MARKER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(marker.get("version") == TINY_MODEL_VERSION and marker.get("seed") == seed)


def _is_empty_dir(folder: pathlib.Path) -> bool:
    return folder.is_dir() and not any(folder.iterdir())


def _move_into_place(
    staging: pathlib.Path, target: pathlib.Path, *, seed: int, replace: bool
) -> None:
    """Rename the finished ``staging`` folder to ``target``.

    An empty ``target`` folder is replaced by the rename itself; a full one only when
    ``replace`` is true. If another process finished the same model first, its
    folder is kept.
    """
    old: pathlib.Path | None = None
    if replace and target.exists() and not _is_empty_dir(target):
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


def _write_model_folder(folder: pathlib.Path, seed: int) -> None:
    """Write every file of the model into ``folder``, the marker file last."""
    from backends._torch_compat import install

    install()  # transformers imports torchvision for Qwen2.5-VL (a no-op on sound installs)
    tokenizer = _train_tokenizer()
    # every added token is in the vocabulary the tokenizer was trained with
    token_ids = cast(
        "dict[str, int]",
        {token: tokenizer.token_to_id(token) for token, _ in _QWEN_ADDED_TOKENS},
    )
    _save_tokenizer(tokenizer, folder)
    _save_weights(folder, token_ids, seed)
    _write_json(folder / "generation_config.json", _generation_config(token_ids))
    _write_json(folder / "preprocessor_config.json", _image_processor_config())
    _write_json(folder / "video_preprocessor_config.json", _video_processor_config())
    _write_json(folder / _MARKER_FILE, {"version": TINY_MODEL_VERSION, "seed": seed})


def _corpus() -> Iterator[str]:
    """Yield the tokenizer's training text, the same on every run of one Python."""
    stdlib = pathlib.Path(sysconfig.get_path("stdlib"))
    budget = _CORPUS_MAX_CHARS
    for name in _CORPUS_MODULES:
        try:
            text = (stdlib / name).read_text(encoding="utf-8")
        except OSError:
            continue
        yield text[:budget]
        budget -= len(text)
        if budget <= 0:
            return


def _train_tokenizer() -> Tokenizer:
    """Train a byte-level BPE on the corpus, then append Qwen's added tokens."""
    from tokenizers import AddedToken, pre_tokenizers
    from tokenizers.trainers import BpeTrainer

    tokenizer = _qwen2_bpe()
    trainer = BpeTrainer(
        vocab_size=_BPE_VOCAB_SIZE,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_corpus(), trainer=trainer)
    for token, special in _QWEN_ADDED_TOKENS:
        tokenizer.add_tokens([AddedToken(token, special=special, normalized=False)])
    return tokenizer


def _qwen2_bpe() -> Tokenizer:
    """Return an empty BPE tokenizer with Qwen2's normalizer, splitting and decoding."""
    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers
    from tokenizers.models import BPE

    byte_level = {"add_prefix_space": False, "trim_offsets": False, "use_regex": False}
    tokenizer = Tokenizer(BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_QWEN2_SPLIT_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(**byte_level),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel(**byte_level)
    return tokenizer


def _save_tokenizer(tokenizer: Tokenizer, folder: pathlib.Path) -> None:
    """Save ``tokenizer`` as transformers does, declared as a ``Qwen2Tokenizer``."""
    from transformers import PreTrainedTokenizerFast

    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=[t for t, special in _QWEN_ADDED_TOKENS[1:14] if special],
        model_max_length=131072,
        clean_up_tokenization_spaces=False,
        chat_template=QWEN2_5_VL_CHAT_TEMPLATE,
    )
    wrapped.save_pretrained(folder)
    config_file = folder / "tokenizer_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    config["tokenizer_class"] = "Qwen2Tokenizer"
    _write_json(config_file, config)


def _model_config(token_ids: Mapping[str, int]) -> dict[str, Any]:
    """Return the tiny model's ``config.json`` content, Qwen2.5-VL-3B in miniature."""
    hidden = 128
    return {
        "architectures": ["Qwen2_5_VLForConditionalGeneration"],
        "model_type": "qwen2_5_vl",
        "image_token_id": token_ids["<|image_pad|>"],
        "video_token_id": token_ids["<|video_pad|>"],
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

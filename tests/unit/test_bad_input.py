"""Bad input: a typed error for that one item, a clear message, and no lost work.

Every bad case is judged in a batch between good items; the bad one comes back as a
``ThinkingScore`` with ``score=None``, its error class and a message that says what is
wrong, and the good ones are scored. Odd but valid images (animated, CMYK, 16-bit,
palette with transparency, grey with alpha) are accepted and converted.
"""

from __future__ import annotations

import base64
import io
import re
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from backends.base import JudgeRequest
from judge import ThinkingRewardJudge, ThinkingScore
from judge.errors import ImageError, InputError
from judge.testing.fake import FakeBackend

GOOD = {"question": "What is 2+2?", "response": "<think>2+2=4</think><answer>4</answer>"}
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/]{40,}")


# --------------------------------------------------------------------- images


def _png(img: Image.Image | None = None, **save: Any) -> bytes:
    buffer = io.BytesIO()
    (img or Image.new("RGB", (32, 24), (200, 30, 30))).save(buffer, "PNG", **save)
    return buffer.getvalue()


def _jpeg(size: tuple[int, int] = (64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise(size, 64).convert("RGB").save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_bomb(width: int = 30_000, height: int = 30_000) -> bytes:
    """A well-formed PNG header that claims 900 megapixels over a few bytes of data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grey
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _chunk(b"IEND", b"")
    )


def _corrupt_png() -> bytes:
    """A PNG whose header is fine and whose compressed pixels are garbage."""
    noise = Image.effect_noise((64, 64), 64)
    data = bytearray(_png(noise))
    start = data.index(b"IDAT") + 4
    data[start + 2 : start + 40] = bytes(range(38))
    # keep the chunk's CRC right, so that only the pixel data is wrong
    length = struct.unpack(">I", data[start - 8 : start - 4])[0]
    body = bytes(data[start - 4 : start + length])
    data[start + length : start + length + 4] = struct.pack(">I", zlib.crc32(body))
    return bytes(data)


def _truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _data_url(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def _closed_pil() -> Image.Image:
    img = Image.open(io.BytesIO(_png()))
    img.close()
    return img


def _lazy_truncated_pil() -> Image.Image:
    return Image.open(io.BytesIO(_truncated(_png(Image.effect_noise((96, 96), 64)))))


def _pcx() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "PCX")
    return buffer.getvalue()


# ---------------------------------------------------------------- the table

# (id, a function of a temporary folder that returns the bad item, error class, message)
Case = tuple[str, Callable[[Path], Any], type[Exception], str]


def _file(name: str, data: bytes | None) -> Callable[[Path], Any]:
    """An item whose image is a file written with ``data`` (None: not written)."""

    def make(tmp_path: Path) -> dict[str, Any]:
        path = tmp_path / name
        if data is not None:
            path.write_bytes(data)
        return {**GOOD, "image": str(path)}

    return make


def _item(**fields: Any) -> Callable[[Path], Any]:
    return lambda _tmp_path: {**GOOD, **fields}


CASES: list[Case] = [
    # the input itself
    ("not-a-mapping", lambda _: "What is 2+2?", InputError, "a judge input is a mapping"),
    ("none-input", lambda _: None, InputError, "a judge input is a mapping"),
    (
        "missing-question",
        lambda _: {"response": "r"},
        InputError,
        "'question' must be a string, got nothing",
    ),
    ("none-response", _item(response=None), InputError, "'response' must be a string, got nothing"),
    (
        "bytes-question",
        _item(question=b"\xff\xfe not UTF-8"),
        InputError,
        "'question' must be a string, got bytes (decode it",
    ),
    ("int-response", _item(response=4), InputError, "'response' must be a string, got int"),
    ("empty-question", _item(question=""), InputError, "'question' is empty"),
    ("blank-question", _item(question=" \u3000\n"), InputError, "'question' is empty"),
    ("empty-response", _item(response=""), InputError, "'response' is empty"),
    ("blank-response", _item(response=" \n\t "), InputError, "'response' is empty"),
    ("surrogate-question", _item(question="2+2\ud800?"), InputError, "not valid Unicode"),
    (
        "surrogate-response",
        _item(response="<answer>\udfff</answer>"),
        InputError,
        "not valid Unicode",
    ),
    (
        "image-and-images",
        _item(image=_png(), images=[_png()]),
        InputError,
        "either 'image' or 'images'",
    ),
    # image files
    ("missing-file", _file("nope.png", None), ImageError, "image file not found"),
    ("directory", lambda tmp: {**GOOD, "image": tmp}, ImageError, "image path is a directory"),
    ("empty-file", _file("empty.png", b""), ImageError, "image is empty"),
    (
        "not-an-image",
        _file("notes.png", b"these are notes\n" * 20),
        ImageError,
        "not an image in a supported format",
    ),
    (
        "corrupt-png",
        _file("corrupt.png", _corrupt_png()),
        ImageError,
        "cannot be decoded, truncated or corrupt",
    ),
    (
        "truncated-png",
        _file("cut.png", _truncated(_png(Image.effect_noise((96, 96), 64)))),
        ImageError,
        "truncated",
    ),
    ("truncated-jpeg", _file("cut.jpg", _truncated(_jpeg((128, 96)))), ImageError, "truncated"),
    (
        "decompression-bomb",
        _file("bomb.png", _png_bomb()),
        ImageError,
        "too large to decode safely",
    ),
    (
        "format-not-allowed",
        _file("old.pcx", _pcx()),
        ImageError,
        "not an image in a supported format",
    ),
    (
        "surrogate-path",
        _item(image="charts/\ud800.png"),
        ImageError,
        "image path is not valid Unicode",
    ),
    ("nul-in-path", _item(image="chart\x00.png"), ImageError, "NUL character"),
    (
        "too-elongated",
        _file("strip.png", _png(Image.new("RGB", (1000, 4)))),
        ImageError,
        "takes at most a 200:1 aspect ratio",
    ),
    # bytes, PIL images, URLs
    (
        "truncated-bytes",
        _item(image=_truncated(_png(Image.effect_noise((96, 96), 64)))),
        ImageError,
        "truncated",
    ),
    ("bomb-bytes", _item(image=_png_bomb()), ImageError, "too large to decode safely"),
    ("closed-pil", lambda _: {**GOOD, "image": _closed_pil()}, ImageError, "closed image"),
    (
        "lazy-truncated-pil",
        lambda _: {**GOOD, "image": _lazy_truncated_pil()},
        ImageError,
        "truncated",
    ),
    ("unsupported-type", _item(image=42), ImageError, "unsupported image input"),
    ("none-in-images", _item(images=[_png(), None]), ImageError, "unsupported image input"),
    (
        "data-url-wrong-mime",
        _item(image=_data_url("image/png", _jpeg())),
        ImageError,
        "says image/png but holds image/jpeg",
    ),
    (
        "data-url-bad-base64",
        _item(image="data:image/png;base64,iVBORw0K@@@"),
        ImageError,
        "not valid base64",
    ),
    (
        "data-url-not-base64",
        _item(image="data:image/png,%89PNG"),
        ImageError,
        "not a base64 image data URL",
    ),
    ("ftp-url", _item(image="ftp://files.example.com/a.png"), ImageError, "unsupported URL scheme"),
    ("file-url", _item(image="file:///etc/passwd"), ImageError, "unsupported URL scheme"),
    ("url-without-host", _item(image="https:///a.png"), ImageError, "image URL has no host"),
    (
        "surrogate-url",
        _item(image="https://example.com/\udc80.png"),
        ImageError,
        "image URL is not valid Unicode",
    ),
]


def _scripted(requests: list[JudgeRequest]) -> FakeBackend:
    def reply(request: JudgeRequest) -> str:
        requests.append(request)
        return "0.7"

    return FakeBackend(reply)


def _check_failed(result: ThinkingScore, error_type: type[Exception], message: str) -> None:
    assert result.score is None
    assert result.error_type == error_type.__name__, result.error
    assert message in result.error
    assert not _BASE64_RUN.search(result.error)  # no image bytes in what users see
    result.model_dump_json()  # the message is valid Unicode: a JSONL writer can store it


@pytest.mark.parametrize(
    ("make", "error_type", "message"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_bad_item_fails_alone(tmp_path: Path, make, error_type, message) -> None:
    sent: list[JudgeRequest] = []
    judge = ThinkingRewardJudge(backend=_scripted(sent))
    with_image = {**GOOD, "image": _png()}
    first, bad, last = judge.batch([GOOD, make(tmp_path), with_image])
    _check_failed(bad, error_type, message)
    assert (first.score, last.score) == (0.7, 0.7)
    assert len(sent) == 2  # the bad item never reached the backend


def test_the_whole_table_in_one_batch(tmp_path: Path) -> None:
    sent: list[JudgeRequest] = []
    judge = ThinkingRewardJudge(backend=_scripted(sent))
    items: list[Any] = []
    for index, (_, make, _, _) in enumerate(CASES):
        folder = tmp_path / str(index)
        folder.mkdir()
        items += [{**GOOD, "question": f"good {index}"}, make(folder)]
    results = judge.batch(items)
    assert len(results) == len(items)
    for index, (case_id, _, error_type, message) in enumerate(CASES):
        good, bad = results[2 * index], results[2 * index + 1]
        assert good.score == 0.7, case_id
        _check_failed(bad, error_type, message)
    assert [r.messages[1]["content"][0]["text"].count(f"good {i}") for i, r in enumerate(sent)] == [
        1
    ] * len(CASES)


async def test_the_async_path_agrees(tmp_path: Path) -> None:
    judge = ThinkingRewardJudge(backend=FakeBackend(["0.7"]))
    items = [make(tmp_path) for _, make, _, _ in CASES]
    sync = judge.batch(items)
    results = await judge.abatch(items)
    assert [(r.error_type, r.error) for r in results] == [(r.error_type, r.error) for r in sync]


def test_raise_on_error_gives_the_typed_exception(tmp_path: Path) -> None:
    judge = ThinkingRewardJudge(backend=FakeBackend(["0.7"]), raise_on_error=True)
    good, bad_input, bad_image = judge.batch(
        [GOOD, {**GOOD, "response": " "}, {**GOOD, "image": tmp_path / "nope.png"}],
        return_exceptions=True,
    )
    assert isinstance(good, ThinkingScore)
    assert good.score == 0.7
    assert type(bad_input) is InputError
    assert type(bad_image) is ImageError
    with pytest.raises(ImageError, match="not found"):
        judge.invoke({**GOOD, "image": tmp_path / "nope.png"})


# ----------------------------------------------- odd images that are accepted


def _animated(fmt: str, **save: Any) -> bytes:
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, fmt, save_all=True, append_images=frames[1:], duration=100, **save)
    return buffer.getvalue()


def _cmyk_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def _palette_with_transparency() -> bytes:
    img = Image.new("P", (16, 16), 0)
    img.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    img.paste(1, (8, 0, 16, 16))
    return _png(img, transparency=0)


ODD_IMAGES = [
    ("animated-gif", _animated("GIF", loop=0), "image/png", "RGB", (255, 0, 0)),
    ("animated-png", _animated("PNG"), "image/png", "RGB", (255, 0, 0)),
    ("cmyk-jpeg", _cmyk_jpeg(), "image/jpeg", "RGB", None),
    ("16-bit-png", _png(Image.new("I;16", (16, 16), 51200)), "image/png", "L", 200),
    ("palette-transparency", _palette_with_transparency(), "image/png", "RGBA", (0, 0, 0, 0)),
    (
        "grey-alpha",
        _png(Image.new("LA", (16, 16), (77, 128))),
        "image/png",
        "RGBA",
        (77, 77, 77, 128),
    ),
]


@pytest.mark.parametrize(
    ("data", "mime", "mode", "pixel"),
    [case[1:] for case in ODD_IMAGES],
    ids=[case[0] for case in ODD_IMAGES],
)
def test_odd_images_are_converted_and_scored(data: bytes, mime: str, mode: str, pixel) -> None:
    """Animated images send their first frame (what vLLM's loader would read, made
    explicit); other modes become one the processor takes as it is."""
    backend = FakeBackend(["0.7"])
    result = ThinkingRewardJudge(backend=backend).invoke({**GOOD, "image": data})
    assert result.score == 0.7, result.error
    url = backend.requests[-1].messages[1]["content"][1]["image_url"]["url"]
    assert url.startswith(f"data:{mime};base64,")
    with Image.open(io.BytesIO(base64.b64decode(url.partition(",")[2]))) as sent:
        assert not getattr(sent, "is_animated", False)
        sent = sent.convert("RGB") if mode == "RGB" else sent
        assert sent.mode == mode
        if pixel is not None:
            assert sent.getpixel((0, 0)) == pixel

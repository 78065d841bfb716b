"""The image cache: the same content is encoded once, changed content again, errors never."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

from judge.core import images
from judge.core.images import image_url
from judge.errors import ImageError


def _png(color: tuple[int, int, int], size: tuple[int, int] = (8, 6)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def encodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records each real encoding (bytes or PIL); starts from an empty cache."""
    monkeypatch.setattr(images, "_cache", type(images._cache)())
    calls: list[str] = []
    encode_bytes, encode_pil = images.encode_bytes, images.encode_pil

    def counted_bytes(*args, **kwargs):
        calls.append("bytes")
        return encode_bytes(*args, **kwargs)

    def counted_pil(*args, **kwargs):
        calls.append("pil")
        return encode_pil(*args, **kwargs)

    monkeypatch.setattr(images, "encode_bytes", counted_bytes)
    monkeypatch.setattr(images, "encode_pil", counted_pil)
    return calls


def test_same_file_is_encoded_once_and_a_rewritten_file_again(tmp_path: Path, encodes):
    path = tmp_path / "chart.png"
    path.write_bytes(_png((200, 0, 0)))
    first = [image_url(str(path)) for _ in range(4)]
    assert len(set(first)) == 1
    assert encodes == ["bytes"]
    path.write_bytes(_png((0, 200, 0)))
    assert image_url(path) != first[0]
    assert encodes == ["bytes", "bytes"]


def test_path_and_bytes_of_the_same_content_share_the_entry(tmp_path: Path, encodes):
    data = _png((1, 2, 3))
    path = tmp_path / "a.png"
    path.write_bytes(data)
    assert image_url(data) == image_url(path)
    assert encodes == ["bytes"]


def test_same_pil_image_is_encoded_once_and_a_changed_one_again(encodes):
    image = Image.new("RGB", (8, 6), (10, 20, 30))
    first = {image_url(image) for _ in range(3)}
    assert len(first) == 1
    assert encodes == ["pil"]
    image.putpixel((0, 0), (255, 255, 255))  # changed in place: the same object
    assert image_url(image) not in first
    assert encodes == ["pil", "pil"]


def test_pil_palette_and_info_are_part_of_the_key(encodes):
    image = Image.new("P", (4, 4), 0)
    image.putpalette([255, 0, 0] * 256)
    red = image_url(image)
    image.putpalette([0, 0, 255] * 256)
    assert image_url(image) != red
    image.info["transparency"] = 0
    assert len({red, image_url(image)}) == 2
    assert encodes == ["pil", "pil", "pil"]


def test_max_pixels_is_part_of_the_key(encodes):
    data = _png((5, 5, 5), size=(40, 30))
    assert image_url(data) != image_url(data, max_pixels=100)
    assert encodes == ["bytes", "bytes"]


def test_errors_are_not_cached_and_name_the_path(tmp_path: Path, encodes):
    path = tmp_path / "broken.png"
    path.write_bytes(_png((1, 1, 1))[:30])
    for _ in range(2):
        with pytest.raises(ImageError, match=r"broken\.png"):
            image_url(path)
    assert encodes == ["bytes", "bytes"]
    assert not images._cache


def test_a_truncated_pil_image_still_raises_image_error(tmp_path: Path):
    path = tmp_path / "cut.png"
    path.write_bytes(_png((9, 9, 9), size=(64, 64))[:-40])
    with Image.open(path) as image, pytest.raises(ImageError):
        image_url(image)


def test_the_cache_keeps_the_most_recent_entries(encodes):
    datas = [_png((i, 0, 0)) for i in range(images._CACHE_SIZE + 1)]
    for data in datas:
        image_url(data)
    assert len(images._cache) == images._CACHE_SIZE
    image_url(datas[-1])  # still cached
    image_url(datas[0])  # evicted: encoded again
    assert len(encodes) == len(datas) + 1

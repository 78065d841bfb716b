"""Image inputs -> content parts: formats, modes, pixel budget, and safe errors."""

from __future__ import annotations

import base64
import io
import random
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from judge.core.images import image_part, image_parts
from judge.core.pixels import fit
from judge.errors import ImageError, InputError

_BASE64_RUN = re.compile(r"[A-Za-z0-9+/]{32,}")


# --------------------------------------------------------------------------- helpers


def _url(part: dict) -> str:
    assert part["type"] == "image_url"
    assert set(part) == {"type", "image_url"}
    return part["image_url"]["url"]


def _decode(part: dict) -> tuple[str, bytes]:
    """The MIME type and bytes of a part's data URL."""
    match = re.fullmatch(r"data:(image/[a-z]+);base64,([A-Za-z0-9+/=]+)", _url(part))
    assert match, _url(part)[:60]
    return match.group(1), base64.b64decode(match.group(2), validate=True)


def _open(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def _header(path: Path) -> Image.Image:
    """An image file opened (header only) and closed: format, mode, is_animated."""
    with Image.open(path) as img:
        getattr(img, "is_animated", None)  # computed while the file is open
        return img


def _encoded(img: Image.Image, fmt: str, **save: object) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **save)
    return buffer.getvalue()


def _noise(size: tuple[int, int] = (64, 48), seed: int = 0) -> Image.Image:
    data = random.Random(seed).randbytes(size[0] * size[1] * 3)
    return Image.frombytes("RGB", size, data)


def _data_url(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def _assert_safe(err: ImageError) -> None:
    """No image bytes or base64 in what a user or a log sees."""
    for text in (str(err), repr(err), err.source):
        assert not _BASE64_RUN.search(text), text


# ---------------------------------------------- files and bytes sent as they are


def test_png_file_is_sent_byte_for_byte(tmp_path: Path) -> None:
    path = tmp_path / "chart.png"
    path.write_bytes(_encoded(_noise(), "PNG"))
    mime, data = _decode(image_part(str(path)))
    assert mime == "image/png"
    assert data == path.read_bytes()


def test_jpeg_named_png_is_sent_as_image_jpeg(tmp_path: Path) -> None:
    path = tmp_path / "photo.png"
    path.write_bytes(_encoded(_noise(), "JPEG", quality=80))
    mime, data = _decode(image_part(path))
    assert mime == "image/jpeg"
    assert data == path.read_bytes()


@pytest.mark.parametrize(
    ("fmt", "mime", "save"),
    [
        ("WEBP", "image/webp", {"quality": 80}),
        ("GIF", "image/gif", {}),
    ],
)
def test_web_formats_are_sent_byte_for_byte(tmp_path: Path, fmt, mime, save) -> None:
    path = tmp_path / "image.bin"
    path.write_bytes(_encoded(Image.new("RGB", (20, 10), (200, 30, 30)), fmt, **save))
    sent_mime, data = _decode(image_part(path))
    assert sent_mime == mime
    assert data == path.read_bytes()


def test_multi_picture_jpeg_is_sent_as_the_jpeg_it_is(tmp_path: Path) -> None:
    path = tmp_path / "phone.jpg"
    _noise(seed=1).save(path, "MPO", save_all=True, append_images=[_noise(seed=2)])
    assert _header(path).format == "MPO"  # what Pillow calls phone JPEGs
    mime, data = _decode(image_part(path))
    assert mime == "image/jpeg"
    assert data == path.read_bytes()


def test_bytes_input_is_sent_like_the_file(tmp_path: Path) -> None:
    path = tmp_path / "chart.png"
    path.write_bytes(_encoded(_noise(), "PNG"))
    raw = path.read_bytes()
    expected = _url(image_part(path))
    assert _url(image_part(raw)) == expected
    assert _url(image_part(bytearray(raw))) == expected
    assert _url(image_part(memoryview(raw))) == expected


def test_other_raster_formats_are_reencoded_as_png(tmp_path: Path) -> None:
    img = _noise()
    path = tmp_path / "scan.bmp"
    img.save(path, "BMP")
    mime, data = _decode(image_part(path))
    assert mime == "image/png"
    assert _open(data).tobytes() == img.tobytes()


# ------------------------------------------------- frames and modes re-encoded


@pytest.mark.parametrize(
    ("fmt", "save"),
    [("GIF", {}), ("PNG", {}), ("WEBP", {"lossless": True})],
    ids=["gif", "apng", "webp"],
)
def test_animated_image_sends_its_first_frame_as_png(tmp_path: Path, fmt, save) -> None:
    red = Image.new("RGB", (16, 16), (255, 0, 0))
    blue = Image.new("RGB", (16, 16), (0, 0, 255))
    path = tmp_path / f"anim.{fmt.lower()}"
    red.save(path, fmt, save_all=True, append_images=[blue], duration=100, loop=0, **save)
    assert _header(path).is_animated
    mime, data = _decode(image_part(path))
    assert mime == "image/png"
    sent = _open(data)
    assert not getattr(sent, "is_animated", False)
    assert sent.convert("RGB").getpixel((8, 8)) == (255, 0, 0)


def test_cmyk_jpeg_is_sent_as_rgb_jpeg(tmp_path: Path) -> None:
    path = tmp_path / "print.jpg"
    Image.new("CMYK", (32, 32), (0, 255, 255, 0)).save(path, "JPEG", quality=95)
    assert _header(path).mode == "CMYK"
    mime, data = _decode(image_part(path))
    assert mime == "image/jpeg"
    sent = _open(data)
    assert sent.mode == "RGB"
    r, g, b = sent.getpixel((16, 16))
    assert r > 230
    assert max(g, b) < 25


def test_16_bit_png_is_scaled_to_8_bit(tmp_path: Path) -> None:
    path = tmp_path / "depth.png"
    Image.new("I;16", (8, 8), 40000).save(path, "PNG")
    assert _header(path).mode == "I;16"
    mime, data = _decode(image_part(path))
    assert mime == "image/png"
    sent = _open(data)
    assert sent.mode == "L"
    assert abs(sent.getpixel((0, 0)) - 40000 / 256) <= 1  # not clipped to 255


def test_palette_with_transparency_is_sent_as_rgba(tmp_path: Path) -> None:
    img = Image.new("P", (10, 10), 0)
    img.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    img.paste(1, (5, 0, 10, 10))
    path = tmp_path / "logo.png"
    img.save(path, "PNG", transparency=0)
    mime, data = _decode(image_part(path))
    assert mime == "image/png"
    sent = _open(data)
    assert sent.mode == "RGBA"
    assert sent.getpixel((1, 1))[3] == 0
    assert sent.getpixel((8, 1)) == (0, 255, 0, 255)


# ----------------------------------------------------------------- PIL images


def test_pil_image_is_encoded_as_lossless_png() -> None:
    img = _noise()
    mime, data = _decode(image_part(img))
    assert mime == "image/png"
    sent = _open(data)
    assert (sent.mode, sent.size) == ("RGB", img.size)
    assert sent.tobytes() == img.tobytes()


@pytest.mark.parametrize(
    ("mode", "color", "expected_mode", "expected_pixel"),
    [
        ("RGB", (1, 2, 3), "RGB", (1, 2, 3)),
        ("RGBA", (1, 2, 3, 4), "RGBA", (1, 2, 3, 4)),
        ("L", 77, "L", 77),
        ("1", 1, "L", 255),
        ("LA", (77, 128), "RGBA", (77, 77, 77, 128)),
        ("CMYK", (0, 255, 255, 0), "RGB", (255, 0, 0)),
        ("I;16", 51200, "L", 200),
        ("I", 100, "L", 100),
        ("F", 300.0, "L", 255),
        ("YCbCr", (76, 85, 255), "RGB", None),
    ],
)
def test_pil_modes_are_converted(mode, color, expected_mode, expected_pixel) -> None:
    img = Image.new(mode, (4, 4), color)
    mime, data = _decode(image_part(img))
    assert mime == "image/png"
    sent = _open(data)
    assert sent.mode == expected_mode
    if expected_pixel is not None:
        assert sent.getpixel((0, 0)) == expected_pixel


def test_pil_palette_without_transparency_becomes_rgb() -> None:
    img = Image.new("P", (4, 4), 1)
    img.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    sent = _open(_decode(image_part(img))[1])
    assert sent.mode == "RGB"
    assert sent.getpixel((0, 0)) == (10, 200, 30)


def test_pil_palette_with_transparency_becomes_rgba() -> None:
    img = Image.new("P", (4, 4), 3)
    img.info["transparency"] = 3
    sent = _open(_decode(image_part(img))[1])
    assert sent.mode == "RGBA"
    assert sent.getpixel((0, 0))[3] == 0


def test_pil_image_from_truncated_file_is_an_image_error(tmp_path: Path) -> None:
    path = tmp_path / "cut.png"
    data = _encoded(_noise(), "PNG")
    path.write_bytes(data[: len(data) // 2])
    with Image.open(path) as lazy, pytest.raises(ImageError) as info:  # decoded on load()
        image_part(lazy)
    assert info.value.__cause__ is not None


# ---------------------------------------------------------------------- URLs


@pytest.mark.parametrize(
    "url",
    ["http://example.com/a.png", "https://example.com/x/y.jpg?sig=abc#f", "HTTPS://EXAMPLE.COM/B"],
)
def test_http_urls_pass_through_unfetched(url: str) -> None:
    assert image_part(url) == {"type": "image_url", "image_url": {"url": url}}
    assert _url(image_part(url, max_pixels=1)) == url


@pytest.mark.parametrize(
    ("url", "message"), [("https://", "no host"), ("http://[::1/a.png", "not a valid URL")]
)
def test_url_without_a_valid_host_is_an_image_error(url: str, message: str) -> None:
    with pytest.raises(ImageError, match=re.escape(message)):
        image_part(url)


def test_unsupported_url_scheme_hides_credentials_and_query() -> None:
    with pytest.raises(ImageError, match="unsupported URL scheme") as info:
        image_part("ftp://user:hunter2@files.example.com/a.png?token=s3cr3t")
    assert "files.example.com/a.png" in str(info.value)
    assert "hunter2" not in str(info.value)
    assert "s3cr3t" not in str(info.value)


def test_data_url_passes_through_unchanged() -> None:
    url = _data_url("image/png", _encoded(_noise(), "PNG"))
    assert _url(image_part(url)) == url


def test_data_url_image_jpg_counts_as_jpeg() -> None:
    url = _data_url("image/jpg", _encoded(_noise(), "JPEG"))
    assert _url(image_part(url)) == url


def test_data_url_that_needs_reencoding_is_reencoded() -> None:
    buffer = io.BytesIO()
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    mime, data = _decode(image_part(_data_url("image/gif", buffer.getvalue())))
    assert mime == "image/png"
    assert _open(data).convert("RGB").getpixel((0, 0)) == (255, 0, 0)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (_data_url("image/png", _encoded(_noise(), "JPEG")), "says image/png but holds image/jpeg"),
        (_data_url("image/gif", _encoded(_noise(), "PNG")), "says image/gif but holds image/png"),
        ("data:image/png;base64,iVBORw0KGgo@@@notbase64", "not valid base64"),
        ("data:image/png;base64,iVBORw0KGgoAAAANSUhEU", "not valid base64"),
        (_data_url("image/png", b"just some text, no image at all"), "not an image"),
        ("data:image/png;base64,", "empty"),
        ("data:text/plain;base64,aGVsbG8=", "not a base64 image data URL"),
        ("data:image/png,%89PNG", "not a base64 image data URL"),
    ],
    ids=["png-says", "gif-says", "bad-char", "bad-padding", "not-image", "empty", "text", "raw"],
)
def test_bad_data_urls_are_image_errors(url: str, message: str) -> None:
    with pytest.raises(ImageError, match=re.escape(message)) as info:
        image_part(url)
    _assert_safe(info.value)


def test_truncated_image_in_data_url_is_an_image_error() -> None:
    data = _encoded(_noise(), "PNG")
    with pytest.raises(ImageError, match="truncated") as info:
        image_part(_data_url("image/png", data[: len(data) // 2]))
    _assert_safe(info.value)
    assert info.value.source.startswith("data:image/png;base64,<")


def test_raw_base64_string_is_not_taken_for_a_path() -> None:
    raw = base64.b64encode(_encoded(_noise(), "PNG")).decode()
    with pytest.raises(ImageError, match="raw base64") as info:
        image_part(raw)
    _assert_safe(info.value)


@pytest.mark.parametrize(
    "prefix", ["image/png;base64,", "dat:image/png;base64,", "ftp://host/"], ids=str.strip
)
def test_base64_inside_a_bad_input_stays_out_of_the_message(prefix: str) -> None:
    raw = base64.b64encode(_encoded(_noise(), "PNG")).decode()
    with pytest.raises(ImageError) as info:
        image_part(prefix + raw)
    _assert_safe(info.value)
    assert prefix.split("/")[0] in str(info.value)  # still says what it was given


# --------------------------------------------------------------------- errors


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.png"
    with pytest.raises(ImageError, match="not found") as info:
        image_part(str(path))
    assert str(path) in str(info.value)
    assert info.value.source == str(path)


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="directory") as info:
        image_part(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(ImageError, match="empty") as info:
        image_part(path)
    assert str(path) in str(info.value)


def test_non_image_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("these are notes, not pixels\n" * 20)
    with pytest.raises(ImageError, match="not an image") as info:
        image_part(path)
    assert str(path) in str(info.value)
    assert isinstance(info.value.__cause__, OSError)


def test_format_outside_the_allow_list_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "old.pcx"
    _noise().save(path, "PCX")
    assert _header(path).format == "PCX"  # Pillow itself would open it
    with pytest.raises(ImageError, match="supported format"):
        image_part(path)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_file_is_an_image_error(tmp_path: Path, fmt: str) -> None:
    data = _encoded(_noise((128, 96)), fmt)
    path = tmp_path / f"truncated.{fmt.lower()}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="truncated") as info:
        image_part(path)
    assert str(path) in str(info.value)
    _assert_safe(info.value)
    assert isinstance(info.value.__cause__, (OSError, SyntaxError, ValueError))


@pytest.mark.parametrize("value", [None, 42, 4.2, object(), {"url": "x.png"}])
def test_unsupported_types_are_image_errors(value: object) -> None:
    with pytest.raises(ImageError, match="unsupported image input") as info:
        image_part(value)  # type: ignore[arg-type]
    assert info.value.source == f"<{type(value).__name__}>"
    assert isinstance(info.value, InputError)


def test_errors_name_bytes_by_their_length() -> None:
    with pytest.raises(ImageError) as info:
        image_part(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100)
    assert info.value.source == "<108 bytes>"
    assert "\\x" not in str(info.value)


def test_decompression_bomb_is_an_image_error(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    path = tmp_path / "bomb.png"
    Image.new("L", (64, 64)).save(path, "PNG")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(ImageError, match="too large") as info:
        image_part(path)
    assert "max_pixels" in str(info.value)
    assert isinstance(info.value.__cause__, Image.DecompressionBombError)


# ---------------------------------------------------------------- pixel budget


@pytest.mark.parametrize(
    ("fmt", "mime", "size", "budget"),
    [
        ("PNG", "image/png", (400, 300), 10_000),
        ("PNG", "image/png", (90, 700), 5_000),
        ("JPEG", "image/jpeg", (800, 600), 20_000),  # reduced-scale JPEG decoding
        ("WEBP", "image/png", (300, 300), 1_000),
    ],
)
def test_max_pixels_downsizes_keeping_aspect_ratio(tmp_path, fmt, mime, size, budget) -> None:
    path = tmp_path / f"big.{fmt.lower()}"
    Image.new("RGB", size, (0, 128, 255)).save(path, fmt)
    sent_mime, data = _decode(image_part(path, max_pixels=budget))
    assert sent_mime == mime
    width, height = _open(data).size
    assert width * height <= budget
    assert width * height >= 0.9 * budget
    # the short side is derived from the long one: within a pixel of the exact ratio
    assert abs(min(width, height) - max(width, height) * min(size) / max(size)) <= 1
    assert (width > height) == (size[0] > size[1])


def test_max_pixels_applies_to_pil_images_and_data_urls() -> None:
    img = Image.new("RGB", (200, 100), "white")
    assert _open(_decode(image_part(img, max_pixels=5_000))[1]).size == (100, 50)
    url = _data_url("image/png", _encoded(img, "PNG"))
    mime, data = _decode(image_part(url, max_pixels=5_000))
    assert (mime, _open(data).size) == ("image/png", (100, 50))


@pytest.mark.parametrize("budget", [None, 64 * 48, 10**9])
def test_under_budget_sends_the_original_bytes(tmp_path: Path, budget) -> None:
    path = tmp_path / "photo.jpg"
    path.write_bytes(_encoded(_noise((64, 48)), "JPEG", quality=70))
    mime, data = _decode(image_part(path, max_pixels=budget))
    assert mime == "image/jpeg"
    assert data == path.read_bytes()


@pytest.mark.parametrize("budget", [0, -5, 1.5, True, "100"])
def test_bad_max_pixels_is_a_value_error(budget: object) -> None:
    with pytest.raises(ValueError, match="max_pixels") as info:
        image_part("https://example.com/a.png", max_pixels=budget)  # type: ignore[arg-type]
    assert not isinstance(info.value, ImageError)


@given(
    width=st.integers(1, 20_000),
    height=st.integers(1, 20_000),
    fraction=st.floats(0.0001, 0.9999),
)
def test_fit_stays_within_budget_and_aspect_ratio(width, height, fraction) -> None:
    budget = max(1, int(width * height * fraction))
    size = fit((width, height), budget)
    if width * height <= budget:
        assert size is None
        return
    assert size is not None
    new_width, new_height = size
    assert 1 <= new_width <= width
    assert 1 <= new_height <= height
    assert new_width * new_height <= budget
    long_side, short_side = max(width, height), min(width, height)
    new_long, new_short = max(size), min(size)
    if new_short > 1:  # not pinned to one pixel by an extreme aspect ratio
        assert abs(new_short - new_long * short_side / long_side) <= 0.5 + 1e-9
    # not needlessly small: one more pixel on the long side would not fit
    bigger = new_long + 1
    assert bigger * max(1, round(bigger * short_side / long_side + 1e-9)) > budget


def test_fit_is_none_without_a_budget() -> None:
    assert fit((10_000, 10_000), None) is None


# ----------------------------------------------------------------- image_parts


def test_image_parts_shapes(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    _noise().save(path)
    url = "https://example.com/b.png"
    assert image_parts(None) == []
    assert image_parts([]) == []
    assert image_parts(url) == [image_part(url)]
    assert image_parts(path) == [image_part(path)]
    assert image_parts(path.read_bytes()) == [image_part(path)]
    assert image_parts([path, url]) == [image_part(path), image_part(url)]
    assert image_parts((url, path)) == [image_part(url), image_part(path)]


def test_image_parts_passes_max_pixels_on(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    Image.new("RGB", (100, 100)).save(path)
    (part,) = image_parts([path], max_pixels=100)
    assert _open(_decode(part)[1]).size == (10, 10)


def test_image_parts_rejects_none_inside_a_list() -> None:
    with pytest.raises(ImageError, match="NoneType"):
        image_parts(["https://example.com/a.png", None])  # type: ignore[list-item]


# ------------------------------------------------------------- aspect ratio


@pytest.mark.parametrize("size", [(800, 4), (4, 800), (200, 1), (1, 1)])
def test_aspect_ratio_up_to_200_is_sent(size: tuple[int, int]) -> None:
    data = _encoded(Image.new("RGB", size, "red"), "PNG")
    mime, sent = _decode(image_part(data))
    assert (mime, sent) == ("image/png", data)


@pytest.mark.parametrize("size", [(804, 4), (4, 804), (1000, 4), (201, 1)])
def test_aspect_ratio_above_200_is_an_image_error(tmp_path: Path, size: tuple[int, int]) -> None:
    img = Image.new("RGB", size, "red")
    path = tmp_path / "strip.png"
    img.save(path)
    for value in (path, path.read_bytes(), img):
        with pytest.raises(ImageError, match="200:1") as info:
            image_part(value)
        assert f"{size[0]}x{size[1]}" in str(info.value)


def test_aspect_ratio_is_checked_on_the_size_sent() -> None:
    # 150:1, but a budget so small that the short side is pinned to one pixel
    img = Image.new("RGB", (1500, 10), "red")
    assert fit(img.size, 300) == (224, 1)
    with pytest.raises(ImageError, match="224x1"):
        image_part(img, max_pixels=300)
    assert _open(_decode(image_part(img, max_pixels=3000))[1]).size == (674, 4)  # 168:1


# --------------------------------------------------- text that is not Unicode


def test_path_with_a_lone_surrogate_is_an_image_error_with_a_printable_message() -> None:
    with pytest.raises(ImageError, match="not valid Unicode") as info:
        image_part("charts/\ud800.png")
    str(info.value).encode("utf-8")  # the message itself is valid Unicode
    assert "\\ud800" in info.value.source


def test_missing_path_with_an_undecodable_byte_is_named_printably() -> None:
    # "\udc80" is how Python spells an undecodable byte in a file name (surrogateescape)
    with pytest.raises(ImageError, match="not found") as info:
        image_part("/nonexistent/\udc80.png")
    str(info.value).encode("utf-8")


def test_url_with_a_lone_surrogate_is_an_image_error() -> None:
    with pytest.raises(ImageError, match="URL is not valid Unicode") as info:
        image_part("https://example.com/\udc80.png")
    str(info.value).encode("utf-8")


def test_non_ascii_url_passes_through() -> None:
    url = "https://example.com/gráfico.png"
    assert _url(image_part(url)) == url


def test_path_with_a_nul_is_an_image_error() -> None:
    with pytest.raises(ImageError, match="NUL character"):
        image_part("chart\x00.png")

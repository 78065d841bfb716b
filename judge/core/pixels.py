"""Pillow's side of image encoding: decode, check, convert, downsize and encode one image.

What is sent, and why, is described in :mod:`judge.core.images`; this module does the
pixel work for it: :func:`encode_bytes` (an encoded image: sent as it is when it can be,
else re-encoded) and :func:`encode_pil` (a PIL image, as PNG), both after the checks
(format, MIME type, aspect ratio) and within the pixel budget (:func:`fit`). Every
failure is an :class:`~judge.errors.ImageError` naming its source, never holding bytes.

Pure: no I/O beyond Pillow's reading of the bytes given.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator
from contextlib import contextmanager

from PIL import Image, UnidentifiedImageError

from judge.errors import ImageError

_OPEN_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF", "ICO", "PPM", "TGA")  # JPEG: MPO too
_SENT_AS_IS = {  # format -> MIME type of the formats whose bytes are sent untouched
    "PNG": "image/png",
    "JPEG": "image/jpeg",
    "MPO": "image/jpeg",  # a JPEG with extra pictures appended; readers see the first
    "WEBP": "image/webp",
    "GIF": "image/gif",
}
_MIME_ALIASES = {"image/jpg": "image/jpeg"}
_MODEL_MODES = frozenset({"1", "L", "P", "RGB", "RGBA"})  # the processor takes these as is
_MAX_ASPECT_RATIO = 200  # Qwen2-VL / Qwen2.5-VL smart_resize refuses a ratio above this
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "La", "RGBa"})
_PILLOW_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error)


def encode_bytes(
    data: bytes, source: str, max_pixels: int | None, *, declared_mime: str | None = None
) -> tuple[str, bytes]:
    """Decode an encoded image once; return ``(mime, bytes)`` to send.

    The bytes returned are ``data`` itself (the same object) when they can be sent as
    they are; else a re-encoded, converted and possibly downsized image.
    """
    if not data:
        raise ImageError("image is empty", source=source)
    with _pillow_errors(source), Image.open(io.BytesIO(data), formats=_OPEN_FORMATS) as img:
        fmt = img.format or ""
        if declared_mime is not None:
            _check_mime(declared_mime, fmt, source)
        size = fit(img.size, max_pixels)
        _check_aspect_ratio(size or img.size, source)
        if size is None and _sendable_as_is(img):
            img.load()  # decode fully: a truncated or corrupt image fails here
            return _SENT_AS_IS[fmt], data
        if size is not None and fmt in ("JPEG", "MPO"):
            img.draft(None, (size[0] * 2, size[1] * 2))  # decode at a reduced scale
        img.load()
        out = _to_model_mode(img)
        if size is not None:
            out = out.resize(size, Image.Resampling.LANCZOS)
        as_jpeg = fmt in ("JPEG", "MPO") and out.mode in ("L", "RGB")
        return _encode(out, "JPEG" if as_jpeg else "PNG")


def encode_pil(image: Image.Image, source: str, max_pixels: int | None) -> tuple[str, bytes]:
    """Encode a PIL image as PNG after mode conversion and, if needed, downsizing."""
    with _pillow_errors(source):
        image.load()  # an image from Image.open() is lazy; a truncated file fails here
        out = _to_model_mode(image)
        size = fit(out.size, max_pixels)
        _check_aspect_ratio(size or out.size, source)
        if size is not None:
            out = out.resize(size, Image.Resampling.LANCZOS)
        return _encode(out, "PNG")


def _sendable_as_is(img: Image.Image) -> bool:
    """Whether an opened image's original bytes can go to the model untouched."""
    if img.format not in _SENT_AS_IS or img.mode not in _MODEL_MODES:
        return False
    if "transparency" in img.info and img.mode != "RGBA":
        return False
    return img.format == "MPO" or not getattr(img, "is_animated", False)


def _to_model_mode(img: Image.Image) -> Image.Image:
    """Convert an image to ``L``, ``RGB`` or ``RGBA`` (see the module docstring)."""
    mode = img.mode
    if mode.startswith("I;16"):
        return img.convert("I").point(lambda v: v * (1 / 256)).convert("L")
    if mode in ("I", "F"):
        return img.convert("L")
    if mode in _ALPHA_MODES or "transparency" in img.info:
        return img if mode == "RGBA" else img.convert("RGBA")
    if mode in ("L", "RGB"):
        return img
    return img.convert("L" if mode == "1" else "RGB")


def _check_aspect_ratio(size: tuple[int, int], source: str) -> None:
    """Refuse an image the model's processor cannot take: long side > 200 x short side."""
    width, height = size
    if max(width, height) > _MAX_ASPECT_RATIO * min(width, height):
        raise ImageError(
            f"image of {width}x{height} pixels is too elongated: Qwen2.5-VL's image processor "
            f"takes at most a {_MAX_ASPECT_RATIO}:1 aspect ratio; crop or pad it",
            source=source,
        )


def fit(size: tuple[int, int], max_pixels: int | None) -> tuple[int, int] | None:
    """The size to downsize to so that ``w * h <= max_pixels``, or None if it fits.

    The long side is the largest whose short side, derived from it by the aspect ratio
    (rounded, at least 1 pixel), fits the budget: the ratio is kept to within half a
    pixel, except where an extreme ratio pins the short side to 1.
    """
    width, height = size
    if max_pixels is None or width * height <= max_pixels:
        return None
    long_side, short_side = max(width, height), min(width, height)

    def short_for(new_long: int) -> int:  # round half up, in integers
        return max(1, (2 * new_long * short_side + long_side) // (2 * long_side))

    low, high = 1, long_side - 1  # the area grows with the long side: binary search
    while low < high:
        middle = (low + high + 1) // 2
        if middle * short_for(middle) <= max_pixels:
            low = middle
        else:
            high = middle - 1
    return (low, short_for(low)) if width >= height else (short_for(low), low)


def _encode(img: Image.Image, fmt: str) -> tuple[str, bytes]:
    """Encode an image as PNG, or as JPEG at quality 95; return ``(mime, bytes)``."""
    buffer = io.BytesIO()
    if fmt == "JPEG":
        img.save(buffer, "JPEG", quality=95)
        return "image/jpeg", buffer.getvalue()
    img.save(buffer, "PNG")
    return "image/png", buffer.getvalue()


def _check_mime(declared: str, fmt: str, source: str) -> None:
    """Raise an ImageError when a data URL's MIME type is not its data's real one."""
    real = _SENT_AS_IS.get(fmt) or Image.MIME.get(fmt)
    if _MIME_ALIASES.get(declared, declared) != real:
        raise ImageError(f"data URL says {declared} but holds {real or fmt}", source=source)


@contextmanager
def _pillow_errors(source: str) -> Iterator[None]:
    """Turn what Pillow raises on a bad image into an ImageError, chained to it."""
    try:
        yield
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageError(
            "image is too large to decode safely (above Pillow's decompression-bomb limit, "
            f"2 x PIL.Image.MAX_IMAGE_PIXELS = {2 * (Image.MAX_IMAGE_PIXELS or 0)} pixels); "
            "shrink it first or, if the file is trusted, raise PIL.Image.MAX_IMAGE_PIXELS "
            "and pass max_pixels to downsize what is sent",
            source=source,
        ) from exc
    except UnidentifiedImageError as exc:
        raise ImageError(
            "not an image in a supported format (PNG, JPEG, WebP, GIF, BMP, TIFF, ICO, PPM, TGA)",
            source=source,
        ) from exc
    except _PILLOW_ERRORS as exc:
        raise ImageError(
            f"image cannot be decoded, truncated or corrupt ({_reason(exc)})", source=source
        ) from exc


def _reason(exc: BaseException) -> str:
    """A short reason from a Pillow error, without any bytes it may quote."""
    text = str(exc)
    if not text or len(text) > 100 or "b'" in text or 'b"' in text or "\\x" in text:
        return type(exc).__name__
    return f"{type(exc).__name__}: {text}"


__all__ = ["encode_bytes", "encode_pil", "fit"]

"""Image inputs -> OpenAI ``image_url`` content parts.

An image is given as a file path, raw bytes, a PIL image, an http(s) URL or a data URL,
and sent as ``{"type": "image_url", "image_url": {"url": URL}}``:

- **Path or bytes**: decoded once with Pillow to check it is a whole image. When it is
  PNG, JPEG, WebP or GIF, has one frame, a mode the model's processor takes as it is
  (``1``, ``L``, ``P`` without transparency, ``RGB``, ``RGBA``) and fits the pixel
  budget, the ORIGINAL bytes are sent, untouched, as a base64 data URL whose MIME type is
  the real format found in the content (never guessed from the file name: a JPEG named
  ``x.png`` goes as ``image/jpeg``). Anything else is re-encoded, see below.
- **PIL image**: its current frame, converted as below and encoded as PNG (lossless).
- **http(s) URL**: passed through unchanged (under the default URL policy, ``"pass"``);
  it is not fetched here, so ``max_pixels`` does not apply to it.
- **data URL** (``data:image/<type>;base64,...``): decoded and checked like bytes (the
  declared MIME type must be the real one; ``image/jpg`` counts as ``image/jpeg``), then
  passed through unchanged unless it has to be re-encoded.

Re-encoding, when needed, keeps what the model sees as close to the original as possible:

- the first frame of an animated image (GIF, APNG, WebP) is taken, as the model's
  processor would; a multi-picture JPEG (MPO, as phones write) is sent as the JPEG it is;
- the mode becomes one the processor takes and PNG can hold (in :mod:`judge.core.pixels`):

  ================================================  ==================================
  ``RGB``, ``RGBA``, ``L``                          unchanged
  ``1``                                             ``L``
  any alpha (``LA``, ``PA``, ``La``, ``RGBa``) or   ``RGBA``, so that the server lays it
  a ``transparency`` key (``P``, ``L``, ``RGB``)    on white, not on a palette colour
  ``P`` without transparency                        ``RGB``
  ``I;16``, ``I;16B``, ``I;16L`` (16-bit)           ``L``, scaled by 1/256
  ``I``, ``F``                                      ``L``, values clipped to 0-255
  ``CMYK``, ``YCbCr``, ``LAB``, ``HSV``, others     ``RGB``
  ================================================  ==================================

- then it is encoded as JPEG (quality 95) when the source was a JPEG file, else as PNG.
  EXIF orientation is not applied (nor is it by vLLM's loader), so the model sees the same
  pixels either way.

``max_pixels`` (off by default) is a pixel budget: an image with ``width * height`` above
it is downsized, keeping its aspect ratio, with LANCZOS so that ``w * h <= max_pixels``,
and re-encoded as above. Pillow's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS``)
is kept as Pillow has it. Only the raster formats a judge needs are opened (PNG, JPEG,
WebP, GIF, BMP, TIFF, ICO, PPM, TGA), so untrusted input never reaches a plugin such as
EPS that runs an external program. An image whose long side, as sent, is more than 200
times its short side is refused: Qwen2.5-VL's image processor (``smart_resize``) cannot
take it, and the server would fail the request with an opaque message.

What may be read and sent is an :class:`~judge.core.sources.ImagePolicy`: only regular
files, up to a size limit (50 MB by default), inside an image root when one is given;
http(s) URLs passed through, sent only when their host is public, or refused (see
:mod:`judge.core.sources`).

An http(s) URL that the server cannot fetch fails that request alone, with the server's
error (:class:`~judge.errors.BackendHTTPError`; vLLM answers 500 and says why).

Every failure is an :class:`~judge.errors.ImageError` naming the input safely (a path, a
URL without its query, a type name, ``<N bytes>``), never its bytes or base64; the Pillow
error it comes from is chained as its cause.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, TypeAlias, TypeVar, cast
from urllib.parse import urlsplit

from PIL import Image

from judge.core.pixels import encode_bytes, encode_pil
from judge.core.sources import (
    DEFAULT_POLICY,
    ImagePolicy,
    check_url,
    is_utf8,
    read_image_file,
    safe_text,
)
from judge.errors import ImageError

ImageInput: TypeAlias = str | os.PathLike[str] | bytes | Image.Image
"""One image: a file path, raw bytes, a PIL image, an http(s) URL or a data URL."""

_EXPECTED = "expected a file path, bytes, a PIL image, an http(s) URL or a data URL"
_DATA_URL = re.compile(r"data:(image/[a-z0-9.+-]+);base64,", re.IGNORECASE)
_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*://", re.IGNORECASE)


def image_parts(
    value: ImageInput | Sequence[ImageInput] | None,
    *,
    max_pixels: int | None = None,
    policy: ImagePolicy = DEFAULT_POLICY,
) -> list[dict[str, Any]]:
    """Turn a judge input's ``image`` / ``images`` value into content parts.

    Args:
        value: No image (``None``), one image, or a sequence of images.
        max_pixels: Optional pixel budget, as for :func:`image_part`.
        policy: What may be read and sent, as for :func:`image_url`.

    Returns:
        One ``image_url`` content part per image, in order.

    Raises:
        ImageError: An image is unusable (a ``None`` inside a sequence included).
    """
    if value is None:
        return []
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes, bytearray, memoryview)):
        return [image_part(item, max_pixels=max_pixels, policy=policy) for item in value]
    # image_part reads a memoryview as bytes
    return [image_part(cast("ImageInput", value), max_pixels=max_pixels, policy=policy)]


def image_part(
    image: ImageInput, *, max_pixels: int | None = None, policy: ImagePolicy = DEFAULT_POLICY
) -> dict[str, Any]:
    """Turn one image into an OpenAI ``image_url`` content part.

    Args:
        image: A file path, bytes, a PIL image, an http(s) URL or a data URL.
        max_pixels: Optional pixel budget: a larger image is downsized to fit it.
        policy: What may be read and sent, as for :func:`image_url`.

    Returns:
        ``{"type": "image_url", "image_url": {"url": URL}}``.

    Raises:
        ImageError: The image cannot be read, decoded or encoded.
        ValueError: ``max_pixels`` is not a positive integer.
    """
    url = image_url(image, max_pixels=max_pixels, policy=policy)
    return {"type": "image_url", "image_url": {"url": url}}


def image_url(
    image: ImageInput, *, max_pixels: int | None = None, policy: ImagePolicy = DEFAULT_POLICY
) -> str:
    """Turn one image into the URL to send: a data URL, or the http(s) URL given.

    Args:
        image: A file path, bytes, a PIL image, an http(s) URL or a data URL.
        max_pixels: Optional pixel budget: a larger image is downsized to fit it.
        policy: The image root and size limit for files, and what to do with http(s)
            URLs (:class:`~judge.core.sources.ImagePolicy`; default: paths read as
            given, files up to 50 MB, URLs passed through).

    Returns:
        The URL for an ``image_url`` content part.

    Raises:
        ImageError: The image cannot be read, decoded or encoded.
        ValueError: ``max_pixels`` is not a positive integer.
    """
    if max_pixels is not None and (
        isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1
    ):
        raise ValueError(f"max_pixels must be a positive integer or None, got {max_pixels!r}")
    if isinstance(image, Image.Image):
        return _pil_url(image, max_pixels)
    if isinstance(image, (bytes, bytearray, memoryview)):
        return _bytes_url(bytes(image), max_pixels)
    if isinstance(image, os.PathLike):
        path = os.fsdecode(image)
        return _bytes_url(read_image_file(path, policy), max_pixels, safe_text(path))
    if isinstance(image, str):
        return _from_string(image, max_pixels, policy)
    raise ImageError(f"unsupported image input ({_EXPECTED})", source=f"<{type(image).__name__}>")


def _from_string(text: str, max_pixels: int | None, policy: ImagePolicy) -> str:
    """Pass an http(s) URL through (if the policy lets it), check a data URL, or read a path."""
    if text[:5].lower() == "data:":
        return _cached(("data", text, max_pixels), lambda: _from_data_url(text, max_pixels))
    scheme = _SCHEME.match(text)
    if scheme is None:
        return _bytes_url(read_image_file(text, policy), max_pixels, safe_text(text))
    if scheme.group().lower() not in ("http://", "https://"):
        raise ImageError(f"unsupported URL scheme ({_EXPECTED})", source=_describe_url(text))
    try:
        host = urlsplit(text).hostname
    except ValueError as exc:  # an unbalanced IPv6 bracket
        raise ImageError("not a valid URL", source=_describe_url(text)) from exc
    if not host:
        raise ImageError("image URL has no host", source=_describe_url(text))
    if not text.isascii() and not is_utf8(text):
        raise ImageError(
            "image URL is not valid Unicode (it holds a lone surrogate)",
            source=_describe_url(text),
        )
    check_url(text, host, policy, _describe_url(text))
    return text


def _from_data_url(url: str, max_pixels: int | None) -> str:
    """Check a base64 image data URL; return it unchanged unless it must be re-encoded."""
    match = _DATA_URL.match(url)
    if match is None:
        raise ImageError(
            "not a base64 image data URL (expected data:image/<type>;base64,<data>)",
            source=f"<data URL of {len(url)} characters>",
        )
    declared = match.group(1).lower()
    source = f"data:{declared};base64,<{len(url) - match.end()} characters>"
    try:
        data = base64.b64decode(url[match.end() :], validate=True)
    except ValueError as exc:  # binascii.Error, or non-ASCII characters
        raise ImageError("data URL is not valid base64", source=source) from exc
    mime, out = encode_bytes(data, source, max_pixels, declared_mime=declared)
    return url if out is data else _data_url(mime, out)


# The completions of one RL prompt share its image, so a batch often holds the same
# image many times, as the same bytes, the same file or the same PIL image: each is
# checked and encoded once. The key is the content (the bytes themselves, a data URL, a
# digest of a PIL image's pixels and state), never an object's identity, so an image
# changed in place or a file rewritten is encoded again. Errors are not cached.
_CACHE_SIZE = 16
_cache: OrderedDict[tuple[Any, ...], str] = OrderedDict()
_cache_lock = threading.Lock()


def _cached(key: tuple[Any, ...] | None, make: Callable[[], str]) -> str:
    """The URL cached under ``key``, else ``make()``, cached (most recent 16 kept)."""
    if key is None:
        return make()
    with _cache_lock:
        url = _cache.get(key)
        if url is not None:
            _cache.move_to_end(key)
            return url
    url = make()
    with _cache_lock:
        _cache[key] = url
        if len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return url


def _bytes_url(data: bytes, max_pixels: int | None, source: str | None = None) -> str:
    """The data URL for image bytes (given as such or read from the file ``source``)."""
    return _cached(
        ("bytes", data, max_pixels),
        lambda: _data_url(*encode_bytes(data, source or f"<{len(data)} bytes>", max_pixels)),
    )


def _pil_url(image: Image.Image, max_pixels: int | None) -> str:
    """The data URL for a PIL image, cached by a digest of what its encoding reads."""
    source = f"<PIL image {image.mode} {image.width}x{image.height}>"
    return _cached(
        _pil_key(image, max_pixels), lambda: _data_url(*encode_pil(image, source, max_pixels))
    )


def _pil_key(image: Image.Image, max_pixels: int | None) -> tuple[Any, ...] | None:
    """A digest of a PIL image's pixels, mode, size, palette and info; None if unreadable.

    Hashing the pixels costs about a sixtieth of encoding them as PNG. An image that
    cannot be read (a truncated file) gets no key: encoding it raises the ImageError.
    """
    try:
        digest = hashlib.blake2b(image.tobytes(), digest_size=32)
        state = (image.mode, image.size, image.getpalette(), sorted(image.info.items(), key=repr))
        digest.update(repr(state).encode("utf-8", "backslashreplace"))
    except Exception:  # anything Pillow raises: leave it to the encoder to report
        return None
    return ("pil", digest.digest(), max_pixels)


def _data_url(mime: str, data: bytes) -> str:
    """A base64 data URL."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _describe_url(url: str) -> str:
    """A URL without credentials, query or fragment, shortened: safe for messages."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # a bad port, an unbalanced IPv6 bracket
        return f"<URL of {len(url)} characters>"
    rest = "?..." if parts.query or parts.fragment else ""
    return safe_text(f"{parts.scheme}://{host}{port}{parts.path}{rest}")


# --------------------------------------------------------------------------- traces

_IMAGE_KEYS = ("image", "images")


def describe_image(image: object) -> str:
    """A short stand-in for an image in traces and logs: never its bytes or base64.

    Bytes and PIL images by size, a data URL by type and length, an http(s) URL without
    credentials, query or fragment (a signed URL's query is a secret), a path as it is.
    """
    if isinstance(image, (bytes, bytearray, memoryview)):
        return f"<image: {len(image)} bytes>"
    if isinstance(image, str):
        if image.startswith("data:"):
            mime = image[5:].split(";", 1)[0].split(",", 1)[0] or "unknown type"
            return f"<image: data URL, {safe_text(mime, 40)}, {len(image)} characters>"
        if image.startswith(("http://", "https://")):
            return _describe_url(image)
        return safe_text(image)
    size = getattr(image, "size", None)
    if isinstance(size, tuple) and len(size) == 2:
        return f"<image: {type(image).__name__} {size[0]}x{size[1]}>"
    return f"<image: {type(image).__name__}>"


_T = TypeVar("_T")


def traced_input(value: _T) -> _T:
    """A judge input as traces show it: its images replaced by :func:`describe_image`.

    The judge itself still gets the input as given; anything without image fields is
    returned unchanged (the same object).
    """
    if not isinstance(value, dict) or not any(key in value for key in _IMAGE_KEYS):
        return value
    shown = dict(value)
    if shown.get("image") is not None:
        shown["image"] = describe_image(shown["image"])
    images = shown.get("images")
    if isinstance(images, Sequence) and not isinstance(images, (str, bytes, bytearray)):
        shown["images"] = [describe_image(image) for image in images]
    elif images is not None:
        shown["images"] = describe_image(images)
    return cast("_T", shown)  # the same keys, images described

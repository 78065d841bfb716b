"""Where an image comes from: local files and http(s) URLs, each under a policy.

:class:`ImagePolicy` says what the judge may do with an image given by reference:

- **Files** (``root``, ``max_bytes``): only regular files are read. A FIFO, a socket, a
  device such as ``/dev/zero`` or a directory is refused before anything is read (and a
  file is opened with ``O_NONBLOCK``, so that one swapped in for it cannot block); a
  file larger than ``max_bytes`` (50 MB by default) is refused from its size, and at most
  ``max_bytes + 1`` bytes are ever read. With an image ``root``, a relative path is
  resolved against it, and a path that leaves it (an absolute path elsewhere, ``../``, or
  a symlink pointing out, once every symlink is resolved) is refused. Without a root
  (the default of the Python API) a path is read as given, ``~`` expanded.
- **http(s) URLs** (``urls``): ``"pass"`` (the Python API's default) sends them as they
  are, for the server to fetch; restrict what vLLM fetches with its own
  ``--allowed-media-domains``. ``"public"`` (``thinking-judge batch``'s default) sends
  only URLs whose host is a public address: an IP literal (in any spelling a fetcher
  accepts, ``2130706433`` or ``0x7f.1`` included) or a name that resolves (within
  :data:`RESOLVE_TIMEOUT_S`) only to global addresses; ``localhost``, loopback,
  private, link-local (``169.254.169.254``), shared, reserved and multicast addresses
  are refused, and so is a name that cannot be resolved or a URL that URL parsers read
  differently (a backslash, a space, a control character). A name resolved here may resolve
  elsewhere for the server (DNS rebinding): for untrusted data, add
  ``--allowed-media-domains`` or ``"refuse"``. ``"refuse"`` refuses every http(s) URL
  (data URLs are not fetched, and stay allowed).

Every refusal is an :class:`~judge.errors.ImageError` for that one image, whose message
names the input safely (:func:`safe_text`); the same message whether or not a refused
file exists.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import stat
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeAlias

from judge.errors import ImageError

UrlPolicy: TypeAlias = Literal["pass", "public", "refuse"]
"""What to do with http(s) image URLs: see the module docstring."""

MAX_IMAGE_BYTES = 50 * 1024 * 1024
"""The default largest image file read (50 MB)."""

RESOLVE_TIMEOUT_S = 2.0
"""How long the ``"public"`` URL policy waits for a host name to resolve."""

BASE64_RUN = re.compile(r"[A-Za-z0-9+/=]{72,}")
"""A run of base64 longer than a SHA-256 in hex: never put in a message."""

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)
_OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_NOCTTY", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)
_AMBIGUOUS = re.compile(r"[\\\x00-\x20\x7f]")
_LOCAL_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")


@dataclass(frozen=True, slots=True)
class ImagePolicy:
    """What the judge may do with an image given as a file path or an http(s) URL.

    Attributes:
        root: The image root: relative paths resolve against it and no path may leave
            it; None (default): paths are read as given.
        urls: ``"pass"``, ``"public"`` or ``"refuse"`` (see the module docstring).
        max_bytes: The largest image file read, in bytes.
    """

    root: Path | None = None
    urls: UrlPolicy = "pass"
    max_bytes: int = MAX_IMAGE_BYTES

    def __post_init__(self) -> None:
        if self.urls not in ("pass", "public", "refuse"):
            raise ValueError(f"image_urls must be 'pass', 'public' or 'refuse', got {self.urls!r}")
        if isinstance(self.max_bytes, bool) or not isinstance(self.max_bytes, int):
            raise ValueError(f"max_image_bytes must be an integer, got {self.max_bytes!r}")
        if self.max_bytes < 1:
            raise ValueError(f"max_image_bytes must be positive, got {self.max_bytes}")


DEFAULT_POLICY = ImagePolicy()
"""Paths read as given, URLs passed through, files up to 50 MB."""


# --------------------------------------------------------------------------- files


def read_image_file(path: str, policy: ImagePolicy = DEFAULT_POLICY) -> bytes:
    """Read an image file under ``policy``, or raise an ImageError that names it safely.

    Args:
        path: The path as given (relative to the image root, if there is one).
        policy: The image root and the size limit.

    Returns:
        The file's bytes (at most ``policy.max_bytes``).

    Raises:
        ImageError: Not found, not a regular file, too large, outside the image root,
            or unreadable.
    """
    try:
        return _read_regular(_locate(path, policy.root), policy.max_bytes)
    except _Refused as exc:
        raise ImageError(str(exc), source=safe_text(path)) from None
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the name
        if BASE64_RUN.fullmatch(path):
            raise ImageError(
                "not a readable file path, a URL or a data URL (raw base64? send it as "
                "data:image/<type>;base64,<data>)",
                source=f"<string of {len(path)} characters>",
            ) from exc
        raise ImageError(_os_message(exc, path), source=safe_text(path)) from exc


class _Refused(Exception):
    """A file refused by the policy (its message; the caller names the file)."""


def _locate(path: str, root: Path | None) -> str:
    """The path to open: as given, or resolved inside ``root`` (ImageError if it leaves)."""
    if root is None:
        return os.fspath(Path(path).expanduser())
    given = Path(os.path.abspath(root))
    base = given.resolve()
    if not base.is_dir():
        raise _Refused(f"the image root {os.fspath(root)!r} is not a directory")
    # First without touching the file system (against the root as given or resolved), so
    # that a path outside is refused alike whether or not it exists; then with every
    # symlink resolved.
    inside = Path(os.path.normpath(given / path))
    lexical = inside.is_relative_to(given) or inside.is_relative_to(base)
    real = inside.resolve() if lexical else inside
    if not real.is_relative_to(base):
        raise _Refused(f"image path leaves the image root {os.fspath(root)!r}")
    return os.fspath(real)  # symlinks resolved: what was checked is what is opened


def _read_regular(path: str, max_bytes: int) -> bytes:
    """Read a regular file of at most ``max_bytes`` bytes; refuse anything else."""
    _check_kind(os.stat(path), max_bytes)  # before opening: never open a device
    fd = os.open(path, _OPEN_FLAGS)
    try:
        _check_kind(os.fstat(fd), max_bytes)  # the file opened, whatever was swapped in
        chunks, left = [], max_bytes + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > max_bytes:
        raise _too_large(len(data), max_bytes)
    return data


def _check_kind(info: os.stat_result, max_bytes: int) -> None:
    if not stat.S_ISREG(info.st_mode):
        kind = next((name for test, name in _KINDS if test(info.st_mode)), "not a file")
        message = (
            "image path is a directory"
            if kind == "a directory"
            else f"image path is not a regular file ({kind})"
        )
        raise _Refused(message)
    if info.st_size > max_bytes:
        raise _too_large(info.st_size, max_bytes)


def _too_large(size: int, max_bytes: int) -> _Refused:
    return _Refused(
        f"image file is too large ({size} bytes; the limit, max_image_bytes, is {max_bytes})"
    )


def _os_message(exc: OSError | ValueError, path: str) -> str:
    if isinstance(exc, FileNotFoundError):
        return "image file not found"
    if isinstance(exc, IsADirectoryError):
        return "image path is a directory"
    if isinstance(exc, UnicodeError):
        return "image path is not valid Unicode (it holds a lone surrogate)"
    if "\0" in path:
        return "image path contains a NUL character"
    reason = getattr(exc, "strerror", None) or type(exc).__name__  # permissions, long names
    return f"cannot read image file ({reason})"


# --------------------------------------------------------------------------- URLs


def check_url(url: str, host: str, policy: ImagePolicy, source: str) -> None:
    """Refuse an http(s) image URL that ``policy`` does not let the server fetch.

    Under ``"public"``, a URL holding a backslash, a space or a control character is
    refused too: URL parsers disagree on where its host ends, so the server's could
    find another host than the one checked here.

    Args:
        url: The URL.
        host: The URL's host (as ``urllib.parse.urlsplit(url).hostname`` gives it).
        policy: The URL policy.
        source: The URL as messages may show it.

    Raises:
        ImageError: The policy refuses the URL.
    """
    if policy.urls == "pass":
        return
    if policy.urls == "refuse":
        raise ImageError(
            "image URLs are refused (image_urls='refuse'): give the image as a file, bytes "
            "or a data URL",
            source=source,
        )
    if _AMBIGUOUS.search(url):
        raise ImageError(
            "image URL refused: it holds a backslash, a space or a control character, "
            "which URL parsers read differently (image_urls='public')",
            source=source,
        )
    reason = private_host(host)
    if reason is not None:
        raise ImageError(
            f"image URL refused: its host is {reason} (image_urls='public' sends only "
            "public addresses for the server to fetch)",
            source=source,
        )


def private_host(host: str) -> str | None:
    """Why the server must not fetch from ``host`` (``"a loopback address"``...), or None.

    IP literals are read as a fetcher would (``socket.inet_aton``'s spellings too); a
    name is resolved, within :data:`RESOLVE_TIMEOUT_S`, and refused when any of its
    addresses is not global or when it cannot be resolved.
    """
    name = host.lower().rstrip(".")
    if name in _LOCAL_NAMES or name.endswith(".localhost"):
        return "a loopback name"
    address = ip_literal(name)
    if address is not None:
        return address_kind(address)
    try:
        addresses = _resolved(name)
    except (OSError, ValueError):  # TimeoutError is an OSError, UnicodeError a ValueError
        return "a name that cannot be resolved here"
    kinds = [kind for kind in map(address_kind, addresses) if kind is not None]
    return f"a name that resolves to {kinds[0]}" if kinds else None


def ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """``host`` as an IP address, in any spelling a fetcher accepts; None for a name."""
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        pass
    if not host or not all(c in "0123456789abcdefx." for c in host):
        return None
    try:  # 2130706433, 0x7f.1, 127.1, 0177.0.0.1
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def address_kind(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """What a non-public ``address`` is (``"a loopback address"``...); None if public."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address.teredo is not None:
            embedded = address.teredo[1]
        if embedded is not None:
            return address_kind(embedded)
    for test, kind in (
        ("is_loopback", "a loopback address"),
        ("is_link_local", "a link-local address"),
        ("is_private", "a private address"),
        ("is_unspecified", "an unspecified address"),
        ("is_multicast", "a multicast address"),
        ("is_reserved", "a reserved address"),
    ):
        if getattr(address, test):
            return kind
    return None if address.is_global else "a non-global address"


# Host names are resolved in daemon threads (getaddrinfo has no timeout of its own, and
# a lookup left hanging must not hold the interpreter at exit), and the answers kept for
# the most recent 256 names: a batch asks the same few hosts.
_RESOLVED_SIZE = 256
_resolved_cache: OrderedDict[str, tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...]] = (
    OrderedDict()
)
_resolved_lock = threading.Lock()


def getaddrinfo_addresses(name: str) -> list[str]:
    """The addresses ``name`` resolves to (``socket.getaddrinfo``); tests replace it."""
    return [str(info[4][0]) for info in socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)]


resolver: Callable[[str], list[str]] = getaddrinfo_addresses
"""The resolver :func:`private_host` uses (replaced in tests: no network there)."""


def _resolved(name: str) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...]:
    with _resolved_lock:
        found = _resolved_cache.get(name)
        if found is not None:
            _resolved_cache.move_to_end(name)
            return found
    answers = _lookup(name)
    found = tuple(ipaddress.ip_address(answer.split("%", 1)[0]) for answer in answers)
    if not found:
        raise OSError("no address")
    with _resolved_lock:
        _resolved_cache[name] = found
        if len(_resolved_cache) > _RESOLVED_SIZE:
            _resolved_cache.popitem(last=False)
    return found


def _lookup(name: str) -> list[str]:
    """``resolver(name)`` in a daemon thread, given up after :data:`RESOLVE_TIMEOUT_S`."""
    outcome: list[list[str] | BaseException] = []
    done = threading.Event()

    def run() -> None:
        try:
            outcome.append(resolver(name))
        except BaseException as exc:  # handed to the caller
            outcome.append(exc)
        finally:
            done.set()

    threading.Thread(target=run, name="image-dns", daemon=True).start()
    if not done.wait(RESOLVE_TIMEOUT_S):
        raise TimeoutError(f"resolving took over {RESOLVE_TIMEOUT_S} s")
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0]


# --------------------------------------------------------------------------- messages


def is_utf8(text: str) -> bool:
    """Whether ``text`` can be encoded as UTF-8 (it holds no lone surrogate)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def safe_text(text: str, limit: int = 160) -> str:
    """``text`` for a message: long base64-like runs elided, at most ``limit`` characters.

    Lone surrogates are written as backslash escapes: an error message must be valid
    Unicode, or the result that carries it could not be written as JSON.
    """
    text = BASE64_RUN.sub(lambda run: f"<{len(run.group())} characters>", text)
    if not text.isascii() and not is_utf8(text):
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(text) <= limit:
        return text
    keep = (limit - 3) // 2
    return f"{text[:keep]}...{text[-keep:]}"


__all__ = [
    "BASE64_RUN",
    "DEFAULT_POLICY",
    "MAX_IMAGE_BYTES",
    "RESOLVE_TIMEOUT_S",
    "ImagePolicy",
    "UrlPolicy",
    "address_kind",
    "check_url",
    "getaddrinfo_addresses",
    "ip_literal",
    "is_utf8",
    "private_host",
    "read_image_file",
    "resolver",
    "safe_text",
]

"""Local files and URLs under the image policy (judge.core.sources).

Only regular files are read, their size checked before reading; with an image root, no
path leaves it (symlinks resolved); http(s) URLs are passed, sent only to public hosts,
or refused. No test touches the network: host names resolve through a stand-in.
"""

from __future__ import annotations

import io
import os
import socket
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from judge.core import sources
from judge.core.images import image_part, image_parts
from judge.core.sources import ImagePolicy, read_image_file
from judge.errors import ImageError


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 12), (10, 200, 30)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def no_dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Host names resolve from this table (unknown names fail), never over the network."""
    table: dict[str, list[str]] = {}

    def resolve(name: str) -> list[str]:
        if name not in table:
            raise socket.gaierror(socket.EAI_NONAME, "unknown name")
        return table[name]

    monkeypatch.setattr(sources, "resolver", resolve)
    monkeypatch.setattr(sources, "_resolved_cache", type(sources._resolved_cache)())
    return table


# --------------------------------------------------------------------- regular files only


def test_dev_zero_is_refused_without_reading_it() -> None:
    started = time.monotonic()
    with pytest.raises(ImageError, match="not a regular file \\(a character device\\)") as info:
        image_part("/dev/zero")
    assert time.monotonic() - started < 1
    assert info.value.source == "/dev/zero"


def test_fifo_is_refused_and_does_not_block(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    done: list[BaseException] = []

    def judge() -> None:
        try:
            image_part(str(fifo))
        except BaseException as exc:  # any outcome is recorded
            done.append(exc)

    thread = threading.Thread(target=judge, daemon=True)
    thread.start()
    thread.join(5)
    if thread.is_alive():  # unblock it before failing
        with open(fifo, "wb"):
            pass
        pytest.fail("reading a FIFO blocked")
    assert isinstance(done[0], ImageError)
    assert "a FIFO" in str(done[0])


def test_socket_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.png"
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(os.fspath(path))
        with pytest.raises(ImageError, match="a socket"):
            image_part(path)
    finally:
        server.close()


def test_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="is a directory"):
        read_image_file(os.fspath(tmp_path))


def test_a_file_over_the_limit_is_refused_from_its_size(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    data = _png()
    path.write_bytes(data)
    assert read_image_file(os.fspath(path), ImagePolicy(max_bytes=len(data))) == data
    with pytest.raises(ImageError, match=f"too large \\({len(data)} bytes.*{len(data) - 1}\\)"):
        read_image_file(os.fspath(path), ImagePolicy(max_bytes=len(data) - 1))


def test_a_sparse_huge_file_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "huge.png"
    with open(path, "wb") as handle:
        handle.truncate(sources.MAX_IMAGE_BYTES + 1)  # sparse: no disk used
    with pytest.raises(ImageError, match="too large"):
        image_part(path)


def test_a_file_that_grows_after_its_stat_is_read_to_the_limit_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "grows.png"
    path.write_bytes(b"x" * 100)

    def small(info: os.stat_result) -> os.stat_result:  # says 10 bytes; the file holds 100
        return os.stat_result((*info[:6], 10, *info[7:]))

    real_stat, real_fstat = os.stat, os.fstat
    monkeypatch.setattr(sources.os, "stat", lambda p: small(real_stat(p)))
    monkeypatch.setattr(sources.os, "fstat", lambda fd: small(real_fstat(fd)))
    with pytest.raises(ImageError, match="too large \\(51 bytes"):
        read_image_file(os.fspath(path), ImagePolicy(max_bytes=50))


@pytest.mark.parametrize("max_bytes", [0, -1, True, 1.5])
def test_max_bytes_must_be_a_positive_integer(max_bytes: object) -> None:
    with pytest.raises(ValueError, match="max_image_bytes"):
        ImagePolicy(max_bytes=max_bytes)  # type: ignore[arg-type]


def test_a_refused_file_fails_its_item_only(tmp_path: Path) -> None:
    good = tmp_path / "good.png"
    good.write_bytes(_png())
    with pytest.raises(ImageError, match="character device"):
        image_parts([good, "/dev/zero"])
    assert len(image_parts([good, good])) == 2

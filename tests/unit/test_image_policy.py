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
from judge.core.sources import ImagePolicy, private_host, read_image_file
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


# --------------------------------------------------------------------- the image root


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """root/ with an image, a sub-folder, and symlinks in and out; secret.png outside."""
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "a.png").write_bytes(_png())
    (root / "sub" / "b.png").write_bytes(_png())
    (tmp_path / "secret.png").write_bytes(_png())
    (root / "in.png").symlink_to(root / "sub" / "b.png")
    (root / "out.png").symlink_to(tmp_path / "secret.png")
    (root / "outdir").symlink_to(tmp_path)
    return root


@pytest.mark.parametrize("path", ["a.png", "sub/b.png", "sub/../a.png", "in.png", "./a.png"])
def test_paths_inside_the_root_are_read(tree: Path, path: str) -> None:
    assert read_image_file(path, ImagePolicy(root=tree)) == _png()


def test_an_absolute_path_inside_the_root_is_read(tree: Path) -> None:
    assert read_image_file(os.fspath(tree / "a.png"), ImagePolicy(root=tree)) == _png()


@pytest.mark.parametrize(
    "path",
    ["../secret.png", "sub/../../secret.png", "out.png", "outdir/secret.png", "/etc/passwd"],
)
def test_paths_leaving_the_root_are_refused(tree: Path, path: str) -> None:
    with pytest.raises(ImageError, match="leaves the image root") as info:
        read_image_file(path, ImagePolicy(root=tree))
    assert info.value.source == path


def test_an_absolute_path_to_the_secret_is_refused(tree: Path) -> None:
    secret = os.fspath(tree.parent / "secret.png")
    with pytest.raises(ImageError, match="leaves the image root"):
        image_part(secret, policy=ImagePolicy(root=tree))
    assert image_part(secret)  # without a root, read as given


def test_whether_a_file_outside_exists_is_not_told(tree: Path) -> None:
    policy = ImagePolicy(root=tree)
    messages = set()
    for path in ("../secret.png", "../no-such.png"):
        with pytest.raises(ImageError) as info:
            read_image_file(path, policy)
        messages.add(str(info.value).replace(path, "PATH"))
    assert len(messages) == 1


def test_a_relative_root_and_a_symlinked_root(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tree.parent)
    assert read_image_file("sub/b.png", ImagePolicy(root=Path("root"))) == _png()
    link = tmp_path / "link"
    link.symlink_to(tree)
    assert read_image_file(os.fspath(link / "a.png"), ImagePolicy(root=link)) == _png()
    assert read_image_file(os.fspath(tree / "a.png"), ImagePolicy(root=link)) == _png()
    with pytest.raises(ImageError, match="leaves"):
        read_image_file(os.fspath(link / ".." / "secret.png"), ImagePolicy(root=link))


def test_a_missing_root_is_an_image_error(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match=r"image root .* is not a directory"):
        read_image_file("a.png", ImagePolicy(root=tmp_path / "nope"))


def test_the_judge_refuses_a_path_outside_its_root_for_that_input_only(tree: Path) -> None:
    from judge import ThinkingRewardJudge
    from judge.testing.fake import FakeBackend

    judge = ThinkingRewardJudge(backend=FakeBackend(scores=[0.7, 1.0]), image_root=tree)
    good = {"question": "q", "response": "r", "image": "a.png"}
    bad = {"question": "q", "response": "r", "image": "../secret.png"}
    dev = {"question": "q", "response": "r", "image": "/dev/zero"}
    scores = judge.batch([good, bad, dev, good])
    assert [s.ok for s in scores] == [True, False, False, True]
    assert "leaves the image root" in (scores[1].error or "")
    assert "leaves the image root" in (scores[2].error or "")
    assert scores[1].error_kind == scores[2].error_kind == "input"


def test_batch_records_resolve_against_the_data_folder(tree: Path) -> None:
    from judge.core.inputs import record_input

    row = {"question": "q", "response": "r", "images": ["a.png", "../secret.png"]}
    item = record_input(row, tree)
    policy = ImagePolicy(root=tree)
    assert image_parts(item["images"][0], policy=policy)
    with pytest.raises(ImageError, match="leaves the image root"):
        image_parts(item["images"][1], policy=policy)


# --------------------------------------------------------------------- http(s) URLs

PUBLIC = ImagePolicy(urls="public")


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("http://127.0.0.1/a.png", "loopback"),
        ("http://127.0.0.1:8000/v1/models", "loopback"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://10.1.2.3/a.png", "private"),
        ("http://192.168.0.1/a.png", "private"),
        ("http://172.16.0.1/a.png", "private"),
        ("http://[::1]/a.png", "loopback"),
        ("http://[::ffff:127.0.0.1]/a.png", "loopback"),
        ("http://[fe80::1%25eth0]/a.png", "link-local"),
        ("http://[fd00::1]/a.png", "private"),
        ("http://localhost/a.png", "loopback name"),
        ("http://LocalHost./a.png", "loopback name"),
        ("http://api.localhost/a.png", "loopback name"),
        ("http://0.0.0.0/a.png", "private"),
        ("http://2130706433/a.png", "loopback"),
        ("http://0x7f.1/a.png", "loopback"),
        ("http://127.1/a.png", "loopback"),
        ("http://0177.0.0.1/a.png", "loopback"),
        ("http://100.64.0.1/a.png", "non-global"),
        ("https://user:pw@127.0.0.1/a.png?token=s3cr3t", "loopback"),
    ],
)
def test_public_policy_refuses_non_public_hosts(no_dns: object, url: str, kind: str) -> None:
    with pytest.raises(ImageError, match=f"its host is an? {kind}") as info:
        image_part(url, policy=PUBLIC)
    assert "s3cr3t" not in str(info.value)
    assert "pw" not in str(info.value)


def test_public_policy_resolves_names(no_dns: dict[str, list[str]]) -> None:
    no_dns["images.example.com"] = ["93.184.216.34"]
    no_dns["evil.example.com"] = ["93.184.216.34", "127.0.0.1"]
    no_dns["meta.example.com"] = ["169.254.169.254"]
    url = "https://images.example.com/a.png"
    assert image_part(url, policy=PUBLIC)["image_url"]["url"] == url
    assert image_part("https://93.184.216.34/a.png", policy=PUBLIC)
    with pytest.raises(ImageError, match="resolves to a loopback address"):
        image_part("https://evil.example.com/a.png", policy=PUBLIC)
    with pytest.raises(ImageError, match="resolves to a link-local address"):
        image_part("https://meta.example.com/a.png", policy=PUBLIC)
    with pytest.raises(ImageError, match="cannot be resolved"):
        image_part("https://unknown.example.com/a.png", policy=PUBLIC)


def test_a_slow_resolver_is_given_up_on(no_dns: object, monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    monkeypatch.setattr(sources, "RESOLVE_TIMEOUT_S", 0.2)
    monkeypatch.setattr(sources, "resolver", lambda name: release.wait(5) and [])
    started = time.monotonic()
    try:
        assert private_host("slow.example.com") == "a name that cannot be resolved here"
    finally:
        release.set()
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("url", ["http://127.0.0.1/a.png", "https://images.example.com/a.png"])
def test_refuse_policy_refuses_every_url_but_data_urls(url: str) -> None:
    with pytest.raises(ImageError, match="image URLs are refused"):
        image_part(url, policy=ImagePolicy(urls="refuse"))
    data = "data:image/png;base64," + __import__("base64").b64encode(_png()).decode()
    assert image_part(data, policy=ImagePolicy(urls="refuse"))


def test_pass_policy_is_the_default_and_sends_any_host() -> None:
    for url in ("http://127.0.0.1/a.png", "http://169.254.169.254/x"):
        assert image_part(url)["image_url"]["url"] == url


def test_unknown_url_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="image_urls"):
        ImagePolicy(urls="fetch")  # type: ignore[arg-type]


def test_the_judge_applies_its_url_policy_per_input(no_dns: object) -> None:
    from judge import ThinkingRewardJudge
    from judge.testing.fake import FakeBackend

    judge = ThinkingRewardJudge(backend=FakeBackend(scores=[0.7]), image_urls="public")
    good = {"question": "q", "response": "r"}
    bad = {"question": "q", "response": "r", "image": "http://169.254.169.254/latest"}
    scores = judge.batch([good, bad, good])
    assert [s.ok for s in scores] == [True, False, True]
    assert "link-local" in (scores[1].error or "")


# --------------------------------------------------------------------- thinking-judge batch


def _batch(tmp_path: Path, rows: list[dict[str, object]], *extra: str) -> list[dict[str, object]]:
    import importlib
    import json

    from backends import FakeBackend

    cli = importlib.import_module("judge.cli.main")
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    source = data / "in.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    out = tmp_path / "out.jsonl"
    out.unlink(missing_ok=True)
    made = FakeBackend(scores=[0.5])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            importlib.import_module("judge.cli.common"), "make_backend", lambda *a, **k: made
        )
        cli.main(["batch", str(source), "-o", str(out), "--progress", "off", *extra])
    found = [json.loads(line) for line in out.read_text().splitlines()]
    return sorted(found, key=lambda line: str(line.get("id")))


def test_batch_keeps_image_paths_inside_the_input_folder_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_dns: object
) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.png").write_bytes(_png())
    (tmp_path / "secret.png").write_bytes(_png())
    monkeypatch.chdir(tmp_path)  # a relative input path
    rows = [
        {"id": "1", "question": "q", "response": "r", "image": "a.png"},
        {"id": "2", "question": "q", "response": "r", "image": "../secret.png"},
        {"id": "3", "question": "q", "response": "r", "image": str(tmp_path / "secret.png")},
        {"id": "4", "question": "q", "response": "r", "image": "/dev/zero"},
        {"id": "5", "question": "q", "response": "r", "image": "http://169.254.169.254/x"},
        {"id": "6", "question": "q", "response": "r", "images": [{"path": "../secret.png"}]},
    ]
    found = _batch(Path(), rows)
    assert [line.get("score") for line in found] == [0.5, None, None, None, None, None]
    for line in found[1:4] + found[5:]:
        assert "leaves the image root" in str(line["error"])
    assert "link-local" in str(found[4]["error"])
    # --image-root: relative paths are read from the root (so "a.png" is not found and
    # "../secret.png" leaves it), an absolute path inside it is read.
    widened = _batch(Path(), rows, "--image-root", str(tmp_path), "--image-urls", "pass")
    assert [line.get("score") for line in widened] == [None, None, 0.5, None, 0.5, None]
    assert "leaves the image root" in str(widened[1]["error"])
    assert "leaves the image root" in str(widened[3]["error"])
    assert "leaves the image root" in str(widened[5]["error"])


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1\\@images.example.com/a.png",
        "http://images.example.com\\@127.0.0.1/a.png",
        "http://images.example.com /a.png",
        "http://images.example.com/a.png\t",
        "http://images.example.com\x00.evil/a.png",
    ],
)
def test_public_policy_refuses_urls_that_parsers_read_differently(
    no_dns: dict[str, list[str]], url: str
) -> None:
    no_dns["images.example.com"] = ["93.184.216.34"]
    with pytest.raises(ImageError, match="parsers read differently"):
        image_part(url, policy=PUBLIC)
    assert image_part(url)  # passed through under "pass", as before

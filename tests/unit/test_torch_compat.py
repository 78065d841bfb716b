"""The torch compatibility shim hides media packages whose libraries cannot load."""

from __future__ import annotations

import importlib.util
import sys

import pytest

pytest.importorskip("torch", reason="the shim only matters where torch is installed")

from backends import _torch_compat


@pytest.fixture
def fake_package(tmp_path, monkeypatch):
    package = tmp_path / "fake_media_pkg"
    (package / "lib").mkdir(parents=True)
    (package / "__init__.py").write_text("raise OSError('would fail like a mismatched build')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "fake_media_pkg", raising=False)
    importlib.invalidate_caches()
    return package


def test_a_package_whose_library_cannot_load_looks_absent(fake_package, monkeypatch):
    (fake_package / "lib" / "_ext.so").write_bytes(b"not a shared library")
    monkeypatch.setattr(_torch_compat, "_MEDIA_LIBRARIES", (("fake_media_pkg", "lib/_ext.so"),))
    _torch_compat._hide_unloadable_media_packages()
    assert sys.modules["fake_media_pkg"] is None
    assert importlib.util.find_spec("fake_media_pkg") is None
    with pytest.raises(ImportError):
        import fake_media_pkg  # noqa: F401
    sys.modules.pop("fake_media_pkg")


def test_a_package_without_that_library_is_left_alone(fake_package, monkeypatch):
    monkeypatch.setattr(_torch_compat, "_MEDIA_LIBRARIES", (("fake_media_pkg", "lib/_ext.so"),))
    _torch_compat._hide_unloadable_media_packages()
    assert "fake_media_pkg" not in sys.modules


def test_torchvision_imports_after_install():
    if importlib.util.find_spec("torchvision") is None:
        pytest.skip("torchvision is not installed")
    _torch_compat.install()
    import torchvision

    assert torchvision.__version__

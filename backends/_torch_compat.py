"""Let torch's companion packages import, or stay out of the way, beside vLLM's CPU torch.

Two repairs, both no-ops on a consistent install (e.g. vLLM's GPU wheels):

* torchvision built for CUDA beside a CPU torch: its operator schemas are declared so
  that ``import torchvision`` succeeds (below).
* torchaudio / torchcodec built for another torch: their libraries cannot load, so they
  are made to look absent (:func:`_hide_unloadable_media_packages`); judging images
  needs neither.

vLLM's CPU wheel pins a CPU build of torch, but the torchvision that pip then takes
from PyPI is a CUDA build: its ``_C`` extension needs ``libtorch_cuda.so`` and does
not load. torchvision copes with that, except that ``torchvision/_meta_registrations.py``
registers fake kernels for ``torchvision::nms`` and ``torchvision::qnms`` without
checking, so the import dies with ``RuntimeError: operator torchvision::nms does not
exist``. transformers imports torchvision for Qwen2.5-VL's image and video processors,
and vLLM imports those in every process that loads the model.

:func:`install` declares the schemas of those two operators (no kernels) when, and
only when, the extension cannot load, so that the import succeeds; torchvision's own
``_has_ops()`` still reports the missing operators, and calling
``torchvision.ops.nms`` still raises torchvision's clear error. Nothing else in
torchvision is touched, and a torchvision whose extension loads is left alone.

Where the repair runs
---------------------
Only in processes this project starts or loads vLLM in, never in a process that merely
has the project installed (no entry point of this distribution is registered with torch
or vLLM: those would fire in every ``import torch`` or every vLLM process of the user's
environment):

* **this process, on demand**: :func:`install` is called before vLLM or transformers is
  imported by the in-process engine (:func:`backends.vllm_offline.import_vllm`, through
  :func:`install_in_process_tree`) and by :func:`judge.testing.build_tiny_model`;
* **the Python processes the project starts**: the repair has to run before torchvision
  is first imported in every Python process that may import it, including the fresh
  interpreters vLLM starts for itself (its model registry inspects model classes in a
  ``python -m vllm.model_executor.models.registry`` subprocess, which imports
  transformers, hence torchvision, before anything else; its engine core runs in another
  process). So a process the project starts is given :func:`child_environment`: its
  ``PYTHONPATH`` begins with :data:`SITE_DIR`, a private folder of this package that
  holds only a ``sitecustomize.py``. Python's :mod:`site` imports it at start-up; it
  loads this file (by its path, without importing the ``backends`` package), calls
  :func:`install_on_import`, which runs :func:`install` right after the process's first
  ``import torch`` (the moment torch's own entry points would run), and then runs the
  ``sitecustomize`` the interpreter would have run without us, if any
  (:func:`run_next_sitecustomize`). The variable is inherited, so vLLM's own children
  (engine core, registry subprocess, multiprocessing workers) run the repair too. The
  server launcher (:mod:`backends.vllm_launch`, used by ``launch``, ``serve`` and
  ``demo``) passes ``child_environment()`` to the server; the in-process engine puts
  :data:`SITE_DIR` on its own ``os.environ["PYTHONPATH"]`` (:func:`install_in_process_tree`)
  so that the processes vLLM starts from it inherit it.

This module imports nothing but the standard library at import time (the start-up hook
loads it by path in every such process), and nothing of this project ever.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import pathlib
import sys
import warnings
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any

__all__ = [
    "SITE_DIR",
    "child_environment",
    "install",
    "install_in_process_tree",
    "install_on_import",
    "run_next_sitecustomize",
]

SITE_DIR = pathlib.Path(__file__).resolve().with_name("_torch_compat_site")
"""The folder whose ``sitecustomize.py`` runs the repair in the processes the project starts."""

_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}

# The library each package loads first at import, relative to the package folder.
_MEDIA_LIBRARIES = (
    ("torchaudio", "lib/_torchaudio.abi3.so"),
    ("torchcodec", "libtorchcodec_image.so"),
)

# torch drops a library's registrations when the Library object is collected.
_library: Any = None
# The media packages are checked once per process (a check may load a library).
_media_checked = False


def child_environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a Python process the project starts, with the repair in it.

    Args:
        base: The environment to start from (default: this process's ``os.environ``).
            It is not changed.

    Returns:
        A copy of ``base`` whose ``PYTHONPATH`` begins with :data:`SITE_DIR` (added once;
        the entries already there keep their order after it).
    """
    environment = dict(os.environ if base is None else base)
    site = str(SITE_DIR)
    entries = [entry for entry in environment.get("PYTHONPATH", "").split(os.pathsep) if entry]
    if site not in entries:
        environment["PYTHONPATH"] = os.pathsep.join([site, *entries])
    return environment


def install_in_process_tree() -> bool:
    """Run the repair here, and in every Python process this process starts from now on.

    For a process that loads vLLM itself (the in-process engine): :func:`install` now,
    and :data:`SITE_DIR` at the head of ``os.environ["PYTHONPATH"]`` so that the
    processes vLLM starts inherit the start-up hook. Safe to call any number of times.

    Returns:
        What :func:`install` returns.
    """
    os.environ["PYTHONPATH"] = child_environment(os.environ)["PYTHONPATH"]
    return install()


def install() -> bool:
    """Declare torchvision's ``nms``/``qnms`` schemas if its extension cannot load.

    Safe to call any number of times, in any process, before or after ``import torch``.

    Returns:
        Whether the shim is in effect: false when torchvision is not installed, was
        imported before, or has working compiled operators.
    """
    global _library, _media_checked
    if not _media_checked:
        _media_checked = True  # set first: the check may import torch, which may call us again
        _hide_unloadable_media_packages()
    if _library is not None:
        return True
    extension = _extension_path()
    if extension is None:
        return False

    # In a process started with child_environment(), this first import of torch runs the
    # start-up hook's copy of this module first; then the check below finds the schemas.
    import torch

    if _library is not None:
        return True
    if all(hasattr(torch.ops.torchvision, name) for name in _SCHEMAS):
        return False
    try:
        torch.ops.load_library(str(extension))
    except (ImportError, OSError):
        pass
    else:
        return False
    library = torch.library.Library("torchvision", "FRAGMENT")
    for schema in _SCHEMAS.values():
        library.define(schema)
    _library = library
    return True


def _hide_unloadable_media_packages() -> None:
    """Make torchaudio / torchcodec look absent when their libraries cannot load.

    vLLM's CPU wheel pulls in whatever torchaudio and torchcodec PyPI has, built for
    another torch; their libraries then fail with ``OSError`` at import -- and
    transformers and vLLM import them whenever they look installed, though judging
    images needs neither. ``sys.modules[name] = None`` makes ``import name`` raise
    ImportError and ``importlib.util.find_spec`` return None, which is how optional
    dependency checks (transformers' and vLLM's) see "not installed".
    """
    for package, library in _MEDIA_LIBRARIES:
        if package in sys.modules:
            continue
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            continue
        path = pathlib.Path(spec.submodule_search_locations[0], library)
        if not path.exists():
            continue
        import torch

        try:
            torch.ops.load_library(str(path))
        except (ImportError, OSError):
            sys.modules[package] = None  # type: ignore[assignment]
            _forget_cached_availability()


def _forget_cached_availability() -> None:
    """Clear transformers' cached "is torchaudio / torchcodec available" answers.

    When transformers was imported before torch (``import transformers`` first), it has
    already answered "available" and cached it; without this, its model modules would
    then try the import and fail.
    """
    utils = sys.modules.get("transformers.utils.import_utils")
    if utils is None:
        return
    for name in ("is_torchaudio_available", "is_speech_available", "is_torchcodec_available"):
        clear = getattr(getattr(utils, name, None), "cache_clear", None)
        if clear is not None:
            clear()


def _extension_path() -> pathlib.Path | None:
    """Return the path of torchvision's ``_C`` extension, without importing torchvision."""
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return None
    finder = importlib.machinery.FileFinder(
        spec.submodule_search_locations[0],
        (importlib.machinery.ExtensionFileLoader, importlib.machinery.EXTENSION_SUFFIXES),
    )
    extension = finder.find_spec("_C")
    if extension is None or extension.origin is None:
        return None
    return pathlib.Path(extension.origin)


def _autoload() -> None:
    """Run :func:`install` from the start-up hook; a failure is a warning, not a crash."""
    try:
        install()
    except Exception as error:
        warnings.warn(
            f"torch compatibility shim not installed: {error!r}", RuntimeWarning, stacklevel=2
        )


class _RepairAfterTorch(importlib.abc.MetaPathFinder):
    """Finds nothing itself: hands torch's spec a loader that runs the repair afterwards."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "torch":
            return None
        # Not removed here: find_spec("torch") is also how libraries ask whether torch is
        # installed (transformers does at import); the loader removes it once torch runs.
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None) if finder is not self else None
            spec: importlib.machinery.ModuleSpec | None = (
                find(fullname, path, target) if find is not None else None
            )
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None:
            spec.loader = _RepairAfterLoading(spec.loader)
        return spec


class _RepairAfterLoading(importlib.abc.Loader):
    """Loads the module with the real loader, then runs the repair."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self.loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        # torch sees its real loader, as it would without us
        module.__loader__ = self.loader
        if module.__spec__ is not None:
            module.__spec__.loader = self.loader
        _remove_finder()
        self.loader.exec_module(module)
        _autoload()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)


def _remove_finder() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _RepairAfterTorch)]


def install_on_import() -> None:
    """Run :func:`install` right after this process first imports torch.

    Called by the start-up hook in :data:`SITE_DIR`, so that starting an interpreter does
    not import torch. If torch is already imported, the repair runs now.
    """
    if "torch" in sys.modules:
        _autoload()
        return
    if not any(isinstance(finder, _RepairAfterTorch) for finder in sys.meta_path):
        sys.meta_path.insert(0, _RepairAfterTorch())


def run_next_sitecustomize(own_dir: str | os.PathLike[str]) -> ModuleType | None:
    """Run the ``sitecustomize`` module the interpreter would have run without ``own_dir``.

    The start-up hook in ``own_dir`` took the name ``sitecustomize``, which Python imports
    once; this finds the next one on ``sys.path`` (a distribution's or the system's),
    runs it and leaves it in ``sys.modules["sitecustomize"]``.

    Args:
        own_dir: The hook's folder, skipped in the search.

    Returns:
        The module run, or None when there is no other ``sitecustomize``.
    """
    own = os.path.realpath(own_dir)
    search = [entry for entry in sys.path if os.path.realpath(entry or os.curdir) != own]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", search)
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    sys.modules["sitecustomize"] = module
    spec.loader.exec_module(module)
    return module

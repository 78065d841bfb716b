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

It has to run before torchvision is first imported in every Python process that may
import it, including the fresh interpreters vLLM starts for itself (its model
registry inspects model classes in a ``python -m vllm.model_executor.models.registry``
subprocess, which imports transformers, hence torchvision, before anything else). So
:func:`autoload` is registered in the project's ``pyproject.toml`` under torch's own
extension entry point group, ``torch.backends``, which torch calls at the end of
``import torch`` in every process (unless ``TORCH_DEVICE_BACKEND_AUTOLOAD=0``)::

    [project.entry-points."torch.backends"]
    torch_compat = "backends._torch_compat:autoload"

Where the project is not installed, call :func:`install` before importing
transformers.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import pathlib
import sys
import warnings
from typing import Any

__all__ = ["autoload", "install"]

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


def install() -> bool:
    """Declare torchvision's ``nms``/``qnms`` schemas if its extension cannot load.

    Safe to call any number of times, in any process, before or after ``import torch``.

    Returns:
        Whether the shim is in effect: false when torchvision is not installed, was
        imported before, or has working compiled operators.
    """
    global _library, _media_checked
    if not _media_checked:
        _media_checked = True  # set first: the check may import torch, which calls us again
        _hide_unloadable_media_packages()
    if _library is not None:
        return True
    extension = _extension_path()
    if extension is None:
        return False

    import torch  # The first import runs autoload(), hence this function, itself.

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


def autoload() -> None:
    """Run :func:`install` from torch's ``torch.backends`` entry point group.

    torch turns any exception raised here into a failed ``import torch``, so a failure
    is reported as a warning instead.
    """
    try:
        install()
    except Exception as error:
        warnings.warn(
            f"torch compatibility shim not installed: {error!r}", RuntimeWarning, stacklevel=2
        )

"""Names a package exports but imports on first use, in the manner of vLLM's ``MODULE_ATTRS``.

::

    __getattr__, __dir__ = lazy_attributes(__name__, {"Name": "package.module"})
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Container, Mapping
from typing import Any


def lazy_attributes(
    module: str, table: Mapping[str, str], *, uncached: Container[str] = ()
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A module's ``__getattr__`` and ``__dir__`` (PEP 562) for names imported on first use.

    Args:
        module: The exporting module's ``__name__``.
        table: Public name -> the module that defines it.
        uncached: Names looked up anew each time (e.g. one whose module may fail to
            import for want of an optional package, so that installing it later works).

    Returns:
        ``(__getattr__, __dir__)``, to assign at the module's top level.
    """

    def __getattr__(name: str) -> Any:
        source = table.get(name)
        if source is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(source), name)
        if name not in uncached:
            setattr(sys.modules[module], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[module]), *table})

    return __getattr__, __dir__


__all__ = ["lazy_attributes"]

"""Moved to :mod:`backends.caching` (the cache is a backend wrapper now).

Kept only while ``judge.runnable`` and ``judge.cli`` still import this path; deleted
when they import :mod:`backends.caching`.
"""

from backends.caching import CacheStats, CacheWarning, JudgmentCache
from backends.errors import CacheError

__all__ = ["CacheError", "CacheStats", "CacheWarning", "JudgmentCache"]

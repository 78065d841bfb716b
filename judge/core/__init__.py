"""The pure judging core: no network I/O, no Runnable.

Prompt rendering (:mod:`judge.core.prompt`), special-token neutralisation
(:mod:`judge.core.sanitize`), image encoding (:mod:`judge.core.images`) and answer parsing
(:mod:`judge.core.parse`), the expected score (:mod:`judge.core.expected`).
"""

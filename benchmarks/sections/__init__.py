"""The docs' sections (``benchmarks/render.py``), one module per study, listed in ``render.SECTION_MODULES``.
A section is ``fn(page, *datas) -> str``: the Markdown of its block, made from the JSON files the block
names (loaded, in that order); ``page.figures`` is where a plot goes (``None``: do not draw it). Numbers
are formatted here and nowhere else; nothing here measures. A new study: its script writes JSON only (resumable
pieces through ``study.StudyState`` / ``study.train_or_load``), a module here, its page written by hand around
the blocks; published numbers go in ``docs/paper_numbers.json``."""

from __future__ import annotations


def table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table (a row may have fewer cells than the header)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def by_t(values: dict, ts: list[str], fmt: str) -> list[str]:
    """``values[T]`` formatted with ``fmt`` for every T of ``ts`` (JSON keys: strings)."""
    return [format(values[t], fmt) for t in ts]

"""Render the docs' tables and plots from the studies' JSON.

A page in docs/ is written by hand, except its blocks ``<!-- generated: low_latency.accuracy from
low_latency.json -->`` ... ``<!-- end generated -->``: each is replaced by what the section function
(``benchmarks/sections/low_latency.py``) makes of the JSON files it names (relative to the page; e.g. a
study's results and ``paper_numbers.json``). A section that draws a plot writes its PNG beside the page.

    python benchmarks/render.py                        # every page in docs/
    python benchmarks/render.py docs/LOW_LATENCY.md    # one page
    python benchmarks/render.py --check                # exit 1 where a page differs from its JSON
    python benchmarks/render.py docs/LOW_LATENCY.md --data low_latency.json=runs/x.json --out LL_preview.md
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import json
import re
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # a section may format with the library (this checkout's, not an installed one)
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sections package beside this file
#: The modules of benchmarks/sections/ a block may name (one per study).
SECTION_MODULES = ("low_latency", "converter", "rnn", "speed", "fidelity", "shift_scale", "paper_tables")
BLOCK = re.compile(r"(<!-- generated: (\S+) from ([^>]+?) -->\n)(.*?)(<!-- end generated -->)", re.S)


@dataclass
class Page:
    """Where a page's figures go (``None``: do not write them), which JSON stands for which name, and
    (while a block renders) the JSON names the block gives, in order (e.g. to name its figure)."""

    figures: Path | None = None
    data: dict[str, Path] = field(default_factory=dict)
    names: tuple[str, ...] = ()


def section(name: str):
    """The section function ``module.function``, or an error naming the known modules."""
    module, _, function = name.partition(".")
    if module not in SECTION_MODULES:
        raise ValueError(
            f"unknown section {name!r}: its module must be one of {SECTION_MODULES} (benchmarks/sections/)"
        )
    fn = getattr(importlib.import_module(f"sections.{module}"), function, None)
    if fn is None or function.startswith("_"):
        raise ValueError(f"benchmarks/sections/{module}.py has no section {function!r}")
    return fn


def render(text: str, folder: Path, page: Page) -> str:
    """``text`` with every generated block rendered from its JSON files (names relative to ``folder``)."""

    def fill(m: re.Match) -> str:
        names = tuple(m[3].split())
        files = [page.data.get(n, folder / n) for n in names]
        if missing := [str(f) for f in files if not f.is_file()]:
            raise ValueError(f"section {m[2]} reads {missing}: no such file (run its study, or pass --data)")
        datas = [json.loads(f.read_text()) for f in files]
        body = section(m[2])(replace(page, names=names), *datas).rstrip("\n")
        return f"{m[1]}{body}\n{m[5]}" if body else f"{m[1]}{m[5]}"

    return BLOCK.sub(fill, text)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pages", nargs="*", type=Path, help="default: every docs/*.md with a generated block")
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 where a page would change")
    p.add_argument("--data", nargs="*", default=[], metavar="NAME=PATH", help="read PATH where a block names NAME")
    p.add_argument("--out", type=Path, help="write the (one) page here instead, its figures beside it")
    args = p.parse_args()
    pages = args.pages or sorted((REPO / "docs").glob("*.md"))
    if args.out and len(pages) != 1:
        p.error("--out takes one page: name it, e.g. docs/LOW_LATENCY.md")
    if any("=" not in d for d in args.data):
        p.error(f"--data takes NAME=PATH pairs, got {args.data}")
    data = {name: Path(path) for name, path in (d.split("=", 1) for d in args.data)}
    stale = []
    for path in pages:
        text = path.read_text()
        if not BLOCK.search(text):
            continue
        target = args.out or path
        target.parent.mkdir(parents=True, exist_ok=True)
        new = render(text, path.parent, Page(None if args.check else target.parent, data))
        if args.check:
            if new != text:
                stale.append(path)
                sys.stdout.writelines(difflib.unified_diff(text.splitlines(True), new.splitlines(True), str(path)))
        else:
            target.write_text(new)
            print(f"rendered {target}")
    if stale:
        sys.exit(
            f"{', '.join(map(str, stale))}: differ from their JSON; run python benchmarks/render.py to rewrite them"
        )


if __name__ == "__main__":
    main()

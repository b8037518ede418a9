"""How much of each lesson is library code a learner has to scroll past.

For every lesson notebook (the 'Chapters' section of nbs/sidebar.yml) this counts the lines of all cells, and the
lines of *visible exported* cells: cells with an `#| export`, `#| exports` or `#| exporti` directive, unless they are
both folded in the docs (`#| code-fold: true`) and collapsed in JupyterLab (cell metadata `jupyter.source_hidden`).
Implementation belongs in the chapter's companion notebook ('How it works' section), not in the lesson.

    python tools/lesson_share.py          # print the table
    python tools/lesson_share.py --check  # also exit 1 if a lesson is above the limit (the test command runs this)
"""
import argparse, sys
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
import nbsync  # noqa: E402

LIMIT = 0.25
EXPORT = ("export", "exports", "exporti")


def _directives(src):
    return {l[2:].split(":")[0].strip(): l[2:].split(":", 1)[1].strip() if ":" in l else ""
            for l in src.splitlines() if l.startswith("#|")}


def visible_export(cell) -> bool:
    "True for an exported code cell a reader sees in full."
    if cell.cell_type != "code": return False
    d = _directives(cell.source)
    if not any(k in d for k in EXPORT): return False
    hidden = d.get("code-fold") == "true" and cell.metadata.get("jupyter", {}).get("source_hidden", False)
    return not hidden


def share(path) -> tuple:
    "(visible exported lines, all lines, share) for one notebook."
    nb = nbformat.read(path, as_version=4)
    n = lambda c: len(c.source.splitlines())
    total = sum(n(c) for c in nb.cells)
    exported = sum(n(c) for c in nb.cells if visible_export(c))
    return exported, total, exported / max(total, 1)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help=f"exit 1 if a lesson's share is above {LIMIT:.0%}")
    args = ap.parse_args(argv)
    bad = []
    print(f"{'lesson':<34} {'exported':>8} {'lines':>6} {'share':>6}")
    for name in nbsync.lessons():
        e, t, s = share(nbsync.NBS/name)
        flag = "  <- above the limit" if s > LIMIT else ""
        print(f"{name:<34} {e:>8} {t:>6} {s:>6.0%}{flag}")
        if s > LIMIT: bad.append(name)
    print(f"limit: {LIMIT:.0%} of a lesson's lines in visible exported cells")
    if args.check and bad:
        print(f"Move implementation to the companion notebooks: {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

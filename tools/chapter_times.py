"""Measure each lesson's run time and estimate its reading time: the home page's "Time per chapter" table.

Run time: the lesson run top to bottom by `nbdev-test`, offline, one thread for torch, as CPU time (user + system of
the child processes), which is what the run costs one core whatever else the machine is doing. Reading: the prose at
200 words a minute and the visible code at 10 lines a minute, rounded up to 5 minutes (an estimate, not a measurement).

    python tools/chapter_times.py                    # every lesson; prints the markdown table
    python tools/chapter_times.py --no-run           # reading estimates only (run time '?')
    python tools/chapter_times.py --timing-log LOG   # run times from `nbdev-test --timing` lines ('NAME.ipynb: N secs')
"""
import argparse, math, os, re, resource, subprocess, sys, time
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).parent))
import nbsync  # noqa: E402

ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
       "TOKENIZERS_PARALLELISM": "false", "MPLBACKEND": "Agg", "SFT_COURSE_REPORT_TO": "none"}


def reading_minutes(nb) -> int:
    "Prose at 200 words a minute plus visible code at 10 lines a minute, rounded up to 5 minutes."
    words = sum(len(re.findall(r"\w+", c.source)) for c in nb.cells if c.cell_type == "markdown")
    code = sum(len([l for l in c.source.splitlines() if l.strip() and not l.startswith("#|")]) for c in nb.cells
               if c.cell_type == "code" and not re.search(r"^#\|\s*(hide|export)", c.source, re.M))
    return max(5, 5 * math.ceil((words / 200 + code / 10) / 5))


def cpu_seconds(path: Path) -> float:
    "CPU time (user + system) of `nbdev-test` running one notebook."
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(["nbdev-test", str(path)], check=True,
                   env=os.environ | ENV, capture_output=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def fmt(s: float) -> str: return "under 1 s" if s < 1 else f"{s:.0f} s" if s < 90 else f"{s / 60:.1f} min"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-run", action="store_true", help="reading estimates only")
    ap.add_argument("--timing-log", help="a log with nbdev-test --timing lines: wall-clock seconds instead of CPU time")
    args = ap.parse_args(argv)
    logged = dict(re.findall(r"^(\S+\.ipynb): (\d+) secs$", Path(args.timing_log).read_text(), re.M)) if args.timing_log else {}
    rows, total = [], 0.0
    for name in nbsync.lessons():
        nb = nbformat.read(nbsync.NBS/name, as_version=4)
        title = nbsync.title_and_summary(nb)[0]
        t0 = time.time()
        cpu = float(logged[name]) if logged else None if args.no_run else cpu_seconds(nbsync.NBS/name)
        if cpu is not None:
            total += cpu
            print(f"{name}: {cpu:.0f} s CPU, {time.time() - t0:.0f} s wall", file=sys.stderr)
        rows.append(f"| {title} | {'?' if cpu is None else fmt(cpu)} | {reading_minutes(nb)} min |")
    what = "wall clock, in CI (measured)" if logged else "offline on one CPU core (measured)"
    print(f"| chapter | run time, {what} | reading and exercises (estimate) |")
    print("|---|---|---|")
    print("\n".join(rows))
    if not args.no_run: print(f"\nwhole course: {fmt(total)} CPU", file=sys.stderr)


if __name__ == "__main__":
    main()

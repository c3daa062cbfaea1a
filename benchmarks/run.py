"""Run every benchmark, print one table of ratios, write JSON and a plot.

    python -m benchmarks.run              # the full table (about 5 minutes on 2 quiet cores)
    python -m benchmarks.run --quick      # small sizes, to check the harness (about a minute)
    python -m benchmarks.run --only 1,4   # some sections (8: grading a class, against one torch import)
                                          # (9: the simulator with communication against the engine)
    python -m benchmarks.run --only 3,4 --update   # re-measure sections 3 and 4 into the committed results

``--update`` replaces only the rows of the sections it ran and keeps the
others, recording when and at what load each section was measured
(``meta["sections"]``): every ratio is still taken within one run of its
own section, so a quiet window too short for the whole table can refresh
the part that changed.

Every JSON row holds the metric, the measured value, its target and whether
it was met. Nothing here runs in the test suite: timings belong in benchmarks.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from . import breakdown, checkpointing, efficiency, floor, overhead, runtime_overhead, scaling
from .common import Row, one_thread_per_stage, print_table

RESULTS = Path(__file__).parent / "results"


def plot(curve_points: list[dict], rows: list[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.8))
    for K in sorted({p["K"] for p in curve_points}):
        pts = sorted((p for p in curve_points if p["K"] == K), key=lambda p: p["M"])
        style = "--" if pts[0]["simulated"] else "-"
        label = f"K={K}" + (" (simulated)" if pts[0]["simulated"] else " (measured)")
        a.plot([p["M"] for p in pts], [p["speedup"] for p in pts], "o" + style, label=label)
        b.plot([p["M"] for p in pts], [p["bubble"] for p in pts], "o" + style, label=label)
        b.plot([p["M"] for p in pts], [p["bubble_theory"] for p in pts], "k:", lw=0.8)
    a.set(xscale="log", xlabel="micro-batches M", ylabel="speedup over one stage", title="scaling")
    b.set(xscale="log", xlabel="micro-batches M", ylabel="idle fraction", title="bubble (dotted: (K-1)/(M+K-1))")
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def merged(path: Path, new: dict, only: set[int]) -> dict:
    """``new`` (sections ``only``) laid over the results in ``path``: their other sections' rows are kept."""
    if not path.exists():
        raise SystemExit(f"--update needs earlier results in {path}: run the whole table once without --update")
    old = json.loads(path.read_text())
    if old["meta"].get("quick") != new["meta"]["quick"]:
        raise SystemExit("--update cannot mix --quick and full-size results: run both the same way")
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    sections = dict(old["meta"].get("sections", {}))
    for n in sorted(only):
        sections[str(n)] = {"when": when, **{k: new["meta"][k] for k in ("seconds", "load_before", "load_after")}}
    ran = {r["section"] for r in new["rows"]}  # a section's rows share its name ("3 peer", "grading")
    rows = [r for r in old["rows"] if r["section"] not in ran] + new["rows"]
    out = {**old, **{k: v for k, v in new.items() if k not in ("meta", "rows") and v}}
    out["meta"] = {**old["meta"], "sections": sections}
    out["rows"] = rows
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes: check the harness, not the engine")
    parser.add_argument("--only", default="1,2,3,4,5,6,7,8,9",
                        help="sections to run, e.g. 1,4 (8: grading; 9: the simulator with communication)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--update", action="store_true",
                        help="keep the other sections' rows of OUT/bench.json and replace only those run now")
    args = parser.parse_args()
    only = {int(s) for s in args.only.split(",")}
    one_thread_per_stage()
    q = args.quick
    rows: list[Row] = []
    extra: dict = {}
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    if 1 in only:
        rows += overhead.run(N=64, H=256, L=8, repeats=3) if q else overhead.run()
    curve = []
    if 2 in only or 6 in only:
        eff_rows, curve = (efficiency.run(N=128, H=256, L=8, Ms=(1, 2, 8), repeats=2) if q else efficiency.run())
        rows += eff_rows
    if 3 in only:
        from . import peer

        rows += peer.run(quick=q)
    if 4 in only:
        rows += runtime_overhead.run(M=32, repeats=3) if q else runtime_overhead.run()
        rows += floor.run(M=32, repeats=3) if q else floor.run()
        rows += breakdown.run(repeats=6) if q else breakdown.run()
    if 5 in only:
        mem_rows, extra["memory"] = checkpointing.memory(N=64, H=64, L=8) if q else checkpointing.memory()
        rows += mem_rows
        rows += checkpointing.time_ratio(N=64, H=256, L=8, repeats=2) if q else checkpointing.time_ratio()
    points = []
    if 6 in only and curve:
        scale_rows, points = scaling.run(curve)
        rows += scale_rows
    if 7 in only:
        from . import zero_bubble

        rows += zero_bubble.run(quick=q)
    if 8 in only:
        from . import grading

        rows += grading.run(quick=q)
    if 9 in only:
        from . import comm

        rows += comm.run(quick=q)
    print_table(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {"torch": torch.__version__, "cpus": os.cpu_count(), "machine": platform.machine(),
            "python": platform.python_version(), "quick": q, "seconds": time.perf_counter() - started,
            "load_before": load_before, "load_after": os.getloadavg()[0]}  # other tenants' load, 1-minute average
    found = {"meta": meta, "rows": [r.as_json() for r in rows], "curve": points, **extra}
    if args.update:
        found = merged(args.out / "bench.json", found, only)
    (args.out / "bench.json").write_text(json.dumps(found, indent=1))
    if points:
        plot(points, rows, args.out / "bench.png")
    print(f"\nwrote {args.out / 'bench.json'}" + (f" and {args.out / 'bench.png'}" if points else "")
          + f" in {meta['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

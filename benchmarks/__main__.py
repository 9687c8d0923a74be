"""`python -m benchmarks accuracy|cost|scale|fleet [--quick]`: run a benchmark, print its tables, write
benchmarks/results/<name>.json, a Markdown summary and plots."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import structlog

RESULTS = Path(__file__).resolve().parent / "results"


def _write_json(data: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False, allow_nan=False) + "\n", encoding="utf-8")


def _fleet(args: argparse.Namespace, suffix: str, command: str) -> None:
    """The real-Prometheus fleet: a run keeps the `before` figures of the results file it
    replaces (`--record-before` makes this run the new `before`)."""
    from benchmarks.fleet import console_tables, markdown, run_fleet

    path = args.out / f"fleet{suffix}.json"
    old = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    if args.report_only:
        result = old
    else:
        print(f"fleet benchmark{' (quick)' if args.quick else ''}: backfilling Prometheus ...", flush=True)
        result = run_fleet(quick=args.quick)
        result["command"] = command
        if args.record_before:
            result["before"] = {k: v for k, v in result.items() if k != "before"}
        elif "before" in old:
            result["before"] = old["before"]
    _write_json(result, path)
    (args.out / f"fleet{suffix}.md").write_text(markdown(result, result.get("command", command)),
                                                encoding="utf-8")
    for line in console_tables(result):
        print(line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("benchmark", choices=("accuracy", "cost", "scale", "fleet"))
    parser.add_argument("--quick", action="store_true", help="fewer runs / smaller sizes: under a minute")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (accuracy; default 2)")
    parser.add_argument("--report-only", action="store_true",
                        help="rebuild the Markdown summary and plots from the results JSON, without running")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder (default benchmarks/results)")
    parser.add_argument("--record-before", action="store_true",
                        help="fleet: also keep this run as the 'before' figures later runs are shown against")
    parser.add_argument("--sizes", type=lambda text: tuple(int(x) for x in text.split(",")),
                        help="scale: the numbers of runs, e.g. 10,100 (default: the plan's)")
    args = parser.parse_args(argv)
    # the program's edge: keep the engine's per-analysis info logs off the tables
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "-quick" if args.quick else ""
    if args.benchmark == "scale" and args.sizes:
        suffix += "-" + "-".join(str(n) for n in args.sizes)
    command = "python -m benchmarks " + args.benchmark + (" --quick" if args.quick else "")
    started = time.perf_counter()
    if args.benchmark == "accuracy":
        from benchmarks.accuracy import console_tables, run_accuracy, targets
        from benchmarks.report_accuracy import markdown, plots

        if args.report_only:
            result = json.loads((args.out / f"accuracy{suffix}.json").read_text(encoding="utf-8"))
            result["targets"] = targets(result)
        else:
            print(f"accuracy benchmark{' (quick)' if args.quick else ''}: simulating canaries ...", flush=True)
            result = run_accuracy(quick=args.quick, workers=args.workers)
            result["command"] = command
        _write_json(result, args.out / f"accuracy{suffix}.json")
        images = plots(result, args.out) if not args.quick else []
        (args.out / f"accuracy{suffix}.md").write_text(markdown(result, images, command), encoding="utf-8")
        for line in console_tables(result):
            print(line)
    elif args.benchmark == "scale":
        from benchmarks.scale import console_tables as scale_tables
        from benchmarks.scale import markdown as scale_markdown
        from benchmarks.scale import run_scale

        if args.report_only:
            result = json.loads((args.out / f"scale{suffix}.json").read_text(encoding="utf-8"))
        else:
            print(f"scale benchmark{' (quick)' if args.quick else ''} ...", flush=True)
            result = run_scale(quick=args.quick, sizes=args.sizes)
            result["command"] = command
        _write_json(result, args.out / f"scale{suffix}.json")
        (args.out / f"scale{suffix}.md").write_text(
            scale_markdown(result, result.get("command", command)), encoding="utf-8"
        )
        for line in scale_tables(result):
            print(line)
    elif args.benchmark == "fleet":
        _fleet(args, suffix, command)
    else:
        from benchmarks.cost import console_tables as cost_tables
        from benchmarks.cost import run_cost
        from benchmarks.report_cost import markdown as cost_markdown
        from benchmarks.report_cost import plots as cost_plots

        if args.report_only:
            result = json.loads((args.out / f"cost{suffix}.json").read_text(encoding="utf-8"))
        else:
            print(f"cost benchmark{' (quick)' if args.quick else ''} ...", flush=True)
            result = run_cost(quick=args.quick)
            result["command"] = command
        _write_json(result, args.out / f"cost{suffix}.json")
        images = cost_plots(result, args.out) if not args.quick else []
        (args.out / f"cost{suffix}.md").write_text(cost_markdown(result, images, command), encoding="utf-8")
        for line in cost_tables(result):
            print(line)
    print(f"\nwrote {args.out}/{args.benchmark}{suffix}.json and .md in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

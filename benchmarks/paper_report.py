#!/usr/bin/env python3
"""Tables, JSON and plots of the paper experiments on one GPU (benchmarks/paper_run.sh).

  paper_report.py --card CARD --date DATE --command CMD --out RESULTS.json [--plots DIR]
                  NAME=EXPERIMENT_DIR ...

NAME is `alpha0.9` for a synthetic run or `trace` for the ChatLMSYS-like replay; each
EXPERIMENT_DIR holds the comparison.json of `muxserve experiment` with several loads. Prints a
markdown table per experiment, writes RESULTS.json (card, date, command, every figure) and, with
--plots, DIR/paper_throughput.png and DIR/paper_slo.png (a panel per experiment, a curve per mode).
"""
import argparse
import json
import os
import sys

MODES = ("muxserve", "temporal", "spatial")
SHOWN_SLO_SCALES = (5, 10)
TARGET_ATTAINMENT = 0.99


def scale_for_attainment(summary, target):
    """The smallest SLO scale whose attainment reaches `target` (None: no scale measured does)."""
    for scale, fraction in summary["overall"]["slo_attainment"]:
        if fraction >= target:
            return scale
    return None


def describe(load):
    modes = {}
    for entry in load["modes"]:
        s = entry["summary"]
        overall = s["overall"]
        modes[entry["mode"]] = {
            "offered_rps": sum(m["rate"] for m in s["models"]),
            "sent": overall["sent"],
            "finished": overall["finished"],
            "aborted": overall["aborted"],
            "errors": overall["errors"],
            "throughput_rps_weighted": s["throughput_rps_weighted"],
            "throughput_rps_sum": s["throughput_rps_sum"],
            "throughput_tps_sum": s["throughput_tps_sum"],
            "ttft_ms_p50": 1e3 * overall["ttft_s"]["p50"],
            "ttft_ms_p99": 1e3 * overall["ttft_s"]["p99"],
            "tpot_ms_p50": 1e3 * overall["tpot_s"]["p50"],
            "tpot_ms_p99": 1e3 * overall["tpot_s"]["p99"],
            "slo_attainment": {str(int(p[0])): p[1] for p in overall["slo_attainment"]},
            "slo_scale_for_99pct": scale_for_attainment(s, TARGET_ATTAINMENT),
            "per_model": [{"model": m["name"], "rate": m["rate"], "throughput_rps": m["throughput_rps"],
                           "tpot_ms_p50": 1e3 * m["tpot_s"]["p50"], "ttft_ms_p50": 1e3 * m["ttft_s"]["p50"]}
                          for m in s["models"]],
        }
    ratios = {}
    mux = modes.get("muxserve")
    for base in ("spatial", "temporal"):
        if mux and base in modes and modes[base]["throughput_rps_weighted"] > 0:
            ratios["muxserve_over_" + base] = {
                "weighted": mux["throughput_rps_weighted"] / modes[base]["throughput_rps_weighted"],
                "sum": mux["throughput_rps_sum"] / modes[base]["throughput_rps_sum"]}
    return {"load": load["load"], "modes": modes, "ratios": ratios}


def max_rate_within_slo(loads, mode, scale):
    """The highest offered rate among the loads where `mode` reached 99% attainment at `scale`."""
    best = None
    for load in loads:
        m = load["modes"].get(mode)
        if m is None:
            continue
        fraction = m["slo_attainment"].get(str(scale))
        if fraction is not None and fraction >= TARGET_ATTAINMENT:
            best = max(best or 0.0, m["offered_rps"])
    return best


def table(name, loads):
    lines = ["#### %s" % name, "",
             "| offered req/s | mode | req/s weighted | req/s sum | finished / sent | TTFT p50/p99 ms "
             "| TPOT p50/p99 ms | SLO@5 | SLO@10 | scale for 99% | / spatial | / temporal |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for load in loads:
        first = True
        for mode in MODES:
            m = load["modes"].get(mode)
            if m is None:
                continue
            ratio = lambda base: ("%.2fx" % load["ratios"]["muxserve_over_" + base]["weighted"]
                                  if mode == "muxserve" and "muxserve_over_" + base in load["ratios"] else "")
            slo = lambda scale: "%.0f%%" % (100 * m["slo_attainment"].get(str(scale), 0))
            lines.append("| %s | %s | %s%.2f%s | %.2f | %d / %d | %.0f / %.0f | %.1f / %.1f | %s | %s | %s | %s | %s |" % (
                "%.1f" % m["offered_rps"] if first else "", mode,
                "**" if mode == "muxserve" else "", m["throughput_rps_weighted"], "**" if mode == "muxserve" else "",
                m["throughput_rps_sum"], m["finished"], m["sent"], m["ttft_ms_p50"], m["ttft_ms_p99"],
                m["tpot_ms_p50"], m["tpot_ms_p99"], slo(5), slo(10),
                "%g" % m["slo_scale_for_99pct"] if m["slo_scale_for_99pct"] is not None else "> 20",
                ratio("spatial"), ratio("temporal")))
            first = False
    return "\n".join(lines)


def plot(experiments, folder):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("plots skipped: matplotlib is not installed", file=sys.stderr)
        return []
    written = []
    n = len(experiments)
    for kind in ("throughput", "slo"):
        fig, axes = plt.subplots(1, n, figsize=(3.6 * n, 3.4), squeeze=False)
        for ax, (name, loads) in zip(axes[0], experiments):
            for mode in MODES:
                points = [(l["modes"][mode]["offered_rps"], l["modes"][mode]) for l in loads if mode in l["modes"]]
                if not points:
                    continue
                xs = [p[0] for p in points]
                if kind == "throughput":
                    ys = [p[1]["throughput_rps_weighted"] for p in points]
                else:
                    ys = [100 * p[1]["slo_attainment"].get("10", 0) for p in points]
                ax.plot(xs, ys, marker="o", label=mode)
            ax.set_title(name, fontsize=10)
            ax.set_xlabel("offered req/s")
            ax.grid(alpha=0.3)
            if kind == "slo":
                ax.set_ylim(0, 101)
        axes[0][0].set_ylabel("req/s, rate-weighted" if kind == "throughput" else "SLO attainment @10 (%)")
        axes[0][0].legend(fontsize=8)
        fig.tight_layout()
        path = os.path.join(folder, "paper_%s.png" % kind)
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--card", required=True)
    parser.add_argument("--date", required=True)
    parser.add_argument("--command", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--plots")
    parser.add_argument("experiments", nargs="+", metavar="NAME=DIR")
    args = parser.parse_args()
    experiments = []
    for item in args.experiments:
        name, _, folder = item.partition("=")
        if not folder:
            parser.error("expected NAME=DIR, got %r" % item)
        with open(os.path.join(folder, "comparison.json")) as f:
            comparison = json.load(f)
        if "loads" not in comparison:
            parser.error("%s: not an experiment with several loads" % folder)
        experiments.append((name, [describe(load) for load in comparison["loads"]]))
    result = {"card": args.card, "date": args.date, "command": args.command, "experiments": []}
    for name, loads in experiments:
        summary = {}
        for scale in SHOWN_SLO_SCALES:
            summary["max_offered_rps_with_99pct_at_slo%d" % scale] = {
                mode: max_rate_within_slo(loads, mode, scale) for mode in MODES}
        result["experiments"].append({"name": name, "loads": loads, "summary": summary})
        print(table(name, loads))
        print()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    if args.plots:
        os.makedirs(args.plots, exist_ok=True)
        for path in plot(experiments, args.plots):
            print("plot: " + path, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

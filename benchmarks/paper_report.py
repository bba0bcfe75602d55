#!/usr/bin/env python3
"""Tables, JSON and plots of the paper experiments on one GPU (benchmarks/paper_run.sh).

  paper_report.py --card CARD --date DATE --command CMD --out RESULTS.json [--plots DIR]
                  NAME=EXPERIMENT_DIR[#TAG][,EXPERIMENT_DIR[#TAG]...] ...

NAME is `alpha0.9` for a synthetic run or `trace` for the ChatLMSYS-like replay; each
EXPERIMENT_DIR holds the comparison.json of `muxserve experiment` with several loads. Runs of one
experiment (the same streams) merge by load: a later directory's mode replaces an earlier one's at
the same load, and with #TAG its muxserve mode is kept beside the others as `muxserve (TAG)` (a
variant, e.g. another decode_priority). Prints a markdown table per experiment, writes
RESULTS.json (card, date, command, every figure) and, with --plots, DIR/paper_throughput.png and
DIR/paper_slo.png (a panel per experiment, a curve per mode).
"""
import argparse
import json
import os
import sys

MODES = ("muxserve", "temporal", "spatial")
COLORS = {"muxserve": "tab:blue", "temporal": "tab:orange", "spatial": "tab:green"}  # variants dashed
SHOWN_SLO_SCALES = (5, 7, 10)
TARGET_ATTAINMENT = 0.99


def scale_for_attainment(summary, target):
    """The smallest SLO scale whose attainment reaches `target` (None: no scale measured does)."""
    for scale, fraction in summary["overall"]["slo_attainment"]:
        if fraction >= target:
            return scale
    return None


def ms(seconds):
    """Seconds to milliseconds; None (nothing measured, e.g. no request of a model) stays None."""
    return None if seconds is None else 1e3 * seconds


def merge_runs(comparisons):
    """[(comparison, tag)] -> [(load label, {mode name: summary})], in order of offered rate."""
    loads = {}
    for comparison, tag in comparisons:
        for load in comparison["loads"]:
            modes = loads.setdefault(load["load"], {})
            for entry in load["modes"]:
                name = entry["mode"]
                if tag and name == "muxserve":
                    name = "muxserve (%s)" % tag
                modes[name] = entry["summary"]
    offered = lambda modes: sum(m["rate"] for m in next(iter(modes.values()))["models"])
    return sorted(loads.items(), key=lambda item: offered(item[1]))


def mode_order(name):
    base, _, tag = name.partition(" ")
    return (MODES.index(base) if base in MODES else len(MODES), tag)


def describe(label, summaries):
    modes = {}
    for name in sorted(summaries, key=mode_order):
        s = summaries[name]
        overall = s["overall"]
        modes[name] = {
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
                           "tpot_ms_p50": ms(m["tpot_s"]["p50"]), "ttft_ms_p50": ms(m["ttft_s"]["p50"])}
                          for m in s["models"]],
        }
    ratios = {}
    for name, mux in modes.items():
        if not name.startswith("muxserve"):
            continue
        for base in ("spatial", "temporal"):
            if base in modes and modes[base]["throughput_rps_weighted"] > 0:
                ratios["%s_over_%s" % (name, base)] = {
                    "weighted": mux["throughput_rps_weighted"] / modes[base]["throughput_rps_weighted"],
                    "sum": mux["throughput_rps_sum"] / modes[base]["throughput_rps_sum"]}
    return {"load": label, "modes": modes, "ratios": ratios}


def rate_within_slo(loads, mode, scale):
    """The offered rate up to which `mode` keeps 99% attainment at SLO `scale`, interpolated
    linearly between the last load that keeps it and the first that does not:
    {"rps": R, "bound": "interpolated" | "at_least" (every measured load kept it) | "below"
    (the lightest measured load already missed it, R is that load)}; None if `mode` never ran."""
    points = [(l["modes"][mode]["offered_rps"], l["modes"][mode]["slo_attainment"].get(str(scale), 0.0))
              for l in loads if mode in l["modes"]]
    if not points:
        return None
    if points[0][1] < TARGET_ATTAINMENT:
        return {"rps": points[0][0], "bound": "below"}
    for (rate, fraction), (next_rate, next_fraction) in zip(points, points[1:]):
        if next_fraction < TARGET_ATTAINMENT:
            crossing = rate + (next_rate - rate) * (fraction - TARGET_ATTAINMENT) / (fraction - next_fraction)
            return {"rps": crossing, "bound": "interpolated"}
    return {"rps": points[-1][0], "bound": "at_least"}


def slo_capacity_table(name, loads):
    """Markdown: per SLO scale, the rate each mode keeps 99% attainment to, and muxserve's ratio."""
    modes = [m for m in sorted({m for l in loads for m in l["modes"]}, key=mode_order)]
    show = lambda r: ("-" if r is None else "< %.1f" % r["rps"] if r["bound"] == "below"
                      else ">= %.1f" % r["rps"] if r["bound"] == "at_least" else "%.1f" % r["rps"])
    lines = ["| SLO scale | " + " | ".join(modes) + " | muxserve / spatial |",
             "| --- |" + " --- |" * (len(modes) + 1)]
    for scale in SHOWN_SLO_SCALES:
        rates = {m: rate_within_slo(loads, m, scale) for m in modes}
        mux, spatial = rates.get("muxserve"), rates.get("spatial")
        ratio = ""
        if mux and spatial and spatial["bound"] != "below" and spatial["rps"] > 0:
            ratio = "%s%.2fx" % (">= " if mux["bound"] == "at_least" and spatial["bound"] != "at_least" else "",
                                 mux["rps"] / spatial["rps"])
        lines.append("| %d | %s | %s |" % (scale, " | ".join(show(rates[m]) for m in modes), ratio))
    return "#### %s: offered req/s kept within 99%% SLO attainment\n\n%s" % (name, "\n".join(lines))


def table(name, loads):
    lines = ["#### %s" % name, "",
             "| offered req/s | mode | req/s weighted | req/s sum | finished / sent | TTFT p50/p99 ms "
             "| TPOT p50/p99 ms | SLO@5 | SLO@10 | scale for 99% | / spatial | / temporal |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for load in loads:
        first = True
        for mode, m in load["modes"].items():
            ratio = lambda base: ("%.2fx" % load["ratios"][mode + "_over_" + base]["weighted"]
                                  if mode + "_over_" + base in load["ratios"] else "")
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
            for mode in sorted({m for l in loads for m in l["modes"]}, key=mode_order):
                points = [(l["modes"][mode]["offered_rps"], l["modes"][mode]) for l in loads if mode in l["modes"]]
                xs = [p[0] for p in points]
                if kind == "throughput":
                    ys = [p[1]["throughput_rps_weighted"] for p in points]
                else:
                    ys = [100 * p[1]["slo_attainment"].get("10", 0) for p in points]
                ax.plot(xs, ys, marker="o", label=mode, color=COLORS[mode.partition(" ")[0]],
                        linestyle="--" if " " in mode else "-")
            ax.set_title(name, fontsize=10)
            ax.set_xlabel("offered req/s")
            ax.grid(alpha=0.3)
            if kind == "slo":
                ax.set_ylim(0, 101)
        axes[0][0].set_ylabel("req/s, rate-weighted" if kind == "throughput" else "SLO attainment @10 (%)")
        for ax in axes[0]:
            ax.legend(fontsize=7)
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
        name, _, folders = item.partition("=")
        if not folders:
            parser.error("expected NAME=DIR[#TAG][,DIR[#TAG]...], got %r" % item)
        comparisons = []
        for entry in folders.split(","):
            folder, _, tag = entry.partition("#")
            with open(os.path.join(folder, "comparison.json")) as f:
                comparison = json.load(f)
            if "loads" not in comparison:
                parser.error("%s: not an experiment with several loads" % folder)
            comparisons.append((comparison, tag))
        experiments.append((name, [describe(label, modes) for label, modes in merge_runs(comparisons)]))
    result = {"card": args.card, "date": args.date, "command": args.command, "experiments": []}
    for name, loads in experiments:
        modes = sorted({m for l in loads for m in l["modes"]}, key=mode_order)
        summary = {}
        for scale in SHOWN_SLO_SCALES:
            summary["offered_rps_within_99pct_at_slo%d" % scale] = {
                mode: rate_within_slo(loads, mode, scale) for mode in modes}
        result["experiments"].append({"name": name, "loads": loads, "summary": summary})
        print(table(name, loads))
        print()
        print(slo_capacity_table(name, loads))
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

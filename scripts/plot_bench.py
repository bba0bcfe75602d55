#!/usr/bin/env python3
"""Draws the PNG plots of `muxserve bench` and `muxserve experiment` results.

  plot_bench.py run DIR       DIR/summary.json + DIR/requests.jsonl ->
                              latency_cdf.png, slo_attainment.png, throughput_vs_rate.png
  plot_bench.py compare DIR   DIR/comparison.json (+ DIR/<mode>/requests.jsonl) -> comparison.png;
                              with several loads: throughput and SLO attainment against the
                              offered rate, one curve per mode

Exits with status 3 when matplotlib is missing (plots are optional; Debian: python3-matplotlib).
"""
import json
import os
import sys

PLOT_UNAVAILABLE = 3


def load_requests(path):
    requests = []
    with open(path) as f:
        for line in f:
            if line.strip():
                requests.append(json.loads(line))
    return requests


def cdf(values):
    values = sorted(values)
    n = len(values)
    return values, [(i + 1) / n for i in range(n)]


def plot_latency_cdfs(plt, requests, models, out):
    metrics = [("ttft_s", "TTFT (ms)", 1e3), ("tpot_s", "TPOT (ms)", 1e3), ("e2e_s", "end-to-end (s)", 1)]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for ax, (key, label, unit) in zip(axes, metrics):
        for model in models + ["overall"]:
            values = [r[key] * unit for r in requests
                      if r["outcome"] == "finished" and key in r and (model == "overall" or r["model"] == model)]
            if not values:
                continue
            x, y = cdf(values)
            ax.plot(x, y, label=model, linewidth=2.2 if model == "overall" else 1.2,
                    color="black" if model == "overall" else None)
        low, high = ax.dataLim.intervalx
        if low > 0 and high / low > 100:  # long tails: a log axis keeps the body readable
            ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("fraction of finished requests")
        ax.set_ylim(0, 1.01)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("Latency CDFs")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_slo(plt, summary, out):
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for entry in summary["models"] + [summary["overall"]]:
        curve = entry["slo_attainment"]
        if not curve:
            continue
        overall = entry["name"] == "overall"
        ax.plot([p[0] for p in curve], [100 * p[1] for p in curve], marker="o", markersize=3,
                label=entry["name"], linewidth=2.2 if overall else 1.2, color="black" if overall else None)
    ax.set_xlabel("SLO scale (x isolated batch-1 latency)")
    ax.set_ylabel("SLO attainment (%)")
    ax.set_ylim(0, 101)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("SLO attainment vs scale")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_throughput_vs_rate(plt, summary, out):
    models = summary["models"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    rates = [m["rate"] for m in models]
    tpts = [m["throughput_rps"] for m in models]
    ax.scatter(rates, tpts, zorder=3)
    for m in models:
        ax.annotate(m["name"], (m["rate"], m["throughput_rps"]), fontsize=8,
                    xytext=(4, 4), textcoords="offset points")
    top = max(rates + tpts + [1e-9]) * 1.1
    ax.plot([0, top], [0, top], linestyle="--", color="gray", label="throughput = offered rate")
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel("offered rate (req/s)")
    ax.set_ylabel("throughput (finished req/s)")
    ax.set_title("Throughput vs rate, per model (weighted %.3g, sum %.3g req/s)"
                 % (summary["throughput_rps_weighted"], summary["throughput_rps_sum"]), fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_run(plt, folder):
    with open(os.path.join(folder, "summary.json")) as f:
        summary = json.load(f)
    requests = load_requests(os.path.join(folder, "requests.jsonl"))
    models = [m["name"] for m in summary["models"]]
    written = []
    for name, draw in [("latency_cdf.png", lambda out: plot_latency_cdfs(plt, requests, models, out)),
                       ("slo_attainment.png", lambda out: plot_slo(plt, summary, out)),
                       ("throughput_vs_rate.png", lambda out: plot_throughput_vs_rate(plt, summary, out))]:
        path = os.path.join(folder, name)
        draw(path)
        written.append(path)
    return written


def attainment_at(summary, scale):
    for point in summary["overall"]["slo_attainment"]:
        if abs(point[0] - scale) < 1e-9:
            return 100 * point[1]
    return None


def plot_compare_loads(plt, folder, loads):
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    by_mode = {}
    for load in loads:
        for m in load["modes"]:
            summary = m["summary"]
            offered = sum(model["rate"] for model in summary["models"])
            by_mode.setdefault(m["mode"], []).append((offered, summary))
    for mode, points in by_mode.items():
        points.sort(key=lambda p: p[0])
        xs = [p[0] for p in points]
        axes[0].plot(xs, [p[1]["throughput_rps_weighted"] for p in points], marker="o", label=mode)
        for ax, scale in ((axes[1], 5), (axes[2], 10)):
            ys = [attainment_at(p[1], scale) for p in points]
            ax.plot([x for x, y in zip(xs, ys) if y is not None], [y for y in ys if y is not None],
                    marker="o", label=mode)
    axes[0].set_ylabel("throughput, rate-weighted (req/s)")
    axes[0].set_title("Throughput")
    for ax, scale in ((axes[1], 5), (axes[2], 10)):
        ax.set_ylabel("SLO attainment (%)")
        ax.set_ylim(0, 101)
        ax.set_title("SLO attainment at scale %d" % scale)
    for ax in axes:
        ax.set_xlabel("offered rate, all models (req/s)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = os.path.join(folder, "comparison.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def plot_compare(plt, folder):
    with open(os.path.join(folder, "comparison.json")) as f:
        comparison = json.load(f)
    if "loads" in comparison:
        return plot_compare_loads(plt, folder, comparison["loads"])
    modes = comparison["modes"]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))

    names = [m["mode"] for m in modes]
    weighted = [m["summary"]["throughput_rps_weighted"] for m in modes]
    plain = [m["summary"]["throughput_rps_sum"] for m in modes]
    xs = range(len(names))
    width = 0.38
    axes[0].bar([x - width / 2 for x in xs], weighted, width, label="rate-weighted (MuxServe)")
    axes[0].bar([x + width / 2 for x in xs], plain, width, label="plain sum")
    axes[0].set_xticks(list(xs))
    axes[0].set_xticklabels(names)
    axes[0].set_ylabel("throughput (req/s)")
    axes[0].set_title("Throughput")
    axes[0].legend(fontsize=8)
    axes[0].grid(alpha=0.3, axis="y")

    for m in modes:
        curve = m["summary"]["overall"]["slo_attainment"]
        if curve:
            axes[1].plot([p[0] for p in curve], [100 * p[1] for p in curve], marker="o", markersize=3,
                         label=m["mode"])
    axes[1].set_xlabel("SLO scale")
    axes[1].set_ylabel("SLO attainment (%)")
    axes[1].set_ylim(0, 101)
    axes[1].set_title("SLO attainment vs scale (all models)")
    axes[1].legend(fontsize=8)
    axes[1].grid(alpha=0.3)

    for m in modes:
        path = os.path.join(folder, m["mode"], "requests.jsonl")
        if not os.path.exists(path):
            continue
        values = [r["e2e_s"] for r in load_requests(path) if r["outcome"] == "finished" and "e2e_s" in r]
        if values:
            x, y = cdf(values)
            axes[2].plot(x, y, label=m["mode"])
    axes[2].set_xlabel("end-to-end latency (s)")
    axes[2].set_ylabel("fraction of finished requests")
    axes[2].set_title("End-to-end latency CDF")
    axes[2].legend(fontsize=8)
    axes[2].grid(alpha=0.3)

    fig.tight_layout()
    path = os.path.join(folder, "comparison.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def main(argv):
    if len(argv) != 3 or argv[1] not in ("run", "compare"):
        print(__doc__, file=sys.stderr)
        return 2
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("plots skipped: matplotlib is not installed for %s (Debian: apt install python3-matplotlib)"
              % sys.executable, file=sys.stderr)
        return PLOT_UNAVAILABLE
    written = plot_run(plt, argv[2]) if argv[1] == "run" else plot_compare(plt, argv[2])
    print("plots: " + ", ".join(written), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

#!/usr/bin/env python3
"""Collects the printed reports of benchmarks/multiplex_run.sh runs (one log per run, named
aALPHA_sSCALE_KV.log for the three modes, aALPHA_sSCALE_KV_PARTITIONS_SHARE.log for muxserve alone
with other partitions or decode shares) into benchmarks/results/multiplex.json and prints tables.

  benchmarks/multiplex_report.py benchmarks/results/multiplex/*.log
"""
import json
import re
import sys
from pathlib import Path

MODES = ("muxserve", "temporal", "spatial")


def parse_log(path):
    text = Path(path).read_text()
    name = re.match(r"a([\d.]+)_s(\d+)_(\d+GiB)(?:_(\w+)_([\d.]+))?\.log", Path(path).name)
    run = {"alpha": float(name[1]), "rate_scale": float(name[2]), "kv_pool": name[3],
           "partitions": name[4] or "green", "decode_sm_share": float(name[5] or 0.4),
           "modes": {}}
    for mode in MODES:
        if f"== {mode} ==" not in text:
            continue
        section = text.split(f"== {mode} ==")[1].split("== ")[0]
        overall = re.search(r"^overall\s+(.*)$", section, re.M)[1].split()
        weighted = re.search(r"rate-weighted.*?: ([\d.]+) req/s, ([\d.]+) tok/s", section)
        summed = re.search(r"plain sum over models: ([\d.]+) req/s, ([\d.]+) tok/s", section)
        curve = re.search(r"SLO attainment by scale \(overall\): (.*)$", section, re.M)[1]
        slo = {int(k): float(v.rstrip("%")) / 100 for k, v in
               (item.split(":") for item in curve.split())}
        ttft = [float(x) for x in overall[7].split("/")]
        tpot = [float(x) for x in overall[8].split("/")]
        run["modes"][mode] = {
            "sent": int(overall[1]), "finished": int(overall[2]), "aborted": int(overall[4]),
            "throughput_rps_weighted": float(weighted[1]),
            "throughput_tps_weighted": float(weighted[2]),
            "throughput_rps_sum": float(summed[1]), "throughput_tps_sum": float(summed[2]),
            "ttft_ms_p50": ttft[0], "ttft_ms_p99": ttft[2],
            "tpot_ms_p50": tpot[0], "tpot_ms_p99": tpot[2],
            "slo_attainment": slo,
        }
    return run


def compare(run, baseline):
    """muxserve of `run` against the baselines of `baseline` (the same stream)."""
    mux = run["modes"]["muxserve"]
    for mode in ("spatial", "temporal"):
        base = baseline["modes"][mode]
        run[f"muxserve_vs_{mode}_throughput"] = (
            mux["throughput_rps_weighted"] / base["throughput_rps_weighted"])
        run[f"slo_scales_below_{mode}"] = [
            scale for scale, share in mux["slo_attainment"].items()
            if share < base["slo_attainment"][scale]]


def main():
    parsed = [parse_log(p) for p in sys.argv[1:]]
    key = lambda r: (r["alpha"], r["kv_pool"], r["rate_scale"])
    # The main runs use green partitions (muxserve's decode/prefill split); variants change them
    # (auto: the default, which resolves to none in muxserve mode) and are compared with their
    # own baselines when they ran them, else with the main run's.
    runs = sorted((r for r in parsed if r["partitions"] == "green" and len(r["modes"]) == 3),
                  key=key)
    variants = sorted((r for r in parsed if r not in runs), key=key)
    baselines = {key(r): r for r in runs}
    for run in runs:
        compare(run, run)
    for variant in variants:
        compare(variant, variant if len(variant["modes"]) == 3 else baselines[key(variant)])
    print(f"{'alpha':>5} {'scale':>5} {'KV':>6}  {'mode':<9}{'req/s w':>8}{'req/s sum':>10}"
          f"{'TTFT p50/p99 ms':>18}{'TPOT p50/p99 ms':>17}{'SLO@5':>7}{'SLO@10':>7}")
    for run in runs:
        for mode, r in run["modes"].items():
            print(f"{run['alpha']:>5} {run['rate_scale']:>5.0f} {run['kv_pool']:>6}  {mode:<9}"
                  f"{r['throughput_rps_weighted']:>8.2f}{r['throughput_rps_sum']:>10.2f}"
                  f"{r['ttft_ms_p50']:>9.0f}/{r['ttft_ms_p99']:<8.0f}"
                  f"{r['tpot_ms_p50']:>8.1f}/{r['tpot_ms_p99']:<8.1f}"
                  f"{r['slo_attainment'][5]:>7.1%}{r['slo_attainment'][10]:>7.1%}")
        print(f"{'':>19}muxserve / spatial {run['muxserve_vs_spatial_throughput']:.2f}x, "
              f"/ temporal {run['muxserve_vs_temporal_throughput']:.2f}x")
    print("\nmuxserve with other partitions (against the same stream's baselines):")
    for v in variants:
        r = v["modes"]["muxserve"]
        print(f"{v['alpha']:>5} {v['rate_scale']:>5.0f} {v['kv_pool']:>6}  "
              f"{v['partitions']:>5} {v['decode_sm_share']:<5}{r['throughput_rps_weighted']:>8.2f}"
              f"  / spatial {v['muxserve_vs_spatial_throughput']:.2f}x"
              f"  / temporal {v['muxserve_vs_temporal_throughput']:.2f}x"
              f"  SLO@5 {r['slo_attainment'][5]:.0%} SLO@10 {r['slo_attainment'][10]:.0%}"
              f"  SLO scales below spatial {v['slo_scales_below_spatial']}")
    report = {
        "benchmark": "multiplex",
        "card": "NVIDIA H100 80GB HBM3, 132 SMs (driver 580.159.04)",
        "date": "2026-11-25",
        "command": "benchmarks/multiplex_run.sh ALPHA SCALE 30 OUT (KV=10GiB for the tight-pool "
                   "runs; PARTITIONS=none or DECODE_SHARE=S with MODES=muxserve for the "
                   "variants), then benchmarks/multiplex_report.py "
                   "benchmarks/results/multiplex/*.log",
        "models": "llama-1b (Llama-3.2-1B shape), llama-3b (Llama-3.2-3B shape), llama-7b "
                  "(Llama-2-7B shape), bf16 weights drawn on the GPU, popularity rank in that "
                  "order, configured rates = stream rates",
        "workload": "Poisson arrivals for 30 s, power-law rates (rank k: SCALE * k^-alpha), "
                    "ShareGPT-like lengths, outputs forced to their drawn length (ignore_eos), "
                    "the same stream for the three modes; drain 20 s, then the rest is aborted",
        "metric": "throughput = finished requests / time of the model's last completion, "
                  "rate-weighted (MuxServe's sum(rate*tpt)/sum(rate)) and summed; SLO attainment "
                  "= share of requests whose end-to-end latency <= scale x the model's isolated "
                  "latency (measured once, before the runs); aborted requests miss the SLO",
        "runs": runs,
        "muxserve_variants": variants,
    }
    out = Path(__file__).resolve().parent / "results" / "multiplex.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

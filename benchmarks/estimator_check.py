#!/usr/bin/env python3
"""The planner's estimator against measured runs: for each multiplexing-benchmark log (muxserve
mode, one GPU, three synthetic Llama shapes), plans the same models at the same rates with
`muxserve plan` (the roofline estimate for the card, or a `muxserve profile` table) and compares
the predicted throughput of each model with the measured one.

  benchmarks/estimator_check.py --muxserve build/src/apps/muxserve \
      --logs benchmarks/results/multiplex/a2.1_s60_40GiB.log ... \
      [--gpu-name H100-80GB --gpu-memory 80e9 --gpu-bandwidth 2.98e12 --gpu-flops 790e12] \
      [--cost-table table.json] --card "NVIDIA H100 80GB HBM3" --out benchmarks/results/estimator.json

What counts as measured: when the run was saturated (more than 1% of the requests were still
unserved at the drain deadline), the load generator's throughput, requests finished over the time to the last
completion (the GPU worked through a backlog all along, so this is its capacity); when every
request was served, the served rate (rate x finished / sent), since the load generator's figure
then also counts the idle drain after the last arrival. Error = predicted / measured - 1.
"""
import argparse
import datetime
import json
import os
import re
import subprocess
import sys
import tempfile

# The models of benchmarks/multiplex_run.sh, in its order.
MODELS = {
    "llama-1b": "{layers: 16, hidden: 2048, heads: 32, kv_heads: 8, intermediate: 8192, "
                "vocab: 32000, max_position: 4096, seed: 1, weights: device}",
    "llama-3b": "{layers: 28, hidden: 3072, heads: 24, kv_heads: 8, intermediate: 8192, "
                "vocab: 32000, max_position: 4096, seed: 2, weights: device}",
    "llama-7b": "{layers: 32, hidden: 4096, heads: 32, kv_heads: 32, intermediate: 11008, "
                "vocab: 32000, max_position: 4096, seed: 3, weights: device}",
}


def measured(log_path, mode="muxserve"):
    """{model: (rate, sent, finished, req_per_s)} of one mode's table in an experiment log."""
    rows, in_mode = {}, False
    for line in open(log_path):
        if line.startswith("== "):
            in_mode = line.strip() == f"== {mode} =="
            continue
        fields = line.split()
        if in_mode and fields and fields[0] in MODELS:
            rows[fields[0]] = (float(fields[1]), int(fields[2]), int(fields[3]), float(fields[6]))
    if len(rows) != len(MODELS):
        sys.exit(f"{log_path}: no complete '{mode}' table")
    return rows


def predicted(args, rates):
    cluster = (f"cluster: {{nodes: 1, gpus_per_node: 1, gpu: {{name: {args.gpu_name}, "
               f"memory: {args.gpu_memory:.0f}, bandwidth: {args.gpu_bandwidth}, "
               f"flops: {args.gpu_flops}}}}}\n")
    placement = "placement:\n  units: [{gpus: [0], models: [%s]}]\n" % ", ".join(MODELS)
    if args.cost_table:
        placement += f"  cost_table: {os.path.abspath(args.cost_table)}\n"
    models = "models:\n" + "".join(
        f"  - name: {name}\n    synthetic: {spec}\n    dtype: bfloat16\n    rate: {rates[name]}\n"
        f"    max_context: 2048\n" for name, spec in MODELS.items())
    config = ("runtime: {backend: cuda}\n"
              "scheduler: {mode: muxserve, max_prefill_tokens: 2048, max_batch_size: 256}\n"
              + cluster + placement + models)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(config)
    try:
        out = subprocess.run([args.muxserve, "plan", f.name, "--out", "-"], check=True,
                             capture_output=True, text=True).stdout
    finally:
        os.unlink(f.name)
    plan = json.loads(out)
    unit = plan["units"][0]
    return plan["cost_model"], unit, {llm["name"]: llm for llm in unit["llms"]}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--muxserve", required=True)
    parser.add_argument("--logs", nargs="+", required=True)
    parser.add_argument("--gpu-name", default="H100-80GB")
    parser.add_argument("--gpu-memory", type=float, default=80e9)
    parser.add_argument("--gpu-bandwidth", type=float, default=2.98e12)
    parser.add_argument("--gpu-flops", type=float, default=790e12)
    parser.add_argument("--cost-table", default="")
    parser.add_argument("--card", required=True, help="the card the logs were measured on")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    runs = []
    print(f"{'run':<28} {'model':<9} {'rate':>6} {'finished':>9} {'measured':>9} {'predicted':>9} "
          f"{'error':>7}")
    for log in args.logs:
        rows = measured(log)
        cost_model, unit, plans = predicted(args, {m: r[0] for m, r in rows.items()})
        run = {"log": os.path.relpath(log), "sm_load": unit["sm_load"],
               "bandwidth_load": unit["bandwidth_load"], "models": {}}
        total_measured = total_predicted = 0.0
        sent_all = sum(sent for _, sent, _, _ in rows.values())
        finished_all = sum(finished for _, _, finished, _ in rows.values())
        saturated = finished_all < 0.99 * sent_all
        run["saturated"] = saturated
        for model, (rate, sent, finished, rps) in rows.items():
            want = plans[model]["throughput"]
            got = rps if saturated else rate * finished / sent
            run["models"][model] = {"rate": rate, "sent": sent, "finished": finished,
                                    "loadgen_rps": rps, "measured_rps": round(got, 3),
                                    "predicted_rps": round(want, 3),
                                    "error": round(want / got - 1, 3)}
            total_measured += got
            total_predicted += want
            print(f"{os.path.basename(log):<28} {model:<9} {rate:>6} {finished / sent:>9.1%} "
                  f"{got:>9.2f} {want:>9.2f} {want / got - 1:>+7.0%}")
        run["total"] = {"measured_rps": round(total_measured, 3),
                        "predicted_rps": round(total_predicted, 3),
                        "error": round(total_predicted / total_measured - 1, 3)}
        print(f"{os.path.basename(log):<28} {'total':<9} {'':>6} {'':>9} {total_measured:>9.2f} "
              f"{total_predicted:>9.2f} {total_predicted / total_measured - 1:>+7.0%}")
        runs.append(run)
    report = {
        "benchmark": "estimator_check",
        "card": args.card,
        "date": datetime.date.today().isoformat(),
        "command": " ".join(sys.argv),
        "cost_model": cost_model,
        "metric": "requests/s per model: measured by muxserve experiment (muxserve mode) vs "
                  "the planner's predicted throughput for the same models and rates",
        "runs": runs,
    }
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()

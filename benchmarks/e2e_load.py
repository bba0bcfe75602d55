#!/usr/bin/env python3
"""Closed-loop load on a running muxserved through `muxserve generate` clients.

For each concurrency N, starts N clients at once, each sending the same-length prompt of random
token ids and asking for exactly --output tokens (--ignore-eos), and waits for all of them.
Output tokens/s = completion tokens of all clients / wall time from the first start to the last
end. Each client's own summary line (ttft, tokens/s) is parsed from its stderr.

  python3 benchmarks/e2e_load.py --cli .devbundle/muxserve --addr 127.0.0.1:50051 \
      --model llama-7b --concurrency 1 1 32 128 --out e2e.json
"""
import argparse
import json
import random
import re
import statistics
import subprocess
import sys
import time

SUMMARY = re.compile(r"completion_tokens: (\d+)(?:, ttft: ([\d.]+) ms)?(?:, ([\d.]+) tokens/s)?")


def run_round(args, concurrency, rng):
    commands = []
    for _ in range(concurrency):
        ids = ",".join(str(rng.randrange(100, args.vocab)) for _ in range(args.prompt))
        commands.append([args.cli, "generate", "--addr", args.addr, "--model", args.model,
                         "--token-ids", ids, "--max-tokens", str(args.output), "--ignore-eos",
                         "--temperature", "0", "--timeout", str(args.timeout)])
    start = time.perf_counter()
    clients = [subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
               for c in commands]
    errors, tokens, ttfts, rates = [], 0, [], []
    for client in clients:
        _, err = client.communicate()
        match = SUMMARY.search(err)
        if client.returncode != 0 or not match:
            errors.append(err.strip()[-300:])
            continue
        tokens += int(match.group(1))
        if match.group(2):
            ttfts.append(float(match.group(2)))
        if match.group(3):
            rates.append(float(match.group(3)))
    wall = time.perf_counter() - start
    return {
        "concurrency": concurrency, "prompt_tokens": args.prompt, "output_tokens": args.output,
        "completed": concurrency - len(errors), "completion_tokens": tokens, "wall_s": wall,
        "output_tokens_per_s": tokens / wall,
        "ttft_ms_median": statistics.median(ttfts) if ttfts else None,
        "client_tokens_per_s_median": statistics.median(rates) if rates else None,
        "errors": errors[:5],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cli", required=True, help="the muxserve client binary")
    parser.add_argument("--addr", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--concurrency", type=int, nargs="+", required=True,
                        help="one round per value, in order (repeat a value to repeat a round)")
    parser.add_argument("--prompt", type=int, default=128, help="prompt tokens")
    parser.add_argument("--output", type=int, default=128, help="output tokens")
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="JSON report path")
    args = parser.parse_args()

    rng = random.Random(args.seed)
    rounds = []
    for concurrency in args.concurrency:
        result = run_round(args, concurrency, rng)
        rounds.append(result)
        print(f"N={concurrency:<4} done {result['completed']}/{concurrency}  "
              f"{result['output_tokens_per_s']:8.1f} output tok/s  wall {result['wall_s']:6.2f} s  "
              f"ttft p50 {result['ttft_ms_median']} ms  per-client tok/s p50 "
              f"{result['client_tokens_per_s_median']}", flush=True)
        for error in result["errors"]:
            print("  error:", error, flush=True)
    with open(args.out, "w") as f:
        json.dump({"rounds": rounds}, f, indent=2)
    return 0 if all(r["completed"] == r["concurrency"] for r in rounds) else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Times HF transformers (eager attention) on a Llama-2-7B-shaped model with random bf16 weights.

The reference peer for benchmarks/decode_bench: run in the same device call, on the same card.
The model is built on the GPU from a LlamaConfig (no download). Decode is timed two ways:
a manual loop feeding one token a step with past_key_values (per-step CUDA-synchronised wall
time, median), and generate() (greedy, (T(1 + n tokens) - T(1 token)) / n). Prefill is one
forward pass over the prompt with use_cache=True.

  python3 benchmarks/hf_reference.py --out hf.json [--merge-into cuda_decode.json]
"""
import argparse
import datetime
import json
import statistics
import sys
import time
import traceback

import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM

LLAMA2_7B = dict(vocab_size=32000, hidden_size=4096, intermediate_size=11008,
                 num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
                 max_position_embeddings=4096, rms_norm_eps=1e-5)


def build_model():
    config = LlamaConfig(**LLAMA2_7B)
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        model = LlamaForCausalLM(config)
    torch.set_default_dtype(torch.float32)
    model.eval()
    return model


def synced_ms(fn):
    torch.cuda.synchronize()
    start = time.perf_counter()
    result = fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) * 1e3, result


def random_ids(batch, length):
    return torch.randint(100, 32000, (batch, length), device="cuda")


def decode_loop(model, batch, context, steps, warmup=3):
    """Median ms of one decode step at `batch` sequences after a `context`-token prefill."""
    with torch.inference_mode():
        out = model(input_ids=random_ids(batch, context), use_cache=True)
        past = out.past_key_values
        token = out.logits[:, -1:].argmax(-1)
        del out
        times = []
        for step in range(warmup + steps):
            ms, out = synced_ms(lambda: model(input_ids=token, past_key_values=past, use_cache=True))
            past = out.past_key_values
            token = out.logits[:, -1:].argmax(-1)
            if step >= warmup:
                times.append(ms)
        del past, out
    torch.cuda.empty_cache()
    return {"name": f"decode b{batch} ctx{context} (manual loop)", "batch": batch,
            "context": context, "steps": steps, "median_ms": statistics.median(times),
            "min_ms": min(times)}


def decode_generate(model, batch, context, new_tokens):
    ids = random_ids(batch, context)

    def run(n):
        with torch.inference_mode():
            return model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                  max_new_tokens=n, min_new_tokens=n, do_sample=False,
                                  pad_token_id=0)

    run(2)  # warm-up
    one_ms, _ = synced_ms(lambda: run(1))
    all_ms, out = synced_ms(lambda: run(1 + new_tokens))
    assert out.shape[1] == context + 1 + new_tokens, out.shape
    torch.cuda.empty_cache()
    return {"name": f"decode b{batch} ctx{context} (generate)", "batch": batch,
            "context": context, "new_tokens": new_tokens,
            "median_ms": (all_ms - one_ms) / new_tokens, "generate_total_ms": all_ms,
            "generate_first_token_ms": one_ms}


def prefill(model, batch, length, reps=5):
    ids = random_ids(batch, length)
    times = []
    with torch.inference_mode():
        for rep in range(2 + reps):
            ms, out = synced_ms(lambda: model(input_ids=ids, use_cache=True))
            del out
            if rep >= 2:
                times.append(ms)
    torch.cuda.empty_cache()
    return {"name": f"prefill {batch}x{length}", "batch": batch, "prompt_tokens": length,
            "median_ms": statistics.median(times), "min_ms": min(times)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="JSON report path")
    parser.add_argument("--merge-into", help="also add the report to this decode_bench JSON as "
                        "field hf_transformers_eager")
    args = parser.parse_args()

    started = time.perf_counter()
    build_ms, model = synced_ms(build_model)
    report = {
        "benchmark": "hf_transformers_eager",
        "card": torch.cuda.get_device_name(0),
        "date": datetime.date.today().isoformat(),
        "command": " ".join(["python3"] + sys.argv),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "model": "Llama-2-7B shape (LlamaConfig, 32 layers, hidden 4096, MLP 11008, vocab 32000), "
                 "random bf16 weights made on the GPU",
        "attn_implementation": model.config._attn_implementation,
        "weight_bytes": sum(p.numel() * p.element_size() for p in model.parameters()),
        "build_ms": build_ms,
        "note": "manual loop: per-step wall time with torch.cuda.synchronize, median after 3 "
                "warm-up steps; generate: greedy, (T(1 + n) - T(1)) / n; prefill: one forward "
                "with use_cache=True, median of 5 after 2 warm-ups",
        "results": [],
        "errors": [],
    }
    cases = [
        lambda: decode_loop(model, 1, 512, steps=30),
        lambda: decode_generate(model, 1, 512, new_tokens=32),
        lambda: prefill(model, 1, 128),
        lambda: decode_loop(model, 32, 512, steps=10),
        lambda: decode_loop(model, 128, 512, steps=6),
        lambda: prefill(model, 1, 2048),
        lambda: prefill(model, 16, 512),
    ]
    for case in cases:
        try:
            result = case()
            report["results"].append(result)
            print(f"{result['name']:<36} {result['median_ms']:9.2f} ms", flush=True)
        except Exception:  # one failed case must not lose the others' numbers
            report["errors"].append(traceback.format_exc())
            print(traceback.format_exc(), file=sys.stderr, flush=True)
            torch.cuda.empty_cache()
    report["wall_s"] = time.perf_counter() - started

    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    if args.merge_into:
        with open(args.merge_into) as f:
            merged = json.load(f)
        merged["hf_transformers_eager"] = report
        with open(args.merge_into, "w") as f:
            json.dump(merged, f, indent=2)
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())

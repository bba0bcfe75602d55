"""Builds forward/<model>.json: what HF transformers computes on three synthetic models, for
tests/engine/hf_parity_test.cc (pip install torch transformers safetensors).

Each model is written by our own `muxserve make-model` in float32 (seeded random weights), loaded
by transformers (LlamaForCausalLM or Qwen2ForCausalLM, eager attention, float32, CPU), and run on
a few prompts. A fixture keeps the model's config.json and seed (the test writes the same weights
again with WriteSyntheticModel), the prompts, the logits of the prompt's last token, 64 greedy
tokens (argmax, EOS not special) and the logits that chose the last of them. Random weights
often make greedy decoding repeat one token (always so with tied embeddings, where the last
token's own embedding dominates the final hidden state), so each case also feeds 64 fixed
pseudo-random tokens after the prompt (teacher forcing) and keeps the five best tokens, in
order, after the prompt and after every one of them (so even a tied model, whose best token is
the one just fed, is checked on the next four), and the logits after the last.
Run: python3 make_forward.py --muxserve <build>/src/apps/muxserve
"""
import argparse
import json
import os
import random
import subprocess
import tempfile

import torch
from transformers import AutoModelForCausalLM

# Head size 64 in every model: the CUDA backend's attention takes 64, 128 and 256, and the same
# fixtures serve the CPU and the CUDA parity tests. The seeds are those of 11-40 whose greedy runs
# have the widest top-2 margins over their first 32 steps (0.12 and 0.22 with logits of about 50;
# most seeds have a near-tie below 0.05): the CUDA test asks bf16 for HF's fp32 greedy tokens,
# and a closer tie would be decided by rounding rather than by the model.
MODELS = {
    # Llama 2 shape: multi-head attention, rope theta 10000.
    "llama2_mha": (["--layers", "2", "--hidden", "256", "--heads", "4", "--kv-heads", "4",
                    "--intermediate", "688", "--rms-norm-eps", "1e-5"], 30),
    # Llama 3 shape: grouped-query attention, theta 500000, llama3 rope scaling whose original
    # context (64) is short enough that the prompts reach its scaled and blended frequencies.
    "llama3_gqa": (["--layers", "3", "--hidden", "512", "--heads", "8", "--kv-heads", "2",
                    "--intermediate", "512", "--rope-theta", "500000", "--rope-scaling", "llama3",
                    "--rope-factor", "8", "--rope-low-freq-factor", "1",
                    "--rope-high-freq-factor", "4", "--rope-original-max-position", "64",
                    "--rms-norm-eps", "1e-5"], 30),
    # Qwen2 shape: qkv biases, tied embeddings, theta 1e6.
    "qwen2_bias_tied": (["--model-type", "qwen2", "--layers", "2", "--hidden", "384", "--heads",
                         "6", "--kv-heads", "2", "--intermediate", "512", "--rope-theta",
                         "1000000", "--rms-norm-eps", "1e-6", "--tie-embeddings"], 13),
}
PROMPTS = [
    [72],
    [72, 101, 108, 108, 111, 44, 32, 119, 111, 114, 108, 100],
    [257, 117, 115, 101, 114, 10, 5, 300, 17, 319, 0, 128, 255, 64, 91, 258, 10, 257, 97, 115,
     115, 105, 115, 10],
]
NEW_TOKENS = 64
FORCED_SEED = 5
TOP_K = 5


def greedy(model, prompt):
    """Argmax decoding with the KV cache; returns the tokens and the logits that chose each."""
    ids = torch.tensor([prompt])
    out = model(input_ids=ids, use_cache=True)
    tokens, all_logits = [], []
    for _ in range(NEW_TOKENS):
        logits = out.logits[0, -1]
        token = int(torch.argmax(logits))
        tokens.append(token)
        all_logits.append(logits)
        out = model(input_ids=torch.tensor([[token]]), past_key_values=out.past_key_values,
                    use_cache=True)
    return tokens, all_logits


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--muxserve", required=True, help="the muxserve CLI binary")
    args = parser.parse_args()
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "forward")
    os.makedirs(here, exist_ok=True)
    torch.set_num_threads(1)
    for name, (flags, seed) in MODELS.items():
        with tempfile.TemporaryDirectory() as tmp:
            model_dir = os.path.join(tmp, name)
            subprocess.run([args.muxserve, "make-model", "--out", model_dir, "--dtype", "float32",
                            "--vocab", "320", "--seed", str(seed)] + flags, check=True,
                           stdout=subprocess.DEVNULL)
            with open(os.path.join(model_dir, "config.json")) as f:
                config = json.load(f)
            model = AutoModelForCausalLM.from_pretrained(
                model_dir, dtype=torch.float32, attn_implementation="eager")
            model.eval()
            cases = []
            forced_rng = random.Random(FORCED_SEED)
            with torch.no_grad():
                for prompt in PROMPTS:
                    tokens, logits = greedy(model, prompt)
                    forced = [forced_rng.randrange(config["vocab_size"])
                              for _ in range(NEW_TOKENS)]
                    forced_logits = model(input_ids=torch.tensor([prompt + forced])).logits[0]
                    forced_logits = forced_logits[len(prompt) - 1:]
                    top = torch.topk(forced_logits, TOP_K, dim=-1)
                    margins = [float(torch.topk(l, 2).values[0] - torch.topk(l, 2).values[1])
                               for l in logits]
                    cases.append({
                        "prompt": prompt,
                        "prompt_logits": [float(f"{float(x):.9g}") for x in logits[0]],
                        "greedy": tokens,
                        "last_logits": [float(f"{float(x):.9g}") for x in logits[-1]],
                        "min_top2_margin": min(margins),
                        "forced": forced,
                        "forced_top": top.indices.tolist(),
                        "forced_last_logits": [float(f"{float(x):.9g}")
                                               for x in forced_logits[-1]],
                        "forced_min_top_gap": float(torch.min(top.values[:, :-1] -
                                                              top.values[:, 1:])),
                    })
        fixture = {"model": name, "seed": seed, "config": config,
                   "transformers": __import__("transformers").__version__,
                   "torch": torch.__version__, "cases": cases}
        with open(os.path.join(here, name + ".json"), "w") as f:
            json.dump(fixture, f, separators=(",", ":"))
            f.write("\n")
        print(name, "min top-2 margin: greedy",
              min(c["min_top2_margin"] for c in cases), "forced",
              min(c["forced_min_top_gap"] for c in cases), "distinct greedy tokens",
              [len(set(c["greedy"])) for c in cases])


if __name__ == "__main__":
    main()

"""Tokenizer encoding speed: ours (build/benchmarks/tokenizer_bench) next to HF `tokenizers`,
both on one core, on the same ~10 MB of mixed text, in the same run.

The corpus is generated from a fixed seed: English-like prose, code, numbers, whitespace runs,
and text in many scripts with emoji (tests/model/testdata/make_parity.py's generators), cut into
documents of 1-8 KB that each side encodes one at a time. The tokenizers are trained here with HF
`tokenizers` on a 2 MB sample of the corpus, 32,000 tokens, in two families' configurations:
Llama 3 (Split regex + ByteLevel) and Llama 2 (byte fallback, Prepend/Replace normalizer).
Writes benchmarks/results/tokenizer.json.

  python3 benchmarks/tokenizer_bench.py --bench build/benchmarks/tokenizer_bench
"""
import argparse
import datetime
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time

os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "model", "testdata"))
import make_parity  # noqa: E402  (the string generators of the parity fixtures)

LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+")
CORPUS_BYTES = 10_000_000
SEED = 7
VOCAB = 32000
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def make_corpus():
    """Documents of 1-8 KB; most text is prose (as served text is), the rest every other kind."""
    rng = random.Random(SEED)
    documents, total = [], 0
    while total < CORPUS_BYTES:
        target = rng.randrange(1000, 8000)
        parts, size = [], 0
        while size < target:
            # Index 0 leans on words (prose); the others on one kind each.
            index = 0 if rng.random() < 0.6 else rng.randrange(len(make_parity.KINDS))
            text = make_parity.make_string(rng, index)
            parts.append(text)
            size += len(text.encode())
        document = "".join(parts)
        documents.append(document)
        total += len(document.encode())
    return documents


def train(kind, sample):
    if kind == "llama3":
        tok = Tokenizer(models.BPE(ignore_merges=True))
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(pattern=Regex(LLAMA3_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=SPECIALS,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                      show_progress=False)
    else:
        tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
        tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"),
                                               normalizers.Replace(" ", "▁")])
        tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(),
                                         decoders.Fuse(), decoders.Strip(" ", 1, 0)])
        trainer = trainers.BpeTrainer(
            vocab_size=VOCAB, special_tokens=["<unk>", "<s>", "</s>"] +
            ["<0x%02X>" % b for b in range(256)], show_progress=False, max_token_length=16)
    tok.train_from_iterator(sample, trainer)
    return tok


def hf_speed(tok, documents, repeat):
    best = best_cpu = float("inf")
    tokens = 0
    for _ in range(repeat):
        cpu_start, start = time.thread_time(), time.perf_counter()
        tokens = sum(len(tok.encode(d, add_special_tokens=False).ids) for d in documents)
        best = min(best, time.perf_counter() - start)
        best_cpu = min(best_cpu, time.thread_time() - cpu_start)
    size = sum(len(d.encode()) for d in documents)
    ids_hash = 14695981039346656037
    for d in documents:
        for token in tok.encode(d, add_special_tokens=False).ids:
            ids_hash = ((ids_hash ^ token) * 1099511628211) % (1 << 64)
    return {"bytes": size, "tokens": tokens, "ids_fnv1a": ids_hash, "seconds": best, "mb_per_second": size / 1e6 / best,
            "cpu_seconds": best_cpu, "mb_per_cpu_second": size / 1e6 / best_cpu}


def cpu_name():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bench", default=os.path.join(ROOT, "build", "benchmarks",
                                                        "tokenizer_bench"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "tokenizer.json"))
    parser.add_argument("--work-dir", help="keep the corpus and tokenizers here (default: a "
                        "temporary directory)")
    args = parser.parse_args()
    core = sorted(os.sched_getaffinity(0))[0]
    os.sched_setaffinity(0, {core})  # HF on one core (its encode of one string is serial anyway)

    documents = make_corpus()
    rng = random.Random(SEED + 1)
    sample = rng.sample(documents, k=max(1, len(documents) // 5))
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        tmp = args.work_dir or scratch
        os.makedirs(tmp, exist_ok=True)
        corpus = os.path.join(tmp, "corpus.jsonl")
        with open(corpus, "w", encoding="utf-8") as f:
            for d in documents:
                f.write(json.dumps(d, ensure_ascii=False) + "\n")
        for kind in ("llama3", "llama2"):
            tok = train(kind, sample)
            model_dir = os.path.join(tmp, kind)
            os.makedirs(model_dir, exist_ok=True)
            tok.save(os.path.join(model_dir, "tokenizer.json"))
            ours = json.loads(subprocess.run(
                ["taskset", "-c", str(core), args.bench, "--model-dir", model_dir, "--corpus",
                 corpus, "--repeat", str(args.repeat)],
                check=True, capture_output=True, text=True).stdout)
            hf = hf_speed(tok, documents, args.repeat)
            same = ours["ids_fnv1a"] == hf["ids_fnv1a"]
            results.append({"tokenizer": kind, "vocab": tok.get_vocab_size(),
                            "muxserve": ours, "hf_tokenizers": hf,
                            "same_ids_as_hf": same,
                            "speedup_vs_hf": ours["mb_per_cpu_second"] / hf["mb_per_cpu_second"]})
            print(f"{kind}: muxserve {ours['mb_per_cpu_second']:.2f} MB per CPU-second "
                  f"({ours['mb_per_second']:.2f} MB/s wall), HF tokenizers "
                  f"{hf['mb_per_cpu_second']:.2f} ({hf['mb_per_second']:.2f} wall), "
                  f"tokens {ours['tokens']} vs {hf['tokens']}, same ids: {same}")
    import tokenizers
    report = {
        "benchmark": "tokenizer_encode",
        "card": f"{cpu_name()}, 1 core (taskset -c {core})",
        "date": datetime.date.today().isoformat(),
        "command": "python3 benchmarks/tokenizer_bench.py --bench " + args.bench,
        "corpus": {"bytes": sum(len(d.encode()) for d in documents), "documents": len(documents),
                   "seed": SEED},
        "hf_tokenizers_version": tokenizers.__version__,
        "note": "encode one document at a time, no special tokens added, best of "
                f"{args.repeat} passes; RAYON_NUM_THREADS=1; mb_per_cpu_second divides by the "
                "encoding thread's CPU time, which other work on a shared machine does not "
                "inflate (mb_per_second uses the wall clock)",
        "load_average": os.getloadavg(),
        "results": results,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()

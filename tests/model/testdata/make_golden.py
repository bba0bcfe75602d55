"""Builds the tokenizer fixtures of tokenizer_test.cc with HF `tokenizers` (pip install tokenizers).

Writes <name>/tokenizer.json for small trained vocabularies and golden.json with the ids
HF gives for each test string, so the C++ tokenizer is checked against HF itself:
  byte_level: Llama 3 style (Split regex + ByteLevel without regex, ignore_merges)
  qwen2:      Qwen2 style (NFC normalizer, Split with single-digit numbers + ByteLevel)
  gpt2:       GPT-2 style (ByteLevel with its own regex)
  llama2:     Llama 2 style (Prepend/Replace normalizer, byte fallback, Strip decoder)
  metaspace:  Mistral v0.3 style (Metaspace pre-tokenizer, prepend_scheme "first")
Run from this directory: python3 make_golden.py
"""
import json
import os

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+")

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Hello world! Hello there, how are you doing today?",
    "I'm sure they'll say we've done it, don't you think?",
    "Numbers like 12345 and 2024 and 3.14159 appear in text.",
    "Ein Beispiel mit Umlauten: Grüße aus München, schön!",
    "Un café à Paris, s'il vous plaît. Déjà vu.",
    "你好世界，今天天气很好。我们去公园散步吧。",
    "こんにちは世界。日本語のテキストです。",
    "Emoji time: 👋 😀 🎉 👨‍👩‍👧 done.",
    "def main():\n    return print('hello')\n\n\nclass Foo:\n\tpass\n",
    "multiple   spaces    and\ttabs\t\there",
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\nParis.",
] * 20

TESTS = [
    "",
    "Hello world",
    "Hello world!",
    " leading space",
    "trailing spaces   ",
    "multiple   spaces    inside",
    "tabs\tand\nnewlines\n\n\nend",
    "  \n  indented\n",
    "I'm sure they'll say we've done it",
    "Numbers 12345 and 3.14159",
    "Grüße aus München",
    "Un café à Paris",
    "你好世界",
    "こんにちは",
    "Emoji 👋🏽 and family 👨‍👩‍👧!",
    "a\u3000b\u00a0c",
    "<|im_start|>user\nhi there<|im_end|>\n<|im_start|>assistant\n",
    "text<|im_end|>more<|im_start|>",
    "<|im_start|><|im_start|>",
    "unseen chars: \u0416\u0437\u044b\u043a \u2603 \U0001F680",
    "zzzzqqqqxxxx",
    "a  \n  b",
    "x \u3000 y\u2003\u2003z",
    "end\n\n",
    "  ",
    "\t\tfoo  bar\r\n\r\nbaz",
    "a\u00a0\u00a0b \u0085 c",
    "1234567 digits 3.5e10",
]

QWEN2_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+")

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
BYTES = ["<0x%02X>" % b for b in range(256)]


def train_byte_level(pre_tokenizer, ignore_merges, normalizer=None):
    tok = Tokenizer(models.BPE(ignore_merges=ignore_merges))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    return tok


def train_sentencepiece_like(normalizer, pre_tokenizer, decoder):
    """A BPE over chars with byte fallback: <unk>, <s>, </s>, <0x00>..<0xFF>, then merges."""
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    trainer = trainers.BpeTrainer(vocab_size=700, special_tokens=["<unk>", "<s>", "</s>"] + BYTES,
                                  show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    data = json.loads(tok.to_str())
    # As in Llama 2's file, the byte tokens are plain vocabulary entries, not added tokens.
    data["added_tokens"] = [t for t in data["added_tokens"] if t["content"] in ("<unk>", "<s>", "</s>")]
    tok = Tokenizer.from_str(json.dumps(data))
    tok.decoder = decoder
    return tok


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    tokenizers = {
        "byte_level": train_byte_level(pre_tokenizers.Sequence([
            pre_tokenizers.Split(pattern=__import__("tokenizers").Regex(LLAMA3_PATTERN),
                                 behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]), True),
        "qwen2": train_byte_level(pre_tokenizers.Sequence([
            pre_tokenizers.Split(pattern=__import__("tokenizers").Regex(QWEN2_PATTERN),
                                 behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]), False,
            normalizers.NFC()),
        "gpt2": train_byte_level(pre_tokenizers.ByteLevel(add_prefix_space=False), False),
        "llama2": train_sentencepiece_like(
            normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")]), None,
            decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                               decoders.Strip(" ", 1, 0)])),
        "metaspace": train_sentencepiece_like(
            None, pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False),
            decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                               decoders.Strip(" ", 1, 0)])),
    }
    golden = {"tests": TESTS, "encodings": {}}
    for name, tok in tokenizers.items():
        if name in ("llama2", "metaspace"):
            tok.add_special_tokens(SPECIALS)
        os.makedirs(os.path.join(here, name), exist_ok=True)
        data = json.loads(tok.to_str())
        if name == "gpt2":
            # Older files write merges as "a b" strings; keep one fixture in that form.
            data["model"]["merges"] = [" ".join(pair) for pair in data["model"]["merges"]]
            tok = Tokenizer.from_str(json.dumps(data))
        with open(os.path.join(here, name, "tokenizer.json"), "w", encoding="utf-8") as f:
            json.dump(data, f, ensure_ascii=False, indent=1)
            f.write("\n")
        encodings = []
        for text in TESTS:
            ids = tok.encode(text, add_special_tokens=False).ids
            encodings.append({"ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False),
                              "decoded_skip": tok.decode(ids, skip_special_tokens=True)})
        golden["encodings"][name] = encodings
    with open(os.path.join(here, "golden.json"), "w", encoding="utf-8") as f:
        json.dump(golden, f, ensure_ascii=False, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()

"""Builds parity.jsonl: 2,400 varied strings and, for every fixture tokenizer, the ids HF
`tokenizers` gives and the text it decodes back (pip install tokenizers).

The strings are generated from a fixed seed: ASCII prose with contractions and numbers, code,
whitespace runs (tabs, CR LF, no-break and ideographic spaces), many scripts (Latin, Cyrillic,
Greek, Arabic, Hebrew, Devanagari, Thai, CJK, kana, Hangul), emoji (skin tones, ZWJ families,
flags, keycaps), combining marks (decomposed text, which NFC composes) and special-token text
(whole, repeated and cut short). One JSON object a line:
  {"text": ..., "ids": {"<fixture>": [...], ...}, "decoded": {"<fixture>": ...}}
where "nfc" is the text in Unicode NFC when that differs, "decoded" lists only the fixtures
whose decode (skip_special_tokens=False) differs from the text, and "decoded_skip" those whose
decode with skip_special_tokens=True differs from "decoded".
Run after make_golden.py, from this directory: python3 make_parity.py
"""
import json
import os
import random
import unicodedata

from tokenizers import Tokenizer

FIXTURES = ["byte_level", "qwen2", "gpt2", "llama2", "metaspace"]
COUNT = 2400
SEED = 20261125

WORDS = ("the of and to in is you that it he was for on are as with his they I at be this have "
         "from or one had by word but not what all were we when your can said there use an each "
         "which she do how their if will up other about out many then them these so some her "
         "would make like him into time has look two more write go see number no way could people "
         "my than first water been call who oil its now find long down day did get come made may "
         "part Hello World Python JSON HTTP GPU tensor tokenizer naïve café résumé façade").split()
CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'Ve", "'LL", "'D"]
PUNCT = list(".,;:!?()[]{}<>\"'`~@#$%^&*-_=+/\\|") + ["...", "--", "—", "–", "“", "”", "‘", "’",
                                                      "«", "»", "¿", "¡", "…", "•", "§", "©"]
SPACES = [" ", "  ", "   ", "\t", "\t\t", "\n", "\n\n", "\r\n", " \n", "\n ", "\u00a0", "\u3000",
          "\u2003", "\u2009", "\u0085", "\u2028", "\u202f", "\x0b", "\x0c", "      "]
SCRIPTS = {
    "latin": "àáâãäåæçèéêëìíîïñòóôõöøùúûüýÿßœŒŁłŠšŽžĐđ",
    "cyrillic": "абвгдеёжзийклмнопрстуфхцчшщъыьэюяАБВГДЕЖЗИЙ",
    "greek": "αβγδεζηθικλμνξοπρστυφχψωΑΒΓΔΩάέήίόύώ",
    "arabic": "ابتثجحخدذرزسشصضطظعغفقكلمنهوي",
    "hebrew": "אבגדהוזחטיכלמנסעפצקרשת",
    "devanagari": "अआइईउऊएऐओऔकखगघचछजझटठडढणतथदधनपफबभमयरलवशषसह",
    "thai": "กขคงจฉชซญดตถทนบปผพฟภมยรลวศสหอฮ",
    "cjk": "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年世界今天气很好",
    "kana": "あいうえおかきくけこさしすせそたちつてとなにぬねのアイウエオカキクケコ",
    "hangul": "가나다라마바사아자차카타파하한국어안녕하세요",
}
EMOJI = ["😀", "🎉", "🚀", "🦀", "👋🏽", "👍🏿", "👨‍👩‍👧", "👩‍💻", "🏳️‍🌈", "🇫🇷", "🇯🇵", "1️⃣",
         "❤️", "☃", "✨", "🤖", "🧪", "🐍"]
# Decomposed letters (base + combining marks) and Hangul jamo: NFC composes these.
COMBINING = ["e\u0301", "a\u0308", "o\u0302", "n\u0303", "c\u0327", "A\u030a", "u\u0308\u0301",
             "a\u0323\u0302", "q\u0307\u0323", "\u1100\u1161", "\u1112\u1161\u11ab", "i\u0307",
             "\u0301", "e\u0301\u0301", "\u05d1\u05bc", "\u0915\u093c"]
SPECIAL_TEXT = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|im_start|>user\n",
                "<|im_end|>\n", "<|im_", "im_end|>", "<|", "|>", "<s>", "</s>", "<unk>",
                "<0x41>", "<|im_start|><|im_end|>", "[INST]", "[/INST]", "<<SYS>>"]
CODE = [
    "def f(x):\n    return x * 2\n",
    "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}\n",
    "{\"key\": [1, 2.5, null, true], \"s\": \"v\\n\"}",
    "#include <vector>\nint main() { return 0; }\n",
    "SELECT id, name FROM users WHERE age >= 18;",
    "if x != y and not z:\n        pass\n\n\n",
    "const re = /^\\s+(\\d{3})-?$/g;",
    "x=1;y=2;z=x+y*3**4//5%6",
    "<div class=\"a\">&nbsp;&lt;b&gt;</div>",
    "    \n\t  \n",
]


def number(rng):
    kind = rng.randrange(5)
    if kind == 0:
        return str(rng.randrange(10))
    if kind == 1:
        return str(rng.randrange(10 ** rng.randrange(2, 13)))
    if kind == 2:
        return f"{rng.uniform(-1000, 1000):.{rng.randrange(1, 6)}f}"
    if kind == 3:
        return f"{rng.randrange(1, 10)}.{rng.randrange(100)}e{rng.randrange(-20, 20)}"
    return "".join(rng.choice("0123456789") for _ in range(rng.randrange(1, 25)))


def piece(rng, kind):
    if kind == "word":
        w = rng.choice(WORDS)
        return w.upper() if rng.random() < 0.1 else w.capitalize() if rng.random() < 0.2 else w
    if kind == "contraction":
        return rng.choice(WORDS) + rng.choice(CONTRACTIONS)
    if kind == "punct":
        return rng.choice(PUNCT) * rng.choice([1, 1, 1, 2, 3])
    if kind == "space":
        return rng.choice(SPACES)
    if kind == "number":
        return number(rng)
    if kind == "script":
        letters = SCRIPTS[rng.choice(sorted(SCRIPTS))]
        return "".join(rng.choice(letters) for _ in range(rng.randrange(1, 9)))
    if kind == "emoji":
        return "".join(rng.choice(EMOJI) for _ in range(rng.randrange(1, 4)))
    if kind == "combining":
        return "".join(rng.choice(COMBINING) for _ in range(rng.randrange(1, 4)))
    if kind == "special":
        return rng.choice(SPECIAL_TEXT)
    if kind == "code":
        return rng.choice(CODE)
    raise ValueError(kind)


KINDS = ["word", "contraction", "punct", "space", "number", "script", "emoji", "combining",
         "special", "code"]
# Each string leans on one kind, so every kind gets strings dense in it, with the others mixed in.
WEIGHTS_BASE = [8, 1, 2, 5, 1, 1, 1, 1, 1, 1]


def make_string(rng, index):
    focus = index % len(KINDS)
    weights = list(WEIGHTS_BASE)
    weights[focus] += 12
    parts = []
    for _ in range(rng.randrange(1, 14)):
        kind = rng.choices(KINDS, weights)[0]
        parts.append(piece(rng, kind))
        # Words usually have a space between them; sometimes not, to glue scripts and marks.
        if kind in ("word", "contraction", "number") and rng.random() < 0.7:
            parts.append(" ")
    text = "".join(parts)
    if rng.random() < 0.1:
        text = " " + text
    if rng.random() < 0.1:
        text += rng.choice(SPACES)
    return text


def edge_cases():
    return ["", " ", "  ", "\n", "\t", "\r\n", "a", "I'm", "'s", "12", "123", "1234",
            "a" * 200, " " * 50, "\n" * 20, "!" * 30, "9" * 40, "ab" * 60, "😀" * 20,
            "<|im_start|>" * 5, "<|im_end|><|im_end|>x", "x<|endoftext|>", "\u3000\u3000a",
            "\u00a0", "e\u0301", "\u0301", "\u1100\u1161\u11a8"]


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    tokenizers = {name: Tokenizer.from_file(os.path.join(here, name, "tokenizer.json"))
                  for name in FIXTURES}
    rng = random.Random(SEED)
    texts = edge_cases()
    while len(texts) < COUNT:
        texts.append(make_string(rng, len(texts)))
    with open(os.path.join(here, "parity.jsonl"), "w", encoding="utf-8") as out:
        for text in texts:
            line = {"text": text, "ids": {}, "decoded": {}, "decoded_skip": {}}
            for name, tok in tokenizers.items():
                ids = tok.encode(text, add_special_tokens=False).ids
                decoded = tok.decode(ids, skip_special_tokens=False)
                decoded_skip = tok.decode(ids, skip_special_tokens=True)
                line["ids"][name] = ids
                if decoded != text:
                    line["decoded"][name] = decoded
                if decoded_skip != decoded:
                    line["decoded_skip"][name] = decoded_skip
            if unicodedata.normalize("NFC", text) != text:
                line["nfc"] = unicodedata.normalize("NFC", text)
            for key in ("decoded", "decoded_skip"):
                if not line[key]:
                    del line[key]
            out.write(json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Independent Python model of the CLIP tokenizer that augment/engine/tokenizer.c implements, used to produce the expected
ids hard-coded in tests/test_tokenizer.c. It follows OpenAI CLIP's simple_tokenizer (the `regex` module's pattern,
bytes_to_unicode, BPE by rank) with a subset of ftfy.fix_text (ftfy is not packaged in Debian) that covers the
fixture prompts; the C tokenizer's fuller ftfy model (NFC, HTML5 entities, mojibake) is tested in test_tokenizer.c.

    python3 scripts/clip_bpe_reference.py TOKENIZER_DIR [MAX_LEN] < prompts.txt

prints, for each input line (a JSON string literal, so any text can be given), the full length (tokens + 2) and
the max_len ids (BOS ... EOS pad ...). Special tokens come from tokenizer_config.json and
special_tokens_map.json as in augment/engine/tokenizer.c.
"""
import json
import os
import re as stdre
import sys

import regex

PATTERN = regex.compile(
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
    regex.IGNORECASE)

LIGATURES = {
    "\u0132": "IJ", "\u0133": "ij", "\u0149": "\u02bcn", "\u01c4": "D\u017d", "\u01c5": "D\u017e",
    "\u01c6": "d\u017e", "\u01c7": "LJ", "\u01c8": "Lj", "\u01c9": "lj", "\u01ca": "NJ", "\u01cb": "Nj",
    "\u01cc": "nj", "\u01f1": "DZ", "\u01f2": "Dz", "\u01f3": "dz", "\ufb00": "ff", "\ufb01": "fi", "\ufb02": "fl",
    "\ufb03": "ffi", "\ufb04": "ffl", "\ufb05": "\u017ft", "\ufb06": "st",
}
NAMED = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'", "nbsp": "\u00a0"}
CONTROL = stdre.compile("[\x00-\x08\x0b\x0e-\x1f\x7f\u206a-\u206f\ufeff\ufff9-\ufffc]")


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) + \
        list(range(ord("\xae"), ord("\xff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def entity(m):
    if m.group(1):
        return NAMED[m.group(1)]
    v = int(m.group(2), 10) if m.group(2) else int(m.group(3), 16)
    ok = 0x20 <= v <= 0x7e or (0xa0 <= v <= 0x10ffff and not 0xd800 <= v < 0xe000 and not 0xfdd0 <= v <= 0xfdef
                               and (v & 0xfffe) != 0xfffe)
    return chr(v) if ok else m.group(0)


def clean(text):
    if "<" not in text:
        text = stdre.sub(r"&(amp|lt|gt|quot|apos|nbsp);|&#([0-9]{1,7});|&#[xX]([0-9a-fA-F]{1,6});", entity, text)
    text = "".join(LIGATURES.get(c, c) for c in text)
    text = "".join(chr(ord(c) - 0xfee0) if "\uff01" <= c <= "\uff5e" else " " if c == "\u3000" else c for c in text)
    text = regex.sub("[\u02bc\u2018-\u201b]", "'", text)
    text = regex.sub("[\u201c-\u201f]", '"', text)
    text = CONTROL.sub("", text)
    text = regex.sub(r"\s+", " ", text).strip()
    return text.lower()


class Tokenizer:
    def __init__(self, d):
        with open(os.path.join(d, "vocab.json"), encoding="utf-8") as f:
            self.encoder = json.load(f)
        with open(os.path.join(d, "merges.txt"), encoding="utf-8") as f:
            lines = f.read().strip().split("\n")
        if lines and lines[0].startswith("#version"):
            lines = lines[1:]
        lines = lines[:49152 - 256 - 2]
        self.ranks = {}
        for i, line in enumerate(lines):
            parts = line.split()
            if len(parts) == 2:
                self.ranks[tuple(parts)] = i
        self.byte_encoder = bytes_to_unicode()
        special = {}
        for name in ("tokenizer_config.json", "special_tokens_map.json"):   # the second one wins
            path = os.path.join(d, name)
            if os.path.exists(path):
                with open(path, encoding="utf-8") as f:
                    for k, v in json.load(f).items():
                        special[k] = v["content"] if isinstance(v, dict) else v
        self.bos = self.encoder[special.get("bos_token", "<|startoftext|>")]
        self.eos = self.encoder[special.get("eos_token", "<|endoftext|>")]
        self.pad = self.encoder[special.get("pad_token", special.get("eos_token", "<|endoftext|>"))]
        self.unk = self.encoder.get(special.get("unk_token", "<|endoftext|>"))

    def bpe(self, token):
        word = list(token[:-1]) + [token[-1] + "</w>"]
        while len(word) > 1:
            pairs = [(word[i], word[i + 1]) for i in range(len(word) - 1)]
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    out.append(word[i] + word[i + 1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            word = out
        return word

    def encode(self, text, max_len):
        ids = []
        for piece in PATTERN.findall(clean(text)):
            if piece in ("<|startoftext|>", "<|endoftext|>"):
                ids.append(self.encoder[piece])
                continue
            symbols = "".join(self.byte_encoder[b] for b in piece.encode("utf-8"))
            ids.extend(self.encoder.get(s, self.unk) for s in self.bpe(symbols))
        full = len(ids) + 2
        ids = [self.bos] + ids[:max_len - 2] + [self.eos]
        return full, ids + [self.pad] * (max_len - len(ids))


def main():
    tok = Tokenizer(sys.argv[1])
    max_len = int(sys.argv[2]) if len(sys.argv) > 2 else 77
    for line in sys.stdin:
        if line.strip():
            full, ids = tok.encode(json.loads(line), max_len)
            print(full, " ".join(map(str, ids)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

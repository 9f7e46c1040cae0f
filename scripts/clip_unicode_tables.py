#!/usr/bin/env python3
"""Writes augment/engine/unicode_tables.c (or the path given), the tables of CLIP's tokenizer and its text cleanup
that augment/engine/unicode_tables.h declares:

- letters: the ranges of \\p{L} and numbers: the ranges of \\p{N}, as the `regex` module (which CLIP's pre-split
  pattern uses) defines them;
- lower: Python's str.lower() for every code point whose lowercase is a single other code point, compressed into
  runs (first, last, delta, stride): c in [first, last] with (c - first) % stride == 0 maps to c + delta;
- case_ignorable / cased: the two classes str.lower()'s Final_Sigma rule looks at, found by probing str.lower()
  itself ("cased" lists only cased characters that are not also case-ignorable, the only ones the rule consults);
- nfc_decomp, nfc_compose, ccc_0300: the part of NFC the cleanup implements (unicodedata);
- html5, html5_no_upper, html5_upper: ftfy's HTML entities (html.entities.html5, html.unescape);
- width_map: ftfy's WIDTH_MAP above U+FF5E (unicodedata's NFKC).

Run with the Python whose `regex` module and Unicode version you want to match (the committed file: Python 3.11,
Unicode 14.0.0, regex 2.5.123):
    python3 scripts/clip_unicode_tables.py [augment/engine/unicode_tables.c]
"""
import html
import html.entities
import sys
import unicodedata

import regex


def code_points():
    return (c for c in range(0x110000) if not 0xD800 <= c < 0xE000)


def ranges(pattern):
    rx = regex.compile(pattern)
    out, start, prev = [], None, None
    for c in code_points():
        if rx.match(chr(c)):
            if start is None or c != prev + 1:
                if start is not None:
                    out.append((start, prev))
                start = c
            prev = c
    out.append((start, prev))
    return out


def lower_runs():
    runs = []
    for c in code_points():
        low = chr(c).lower()
        if len(low) != 1 or low == chr(c):
            continue
        d = ord(low) - c
        if runs:
            first, last, delta, stride = runs[-1]
            if delta == d and first == last and c - last in (1, 2):
                runs[-1] = (first, c, d, c - last)
                continue
            if delta == d and c - last == stride:
                runs[-1] = (first, c, d, stride)
                continue
        runs.append((c, c, d, 1))
    return runs


def sigma_classes():
    ignorable, cased = [], []
    for c in code_points():
        ch = chr(c)
        if ("A\u03a3" + ch + "A").lower()[1] == "\u03c2":    # final before ch: neither ignorable nor cased
            continue
        if (ch + "\u03a3").lower()[-1] == "\u03c2":          # final after ch alone: ch is cased
            cased.append(c)
        else:
            ignorable.append(c)
    return as_ranges(ignorable), as_ranges(cased)


def as_ranges(cps):
    out = []
    for c in cps:
        if out and out[-1][1] == c - 1:
            out[-1] = (out[-1][0], c)
        else:
            out.append((c, c))
    return out


LIGATURES = {0x132: "IJ", 0x133: "ij", 0x149: "\u02bcn", 0x1c4: "D\u017d", 0x1c5: "D\u017e", 0x1c6: "d\u017e",
             0x1c7: "LJ", 0x1c8: "Lj", 0x1c9: "lj", 0x1ca: "NJ", 0x1cb: "Nj", 0x1cc: "nj", 0x1f1: "DZ", 0x1f2: "Dz",
             0x1f3: "dz", 0xfb00: "ff", 0xfb01: "fi", 0xfb02: "fl", 0xfb03: "ffi", 0xfb04: "ffl", 0xfb05: "\u017ft",
             0xfb06: "st"}   # ftfy's fix_latin_ligatures


def nfc_tables():
    """Canonical decompositions whose second part is a mark of U+0300..U+036F or a kana voicing mark, and the
    singletons but the CJK compatibility ideographs; the indices of the pairs NFC composes, sorted by pair."""
    rows = []
    for c in range(0x110000):
        d = unicodedata.decomposition(chr(c))
        if not d or d.startswith("<"):
            continue
        parts = [int(x, 16) for x in d.split()]
        if len(parts) == 1:
            if not (0xF900 <= c <= 0xFAFF or 0x2F800 <= c <= 0x2FA1F):
                rows.append((c, parts[0], 0))
        elif 0x300 <= parts[1] <= 0x36F or parts[1] in (0x3099, 0x309A):
            rows.append((c, parts[0], parts[1]))
    comp = [i for i, (c, a, b) in enumerate(rows) if b and unicodedata.normalize("NFC", chr(a) + chr(b)) == chr(c)]
    comp.sort(key=lambda i: rows[i][1:])
    return rows, comp


def html_tables():
    """The names ending in ';' (without it) that fit ftfy's 24 characters, sorted by strcmp; the all-lower-case
    names whose all-caps form ftfy does not decode (html.unescape knows a prefix of it, and it is no entity itself);
    the all-caps forms whose char.upper() lowercases (after ftfy's ligature fix, or by the Final_Sigma rule) to
    other than the character does."""
    ents = html.entities.html5
    names = sorted((n[:-1] for n in ents if n.endswith(";") and len(n) - 1 <= 24), key=lambda n: n.encode())
    no_upper, upper = [], []
    for n in names:
        if n != n.lower():
            continue
        caps, ch = "&" + n.upper() + ";", ents[n + ";"]
        if html.unescape(caps) != caps:
            if n.upper() + ";" not in ents:
                no_upper.append(n)
        elif (ch.upper().translate(LIGATURES).lower() != ch.translate(LIGATURES).lower() or
              ("\u03a3" in ch.upper() and ch.upper() != ch)):
            upper.append((n, ch.upper()))
    return [(n, ents[n + ";"]) for n in names], no_upper, upper


def width_map():
    rows = []
    for c in range(0xFF5F, 0xFFF0):
        alt = unicodedata.normalize("NFKC", chr(c))
        if alt != chr(c):
            rows.append((c, ord(alt[0]), ord(alt[1]) if len(alt) > 1 else 0))
    return rows


def hx(v):
    return f"{v:#x}" if v >= 0 else str(v)


def wrap(items, width=118):
    """items, each followed by ',', in lines of at most width characters"""
    lines, cur = [], ""
    for it in items:
        if cur and len(cur) + 1 + len(it) + 1 > width:
            lines.append(cur)
            cur = ""
        cur = (cur + " " if cur else "    ") + it + ","
    return lines + [cur] if cur else lines


def emit(out, name, ctype, rows, per_line):
    out.append(f"const {ctype} {name}[][{len(rows[0])}] = {{")
    for i in range(0, len(rows), per_line):
        out.append("    " + " ".join("{" + ", ".join(hx(v) for v in r) + "}," for r in rows[i:i + per_line]))
    out += ["};", f"const int {name}_n = {len(rows)};"]


def entity(name, chars):
    return '{"%s", {%s}}' % (name, ", ".join(hx(ord(ch)) for ch in chars))


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "augment/engine/unicode_tables.c"
    out = [f"/* Generated by scripts/clip_unicode_tables.py (Unicode {unicodedata.unidata_version}, "
           f"regex {regex.__version__}): do not edit. */",
           '#include "augment/engine/unicode_tables.h"', ""]
    emit(out, "uni_letters", "uint32_t", ranges(r"\p{L}"), 6)
    emit(out, "uni_numbers", "uint32_t", ranges(r"\p{N}"), 6)
    emit(out, "uni_lower", "int32_t", lower_runs(), 4)
    ignorable, cased = sigma_classes()
    emit(out, "uni_case_ignorable", "uint32_t", ignorable, 6)
    emit(out, "uni_cased", "uint32_t", cased, 6)

    decomp, compose = nfc_tables()
    out += ["", "const uint32_t nfc_decomp[][3] = {"]
    out += wrap("{" + ", ".join(hx(v) for v in r) + "}" for r in decomp)
    out += ["};", f"const int nfc_decomp_n = {len(decomp)};", "const uint16_t nfc_compose[] = {"]
    out += wrap(str(i) for i in compose)
    out += ["};", f"const int nfc_compose_n = {len(compose)};", "const uint8_t ccc_0300[112] = {"]
    ccc = [unicodedata.combining(chr(c)) for c in range(0x300, 0x370)]
    out += ["    " + " ".join(f"{v}," for v in ccc[i:i + 16]) for i in range(0, 112, 16)]
    out.append("};")

    ents, no_upper, upper = html_tables()
    out += ["", "const struct html_entity html5[] = {"]
    out += wrap(entity(n, ch) for n, ch in ents)
    out += ["};", f"const int html5_n = {len(ents)};", "const char *const html5_no_upper[] = {"]
    out += wrap(f'"{n}"' for n in no_upper)
    out += ["};", f"const int html5_no_upper_n = {len(no_upper)};", "const struct html_entity html5_upper[] = {"]
    out += wrap(entity(n, ch) for n, ch in upper)
    out += ["};", f"const int html5_upper_n = {len(upper)};"]

    rows = width_map()
    out += ["", "const uint32_t width_map[][3] = {"]
    out += wrap("{" + ", ".join(hx(v) for v in r) + "}" for r in rows)
    out += ["};", f"const int width_map_n = {len(rows)};"]
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

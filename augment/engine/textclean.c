/* CLIP's text cleanup (see textclean.h): what HF CLIPTokenizer (the one diffusers uses) runs before BPE,
 * whitespace_clean(ftfy.fix_text(text)).lower(), with ftfy 6.3's default configuration.
 *
 * Matched: fix_text's split into lines and its loop over all fixers until the text stops changing; HTML entities
 * (the HTML5 names ending in ';' of at most 24 characters, ftfy's all-caps forms such as P&EACUTE;REZ, numeric
 * references by html.unescape's rules; none on or after the first line that holds a '<'; nested escapes resolve
 * fully, &amp;amp; -> &); mojibake: ftfy's badness heuristic (every rule of BADNESS_RE) deciding whether a line
 * is re-read as UTF-8 through Latin-1 or Windows-1252 (with restore_byte_a0 and the utf-8-variants codec), else
 * its UTF-8-looking runs alone (decode_inconsistent_utf8); C1 controls as Windows-1252; Latin ligatures;
 * character width; curly quotes; ANSI terminal escapes; control characters; NFC.
 *
 * Not matched (tests/test_tokenizer.c pins what happens instead):
 * - NFC covers the canonical (de)compositions whose mark is in U+0300..U+036F or a kana voicing mark, and the
 *   singleton decompositions (Angstrom and Kelvin signs, Greek oxia...), with exact canonical reordering of those
 *   marks. Hangul jamo are not composed, CJK compatibility ideographs not decomposed, and other combining marks
 *   (Hebrew points, Indic nukta, Arabic hamza...) are not reordered and block composition like starters.
 * - Mojibake through the other single-byte encodings ftfy tries (Windows-1250/1251/1253/1254/1257, ISO-8859-2,
 *   MacRoman, cp437) stays; so does mojibake that lost bytes to U+FFFD or '?' (replace_lossy_sequences). The
 *   UTF-8-run pattern of decode_inconsistent_utf8 is used with its Latin-1/Windows-1252 characters only.
 * - An all-caps entity decodes to the entity's own character where ftfy gives char.upper(): the same after
 *   lowercasing, except where upper-casing changes the letter (&SZLIG; -> SS, &SIGMA;), which keep ftfy's value.
 * - fix_line_breaks is not run: every break it rewrites is whitespace and collapses to one space anyway.
 * - In ANSI escapes only ASCII digits count (Python's \d also takes other decimal digits).
 * - OpenAI's simple_tokenizer, unlike HF's, also applies html.unescape twice after ftfy, which decodes entities
 *   without their ';' (&amp, &copy2024) and entities on lines with a '<'. genie follows HF. */
#include "augment/engine/textclean.h"
#include "augment/engine/unicode_tables.h"
#include <stdlib.h>
#include <string.h>

/* ---- Unicode classes of CLIP's pre-split pattern (\p{L}, \p{N}) and Python's str.lower() ---- */

#define RANGES(t) t, t##_n

static int in_ranges(const uint32_t (*r)[2], int n, uint32_t c)
{
    int lo = 0, hi = n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (c < r[mid][0]) hi = mid - 1;
        else if (c > r[mid][1]) lo = mid + 1;
        else return 1;
    }
    return 0;
}

int textclean_is_letter(uint32_t c)
{
    if (c < 0x80) return (c | 0x20) >= 'a' && (c | 0x20) <= 'z';
    return in_ranges(RANGES(uni_letters), c);
}

int textclean_is_number(uint32_t c)
{
    if (c < 0x80) return c >= '0' && c <= '9';
    return in_ranges(RANGES(uni_numbers), c);
}

/* Unicode White_Space, which is what the regex module's \s matches. */
int textclean_is_space(uint32_t c)
{
    return (c >= 0x09 && c <= 0x0d) || c == 0x20 || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

/* Python's Final_Sigma rule: capital sigma lowercases to final sigma when a cased character precedes it and none
 * follows it, skipping case-ignorable characters on both sides. */
static int final_sigma(const uint32_t *s, size_t n, size_t i)
{
    size_t j = i;
    while (j > 0 && in_ranges(RANGES(uni_case_ignorable), s[j - 1])) j--;
    if (j == 0 || !in_ranges(RANGES(uni_cased), s[j - 1])) return 0;
    for (j = i + 1; j < n && in_ranges(RANGES(uni_case_ignorable), s[j]); j++) {}
    return j == n || !in_ranges(RANGES(uni_cased), s[j]);
}

static uint32_t to_lower(uint32_t c)
{
    int lo = 0, hi = uni_lower_n - 1, found = -1;
    while (lo <= hi) {   /* last run starting at or before c */
        int mid = (lo + hi) / 2;
        if ((uint32_t)uni_lower[mid][0] <= c) found = mid, lo = mid + 1;
        else hi = mid - 1;
    }
    if (found < 0) return c;
    const int32_t *r = uni_lower[found];
    if (c > (uint32_t)r[1] || (c - (uint32_t)r[0]) % (uint32_t)r[3]) return c;
    return (uint32_t)((int32_t)c + r[2]);
}

/* ---- UTF-8 ---- */

/* Strict UTF-8 -> code points (no overlongs, surrogates or values above U+10FFFF); -1 at the first bad byte. */
int textclean_utf8_decode(const unsigned char *s, size_t n, uint32_t *out, size_t *nout, size_t *bad_at)
{
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        uint32_t c = s[i], min;
        int len;
        if (c < 0x80) len = 1, min = 0;
        else if ((c & 0xe0) == 0xc0) len = 2, c &= 0x1f, min = 0x80;
        else if ((c & 0xf0) == 0xe0) len = 3, c &= 0x0f, min = 0x800;
        else if ((c & 0xf8) == 0xf0) len = 4, c &= 0x07, min = 0x10000;
        else {
            *bad_at = i;
            return -1;
        }
        if (i + len > n) {
            *bad_at = i;
            return -1;
        }
        for (int j = 1; j < len; j++) {
            if ((s[i + j] & 0xc0) != 0x80) {
                *bad_at = i;
                return -1;
            }
            c = c << 6 | (s[i + j] & 0x3f);
        }
        if (c < min || c > 0x10ffff || (c >= 0xd800 && c < 0xe000)) {
            *bad_at = i;
            return -1;
        }
        out[k++] = c;
        i += len;
    }
    *nout = k;
    return 0;
}

int textclean_utf8_put(uint32_t c, unsigned char *o)
{
    if (c < 0x80) return o[0] = (unsigned char)c, 1;
    if (c < 0x800) return o[0] = (unsigned char)(0xc0 | c >> 6), o[1] = (unsigned char)(0x80 | (c & 0x3f)), 2;
    if (c < 0x10000) {
        o[0] = (unsigned char)(0xe0 | c >> 12);
        o[1] = (unsigned char)(0x80 | ((c >> 6) & 0x3f));
        o[2] = (unsigned char)(0x80 | (c & 0x3f));
        return 3;
    }
    o[0] = (unsigned char)(0xf0 | c >> 18);
    o[1] = (unsigned char)(0x80 | ((c >> 12) & 0x3f));
    o[2] = (unsigned char)(0x80 | ((c >> 6) & 0x3f));
    o[3] = (unsigned char)(0x80 | (c & 0x3f));
    return 4;
}

/* ftfy's ligature table (fix_latin_ligatures): code point -> up to 3 code points. */
static int ligature(uint32_t c, uint32_t out[3])
{
    static const struct { uint32_t c, to[3]; } lig[] = {
        {0x132, {'I', 'J'}}, {0x133, {'i', 'j'}}, {0x149, {0x2bc, 'n'}}, {0x1c4, {'D', 0x17d}},
        {0x1c5, {'D', 0x17e}}, {0x1c6, {'d', 0x17e}}, {0x1c7, {'L', 'J'}}, {0x1c8, {'L', 'j'}},
        {0x1c9, {'l', 'j'}}, {0x1ca, {'N', 'J'}}, {0x1cb, {'N', 'j'}}, {0x1cc, {'n', 'j'}},
        {0x1f1, {'D', 'Z'}}, {0x1f2, {'D', 'z'}}, {0x1f3, {'d', 'z'}}, {0xfb00, {'f', 'f'}},
        {0xfb01, {'f', 'i'}}, {0xfb02, {'f', 'l'}}, {0xfb03, {'f', 'f', 'i'}}, {0xfb04, {'f', 'f', 'l'}},
        {0xfb05, {0x17f, 't'}}, {0xfb06, {'s', 't'}},
    };
    for (size_t k = 0; k < sizeof lig / sizeof *lig; k++)
        if (lig[k].c == c) {
            int n = 0;
            while (n < 3 && lig[k].to[n]) out[n] = lig[k].to[n], n++;
            return n;
        }
    return 0;
}

static int is_control(uint32_t c)
{
    return c <= 0x08 || c == 0x0b || (c >= 0x0e && c <= 0x1f) || c == 0x7f || (c >= 0x206a && c <= 0x206f) ||
           c == 0xfeff || (c >= 0xfff9 && c <= 0xfffc);
}

/* ---- text cleanup: ftfy.fix_text (6.3, default configuration), as CLIPTokenizer applies it ---- */

typedef struct {
    uint32_t *v;
    size_t n, cap;
    int oom;
} u32buf;

static void put(u32buf *b, uint32_t c)
{
    if (b->n == b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 64;
        uint32_t *v = b->oom ? NULL : realloc(b->v, cap * sizeof *v);
        if (!v) {
            b->oom = 1;
            return;
        }
        b->v = v;
        b->cap = cap;
    }
    b->v[b->n++] = c;
}

static void put_n(u32buf *b, const uint32_t *s, size_t n)
{
    for (size_t i = 0; i < n; i++) put(b, s[i]);
}

static int same_text(const u32buf *a, const u32buf *b)
{
    return a->n == b->n && (!a->n || !memcmp(a->v, b->v, a->n * sizeof *a->v));
}

/* Windows-1252 bytes 0x80..0x9f; the five it leaves undefined stand for themselves (ftfy's "sloppy" codec,
 * html.unescape's table of invalid character references). */
static const uint16_t cp1252_c1[32] = {
    0x20ac, 0x81,   0x201a, 0x192,  0x201e, 0x2026, 0x2020, 0x2021, 0x2c6,  0x2030, 0x160,
    0x2039, 0x152,  0x8d,   0x17d,  0x8f,   0x90,   0x2018, 0x2019, 0x201c, 0x201d, 0x2022,
    0x2013, 0x2014, 0x2dc,  0x2122, 0x161,  0x203a, 0x153,  0x9d,   0x17e,  0x178,
};

/* -- HTML entities (fixes.unescape_html) -- */

static int entity_cmp(const void *key, const void *e)
{
    return strcmp(key, ((const struct html_entity *)e)->name);
}

static int name_cmp(const void *key, const void *e) { return strcmp(key, *(const char *const *)e); }

static void put_entity(u32buf *out, const struct html_entity *e)
{
    put(out, e->cp[0]);
    if (e->cp[1]) put(out, e->cp[1]);
}

/* The replacement of the match s[0, len) of &#?[0-9A-Za-z]{1,24}; into out, or 0 to keep it as written. Named:
 * the HTML5 entities (with their ';'), and the all-caps form of an all-lower-case name that html.unescape does
 * not know (P&EACUTE;REZ). Numeric: html.unescape's rules for character references. */
static int entity_value(const uint32_t *s, size_t len, u32buf *out)
{
    char name[32];
    size_t k = len - 2;
    for (size_t i = 0; i < k; i++) name[i] = (char)s[1 + i];
    name[k] = 0;
    const size_t nent = (size_t)html5_n;
    if (name[0] != '#') {
        const struct html_entity *e = bsearch(name, html5, nent, sizeof *html5, entity_cmp);
        int upper = 0, lower = 0;
        for (size_t i = 0; i < k; i++) {
            upper |= name[i] >= 'A' && name[i] <= 'Z';
            lower |= name[i] >= 'a' && name[i] <= 'z';
        }
        if (!e && upper && !lower) {
            for (size_t i = 0; i < k; i++) name[i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] + 32 : name[i]);
            if (bsearch(name, html5_no_upper, (size_t)html5_no_upper_n, sizeof *html5_no_upper,
                        name_cmp))
                return 0;
            /* ftfy gives char.upper(); the lower-case character tokenizes the same after CLIP's lowercasing,
             * except where upper-casing changes the letter (these keep their upper-case form) */
            const struct html_entity *u = bsearch(name, html5_upper, (size_t)html5_upper_n,
                                                  sizeof *html5_upper, entity_cmp);
            e = u ? u : bsearch(name, html5, nent, sizeof *html5, entity_cmp);
        }
        if (!e) return 0;
        put_entity(out, e);
        return 1;
    }
    int hex = name[1] == 'x' || name[1] == 'X';
    const char *d = name + 1 + hex;
    if (!*d) return 0;
    uint32_t v = 0;
    for (; *d; d++) {
        int c = *d, dig = -1;
        if (c >= '0' && c <= '9') dig = c - '0';
        else if (hex && (c | 0x20) >= 'a' && (c | 0x20) <= 'f') dig = (c | 0x20) - 'a' + 10;
        if (dig < 0) return 0;   /* html.unescape decodes a prefix and leaves the ';': ftfy keeps the original */
        v = v > 0x10ffff ? v : v * (hex ? 16 : 10) + (uint32_t)dig;
    }
    if (v == ';') return 0;      /* ftfy keeps what decodes to a ';' too */
    if (v == 0) put(out, 0xfffd);
    else if (v >= 0x80 && v <= 0x9f) put(out, cp1252_c1[v - 0x80]);
    else if ((v >= 0xd800 && v <= 0xdfff) || v > 0x10ffff) put(out, 0xfffd);
    else if (!((v >= 0x1 && v <= 0x8) || v == 0xb || (v >= 0xe && v <= 0x1f) || v == 0x7f ||
               (v >= 0xfdd0 && v <= 0xfdef) || (v & 0xfffe) == 0xfffe))
        put(out, v);             /* the invalid code points decode to nothing */
    return 1;
}

static int ascii_alnum(uint32_t c)
{
    return c < 0x80 && ((c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z'));
}

static void unescape_html(const uint32_t *s, size_t n, u32buf *out)
{
    for (size_t i = 0; i < n;) {
        if (s[i] == '&') {
            size_t j = i + 1 + (i + 1 < n && s[i + 1] == '#'), a = j;
            while (j < n && j - a < 24 && ascii_alnum(s[j])) j++;
            if (j > a && j < n && s[j] == ';') {
                if (!entity_value(s + i, j + 1 - i, out)) put_n(out, s + i, j + 1 - i);
                i = j + 1;
                continue;
            }
        }
        put(out, s[i++]);
    }
}

/* -- mojibake (badness.is_bad, fix_encoding) -- */

enum {
    MJ_COMMON = 1, MJ_C1 = 2, MJ_BAD = 4, MJ_LAW = 8, MJ_CURR = 16, MJ_START = 32, MJ_END = 64, MJ_NUM = 128,
    MJ_KAO = 256, MJ_UPA = 512, MJ_LOA = 1024, MJ_UPC = 2048, MJ_LOC = 4096, MJ_BOX = 8192,
};

/* generated from ftfy 6.3's badness.MOJIBAKE_CATEGORIES */
static const struct { uint32_t lo, hi; uint16_t cat; } moji_cats[] = {
    {0x80, 0x9f, MJ_C1}, {0xa0, 0xa0, MJ_COMMON}, {0xa1, 0xa1, MJ_START}, {0xa2, 0xa3, MJ_CURR}, {0xa4, 0xa4, MJ_BAD},
    {0xa5, 0xa5, MJ_CURR}, {0xa6, 0xa6, MJ_BAD}, {0xa7, 0xa7, MJ_LAW}, {0xa8, 0xa8, MJ_BAD}, {0xa9, 0xa9, MJ_START},
    {0xaa, 0xaa, MJ_BAD}, {0xab, 0xab, MJ_START}, {0xac, 0xac, MJ_BAD}, {0xad, 0xad, MJ_COMMON}, {0xae, 0xae, MJ_END},
    {0xaf, 0xaf, MJ_BAD}, {0xb0, 0xb0, MJ_KAO}, {0xb1, 0xb3, MJ_NUM}, {0xb4, 0xb4, MJ_COMMON}, {0xb5, 0xb5, MJ_NUM},
    {0xb6, 0xb6, MJ_LAW}, {0xb7, 0xb7, MJ_COMMON}, {0xb8, 0xb8, MJ_BAD}, {0xb9, 0xb9, MJ_NUM}, {0xba, 0xba, MJ_BAD},
    {0xbb, 0xbb, MJ_END}, {0xbc, 0xbe, MJ_NUM}, {0xbf, 0xbf, MJ_START}, {0xc0, 0xd1, MJ_UPA}, {0xd2, 0xd6, MJ_KAO},
    {0xd7, 0xd7, MJ_NUM}, {0xd8, 0xd8, MJ_UPA}, {0xd9, 0xdb, MJ_KAO}, {0xdc, 0xdc, MJ_KAO|MJ_UPA},
    {0xdd, 0xdd, MJ_UPA}, {0xde, 0xde, MJ_UPC}, {0xdf, 0xf1, MJ_LOA}, {0xf2, 0xf6, MJ_KAO}, {0xf7, 0xf7, MJ_NUM},
    {0xf8, 0xfb, MJ_KAO}, {0xfc, 0xfc, MJ_KAO|MJ_LOA}, {0x100, 0x100, MJ_UPA}, {0x101, 0x101, MJ_LOA},
    {0x102, 0x102, MJ_UPA}, {0x103, 0x103, MJ_LOA}, {0x104, 0x104, MJ_UPA}, {0x105, 0x105, MJ_LOA},
    {0x106, 0x106, MJ_UPA}, {0x107, 0x107, MJ_LOA}, {0x10c, 0x10c, MJ_UPA}, {0x10d, 0x10d, MJ_LOA},
    {0x10e, 0x10e, MJ_UPA}, {0x10f, 0x10f, MJ_LOA}, {0x110, 0x110, MJ_UPA}, {0x111, 0x111, MJ_LOA},
    {0x112, 0x112, MJ_UPA}, {0x113, 0x113, MJ_LOA}, {0x116, 0x116, MJ_UPA}, {0x117, 0x117, MJ_LOA},
    {0x118, 0x118, MJ_UPA}, {0x119, 0x119, MJ_LOA}, {0x11a, 0x11a, MJ_UPA}, {0x11b, 0x11b, MJ_LOA},
    {0x11e, 0x11e, MJ_UPA}, {0x11f, 0x11f, MJ_LOA}, {0x122, 0x122, MJ_UPA}, {0x123, 0x123, MJ_LOA},
    {0x12a, 0x12a, MJ_UPA}, {0x12b, 0x12b, MJ_LOA}, {0x12f, 0x12f, MJ_LOA}, {0x130, 0x130, MJ_UPA},
    {0x136, 0x136, MJ_UPA}, {0x137, 0x137, MJ_LOA}, {0x139, 0x139, MJ_UPA}, {0x13a, 0x13a, MJ_LOA},
    {0x13b, 0x13b, MJ_UPA}, {0x13c, 0x13c, MJ_LOA}, {0x13d, 0x13d, MJ_UPA}, {0x13e, 0x13e, MJ_LOA},
    {0x141, 0x141, MJ_UPA}, {0x142, 0x142, MJ_LOA}, {0x143, 0x143, MJ_UPA}, {0x145, 0x145, MJ_UPA},
    {0x147, 0x147, MJ_UPA}, {0x14c, 0x14c, MJ_KAO}, {0x150, 0x150, MJ_KAO}, {0x152, 0x152, MJ_UPA},
    {0x153, 0x153, MJ_LOA}, {0x155, 0x155, MJ_LOA}, {0x158, 0x158, MJ_UPA}, {0x15a, 0x15a, MJ_UPA},
    {0x15b, 0x15b, MJ_LOA}, {0x15e, 0x15e, MJ_UPA}, {0x15f, 0x15f, MJ_LOA}, {0x160, 0x160, MJ_UPA},
    {0x161, 0x161, MJ_LOA}, {0x162, 0x162, MJ_UPA}, {0x164, 0x164, MJ_UPA}, {0x165, 0x165, MJ_LOA},
    {0x16a, 0x16a, MJ_KAO}, {0x16e, 0x16e, MJ_UPA}, {0x170, 0x170, MJ_UPA}, {0x172, 0x172, MJ_KAO},
    {0x178, 0x179, MJ_UPA}, {0x17a, 0x17a, MJ_LOA}, {0x17b, 0x17b, MJ_UPA}, {0x17c, 0x17c, MJ_LOA},
    {0x17d, 0x17d, MJ_UPA}, {0x17e, 0x17e, MJ_LOA}, {0x192, 0x192, MJ_BAD}, {0x2c6, 0x2c7, MJ_BAD},
    {0x2d8, 0x2d8, MJ_BAD}, {0x2db, 0x2dc, MJ_BAD}, {0x2dd, 0x2dd, MJ_END}, {0x384, 0x385, MJ_START},
    {0x386, 0x386, MJ_UPC}, {0x388, 0x38a, MJ_UPC}, {0x38c, 0x38c, MJ_UPC}, {0x38e, 0x38f, MJ_UPC},
    {0x391, 0x3ab, MJ_UPC}, {0x3ac, 0x3c9, MJ_LOC}, {0x401, 0x42f, MJ_UPC}, {0x430, 0x45f, MJ_LOC},
    {0x490, 0x490, MJ_UPA}, {0x491, 0x491, MJ_LOA}, {0x2013, 0x2015, MJ_COMMON}, {0x2018, 0x2018, MJ_START},
    {0x2019, 0x2019, MJ_COMMON}, {0x201a, 0x201a, MJ_START}, {0x201c, 0x201c, MJ_START}, {0x201d, 0x201d, MJ_END},
    {0x201e, 0x201e, MJ_START}, {0x2020, 0x2021, MJ_BAD}, {0x2022, 0x2022, MJ_START}, {0x2026, 0x2026, MJ_COMMON},
    {0x2030, 0x2030, MJ_BAD}, {0x2039, 0x2039, MJ_START}, {0x203a, 0x203a, MJ_END}, {0x2044, 0x2044, MJ_NUM},
    {0x20a7, 0x20a7, MJ_CURR}, {0x20ac, 0x20ac, MJ_CURR}, {0x2116, 0x2116, MJ_NUM}, {0x2122, 0x2122, MJ_END},
    {0x2202, 0x2202, MJ_NUM}, {0x2206, 0x2206, MJ_NUM}, {0x220f, 0x220f, MJ_NUM}, {0x2211, 0x2211, MJ_NUM},
    {0x221a, 0x221a, MJ_NUM}, {0x221e, 0x221e, MJ_NUM}, {0x2229, 0x2229, MJ_NUM}, {0x222b, 0x222b, MJ_NUM},
    {0x2248, 0x2248, MJ_NUM}, {0x2260, 0x2261, MJ_NUM}, {0x2264, 0x2265, MJ_NUM}, {0x2310, 0x2310, MJ_BAD},
    {0x2502, 0x2502, MJ_BOX}, {0x250c, 0x250c, MJ_BOX}, {0x2510, 0x2510, MJ_BOX}, {0x2518, 0x2518, MJ_BOX},
    {0x251c, 0x251c, MJ_BOX}, {0x2524, 0x2524, MJ_BOX}, {0x252c, 0x252c, MJ_BOX}, {0x253c, 0x253c, MJ_BOX},
    {0x2550, 0x256c, MJ_BOX}, {0x2580, 0x2580, MJ_BOX}, {0x2584, 0x2584, MJ_BOX}, {0x2588, 0x2588, MJ_BOX},
    {0x258c, 0x258c, MJ_BOX}, {0x2590, 0x2593, MJ_BOX}, {0x25ca, 0x25ca, MJ_BAD}, {0xf8ff, 0xf8ff, MJ_START},
    {0xfb01, 0xfb02, MJ_LOA}, {0xfffd, 0xfffd, MJ_BAD},
};

static unsigned mcat(const uint32_t *s, size_t n, size_t i)
{
    if (i >= n || s[i] < 0x80) return 0;
    int lo = 0, hi = (int)(sizeof moji_cats / sizeof *moji_cats) - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (s[i] < moji_cats[mid].lo) hi = mid - 1;
        else if (s[i] > moji_cats[mid].hi) lo = mid + 1;
        else return moji_cats[mid].cat;
    }
    return 0;
}

static int at(const uint32_t *s, size_t n, size_t i, uint32_t c) { return i < n && s[i] == c; }

/* s[i] is one of the code points of set (zero-terminated) */
static int one_of(const uint32_t *s, size_t n, size_t i, const uint32_t *set)
{
    if (i >= n) return 0;
    for (; *set; set++)
        if (*set == s[i]) return 1;
    return 0;
}

static int latin_az(const uint32_t *s, size_t n, size_t i)
{
    return i < n && s[i] < 0x80 && (s[i] | 0x20) >= 'a' && (s[i] | 0x20) <= 'z';
}

static int lower_az(const uint32_t *s, size_t n, size_t i) { return i < n && s[i] >= 'a' && s[i] <= 'z'; }

static int word_char(const uint32_t *s, size_t n, size_t i)
{
    return i < n && (s[i] == '_' || textclean_is_letter(s[i]) || textclean_is_number(s[i]));
}

/* ftfy's BADNESS_RE (rule for rule, in its order): sequences far more likely to be UTF-8 decoded in a
 * single-byte encoding than meant. */
static int is_bad(const uint32_t *s, size_t n)
{
    enum { ACC = MJ_LOA | MJ_UPA, PUNCT = MJ_START | MJ_END, QUAD = MJ_COMMON | MJ_CURR | MJ_BAD | MJ_NUM | MJ_START };
    for (size_t i = 0; i < n; i++) {
        unsigned a = mcat(s, n, i), b = mcat(s, n, i + 1), c = mcat(s, n, i + 2);
        uint32_t x = s[i];
        if ((a & MJ_C1) || ((a & (MJ_BAD | ACC | MJ_BOX | PUNCT | MJ_CURR | MJ_NUM | MJ_LAW)) && (b & MJ_BAD)) ||
            (latin_az(s, n, i) && (b & (MJ_LOC | MJ_UPC)) && (c & MJ_BAD)) ||
            ((a & MJ_BAD) && (b & (ACC | MJ_BOX | PUNCT | MJ_CURR | MJ_NUM | MJ_LAW))) ||
            ((a & (MJ_LOA | MJ_LOC | MJ_BOX | MJ_END | MJ_CURR | MJ_NUM)) && (b & MJ_UPA)) ||
            ((a & (MJ_BOX | MJ_END | MJ_CURR | MJ_NUM)) && (b & MJ_LOA)) ||
            ((a & (MJ_LOA | MJ_BOX | MJ_END)) && (b & MJ_CURR)) ||
            (textclean_is_space(x) && (b & MJ_UPA) && (c & MJ_CURR)) ||
            ((a & (MJ_UPA | MJ_BOX)) && (b & (MJ_NUM | MJ_LAW))) ||
            ((a & (ACC | MJ_BOX | MJ_CURR | MJ_END)) && (b & MJ_START) && (c & MJ_NUM)) ||
            ((a & (ACC | MJ_CURR | MJ_NUM | MJ_BOX | MJ_LAW)) && (b & MJ_END) && (c & MJ_START)) ||
            ((a & (MJ_CURR | MJ_NUM | MJ_BOX)) && (b & MJ_START)) ||
            (lower_az(s, n, i) && (b & MJ_UPA) && (c & (MJ_START | MJ_CURR))) || ((a & MJ_BOX) && (b & MJ_KAO)) ||
            ((a & (ACC | MJ_CURR | MJ_NUM | PUNCT | MJ_LAW)) && (b & MJ_BOX)) || ((a & MJ_BOX) && (b & MJ_END)) ||
            ((a & ACC) && (b & PUNCT) && word_char(s, n, i + 2)))
            return 1;
        if ((x == 0x152 || x == 0x153) && i + 1 < n && !latin_az(s, n, i + 1)) return 1;
        if ((a & MJ_UPA) && at(s, n, i + 1, 0xb0)) return 1;
        /* common Windows-1252 two-character mojibake: A-circumflex, A-tilde, I-circumflex, ETH first */
        if (one_of(s, n, i, U"\u00c2\u00c3\u00ce\u00d0") &&
            ((b & PUNCT) || one_of(s, n, i + 1, U"\u20ac\u0153\u0160\u0161\u00a2\u00a3\u0178\u017e\u00a0\u00ad\u00ae"
                                                U"\u00a9\u00b0\u00b7\u00bb\u2013\u2014\u00b4")))
            return 1;
        if (x == 0xd7 && one_of(s, n, i + 1, U"\u00b2\u00b3")) return 1;
        if (one_of(s, n, i, U"\u00d8\u00d9") && one_of(s, n, i + 2, U"\u00d8\u00d9") &&
            ((b & QUAD) || one_of(s, n, i + 1, U"\u0178\u0160\u00ae\u00b0\u00b5\u00bb")) &&
            ((mcat(s, n, i + 3) & QUAD) || one_of(s, n, i + 3, U"\u0178\u0160\u00ae\u00b0\u00b5\u00bb")))
            return 1;
        if (x == 0xe0 && one_of(s, n, i + 1, U"\u00b2\u00b5\u00b9\u00bc\u00bd\u00be")) return 1;
        /* MacRoman */
        if (x == 0x221a &&
            one_of(s, n, i + 1, U"\u00b1\u2202\u2020\u2260\u00ae\u2122\u00b4\u2264\u2265\u00a5\u00b5\u00f8"))
            return 1;
        if (x == 0x2248 && one_of(s, n, i + 1, U"\u00b0\u00a2")) return 1;
        if (x == 0x201a && at(s, n, i + 1, 0xc4) &&
            one_of(s, n, i + 2, U"\u00ec\u00ee\u00ef\u00f2\u00f4\u00fa\u00f9\u00fb\u2020\u00b0\u00a2\u03c0"))
            return 1;
        if (x == 0x201a && one_of(s, n, i + 1, U"\u00e2\u00f3") && one_of(s, n, i + 2, U"\u00e0\u00e4\u00b0\u00ea"))
            return 1;
        /* Windows-1251 */
        if (x == 0x432 && at(s, n, i + 1, 0x402)) return 1;
        if (one_of(s, n, i, U"\u0412\u0413\u0420\u0421") && one_of(s, n, i + 2, U"\u0412\u0413\u0420\u0421") &&
            ((b & (MJ_C1 | MJ_BAD | PUNCT | MJ_CURR)) || one_of(s, n, i + 1, U"\u00b0\u00b5")))
            return 1;
        if (x == 0x413 && at(s, n, i + 1, 0x45e) && at(s, n, i + 2, 0x412) && at(s, n, i + 3, 0x402) &&
            at(s, n, i + 4, 0x412) && i + 5 < n && s[i + 5] != '\n' && (at(s, n, i + 6, ' ') || latin_az(s, n, i + 6)))
            return 1;
        /* Windows-1252 encodings of a-grave, a-acute and the no-break space itself */
        if (x == 0xc3 && one_of(s, n, i + 1, U"\u00a0\u00a1")) return 1;
        if ((x == 0xc3 || x == 0xc2) && at(s, n, i + 1, ' ') &&
            (i == 0 || lower_az(s, n, i - 1) || (i >= 2 && textclean_is_space(s[i - 1]) && lower_az(s, n, i - 2))))
            return 1;
        if (x == 0xc2 && i > 0 &&
            (lower_az(s, n, i - 1) || one_of(s, n, i - 1, U".,?!") || (mcat(s, n, i - 1) & MJ_END)) &&
            (at(s, n, i + 1, ' ') || (b & PUNCT)))
            return 1;
        /* Windows-1253, Windows-1257 */
        if (x == 0x3b2 && at(s, n, i + 1, 0x20ac) && one_of(s, n, i + 2, U"\u2122\u00a0\u0386\u00ad\u00ae\u00b0"))
            return 1;
        if (one_of(s, n, i, U"\u0392\u0393\u039e\u039f") && one_of(s, n, i + 2, U"\u0392\u0393\u039e\u039f") &&
            ((b & (MJ_C1 | MJ_BAD | PUNCT | MJ_CURR)) || at(s, n, i + 1, 0xb0)))
            return 1;
        if (x == 0x101 && at(s, n, i + 1, 0x20ac)) return 1;
    }
    return 0;
}

/* The byte code point c stands for in Latin-1 (enc 0) or ftfy's sloppy Windows-1252 (enc 1), or -1. In the
 * sloppy codec byte 0x1a means U+FFFD, so a literal U+001A is not encodable there. */
static int enc_byte(uint32_t c, int enc)
{
    if (c < 0x80) return enc && c == 0x1a ? -1 : (int)c;
    if (!enc) return c <= 0xff ? (int)c : -1;
    if (c >= 0xa0 && c <= 0xff) return (int)c;
    for (int k = 0; k < 32; k++)
        if (cp1252_c1[k] == c) return 0x80 + k;
    return -1;
}

/* ftfy's restore_byte_a0: a space that stands where a UTF-8 sequence needs byte 0xa0 becomes 0xa0 again
 * ("voil\xc3 le" -> "voil\xc3\xa0 le": a-grave keeps a space after it). out holds 2n bytes. */
static size_t restore_byte_a0(const unsigned char *b, size_t n, unsigned char *out)
{
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        out[m++] = b[i];
        if (b[i] != 0xc3 || i + 1 >= n || b[i + 1] != ' ') continue;
        const unsigned char *r = b + i + 2;
        size_t left = n - i - 2;
        static const char *const keep[] = {" ", "quele", "quela", "quilo", "s "};
        int skip = 0;
        for (int k = 0; k < 5; k++) skip |= left >= strlen(keep[k]) && !memcmp(r, keep[k], strlen(keep[k]));
        if (!skip) out[m++] = 0xa0;
    }
#define CONT(x) ((x) >= 0x80 && (x) <= 0xbf)
#define CONT_NO_A0_85(x) (CONT(x) && (x) != 0x85 && (x) != 0xa0)
    for (size_t i = 0; i < m;) {
        unsigned char *p = out + i;
        size_t left = m - i, len = 0;
        if (left >= 2 && memchr("\xc2\xc3\xc5\xce\xd0\xd9", p[0], 6) && p[1] == ' ') len = 2;
        else if (left >= 3 && (p[0] == 0xe2 || p[0] == 0xe3) && p[1] == ' ' && CONT_NO_A0_85(p[2])) len = 3;
        else if (left >= 3 && p[0] >= 0xe0 && p[0] <= 0xe3 && CONT_NO_A0_85(p[1]) && p[2] == ' ') len = 3;
        else if (left >= 4 && p[0] == 0xf0 && ((p[1] == ' ' && CONT(p[2]) && CONT(p[3])) ||
                                               (CONT(p[1]) && p[2] == ' ' && CONT(p[3])) ||
                                               (CONT(p[1]) && CONT(p[2]) && p[3] == ' ')))
            len = 4;
        for (size_t k = 0; k < len; k++)
            if (p[k] == ' ') p[k] = 0xa0;
        i += len ? len : 1;
    }
#undef CONT_NO_A0_85
#undef CONT
    return m;
}

/* ftfy decodes with its "utf-8-variants" codec when the bytes hold 0xed or 0xc0: CESU-8 surrogate pairs and
 * Java's C0 80 for U+0000 besides standard UTF-8. -1 when it does not decode. */
static int decode_utf8_variants(const unsigned char *b, size_t n, uint32_t *out, size_t *nout)
{
    size_t k = 0, bad;
    for (size_t i = 0; i < n;) {
        if (b[i] == 0xc0 && i + 1 < n && b[i + 1] == 0x80) {
            out[k++] = 0;
            i += 2;
        } else if (b[i] == 0xed && i + 5 < n && b[i + 1] >= 0xa0 && b[i + 1] <= 0xaf && (b[i + 2] & 0xc0) == 0x80 &&
                   b[i + 3] == 0xed && b[i + 4] >= 0xb0 && b[i + 4] <= 0xbf && (b[i + 5] & 0xc0) == 0x80) {
            uint32_t hi = 0xd000u | (b[i + 1] & 0x3fu) << 6 | (b[i + 2] & 0x3fu);
            uint32_t lo = 0xd000u | (b[i + 4] & 0x3fu) << 6 | (b[i + 5] & 0x3fu);
            out[k++] = 0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00);
            i += 6;
        } else {
            /* one standard sequence */
            size_t len = b[i] < 0x80 ? 1 : (b[i] & 0xe0) == 0xc0 ? 2 : (b[i] & 0xf0) == 0xe0 ? 3 : 4, got;
            if (i + len > n || textclean_utf8_decode(b + i, len, out + k, &got, &bad)) return -1;
            k += got;
            i += len;
        }
    }
    *nout = k;
    return 0;
}

/* One step of ftfy's fix_encoding for text that is_bad: the whole text re-read as UTF-8 through Latin-1 or
 * Windows-1252 (the other single-byte encodings ftfy tries are not modelled), else the UTF-8-looking runs inside
 * it on their own (decode_inconsistent_utf8). 1 with the fixed text in out, 0 when nothing applies. */
static int fix_encoding(const uint32_t *s, size_t n, u32buf *out);

/* decode_inconsistent_utf8's pattern, over the Latin-1/Windows-1252 characters for UTF-8 lead and continuation
 * bytes; a run may not follow a character that stands for a continuation byte itself. */
static int cont_char(uint32_t c, int strict)
{
    if (c >= 0x80 && c <= 0xbf) return 1;
    if (!strict && c == ' ') return 1;
    static const uint32_t loose[] = {0x2013, 0x2014, 0x2018, 0x2019, 0x201a, 0x201c, 0x201d, 0x201e, 0x2022, 0x2026, 0};
    for (int k = 0; k < 32; k++)
        if (cp1252_c1[k] == c && cp1252_c1[k] >= 0x100) {
            if (!strict) return 1;
            for (int j = 0; loose[j]; j++)
                if (loose[j] == c) return 0;
            return 1;
        }
    return 0;
}

static size_t utf8_run(const uint32_t *s, size_t n, size_t i)
{
    size_t j = i;
    while (j < n) {
        uint32_t c = s[j];
        size_t need = c >= 0xc2 && c <= 0xdf ? 1 : c >= 0xe0 && c <= 0xef ? 2 : c == 0xf0 || c == 0xf3 ? 3 : 0;
        if (!need || j + need >= n) break;
        size_t k = 1;
        while (k <= need && cont_char(s[j + k], 0)) k++;
        if (k <= need) break;
        j += need + 1;
    }
    return j - i;
}

static int decode_inconsistent(const uint32_t *s, size_t n, u32buf *out)
{
    int changed = 0;
    for (size_t i = 0; i < n;) {
        size_t len = i > 0 && cont_char(s[i - 1], 1) ? 0 : utf8_run(s, n, i);
        if (len && len < n && is_bad(s + i, len)) {
            /* ftfy.fix_encoding of the run: steps until nothing changes */
            u32buf cur = {0}, nxt = {0};
            put_n(&cur, s + i, len);
            for (int step = 0; step < 8 && !cur.oom; step++) {
                nxt.n = 0;
                if (!fix_encoding(cur.v, cur.n, &nxt)) break;
                u32buf t = cur;
                cur = nxt, nxt = t;
            }
            changed |= cur.n != len || memcmp(cur.v, s + i, len * sizeof *s);
            put_n(out, cur.v, cur.n);
            out->oom |= cur.oom | nxt.oom;
            free(cur.v), free(nxt.v);
            i += len;
        } else if (len) {
            put_n(out, s + i, len);
            i += len;
        } else {
            put(out, s[i++]);
        }
    }
    return changed;
}

static int fix_encoding(const uint32_t *s, size_t n, u32buf *out)
{
    int ascii = 1;
    for (size_t i = 0; i < n; i++) ascii &= s[i] < 0x80;
    if (ascii || !is_bad(s, n)) return 0;
    size_t start = out->n;
    unsigned char *bytes = malloc(3 * n + 1);
    uint32_t *dec = malloc((2 * n + 1) * sizeof *dec);
    int done = 0;
    if (!bytes || !dec) {
        out->oom = 1;
        goto out;
    }
    for (int enc = 0; enc < 2 && !done; enc++) {
        size_t i = 0;
        for (; i < n; i++) {
            int b = enc_byte(s[i], enc);
            if (b < 0) break;
            bytes[i] = (unsigned char)b;
        }
        if (i < n) continue;
        unsigned char *b = bytes + n;
        size_t nb = restore_byte_a0(bytes, n, b);
        int variants = memchr(b, 0xed, nb) || memchr(b, 0xc0, nb);
        size_t nd, bad;
        if (variants ? decode_utf8_variants(b, nb, dec, &nd) : textclean_utf8_decode(b, nb, dec, &nd, &bad)) continue;
        put_n(out, dec, nd);
        done = 1;
    }
    if (!done) done = decode_inconsistent(s, n, out);
out:
    if (!done) out->n = start;
    free(bytes);
    free(dec);
    return done;
}

/* Per code point, in ftfy's order: C1 controls as Windows-1252, Latin ligatures, character width, quotes. */
static void fix_chars(const uint32_t *s, size_t n, u32buf *out)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t c = s[i], exp[3];
        if (c >= 0x80 && c <= 0x9f) c = cp1252_c1[c - 0x80];
        int ne = ligature(c, exp);
        if (!ne) exp[0] = c, ne = 1;
        for (int j = 0; j < ne; j++) {
            uint32_t d = exp[j], d2 = 0;
            if (d >= 0xff01 && d <= 0xff5e) {
                d -= 0xfee0;
            } else if (d == 0x3000) {
                d = ' ';
            } else if (d >= 0xff5f && d <= 0xffef) {
                int lo = 0, hi = width_map_n - 1;
                while (lo <= hi) {
                    int mid = (lo + hi) / 2;
                    if (width_map[mid][0] == d) {
                        d = width_map[mid][1], d2 = width_map[mid][2];
                        break;
                    }
                    if (width_map[mid][0] < d) lo = mid + 1;
                    else hi = mid - 1;
                }
            }
            if (d == 0x2bc || (d >= 0x2018 && d <= 0x201b)) d = '\'';
            else if (d >= 0x201c && d <= 0x201f) d = '"';
            put(out, d);
            if (d2) put(out, d2);
        }
    }
}

/* ANSI terminal escapes (ESC [ digits-and-semicolons letter), then the control characters ftfy removes. */
static void strip_controls(const uint32_t *s, size_t n, u32buf *out)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] == 0x1b && i + 1 < n && s[i + 1] == '[') {
            size_t j = i + 2;
            while (j < n && ((s[j] >= '0' && s[j] <= '9') || s[j] == ';')) j++;
            if (j < n && s[j] < 0x80 && (s[j] | 0x20) >= 'a' && (s[j] | 0x20) <= 'z') {
                i = j;
                continue;
            }
        }
        if (!is_control(s[i])) put(out, s[i]);
    }
}

/* -- NFC over unicode_tables.h's tables (marks U+0300..U+036F and the kana voicing marks) -- */

static int ccc(uint32_t c)
{
    if (c >= 0x300 && c < 0x370) return ccc_0300[c - 0x300];
    return c == 0x3099 || c == 0x309a ? 8 : 0;
}

static const uint32_t *decomposition(uint32_t c)
{
    int lo = 0, hi = nfc_decomp_n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (nfc_decomp[mid][0] == c) return nfc_decomp[mid];
        if (nfc_decomp[mid][0] < c) lo = mid + 1;
        else hi = mid - 1;
    }
    return NULL;
}

static int composition(uint32_t a, uint32_t b, uint32_t *c)
{
    int lo = 0, hi = nfc_compose_n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        const uint32_t *d = nfc_decomp[nfc_compose[mid]];
        if (d[1] == a && d[2] == b) return *c = d[0], 1;
        if (d[1] < a || (d[1] == a && d[2] < b)) lo = mid + 1;
        else hi = mid - 1;
    }
    return 0;
}

/* Full canonical decomposition of c appended to out, each mark moved before the marks of a higher class. */
static void decompose(uint32_t c, u32buf *out)
{
    const uint32_t *d = c >= 0xc0 ? decomposition(c) : NULL;
    if (d) {
        decompose(d[1], out);
        if (d[2]) decompose(d[2], out);
        return;
    }
    put(out, c);
    int cc = ccc(c);
    for (size_t i = out->n - 1; cc && i > 0 && ccc(out->v[i - 1]) > cc && !out->oom; i--) {
        uint32_t t = out->v[i - 1];
        out->v[i - 1] = out->v[i], out->v[i] = t;
    }
}

/* Canonical composition in place (UAX #15): a mark joins the last starter unless an uncombined character of the
 * same or a higher class, or a starter, stands between them. */
static void nfc(const uint32_t *s, size_t n, u32buf *out)
{
    for (size_t i = 0; i < n; i++) decompose(s[i], out);
    if (out->oom || !out->n) return;
    uint32_t *v = out->v;
    size_t starter = 0, w = 1;
    int have = ccc(v[0]) == 0, last = have ? 0 : 256;
    for (size_t i = 1; i < out->n; i++) {
        uint32_t c = v[i], comp;
        int cc = ccc(c);
        if (have && (last < cc || last == 0) && composition(v[starter], c, &comp)) {
            v[starter] = comp;
            continue;
        }
        if (!cc) starter = w, have = 1;
        last = cc;
        v[w++] = c;
    }
    out->n = w;
}

/* One fix_text segment (a line with its '\n'): the fixers in ftfy's order, repeated until the text stops changing. */
static void fix_segment(const uint32_t *s, size_t n, int entities, u32buf *out)
{
    u32buf cur = {0}, a = {0}, b = {0};
    put_n(&cur, s, n);
    for (int pass = 0; pass < 16 && !cur.oom && !a.oom && !b.oom; pass++) {
        a.n = 0;
        if (entities) unescape_html(cur.v, cur.n, &a);
        else put_n(&a, cur.v, cur.n);
        for (int step = 0; step < 8 && !a.oom && !b.oom; step++) {
            b.n = 0;
            if (!fix_encoding(a.v, a.n, &b)) break;
            u32buf t = a;
            a = b, b = t;
        }
        b.n = 0;
        fix_chars(a.v, a.n, &b);
        a.n = 0;
        strip_controls(b.v, b.n, &a);
        b.n = 0;
        nfc(a.v, a.n, &b);
        int done = same_text(&b, &cur);
        u32buf t = cur;
        cur = b, b = t;
        if (done) break;
    }
    put_n(out, cur.v, cur.n);
    out->oom |= cur.oom | a.oom | b.oom;
    free(cur.v), free(a.v), free(b.v);
}

/* ftfy.fix_text line by line (HTML entities only before the first line with a '<'), then whitespace_clean and
 * Python's str.lower() */
int textclean_run(const uint32_t *in, size_t n, uint32_t **out, size_t *nout)
{
    u32buf fixed = {0}, res = {0};
    int entities = 1;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j < n && in[j] != '\n') j++;
        j += j < n;
        for (size_t k = i; k < j && entities; k++) entities = in[k] != '<';
        fix_segment(in + i, j - i, entities, &fixed);
        i = j;
    }
    const uint32_t *t = fixed.v;
    size_t m = fixed.n;
    for (size_t i = 0; i < m; i++) {
        if (textclean_is_space(t[i])) {
            if (res.n && res.v[res.n - 1] != ' ') put(&res, ' ');
            continue;
        }
        uint32_t c = t[i];
        if (c == 0x3a3 && final_sigma(t, m, i)) {
            put(&res, 0x3c2);
        } else if (c == 0x130) {   /* the one code point whose lowercase is two: i + combining dot above */
            put(&res, 'i');
            put(&res, 0x307);
        } else {
            put(&res, to_lower(c));
        }
    }
    if (res.n && res.v[res.n - 1] == ' ') res.n--;
    int oom = fixed.oom || res.oom;
    free(fixed.v);
    if (oom) {
        free(res.v);
        return -1;
    }
    *out = res.v;
    *nout = res.n;
    return 0;
}

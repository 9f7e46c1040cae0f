/* The Unicode and HTML tables of CLIP's tokenizer and its text cleanup (textclean.c). unicode_tables.c is written
 * by scripts/clip_unicode_tables.py (Python 3.11: Unicode 14.0.0, html.entities; the regex module 2.5.123); each
 * table comes with its number of rows (name_n). Ranges are sorted {first, last} pairs. */
#ifndef GENIE_UNICODE_TABLES_H
#define GENIE_UNICODE_TABLES_H
#include <stdint.h>

/* \p{L} and \p{N} as the regex module (CLIP's pre-split pattern) defines them */
extern const uint32_t uni_letters[][2], uni_numbers[][2];
extern const int uni_letters_n, uni_numbers_n;
/* Python's str.lower() of every code point whose lowercase is one other code point, as runs {first, last, delta,
 * stride}: c in [first, last] with (c - first) % stride == 0 maps to c + delta */
extern const int32_t uni_lower[][4];
extern const int uni_lower_n;
/* the classes str.lower()'s Final_Sigma rule looks at (cased: only those not also case-ignorable) */
extern const uint32_t uni_case_ignorable[][2], uni_cased[][2];
extern const int uni_case_ignorable_n, uni_cased_n;

/* NFC: nfc_decomp holds every canonical decomposition {code point, first, second} whose second part is a mark of
 * U+0300..U+036F or U+3099/U+309A, and every singleton {code point, target, 0} but the CJK compatibility
 * ideographs, sorted by code point; nfc_compose: the indices of the pairs NFC composes, sorted by pair;
 * ccc_0300: the canonical combining classes of U+0300..U+036F. */
extern const uint32_t nfc_decomp[][3];
extern const int nfc_decomp_n;
extern const uint16_t nfc_compose[];
extern const int nfc_compose_n;
extern const uint8_t ccc_0300[112];

/* HTML entities as ftfy decodes them: html5, the names of html.entities.html5 that end in ';' (without it) and fit
 * ftfy's 24 characters, sorted by strcmp; html5_no_upper: all-lower-case names whose all-caps form ftfy does not
 * decode (html.unescape knows a prefix of it); html5_upper: the all-caps forms whose char.upper() does not
 * lowercase back to the character's lowercase. */
struct html_entity {
    const char *name;
    uint32_t cp[2];
};
extern const struct html_entity html5[], html5_upper[];
extern const int html5_n, html5_upper_n;
extern const char *const html5_no_upper[];
extern const int html5_no_upper_n;

/* ftfy's WIDTH_MAP above U+FF5E: {code point, NFKC first, NFKC second or 0} */
extern const uint32_t width_map[][3];
extern const int width_map_n;

#endif

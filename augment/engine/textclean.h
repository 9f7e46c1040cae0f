/* The text side of the CLIP tokenizer: strict UTF-8, the character classes of CLIP's pre-split pattern, and the
 * cleanup HF CLIPTokenizer runs before BPE (ftfy.fix_text, whitespace_clean, str.lower(); what is and is not
 * matched exactly is listed at the top of textclean.c). */
#ifndef GENIE_TEXTCLEAN_H
#define GENIE_TEXTCLEAN_H
#include <stddef.h>
#include <stdint.h>

/* Strict UTF-8 s[0, n) -> code points out[0, *nout) (out holds n): no overlongs, surrogates or values above
 * U+10FFFF; -1 with *bad_at the offset of the first bad sequence. */
int textclean_utf8_decode(const unsigned char *s, size_t n, uint32_t *out, size_t *nout, size_t *bad_at);
/* The UTF-8 bytes of c into o (room for 4); returns how many. */
int textclean_utf8_put(uint32_t c, unsigned char *o);

/* in[0, n) -> *out[0, *nout) (malloc'd, the caller frees it): ftfy.fix_text (6.3, default configuration), runs of
 * whitespace collapsed to one space and stripped, Python's str.lower(). -1 when out of memory. */
int textclean_run(const uint32_t *in, size_t n, uint32_t **out, size_t *nout);

/* \p{L}, \p{N} and \s as the regex module matches them (Unicode White_Space) */
int textclean_is_letter(uint32_t c);
int textclean_is_number(uint32_t c);
int textclean_is_space(uint32_t c);

#endif

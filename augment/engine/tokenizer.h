/* CLIP byte-level BPE tokenizer (OpenAI CLIP's simple_tokenizer / HF CLIPTokenizer), loaded from a diffusers
 * `tokenizer/` folder: vocab.json, merges.txt, and optionally special_tokens_map.json / tokenizer_config.json.
 *
 * Text goes through: strict UTF-8 check; ftfy.fix_text as CLIPTokenizer runs it (HTML5 entities, mojibake read
 * through Latin-1/Windows-1252, C1 controls, ligatures, character width, curly quotes, ANSI escapes, control
 * characters, NFC; what is and is not matched exactly is listed at the top of textclean.c); whitespace runs
 * collapsed to one space and stripped; Python's str.lower(); CLIP's
 * pre-split pattern (the two special tokens, 's 't 're 've 'm 'll 'd, runs of letters, ONE number character,
 * runs of anything else but whitespace); byte-to-unicode symbols with </w> on a word's last; BPE by merge rank. */
#ifndef GENIE_TOKENIZER_H
#define GENIE_TOKENIZER_H

typedef struct tokenizer tokenizer;

/* NULL + err_msg() naming the file and the problem. BOS/EOS are <|startoftext|>/<|endoftext|> (or the
 * bos_token/eos_token of the JSON files) and must be in the vocabulary; pad defaults to EOS; max length to 77. */
tokenizer *tokenizer_load(const char *dir);
void tokenizer_free(tokenizer *t);

/* Writes exactly max_len ids: BOS, the tokens, EOS, then pad ids. Over-long text is truncated to max_len - 2
 * tokens with EOS kept last (HF truncation=True). Returns the length the full sequence would have (tokens + 2):
 * a value > max_len means the text was truncated, and min(return, max_len) - 1 is the position of EOS.
 * The empty prompt is valid (BOS EOS pad...). -1 + err_msg() on invalid UTF-8, max_len < 2, or a symbol that is
 * neither in the vocabulary nor covered by an unk token. Thread-safe: the tokenizer is read-only after loading. */
int tokenizer_encode(const tokenizer *t, const char *text, int *ids, int max_len);

int tokenizer_max_length(const tokenizer *t);   /* model_max_length (77 for SD 1.x) */
int tokenizer_pad_id(const tokenizer *t);
int tokenizer_bos_id(const tokenizer *t);
int tokenizer_eos_id(const tokenizer *t);
int tokenizer_vocab_size(const tokenizer *t);   /* largest id + 1 */

#endif

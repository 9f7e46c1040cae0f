/* CLIP tokenizer (see tokenizer.h): vocab.json and merges.txt, CLIP's pre-split pattern and byte-level BPE. The
 * text goes through textclean.h's cleanup first. */
#include "augment/engine/tokenizer.h"
#include "augment/engine/textclean.h"
#include "common/err.h"
#include "common/jsonfile.h"
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* HF CLIPTokenizer keeps only the first 49152 - 256 - 2 merges of merges.txt (as OpenAI's CLIP does). */
#define MAX_MERGES (49152 - 256 - 2)
#define DEFAULT_MAX_LENGTH 77

/* ---- hash maps: symbol string -> symbol index, (left, right) symbol pair -> merge ---- */

typedef struct {
    char **str;           /* symbol strings */
    int *vocab;           /* symbol -> vocabulary id, -1 if not in vocab.json */
    int n, cap;
    int *slot;            /* open addressing: symbol index or -1 */
    uint32_t mask;
} symtab;

typedef struct {
    uint64_t *key;        /* left << 32 | right, UINT64_MAX for empty */
    int *rank, *result;
    uint32_t mask;
    int n;
} mergetab;

struct tokenizer {
    symtab sym;
    mergetab merge;
    int byte_sym[256], byte_sym_end[256];   /* byte-to-unicode symbol, and the same + "</w>" */
    int bos, eos, pad, unk;                 /* vocabulary ids; unk -1 if none */
    int sot_sym, eot_sym;                   /* symbols of the literal special tokens, -1 if not in vocab */
    int max_length, vocab_size;
};

static uint32_t hash_str(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;
    return h;
}

static uint32_t hash_u64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return (uint32_t)x;
}

static int sym_grow(symtab *s)
{
    int cap = s->cap ? s->cap * 2 : 1024;
    char **str = realloc(s->str, cap * sizeof *str);
    if (str) s->str = str;
    int *vocab = realloc(s->vocab, cap * sizeof *vocab);
    if (vocab) s->vocab = vocab;
    int *slot = malloc(2 * cap * sizeof *slot);
    if (!str || !vocab || !slot) {
        free(slot);
        return -1;
    }
    s->cap = cap;
    s->mask = 2 * cap - 1;
    for (int i = 0; i < 2 * cap; i++) slot[i] = -1;
    for (int i = 0; i < s->n; i++) {
        uint32_t h = hash_str(s->str[i], strlen(s->str[i])) & s->mask;
        while (slot[h] >= 0) h = (h + 1) & s->mask;
        slot[h] = i;
    }
    free(s->slot);
    s->slot = slot;
    return 0;
}

static int sym_find(const symtab *s, const char *str, size_t n)
{
    if (!s->cap) return -1;
    for (uint32_t h = hash_str(str, n) & s->mask;; h = (h + 1) & s->mask) {
        int i = s->slot[h];
        if (i < 0) return -1;
        if (!strncmp(s->str[i], str, n) && s->str[i][n] == 0) return i;
    }
}

/* Index of the symbol str[0, n), added if new; -1 when out of memory. */
static int sym_intern(symtab *s, const char *str, size_t n)
{
    int i = sym_find(s, str, n);
    if (i >= 0) return i;
    if (s->n == s->cap && sym_grow(s)) return -1;
    char *copy = malloc(n + 1);
    if (!copy) return -1;
    memcpy(copy, str, n);
    copy[n] = 0;
    uint32_t h = hash_str(str, n) & s->mask;
    while (s->slot[h] >= 0) h = (h + 1) & s->mask;
    s->slot[h] = s->n;
    s->str[s->n] = copy;
    s->vocab[s->n] = -1;
    return s->n++;
}

static int merge_init(mergetab *m, int n)
{
    uint32_t cap = 1024;
    while (cap < 2u * (uint32_t)n) cap *= 2;
    m->key = malloc(cap * sizeof *m->key);
    m->rank = malloc(cap * sizeof *m->rank);
    m->result = malloc(cap * sizeof *m->result);
    if (!m->key || !m->rank || !m->result) return -1;
    memset(m->key, 0xff, cap * sizeof *m->key);
    m->mask = cap - 1;
    return 0;
}

/* A pair listed twice keeps its last rank, as the dict HF builds from the list does. */
static void merge_put(mergetab *m, int a, int b, int rank, int result)
{
    uint64_t k = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    uint32_t h = hash_u64(k) & m->mask;
    while (m->key[h] != UINT64_MAX && m->key[h] != k) h = (h + 1) & m->mask;
    if (m->key[h] == UINT64_MAX) m->n++;
    m->key[h] = k;
    m->rank[h] = rank;
    m->result[h] = result;
}

static int merge_get(const mergetab *m, int a, int b, int *result)
{
    uint64_t k = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    for (uint32_t h = hash_u64(k) & m->mask;; h = (h + 1) & m->mask) {
        if (m->key[h] == UINT64_MAX) return INT_MAX;
        if (m->key[h] == k) {
            *result = m->result[h];
            return m->rank[h];
        }
    }
}

/* ---- loading ---- */

static char *read_text(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (cap - n < 65536) {
            char *b = realloc(buf, cap = cap * 2 + 65536);
            if (!b) {
                free(buf);
                fclose(f);
                errno = ENOMEM;
                return NULL;
            }
            buf = b;
        }
        size_t k = fread(buf + n, 1, cap - n - 1, f);
        n += k;
        if (k == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        errno = EIO;
        return NULL;
    }
    buf[n] = 0;
    if (len) *len = n;
    return buf;
}

/* HF's tokenizer files are small (CLIP's vocab.json: 1.6 MB) */
#define JSON_MAX_BYTES (64 << 20)

/* The parsed JSON object in dir/name; *root = NULL (and 0) when the file does not exist. */
static int read_json(const char *dir, const char *name, cJSON **root)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int absent;
    *root = jsonfile_read(path, JSON_MAX_BYTES, &absent);
    return *root || absent ? 0 : -1;
}

/* A special token as HF writes it: "<tok>" or {"content": "<tok>", ...}. */
static const char *special_token(const cJSON *map, const cJSON *config, const char *key, const char *def)
{
    const cJSON *srcs[2] = {map, config};
    for (int i = 0; i < 2; i++) {
        const cJSON *v = srcs[i] ? cJSON_GetObjectItemCaseSensitive(srcs[i], key) : NULL;
        if (cJSON_IsObject(v)) v = cJSON_GetObjectItemCaseSensitive(v, "content");
        if (cJSON_IsString(v)) return v->valuestring;
    }
    return def;
}

static int load_vocab(tokenizer *t, const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/vocab.json", dir);
    cJSON *root = jsonfile_read(path, JSON_MAX_BYTES, NULL);
    if (!root) return -1;
    int rc = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, root) {
        double d = cJSON_IsNumber(e) ? e->valuedouble : -1;
        if (!(d >= 0 && d < (1 << 30)) || d != (int)d) {
            rc = err_set("%s: token \"%.64s\" has id that is not a non-negative integer", path, e->string);
            break;
        }
        int s = sym_intern(&t->sym, e->string, strlen(e->string));
        if (s < 0) {
            rc = err_set("%s: out of memory", path);
            break;
        }
        t->sym.vocab[s] = (int)d;
        if ((int)d >= t->vocab_size) t->vocab_size = (int)d + 1;
    }
    cJSON_Delete(root);
    if (!rc && !t->vocab_size) rc = err_set("%s: empty vocabulary", path);
    return rc;
}

static int load_merges(tokenizer *t, const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/merges.txt", dir);
    size_t len;
    char *text = read_text(path, &len);
    if (!text) return err_set("%s: cannot read: %s", path, strerror(errno));
    int lines = 0;
    for (size_t i = 0; i < len; i++) lines += text[i] == '\n';
    int rc = merge_init(&t->merge, lines + 1 < MAX_MERGES ? lines + 1 : MAX_MERGES) ? err_set("%s: out of memory", path) : 0;
    char *p = text, *cat = NULL;
    size_t catcap = 0;
    int rank = 0, lineno = 0;
    while (!rc && *p && rank < MAX_MERGES) {
        char *eol = strchr(p, '\n'), *next = eol ? eol + 1 : p + strlen(p);
        char *end = eol ? eol : next;
        lineno++;
        if (end > p && end[-1] == '\r') end--;
        if (lineno == 1 && !strncmp(p, "#version", 8)) {
            p = next;
            continue;
        }
        /* two symbols separated by whitespace */
        char *a = p;
        while (a < end && (*a == ' ' || *a == '\t')) a++;
        char *ae = a;
        while (ae < end && *ae != ' ' && *ae != '\t') ae++;
        char *b = ae;
        while (b < end && (*b == ' ' || *b == '\t')) b++;
        char *be = b;
        while (be < end && *be != ' ' && *be != '\t') be++;
        char *rest = be;
        while (rest < end && (*rest == ' ' || *rest == '\t')) rest++;
        if (a == end) {   /* blank line: takes a rank, merges nothing (HF) */
            rank++;
            p = next;
            continue;
        }
        if (b == be || rest != end) {
            rc = err_set("%s: line %d is not two symbols separated by a space", path, lineno);
            break;
        }
        size_t na = (size_t)(ae - a), nb = (size_t)(be - b);
        if (na + nb + 1 > catcap) {
            char *c = realloc(cat, catcap = (na + nb) * 2 + 64);
            if (!c) {
                rc = err_set("%s: out of memory", path);
                break;
            }
            cat = c;
        }
        memcpy(cat, a, na);
        memcpy(cat + na, b, nb);
        int sa = sym_intern(&t->sym, a, na), sb = sym_intern(&t->sym, b, nb), sr = sym_intern(&t->sym, cat, na + nb);
        if (sa < 0 || sb < 0 || sr < 0) {
            rc = err_set("%s: out of memory", path);
            break;
        }
        merge_put(&t->merge, sa, sb, rank++, sr);
        p = next;
    }
    free(cat);
    free(text);
    return rc;
}

/* CLIP's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the others for 256, 257, ... */
static int init_bytes(tokenizer *t)
{
    int extra = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
        uint32_t cp = printable ? (uint32_t)b : 256u + (uint32_t)extra++;
        char s[8];
        int n = 0;
        if (cp < 0x80) s[n++] = (char)cp;
        else s[n++] = (char)(0xc0 | cp >> 6), s[n++] = (char)(0x80 | (cp & 0x3f));
        memcpy(s + n, "</w>", 4);
        t->byte_sym[b] = sym_intern(&t->sym, s, n);
        t->byte_sym_end[b] = sym_intern(&t->sym, s, n + 4);
        if (t->byte_sym[b] < 0 || t->byte_sym_end[b] < 0) return err_set("tokenizer: out of memory");
    }
    return 0;
}

static int vocab_id(const tokenizer *t, const char *tok)
{
    int s = sym_find(&t->sym, tok, strlen(tok));
    return s < 0 ? -1 : t->sym.vocab[s];
}

tokenizer *tokenizer_load(const char *dir)
{
    tokenizer *t = calloc(1, sizeof *t);
    cJSON *map = NULL, *config = NULL;
    if (!t) {
        err_set("%s: out of memory", dir);
        return NULL;
    }
    if (load_vocab(t, dir) || load_merges(t, dir) || init_bytes(t) ||
        read_json(dir, "special_tokens_map.json", &map) || read_json(dir, "tokenizer_config.json", &config))
        goto fail;
    const char *names[4] = {
        special_token(map, config, "bos_token", "<|startoftext|>"),
        special_token(map, config, "eos_token", "<|endoftext|>"),
        special_token(map, config, "pad_token", NULL),
        special_token(map, config, "unk_token", "<|endoftext|>"),
    };
    if (!names[2]) names[2] = names[1];
    int *ids[4] = {&t->bos, &t->eos, &t->pad, &t->unk};
    static const char *const what[4] = {"BOS", "EOS", "pad", "unk"};
    for (int i = 0; i < 4; i++) {
        *ids[i] = vocab_id(t, names[i]);
        if (*ids[i] < 0 && i < 3) {
            err_set("%s/vocab.json: %s token \"%.64s\" is not in the vocabulary", dir, what[i], names[i]);
            goto fail;
        }
    }
    t->sot_sym = sym_find(&t->sym, "<|startoftext|>", 15);
    t->eot_sym = sym_find(&t->sym, "<|endoftext|>", 13);
    if (t->sot_sym >= 0 && t->sym.vocab[t->sot_sym] < 0) t->sot_sym = -1;
    if (t->eot_sym >= 0 && t->sym.vocab[t->eot_sym] < 0) t->eot_sym = -1;

    /* Configs of some models say 1e30 for "no limit"; the CLIP text encoder has 77 positions. */
    t->max_length = DEFAULT_MAX_LENGTH;
    const cJSON *ml = config ? cJSON_GetObjectItemCaseSensitive(config, "model_max_length") : NULL;
    if (cJSON_IsNumber(ml) && ml->valuedouble >= 2 && ml->valuedouble <= 4096) t->max_length = (int)ml->valuedouble;
    cJSON_Delete(map);
    cJSON_Delete(config);
    return t;
fail:
    cJSON_Delete(map);
    cJSON_Delete(config);
    tokenizer_free(t);
    return NULL;
}

void tokenizer_free(tokenizer *t)
{
    if (!t) return;
    for (int i = 0; i < t->sym.n; i++) free(t->sym.str[i]);
    free(t->sym.str);
    free(t->sym.vocab);
    free(t->sym.slot);
    free(t->merge.key);
    free(t->merge.rank);
    free(t->merge.result);
    free(t);
}

int tokenizer_max_length(const tokenizer *t) { return t->max_length; }
int tokenizer_pad_id(const tokenizer *t) { return t->pad; }
int tokenizer_bos_id(const tokenizer *t) { return t->bos; }
int tokenizer_eos_id(const tokenizer *t) { return t->eos; }
int tokenizer_vocab_size(const tokenizer *t) { return t->vocab_size; }

/* ---- encoding ---- */

/* BPE of one pre-split piece (UTF-8 bytes), exactly as CLIP's bpe(): repeatedly merge every occurrence of the
 * lowest-ranked adjacent pair, left to right. Appends the vocabulary ids to ids[*n...] up to cap, counting all. */
static int bpe_piece(const tokenizer *t, const unsigned char *s, size_t len, int *word, int *tmp, int *ids, int cap,
                     int *n)
{
    size_t w = len;
    for (size_t i = 0; i < len; i++) word[i] = i + 1 < len ? t->byte_sym[s[i]] : t->byte_sym_end[s[i]];
    while (w > 1) {
        int best = INT_MAX, ba = -1, bb = -1, br = -1;
        for (size_t i = 0; i + 1 < w; i++) {
            int res, r = merge_get(&t->merge, word[i], word[i + 1], &res);
            if (r < best) best = r, ba = word[i], bb = word[i + 1], br = res;
        }
        if (best == INT_MAX) break;
        size_t k = 0;
        for (size_t i = 0; i < w;) {
            if (i + 1 < w && word[i] == ba && word[i + 1] == bb) tmp[k++] = br, i += 2;
            else tmp[k++] = word[i++];
        }
        memcpy(word, tmp, k * sizeof *word);
        w = k;
    }
    for (size_t i = 0; i < w; i++) {
        int id = t->sym.vocab[word[i]];
        if (id < 0) id = t->unk;
        if (id < 0) return err_set("tokenizer: symbol \"%.64s\" is not in the vocabulary and there is no unk token",
                                   t->sym.str[word[i]]);
        if (*n < cap) ids[*n] = id;
        (*n)++;
    }
    return 0;
}

static int match_literal(const uint32_t *s, size_t n, const char *lit)
{
    size_t L = strlen(lit);
    if (L > n) return 0;
    for (size_t i = 0; i < L; i++)
        if (s[i] != (unsigned char)lit[i]) return 0;
    return 1;
}

/* Code points no alternative of the pattern matches: whitespace, and U+0345, which the regex module under
 * IGNORECASE keeps out of both [\p{L}] and its complement (it case-folds to a letter without being one). */
static int unmatched(uint32_t c) { return textclean_is_space(c) || c == 0x345; }

/* Length of CLIP's pre-split match at s[0] (the pattern tries its alternatives in order), 0 at whitespace. */
static size_t presplit(const tokenizer *t, const uint32_t *s, size_t n, int *special)
{
    *special = -1;
    if (s[0] == '<') {
        if (t->sot_sym >= 0 && match_literal(s, n, "<|startoftext|>")) return *special = t->sot_sym, 15;
        if (t->eot_sym >= 0 && match_literal(s, n, "<|endoftext|>")) return *special = t->eot_sym, 13;
    }
    if (s[0] == '\'' && n > 1) {
        static const char *const contractions[] = {"s", "t", "re", "ve", "m", "ll", "d"};
        for (int k = 0; k < 7; k++)
            if (match_literal(s + 1, n - 1, contractions[k])) return 1 + strlen(contractions[k]);
        if (s[1] == 0x17f) return 2;   /* 's under IGNORECASE also matches the long s, which lowercases to itself */
    }
    if (textclean_is_letter(s[0])) {
        size_t i = 1;
        while (i < n && textclean_is_letter(s[i])) i++;
        return i;
    }
    if (textclean_is_number(s[0])) return 1;
    if (unmatched(s[0])) return 0;
    size_t i = 1;
    while (i < n && !textclean_is_letter(s[i]) && !textclean_is_number(s[i]) && !unmatched(s[i])) i++;
    return i;
}

int tokenizer_encode(const tokenizer *t, const char *text, int *ids, int max_len)
{
    if (max_len < 2) return err_set("tokenizer: max_len %d leaves no room for BOS and EOS", max_len);
    if (!text) return err_set("tokenizer: no prompt text");
    size_t nb = strlen(text);
    /* a piece is at most 4 bytes per code point and BPE needs one symbol per byte */
    uint32_t *cps = malloc((nb + 1) * sizeof *cps);
    uint32_t *clean = NULL;
    size_t n = 0;
    unsigned char *piece = NULL;
    int *word = NULL, *wtmp = NULL;
    int rc = -1;
    if (!cps) {
        err_set("tokenizer: out of memory for a %zu-byte prompt", nb);
        goto out;
    }
    size_t ncp, bad;
    if (textclean_utf8_decode((const unsigned char *)text, nb, cps, &ncp, &bad)) {
        err_set("tokenizer: prompt is not valid UTF-8 (byte %zu): \"%.60s\"", bad, text);
        goto out;
    }
    if (textclean_run(cps, ncp, &clean, &n)) {
        err_set("tokenizer: out of memory for a %zu-byte prompt", nb);
        goto out;
    }
    piece = malloc(4 * n + 1);
    word = malloc((4 * n + 1) * sizeof *word);
    wtmp = malloc((4 * n + 1) * sizeof *wtmp);
    if (!piece || !word || !wtmp) {
        err_set("tokenizer: out of memory for a %zu-byte prompt", nb);
        goto out;
    }
    int cap = max_len - 2, count = 0;
    for (size_t i = 0; i < n;) {
        int special;
        size_t len = presplit(t, clean + i, n - i, &special);
        if (!len) {
            i++;
            continue;
        }
        if (special >= 0) {
            if (count < cap) ids[1 + count] = t->sym.vocab[special];
            count++;
        } else {
            size_t pb = 0;
            for (size_t j = 0; j < len; j++) pb += textclean_utf8_put(clean[i + j], piece + pb);
            if (bpe_piece(t, piece, pb, word, wtmp, ids + 1, cap, &count)) goto out;
        }
        i += len;
    }
    int kept = count < cap ? count : cap;
    ids[0] = t->bos;
    ids[1 + kept] = t->eos;
    for (int i = 2 + kept; i < max_len; i++) ids[i] = t->pad;
    rc = count + 2;
out:
    free(cps), free(clean), free(piece), free(word), free(wtmp);
    return rc;
}

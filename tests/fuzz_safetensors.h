/* Deterministic mutation fuzzer for the safetensors parser, shared by tests/fuzz_safetensors.c (long runs,
 * `make fuzz`) and tests/test_safetensors.c (a short run inside `make test`).
 *
 * Each iteration i takes one of a few valid seed files, applies 1-4 mutations drawn from Philox stream (seed, i)
 * (bit flips, byte overwrites, truncation, random length fields, number/keyword edits, insertions, deletions),
 * copies the result into a buffer of exactly its size (so ASan sees any overread), opens it with st_open_mem and,
 * when accepted, checks the invariants a caller relies on and reads every tensor. */
#ifndef GENIE_FUZZ_SAFETENSORS_H
#define GENIE_FUZZ_SAFETENSORS_H
#include "common/err.h"
#include "common/philox.h"
#include "augment/engine/safetensors.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    long iters, accepted, rejected;
    long violations;        /* accepted files breaking an invariant (must stay 0) */
} fuzz_stats;

typedef struct {
    unsigned char *b;
    size_t n, cap;
} fuzz_buf;

static void fuzz_reserve(fuzz_buf *f, size_t n)
{
    if (n <= f->cap) return;
    f->cap = n * 2 + 64;
    unsigned char *b = realloc(f->b, f->cap);
    if (!b) {
        fprintf(stderr, "fuzz: out of memory\n");
        exit(2);
    }
    f->b = b;
}

/* [u64 len][json][data] with data bytes 0, 1, 2, ... */
static void fuzz_seed(fuzz_buf *f, const char *json, size_t dlen)
{
    size_t hl = strlen(json);
    f->n = 0;
    fuzz_reserve(f, 8 + hl + dlen);
    for (int i = 0; i < 8; i++) f->b[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(f->b + 8, json, hl);
    for (size_t i = 0; i < dlen; i++) f->b[8 + hl + i] = (unsigned char)(i * 37 + 11);
    f->n = 8 + hl + dlen;
}

static uint64_t fuzz_hlen(const fuzz_buf *f)
{
    uint64_t hl = 0;
    for (int i = 7; i >= 0 && f->n >= 8; i--) hl = hl << 8 | f->b[i];
    return hl;
}

static void fuzz_set_hlen(fuzz_buf *f, uint64_t hl)
{
    for (int i = 0; i < 8 && i < (int)f->n; i++) f->b[i] = (unsigned char)(hl >> (8 * i));
}

/* The header region [8, 8+hl) clipped to the buffer; 0 if there is none. */
static size_t fuzz_header_end(const fuzz_buf *f)
{
    uint64_t hl = fuzz_hlen(f);
    if (f->n <= 8) return 0;
    return hl > f->n - 8 ? f->n : (size_t)(8 + hl);
}

/* Replaces b[at, at+del) by ins[0, nins), keeping the length field in step when asked. */
static void fuzz_splice(fuzz_buf *f, size_t at, size_t del, const char *ins, size_t nins, int fix_len)
{
    if (at > f->n) at = f->n;
    if (del > f->n - at) del = f->n - at;
    fuzz_reserve(f, f->n - del + nins);
    memmove(f->b + at + nins, f->b + at + del, f->n - at - del);
    memcpy(f->b + at, ins, nins);
    f->n = f->n - del + nins;
    if (fix_len && f->n >= 8) fuzz_set_hlen(f, fuzz_hlen(f) - del + nins);
}

static void fuzz_mutate(fuzz_buf *f, philox_t *g)
{
    static const char *const words[] = {
        "\"F32\"", "\"F16\"", "\"BF16\"", "\"I64\"", "\"BOOL\"", "\"F8_E4M3\"", "\"X\"", "\"dtype\"", "\"shape\"",
        "\"data_offsets\"", "\"__metadata__\"", "[]", "{}", "[0,0]", "null", "true", "\"\"", "[1,2,3,4,5,6,7,8,9]",
        ",", ":", "\"a\"", "{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}",
    };
    static const char *const numbers[] = {
        "0", "1", "-1", "2.5", "1e300", "-0", "4294967296", "9007199254740993", "18446744073709551616", "3",
        "24", "28", "1e-5", "99999999999", "NaN", "0x10",
    };
    size_t he = fuzz_header_end(f);
    switch (philox_int(g, 9)) {
    case 0:   /* bit flip anywhere */
        if (f->n) f->b[philox_int(g, (int)f->n)] ^= (unsigned char)(1u << philox_int(g, 8));
        break;
    case 1: { /* overwrite a header byte with something structural or random */
        static const char pick[] = "{}[]\":,0123456789-.eE \\u";
        if (he > 8) {
            size_t at = 8 + philox_int(g, (int)(he - 8));
            f->b[at] = philox_int(g, 4) ? (unsigned char)pick[philox_int(g, (int)sizeof pick - 1)]
                                        : (unsigned char)philox_next(g);
        }
        break;
    }
    case 2:   /* truncate */
        if (f->n) f->n = philox_int(g, (int)f->n);
        break;
    case 3: { /* random length field */
        uint64_t hl = fuzz_hlen(f);
        switch (philox_int(g, 5)) {
        case 0: hl = (uint64_t)philox_next(g) << 32 | philox_next(g); break;
        case 1: hl += philox_int(g, 17) - 8; break;
        case 2: hl = f->n >= 8 ? f->n - 8 : 0; break;
        case 3: hl = philox_next(g); break;
        default: hl = (uint64_t)1 << philox_int(g, 64); break;
        }
        fuzz_set_hlen(f, hl);
        break;
    }
    case 4: { /* replace a run of digits in the header by another number */
        if (he <= 8) break;
        size_t at = 8 + philox_int(g, (int)(he - 8)), end;
        while (at < he && !(f->b[at] >= '0' && f->b[at] <= '9')) at++;
        if (at >= he) break;
        for (end = at; end < he && f->b[end] >= '0' && f->b[end] <= '9'; end++) {}
        const char *w = numbers[philox_int(g, (int)(sizeof numbers / sizeof *numbers))];
        fuzz_splice(f, at, end - at, w, strlen(w), philox_int(g, 4) != 0);
        break;
    }
    case 5: { /* replace a quoted string or token in the header by a keyword */
        if (he <= 8) break;
        size_t at = 8 + philox_int(g, (int)(he - 8)), end;
        while (at < he && f->b[at] != '"') at++;
        if (at >= he) break;
        for (end = at + 1; end < he && f->b[end] != '"'; end++) {}
        const char *w = words[philox_int(g, (int)(sizeof words / sizeof *words))];
        fuzz_splice(f, at, end < he ? end + 1 - at : end - at, w, strlen(w), philox_int(g, 4) != 0);
        break;
    }
    case 6: { /* insert a keyword somewhere in the header */
        const char *w = words[philox_int(g, (int)(sizeof words / sizeof *words))];
        size_t at = he > 8 ? 8 + philox_int(g, (int)(he - 8)) : f->n;
        fuzz_splice(f, at, 0, w, strlen(w), philox_int(g, 4) != 0);
        break;
    }
    case 7: { /* delete a few header bytes */
        if (he <= 8) break;
        size_t at = 8 + philox_int(g, (int)(he - 8));
        fuzz_splice(f, at, 1 + philox_int(g, 8), "", 0, philox_int(g, 4) != 0);
        break;
    }
    default: { /* append random bytes */
        char tail[16];
        int k = 1 + philox_int(g, 16);
        for (int i = 0; i < k; i++) tail[i] = (char)philox_next(g);
        fuzz_splice(f, f->n, 0, tail, k, 0);
        break;
    }
    }
}

/* Invariants of an accepted file; returns the number broken. */
static long fuzz_check(const st_file *sf, const unsigned char *buf, size_t len)
{
    long bad = 0;
    for (int i = 0; i < st_count(sf); i++) {
        const st_tensor *t = st_at(sf, i);
        const unsigned char *d = t->data;
        size_t es = st_dtype_size(t->dtype);
        int64_t numel = 1;
        for (int k = 0; k < t->ndim; k++) numel *= t->shape[k];
        if (d < buf + 8 || d > buf + len || t->nbytes > (size_t)(buf + len - d) || es == 0 ||
            (size_t)t->numel * es != t->nbytes || numel != t->numel || st_find(sf, t->name) != t ||
            t->ndim < 0 || t->ndim > ST_MAX_DIMS) {
            bad++;
            continue;
        }
        float *dst = malloc(t->numel ? (size_t)t->numel * sizeof(float) : 1);
        if (!dst) continue;
        int is_float = t->dtype == ST_F32 || t->dtype == ST_F16 || t->dtype == ST_BF16 || t->dtype == ST_F64 ||
                       t->dtype == ST_F8_E4M3 || t->dtype == ST_F8_E5M2;
        if ((st_to_f32(t, dst) == 0) != is_float) bad++;
        free(dst);
    }
    return bad;
}

static fuzz_stats fuzz_safetensors_run(long iters, uint64_t seed)
{
    static const struct { const char *json; size_t dlen; } seeds[] = {
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[24,28]}}", 28},
        {"{\"__metadata__\":{\"format\":\"pt\"},\"h\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[0,8]},"
         "\"g\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[8,16]},"
         "\"z\":{\"dtype\":\"F32\",\"shape\":[0,5],\"data_offsets\":[16,16]}}    ", 16},
        {"{\"i\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[0,16]},"
         "\"d\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[16,24]},"
         "\"u\":{\"dtype\":\"U8\",\"shape\":[1,1,3],\"data_offsets\":[24,27]},"
         "\"e\":{\"dtype\":\"F8_E4M3\",\"shape\":[1],\"data_offsets\":[27,28]}}", 28},
        {"{}", 0},
    };
    const int nseeds = (int)(sizeof seeds / sizeof *seeds);
    fuzz_stats st = {0};
    fuzz_buf f = {0};
    for (long it = 0; it < iters; it++) {
        philox_t g;
        philox_init(&g, seed, (uint64_t)it);
        int s = philox_int(&g, nseeds);
        fuzz_seed(&f, seeds[s].json, seeds[s].dlen);
        int muts = 1 + philox_int(&g, 4);
        for (int m = 0; m < muts; m++) fuzz_mutate(&f, &g);

        unsigned char *buf = malloc(f.n ? f.n : 1);
        if (!buf) break;
        memcpy(buf, f.b, f.n);
        st_file *sf = st_open_mem(buf, f.n, "fuzz.safetensors");
        if (sf) {
            st.accepted++;
            st.violations += fuzz_check(sf, buf, f.n);
            st_close(sf);
        } else {
            st.rejected++;
            if (!strstr(err_msg(), "fuzz.safetensors")) st.violations++;   /* every message names the file */
        }
        free(buf);
        st.iters++;
    }
    free(f.b);
    return st;
}
#endif

#include "augment/engine/safetensors.h"
#include "common/err.h"
#include "common/util.h"
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* The reference implementation refuses headers above 100 MB; an SD checkpoint's is about 150 kB. */
#define ST_MAX_HEADER (100u << 20)
/* Shapes and offsets are JSON numbers (doubles): beyond 2^53 they are no longer exact integers. */
#define ST_MAX_INT 9007199254740992.0

struct st_file {
    char *path;
    void *map;                  /* mmap'd file, or NULL for st_open_mem */
    size_t map_len;
    int n;
    st_tensor *t;               /* header order */
    const st_tensor **by_name;  /* sorted by name, for st_find */
    char **names;
};

static const struct { const char *name; size_t size; } dtypes[] = {
    [ST_F32] = {"F32", 4},   [ST_F16] = {"F16", 2},   [ST_BF16] = {"BF16", 2},      [ST_F64] = {"F64", 8},
    [ST_I64] = {"I64", 8},   [ST_I32] = {"I32", 4},   [ST_I16] = {"I16", 2},        [ST_I8] = {"I8", 1},
    [ST_U8] = {"U8", 1},     [ST_BOOL] = {"BOOL", 1}, [ST_U64] = {"U64", 8},        [ST_U32] = {"U32", 4},
    [ST_U16] = {"U16", 2},   [ST_F8_E4M3] = {"F8_E4M3", 1}, [ST_F8_E5M2] = {"F8_E5M2", 1},
};
#define N_DTYPES ((int)(sizeof dtypes / sizeof dtypes[0]))

const char *st_dtype_name(st_dtype d) { return (unsigned)d < N_DTYPES ? dtypes[d].name : "?"; }
size_t st_dtype_size(st_dtype d) { return (unsigned)d < N_DTYPES ? dtypes[d].size : 0; }

static int dtype_parse(const char *s)
{
    for (int i = 0; i < N_DTYPES; i++)
        if (!strcmp(s, dtypes[i].name)) return i;
    return -1;
}

/* A JSON number that is an exact non-negative integer below 2^53. */
static int json_uint(const cJSON *v, int64_t *out)
{
    if (!cJSON_IsNumber(v)) return -1;
    double d = v->valuedouble;
    if (!(d >= 0 && d <= ST_MAX_INT) || d != floor(d)) return -1;
    *out = (int64_t)d;
    return 0;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp((*(const st_tensor *const *)a)->name, (*(const st_tensor *const *)b)->name);
}

typedef struct { size_t begin, end; int idx; } span;
static int cmp_span(const void *a, const void *b)
{
    const span *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : (x->end > y->end) - (x->end < y->end);
}

/* Fills f->t from one header entry; data is the data section (after the header), data_len its size. */
static int parse_entry(st_file *f, const cJSON *e, st_tensor *t, const unsigned char *data, size_t data_len)
{
    const char *p = f->path, *nm = e->string;
    if (!cJSON_IsObject(e)) return err_set("%s: tensor %s: header entry is not an object", p, nm);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
    if (!dt) return err_set("%s: tensor %s: no dtype", p, nm);
    if (!sh) return err_set("%s: tensor %s: no shape", p, nm);
    if (!off) return err_set("%s: tensor %s: no data_offsets", p, nm);
    if (!cJSON_IsString(dt)) return err_set("%s: tensor %s: dtype is not a string", p, nm);
    int d = dtype_parse(dt->valuestring);
    if (d < 0) return err_set("%s: tensor %s: unknown dtype \"%.32s\"", p, nm, dt->valuestring);
    t->dtype = (st_dtype)d;

    if (!cJSON_IsArray(sh)) return err_set("%s: tensor %s: shape is not an array", p, nm);
    int nd = cJSON_GetArraySize(sh);
    if (nd > ST_MAX_DIMS) return err_set("%s: tensor %s: %d dimensions, at most %d supported", p, nm, nd, ST_MAX_DIMS);
    t->ndim = nd;
    t->numel = 1;
    int k = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, sh) {
        int64_t dim;
        if (json_uint(v, &dim))
            return err_set("%s: tensor %s: shape[%d] is not a non-negative integer", p, nm, k);
        t->shape[k++] = dim;
        if (dim && t->numel > INT64_MAX / dim)
            return err_set("%s: tensor %s: shape overflows 64-bit element count", p, nm);
        t->numel *= dim;
    }

    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2)
        return err_set("%s: tensor %s: data_offsets is not an array [begin, end]", p, nm);
    int64_t b, en;
    if (json_uint(off->child, &b) || json_uint(off->child->next, &en))
        return err_set("%s: tensor %s: data_offsets are not non-negative integers", p, nm);
    if (en < b) return err_set("%s: tensor %s: data_offsets end %lld < begin %lld", p, nm, (long long)en, (long long)b);
    if ((uint64_t)en > data_len)
        return err_set("%s: tensor %s: data_offsets [%lld, %lld] beyond the %zu bytes of data", p, nm, (long long)b,
                       (long long)en, data_len);
    size_t nbytes = (size_t)(en - b), es = dtypes[d].size;
    if ((uint64_t)t->numel > nbytes / es || (size_t)t->numel * es != nbytes)
        return err_set("%s: tensor %s: %zu bytes of data, but %lld elements of %s need %.0f", p, nm, nbytes,
                       (long long)t->numel, dtypes[d].name, (double)t->numel * (double)es);
    t->data = data + b;
    t->nbytes = nbytes;
    t->file = f->path;
    return 0;
}

static int parse(st_file *f, const unsigned char *buf, size_t len)
{
    const char *p = f->path;
    if (len < 8) return err_set("%s: %zu bytes, shorter than the 8-byte header length", p, len);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | buf[i];
    if (hl > ST_MAX_HEADER)
        return err_set("%s: header length %llu is absurd (limit %u)", p, (unsigned long long)hl, ST_MAX_HEADER);
    if (hl > len - 8)
        return err_set("%s: header length %llu beyond the end of the file (%zu bytes)", p, (unsigned long long)hl, len);

    /* cJSON wants a terminated string; a copy also keeps it from ever reading past the header. */
    char *text = malloc(hl + 1);
    if (!text) return err_set("%s: out of memory for a %llu-byte header", p, (unsigned long long)hl);
    memcpy(text, buf + 8, hl);
    text[hl] = 0;
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(text, &end, 0);
    int rc = -1;
    if (!root) {
        size_t at = end && end >= text && end <= text + hl ? (size_t)(end - text) : 0;
        err_set("%s: header is not valid JSON (near byte %zu)", p, at);
        goto out;
    }
    for (const char *q = end; q < text + hl; q++)
        if (*q != ' ' && *q != '\t' && *q != '\n' && *q != '\r') {
            err_set("%s: header has trailing bytes after the JSON (byte %zu)", p, (size_t)(q - text));
            goto out;
        }
    if (!cJSON_IsObject(root)) {
        err_set("%s: header is not a JSON object", p);
        goto out;
    }

    int n = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, root) n += strcmp(e->string, "__metadata__") != 0;
    f->t = calloc(n ? n : 1, sizeof *f->t);
    f->names = calloc(n ? n : 1, sizeof *f->names);
    f->by_name = calloc(n ? n : 1, sizeof *f->by_name);
    span *sp = calloc(n ? n : 1, sizeof *sp);
    if (!f->t || !f->names || !f->by_name || !sp) {
        free(sp);
        err_set("%s: out of memory for %d tensors", p, n);
        goto out;
    }
    const unsigned char *data = buf + 8 + hl;
    size_t data_len = len - 8 - hl;
    cJSON_ArrayForEach(e, root) {
        if (!strcmp(e->string, "__metadata__")) continue;
        st_tensor *t = &f->t[f->n];
        if (parse_entry(f, e, t, data, data_len)) {
            free(sp);
            goto out;
        }
        if (!(f->names[f->n] = strdup(e->string))) {
            free(sp);
            err_set("%s: out of memory", p);
            goto out;
        }
        t->name = f->names[f->n];
        size_t b = (size_t)((const unsigned char *)t->data - data);
        sp[f->n] = (span){b, b + t->nbytes, f->n};
        f->by_name[f->n] = t;
        f->n++;
    }

    qsort(sp, n, sizeof *sp, cmp_span);
    size_t reach = 0;
    int last = -1;
    for (int i = 0; i < n; i++) {
        if (sp[i].begin == sp[i].end) continue;   /* empty tensors occupy nothing */
        if (last >= 0 && sp[i].begin < reach) {
            err_set("%s: tensors %s and %s overlap in the data section", p, f->t[last].name, f->t[sp[i].idx].name);
            free(sp);
            goto out;
        }
        reach = sp[i].end;
        last = sp[i].idx;
    }
    free(sp);

    qsort(f->by_name, n, sizeof *f->by_name, cmp_name);
    for (int i = 1; i < n; i++)
        if (!strcmp(f->by_name[i]->name, f->by_name[i - 1]->name)) {
            err_set("%s: tensor %s appears twice in the header", p, f->by_name[i]->name);
            goto out;
        }
    rc = 0;
out:
    cJSON_Delete(root);
    free(text);
    return rc;
}

static st_file *file_new(const char *path)
{
    st_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) {
        free(f);
        err_set("%s: out of memory", path);
        return NULL;
    }
    return f;
}

st_file *st_open_mem(const void *buf, size_t len, const char *name)
{
    st_file *f = file_new(name ? name : "<memory>");
    if (!f) return NULL;
    if (parse(f, buf, len)) {
        st_close(f);
        return NULL;
    }
    return f;
}

st_file *st_open(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        err_set("%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct stat sb;
    if (fstat(fd, &sb)) {
        err_set("%s: cannot stat: %s", path, strerror(errno));
        close(fd);
        return NULL;
    }
    if (!S_ISREG(sb.st_mode)) {
        err_set("%s: not a regular file", path);
        close(fd);
        return NULL;
    }
    st_file *f = file_new(path);
    if (!f) {
        close(fd);
        return NULL;
    }
    size_t len = (size_t)sb.st_size;
    if (len < 8) {
        close(fd);
        err_set("%s: %zu bytes, shorter than the 8-byte header length", path, len);
        st_close(f);
        return NULL;
    }
    void *m = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) {
        err_set("%s: cannot mmap %zu bytes: %s", path, len, strerror(errno));
        st_close(f);
        return NULL;
    }
    f->map = m;
    f->map_len = len;
    if (parse(f, m, len)) {
        st_close(f);
        return NULL;
    }
    return f;
}

void st_close(st_file *f)
{
    if (!f) return;
    if (f->map) munmap(f->map, f->map_len);
    for (int i = 0; i < f->n; i++) free(f->names[i]);
    free(f->names);
    free(f->t);
    free(f->by_name);
    free(f->path);
    free(f);
}

int st_count(const st_file *f) { return f->n; }
const st_tensor *st_at(const st_file *f, int i) { return i >= 0 && i < f->n ? &f->t[i] : NULL; }
const char *st_path(const st_file *f) { return f->path; }

const st_tensor *st_find(const st_file *f, const char *name)
{
    int lo = 0, hi = f->n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        const st_tensor *t = f->by_name[mid];
        int c = strcmp(name, t->name);
        if (!c) return t;
        if (c < 0) hi = mid - 1;
        else lo = mid + 1;
    }
    return NULL;
}

static float f32_from_bits(uint32_t u)
{
    float x;
    memcpy(&x, &u, 4);
    return x;
}

static float half_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (exp == 0x1f) return f32_from_bits(sign | 0x7f800000u | man << 13);   /* inf, nan */
    if (exp == 0) {                                                          /* zero, subnormal: man * 2^-24 */
        float v = (float)man * 5.9604644775390625e-8f;
        return sign ? -v : v;
    }
    return f32_from_bits(sign | (exp + 112) << 23 | man << 13);
}

/* OCP FP8 E4M3 ("fn"): bias 7, no infinities, S.1111.111 is NaN. */
static float e4m3_to_f32(uint8_t b)
{
    int exp = (b >> 3) & 0xf, man = b & 7;
    float v;
    if (exp == 0xf && man == 7) v = NAN;
    else if (exp == 0) v = ldexpf((float)man, -9);
    else v = ldexpf((float)(8 + man), exp - 10);
    return b & 0x80 ? -v : v;
}

int st_to_f32(const st_tensor *t, float *dst)
{
    const unsigned char *s = t->data;
    size_t n = (size_t)t->numel;
    switch (t->dtype) {
    case ST_F32:
        memcpy(dst, s, n * 4);
        return 0;
    case ST_F16:
        for (size_t i = 0; i < n; i++) dst[i] = half_to_f32((uint16_t)(s[2 * i] | s[2 * i + 1] << 8));
        return 0;
    case ST_BF16:
        for (size_t i = 0; i < n; i++) dst[i] = f32_from_bits((uint32_t)(s[2 * i] | s[2 * i + 1] << 8) << 16);
        return 0;
    case ST_F64:
        for (size_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, s + 8 * i, 8);
            dst[i] = (float)d;
        }
        return 0;
    case ST_F8_E5M2:   /* the top byte of an IEEE half */
        for (size_t i = 0; i < n; i++) dst[i] = half_to_f32((uint16_t)(s[i] << 8));
        return 0;
    case ST_F8_E4M3:
        for (size_t i = 0; i < n; i++) dst[i] = e4m3_to_f32(s[i]);
        return 0;
    default:
        return err_set("%s: tensor %s: dtype %s is not a floating-point type, cannot convert to float32",
                       t->file ? t->file : "?", t->name, st_dtype_name(t->dtype));
    }
}

int st_write_f32(const char *path, int n, const char *const *names, const float *const *data, const int *ndim,
                 const int64_t (*shape)[ST_MAX_DIMS])
{
    cJSON *root = cJSON_CreateObject();
    size_t *bytes = calloc(n > 0 ? n : 1, sizeof *bytes);
    char *hdr = NULL, tmp[4200];
    FILE *fp = NULL;
    int rc = -1;
    if (!root || !bytes) {
        err_set("%s: out of memory", path);
        goto out;
    }
    size_t offset = 0;
    for (int i = 0; i < n; i++) {
        if (!names[i] || !*names[i] || !strcmp(names[i], "__metadata__")) {
            err_set("%s: tensor %d has an invalid name", path, i);
            goto out;
        }
        if (cJSON_GetObjectItemCaseSensitive(root, names[i])) {
            err_set("%s: tensor %s given twice", path, names[i]);
            goto out;
        }
        if (ndim[i] < 0 || ndim[i] > ST_MAX_DIMS) {
            err_set("%s: tensor %s: %d dimensions", path, names[i], ndim[i]);
            goto out;
        }
        double numel = 1;
        cJSON *e = cJSON_AddObjectToObject(root, names[i]);
        cJSON *sh = e ? cJSON_AddArrayToObject(e, "shape") : NULL;
        if (!sh || !cJSON_AddStringToObject(e, "dtype", "F32")) {
            err_set("%s: out of memory", path);
            goto out;
        }
        for (int k = 0; k < ndim[i]; k++) {
            if (shape[i][k] < 0 || shape[i][k] > (1ll << 40)) {
                err_set("%s: tensor %s: shape[%d] = %lld", path, names[i], k, (long long)shape[i][k]);
                goto out;
            }
            numel *= (double)shape[i][k];
            cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)shape[i][k]));
        }
        if (numel * 4 > ST_MAX_INT / 2) {
            err_set("%s: tensor %s is too large", path, names[i]);
            goto out;
        }
        if (numel > 0 && !data[i]) {
            err_set("%s: tensor %s has no data", path, names[i]);
            goto out;
        }
        bytes[i] = (size_t)numel * 4;
        cJSON *off = cJSON_AddArrayToObject(e, "data_offsets");
        if (!off) {
            err_set("%s: out of memory", path);
            goto out;
        }
        cJSON_AddItemToArray(off, cJSON_CreateNumber((double)offset));
        cJSON_AddItemToArray(off, cJSON_CreateNumber((double)(offset + bytes[i])));
        offset += bytes[i];
    }
    if (!(hdr = cJSON_PrintUnformatted(root))) {
        err_set("%s: out of memory", path);
        goto out;
    }
    size_t hl = strlen(hdr), padded = (hl + 7) & ~(size_t)7;   /* keeps the data 8-byte aligned */
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    if (!(fp = util_open_tmp(path, tmp, sizeof tmp))) goto out;
    int ok = fwrite(len8, 1, 8, fp) == 8 && fwrite(hdr, 1, hl, fp) == hl;
    for (size_t i = hl; ok && i < padded; i++) ok = fputc(' ', fp) != EOF;
    for (int i = 0; ok && i < n; i++) ok = !bytes[i] || fwrite(data[i], 1, bytes[i], fp) == bytes[i];
    if (!ok) {
        err_set("%s: write failed: %s", path, strerror(errno));
        goto out;
    }
    FILE *done = fp;
    fp = NULL;
    if (util_commit(done, tmp, path)) goto out;
    rc = 0;
out:
    if (fp) {
        fclose(fp);
        unlink(tmp);
    }
    free(hdr);
    free(bytes);
    cJSON_Delete(root);
    return rc;
}

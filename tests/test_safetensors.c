/* safetensors: F32 write/read round trip, F16/BF16/F64/FP8 conversion against known bit patterns, every
 * malformed-header case rejected with a message naming the file and the problem, and a short fuzz run. */
#include "tests/check.h"
#include "common/err.h"
#include "tests/fuzz_safetensors.h"
#include "augment/engine/safetensors.h"
#include <glob.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[] = "build/genie_test_st_XXXXXX";

static void path_in(char *out, size_t cap, const char *name) { snprintf(out, cap, "%s/%s", dir, name); }

/* Writes [u64 len(json)][json][data] to dir/name. */
static void write_raw(const char *name, const char *json, const void *data, size_t dlen)
{
    char p[512];
    path_in(p, sizeof p, name);
    FILE *fp = fopen(p, "wb");
    if (!fp) return;
    uint64_t hl = strlen(json);
    unsigned char l8[8];
    for (int i = 0; i < 8; i++) l8[i] = (unsigned char)(hl >> (8 * i));
    fwrite(l8, 1, 8, fp);
    fwrite(json, 1, hl, fp);
    if (dlen) fwrite(data, 1, dlen, fp);
    fclose(fp);
}

static uint32_t bits(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    return u;
}

static void test_roundtrip(void)
{
    float w[12], s = 3.25f, big[1] = {-7};
    for (int i = 0; i < 12; i++) w[i] = (float)i * 0.5f - 2.0f;
    const char *names[] = {"model.w", "scalar", "empty", "q\"uo\\te/é", "big"};
    const float *data[] = {w, &s, NULL, w, big};
    int ndim[] = {2, 0, 2, 3, 1};
    int64_t shape[][ST_MAX_DIMS] = {{3, 4}, {0}, {0, 7}, {2, 1, 6}, {1}};
    char p[512];
    path_in(p, sizeof p, "rt.safetensors");
    CHECK(st_write_f32(p, 5, names, data, ndim, shape) == 0, "write: %s", err_msg());
    char tmp[520];
    glob_t left;
    snprintf(tmp, sizeof tmp, "%s*.tmp", p);
    CHECK(glob(tmp, 0, NULL, &left) == GLOB_NOMATCH, "temporary file left behind");

    st_file *f = st_open(p);
    CHECK(f != NULL, "open: %s", err_msg());
    if (!f) return;
    CHECK(st_count(f) == 5, "count %d", st_count(f));
    CHECK(!strcmp(st_path(f), p), "path %s", st_path(f));
    for (int i = 0; i < 5; i++) {
        const st_tensor *t = st_find(f, names[i]);
        CHECK(t != NULL, "tensor %s missing", names[i]);
        if (!t) continue;
        CHECK(t == st_at(f, i), "header order differs at %d", i);
        CHECK(t->dtype == ST_F32 && t->ndim == ndim[i], "%s: dtype %d ndim %d", names[i], t->dtype, t->ndim);
        int64_t numel = 1;
        for (int k = 0; k < ndim[i]; k++) {
            CHECK(t->shape[k] == shape[i][k], "%s: shape[%d] %lld", names[i], k, (long long)t->shape[k]);
            numel *= shape[i][k];
        }
        CHECK(t->numel == numel && t->nbytes == (size_t)numel * 4, "%s: numel %lld nbytes %zu", names[i],
              (long long)t->numel, t->nbytes);
        CHECK(((uintptr_t)t->data & 3) == 0, "%s: data not float-aligned", names[i]);
        float out[12] = {0};
        CHECK(st_to_f32(t, out) == 0, "to_f32: %s", err_msg());
        if (numel) CHECK(check_max_abs(out, data[i], (size_t)numel) == 0, "%s: values differ", names[i]);
    }
    CHECK(st_find(f, "nope") == NULL && st_find(f, "") == NULL && st_find(f, "model.w.") == NULL, "found absent");
    CHECK(st_at(f, 5) == NULL && st_at(f, -1) == NULL, "st_at out of range");
    st_close(f);

    /* Writer errors: a directory that does not exist, a name given twice. */
    CHECK(st_write_f32("/nonexistent-dir/x.safetensors", 1, names, data, ndim, shape) == -1 &&
              strstr(err_msg(), "/nonexistent-dir/x.safetensors: directory /nonexistent-dir"), "bad dir: %s", err_msg());
    const char *dup[] = {"a", "a"};
    CHECK(st_write_f32(p, 2, dup, data, ndim, shape) == -1 && strstr(err_msg(), "given twice"), "dup: %s", err_msg());
}

/* ~1500 tensors (more than an SD checkpoint): every one found by name. */
static void test_many(void)
{
    enum { N = 1500 };
    char (*nm)[32] = malloc(N * sizeof *nm);
    const char **names = malloc(N * sizeof *names);
    const float **data = malloc(N * sizeof *data);
    int *ndim = malloc(N * sizeof *ndim);
    int64_t (*shape)[ST_MAX_DIMS] = calloc(N, sizeof *shape);
    float *v = malloc(N * sizeof *v);
    for (int i = 0; i < N; i++) {
        snprintf(nm[(i * 7) % N], 32, "layer.%d.weight", (i * 7) % N);
        v[i] = (float)i;
    }
    for (int i = 0; i < N; i++) {
        names[i] = nm[i];
        data[i] = &v[i];
        ndim[i] = 1;
        shape[i][0] = 1;
    }
    char p[512];
    path_in(p, sizeof p, "many.safetensors");
    CHECK(st_write_f32(p, N, names, data, ndim, shape) == 0, "write: %s", err_msg());
    st_file *f = st_open(p);
    CHECK(f && st_count(f) == N, "open: %s", f ? "count" : err_msg());
    int wrong = 0;
    for (int i = 0; f && i < N; i++) {
        char q[32];
        snprintf(q, sizeof q, "layer.%d.weight", i);
        const st_tensor *t = st_find(f, q);
        float x;
        if (!t || st_to_f32(t, &x) || x != (float)i) wrong++;
    }
    CHECK(wrong == 0, "%d of %d lookups wrong", wrong, N);
    st_close(f);
    free(nm), free(names), free(data), free(ndim), free(shape), free(v);
}

static void test_conversion(void)
{
    /* F16: 1, -2, smallest subnormal 2^-24, largest subnormal, smallest normal 2^-14, 65504, +inf, -inf, NaN, -0,
     * 0x3555 = 0.333251953125 */
    static const uint16_t h[] = {0x3c00, 0xc000, 0x0001, 0x03ff, 0x0400, 0x7bff, 0x7c00, 0xfc00, 0x7e00, 0x8000, 0x3555};
    static const uint32_t hf[] = {0x3f800000, 0xc0000000, 0x33800000, 0x387fc000, 0x38800000, 0x477fe000,
                                  0x7f800000, 0xff800000, 0x7fc00000, 0x80000000, 0x3eaaa000};
    /* BF16: 1, -5, subnormal 0x0001 (= f32 bits 0x00010000), +inf, -inf, NaN, 3.140625 */
    static const uint16_t b[] = {0x3f80, 0xc0a0, 0x0001, 0x7f80, 0xff80, 0x7fc0, 0x4049};
    static const double d[] = {1.5, -0.1, 1e-300};
    /* F8_E4M3: 1.0, 2^-9 (smallest subnormal), 448 (max), -1.5, NaN; F8_E5M2: 1.0, -inf, 2^-16 (subnormal) */
    static const uint8_t e4[] = {0x38, 0x01, 0x7e, 0xbc, 0x7f}, e5[] = {0x3c, 0xfc, 0x01};
    static const int32_t i32[] = {1, -2};
    unsigned char data[256];
    size_t o = 0;
    memcpy(data + o, h, sizeof h), o += sizeof h;           /* 0..22 */
    memcpy(data + o, b, sizeof b), o += sizeof b;           /* 22..36 */
    memcpy(data + o, d, sizeof d), o += sizeof d;           /* 36..60 */
    memcpy(data + o, e4, sizeof e4), o += sizeof e4;        /* 60..65 */
    memcpy(data + o, e5, sizeof e5), o += sizeof e5;        /* 65..68 */
    memcpy(data + o, i32, sizeof i32), o += sizeof i32;     /* 68..76 */
    write_raw("conv.safetensors",
              "{\"__metadata__\":{\"format\":\"pt\"},"
              "\"h\":{\"dtype\":\"F16\",\"shape\":[11],\"data_offsets\":[0,22]},"
              "\"b\":{\"dtype\":\"BF16\",\"shape\":[7],\"data_offsets\":[22,36]},"
              "\"d\":{\"dtype\":\"F64\",\"shape\":[3,1],\"data_offsets\":[36,60]},"
              "\"e4\":{\"dtype\":\"F8_E4M3\",\"shape\":[5],\"data_offsets\":[60,65]},"
              "\"e5\":{\"dtype\":\"F8_E5M2\",\"shape\":[3],\"data_offsets\":[65,68]},"
              "\"i\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[68,76]}}   ",
              data, o);
    char p[512];
    path_in(p, sizeof p, "conv.safetensors");
    st_file *f = st_open(p);
    CHECK(f != NULL, "open: %s", err_msg());
    if (!f) return;
    CHECK(st_count(f) == 6, "__metadata__ counted: %d", st_count(f));
    float out[16];
    const st_tensor *t = st_find(f, "h");
    CHECK(t && t->dtype == ST_F16 && st_to_f32(t, out) == 0, "F16");
    for (int i = 0; t && i < 11; i++)
        CHECK(bits(out[i]) == hf[i], "F16 %04x -> %08x, want %08x", h[i], bits(out[i]), hf[i]);
    t = st_find(f, "b");
    CHECK(t && t->dtype == ST_BF16 && st_to_f32(t, out) == 0, "BF16");
    for (int i = 0; t && i < 7; i++)
        CHECK(bits(out[i]) == (uint32_t)b[i] << 16, "BF16 %04x -> %08x", b[i], bits(out[i]));
    CHECK(t && out[6] == 3.140625f, "BF16 value %g", out[6]);   /* the subnormal is checked by its bits only: these
                                                                 * test programs may run with denormals-are-zero */
    t = st_find(f, "d");
    CHECK(t && t->ndim == 2 && st_to_f32(t, out) == 0 && out[0] == 1.5f && out[1] == -0.1f && out[2] == 0,
          "F64 values");
    t = st_find(f, "e4");
    CHECK(t && st_to_f32(t, out) == 0 && out[0] == 1 && out[1] == 0x1p-9f && out[2] == 448 && out[3] == -1.5f &&
              isnan(out[4]), "F8_E4M3 %g %g %g %g %g", out[0], out[1], out[2], out[3], out[4]);
    t = st_find(f, "e5");
    CHECK(t && st_to_f32(t, out) == 0 && out[0] == 1 && isinf(out[1]) && out[1] < 0 && out[2] == 0x1p-16f,
          "F8_E5M2 %g %g %g", out[0], out[1], out[2]);
    t = st_find(f, "i");
    CHECK(t && t->dtype == ST_I32 && t->nbytes == 8, "I32 header");
    CHECK(t && st_to_f32(t, out) == -1 && strstr(err_msg(), "not a floating-point") && strstr(err_msg(), p) &&
              strstr(err_msg(), "tensor i"), "I32 conversion: %s", err_msg());
    st_close(f);
}

static void expect_bad(const char *name, const char *json, size_t dlen, const char *what)
{
    unsigned char data[64] = {0};
    write_raw(name, json, data, dlen);
    char p[512];
    path_in(p, sizeof p, name);
    err_set("stale");
    st_file *f = st_open(p);
    CHECK(f == NULL, "%s accepted", name);
    st_close(f);
    CHECK(strstr(err_msg(), p) && strstr(err_msg(), what), "%s: message \"%s\" lacks \"%s\"", name, err_msg(), what);
}

static void test_bad(void)
{
#define T(dt, sh, off) "{\"dtype\":\"" dt "\",\"shape\":" sh ",\"data_offsets\":" off "}"
    expect_bad("json.st", "{\"a\":" T("F32", "[2]", "[0,8]"), 8, "not valid JSON");
    expect_bad("array.st", "[1,2]", 0, "not a JSON object");
    expect_bad("trail.st", "{}x", 0, "trailing bytes");
    expect_bad("entry.st", "{\"a\":[1]}", 0, "tensor a: header entry is not an object");
    expect_bad("nodtype.st", "{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "tensor w: no dtype");
    expect_bad("noshape.st", "{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "tensor w: no shape");
    expect_bad("nooff.st", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "tensor w: no data_offsets");
    expect_bad("dtype.st", "{\"w\":" T("F12", "[1]", "[0,4]") "}", 4, "tensor w: unknown dtype \"F12\"");
    expect_bad("dtype2.st", "{\"w\":{\"dtype\":5,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "dtype is not a string");
    expect_bad("neg.st", "{\"w\":" T("F32", "[1,-2]", "[0,8]") "}", 8, "tensor w: shape[1] is not a non-negative");
    expect_bad("frac.st", "{\"w\":" T("F32", "[2.5]", "[0,10]") "}", 10, "tensor w: shape[0] is not a non-negative");
    expect_bad("strdim.st", "{\"w\":" T("F32", "[\"2\"]", "[0,8]") "}", 8, "shape[0] is not a non-negative");
    expect_bad("ndim.st", "{\"w\":" T("F32", "[1,1,1,1,1,1,1,1,1]", "[0,4]") "}", 4, "9 dimensions");
    expect_bad("shapearr.st", "{\"w\":" T("F32", "3", "[0,12]") "}", 12, "shape is not an array");
    expect_bad("range.st", "{\"w\":" T("F32", "[4]", "[0,16]") "}", 12, "tensor w: data_offsets [0, 16] beyond");
    expect_bad("order.st", "{\"w\":" T("F32", "[1]", "[8,4]") "}", 12, "tensor w: data_offsets end 4 < begin 8");
    expect_bad("offs.st", "{\"w\":" T("F32", "[1]", "[0]") "}", 4, "data_offsets is not an array");
    expect_bad("offneg.st", "{\"w\":" T("F32", "[1]", "[-4,0]") "}", 4, "data_offsets are not non-negative");
    expect_bad("size.st", "{\"w\":" T("F16", "[3]", "[0,8]") "}", 8, "tensor w: 8 bytes of data, but 3 elements");
    expect_bad("huge.st", "{\"w\":" T("F32", "[4294967296,4294967296,4294967296]", "[0,8]") "}", 8,
               "tensor w: shape overflows");
    expect_bad("overlap.st", "{\"a\":" T("F32", "[2]", "[0,8]") ",\"b\":" T("F32", "[2]", "[4,12]") "}", 12,
               "tensors a and b overlap");
    expect_bad("dup.st", "{\"a\":" T("F32", "[1]", "[0,4]") ",\"a\":" T("F32", "[1]", "[4,8]") "}", 8,
               "tensor a appears twice");

    char p[512];
    /* shorter than 8 bytes */
    path_in(p, sizeof p, "short.st");
    FILE *fp = fopen(p, "wb");
    if (fp) fwrite("abcde", 1, 5, fp), fclose(fp);
    CHECK(st_open(p) == NULL && strstr(err_msg(), p) && strstr(err_msg(), "5 bytes, shorter than"), "short: %s",
          err_msg());
    /* header length beyond the file, and absurd */
    unsigned char raw[16] = {100, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
    path_in(p, sizeof p, "beyond.st");
    if ((fp = fopen(p, "wb"))) fwrite(raw, 1, 10, fp), fclose(fp);
    CHECK(st_open(p) == NULL && strstr(err_msg(), p) && strstr(err_msg(), "header length 100 beyond"), "beyond: %s",
          err_msg());
    raw[0] = 0, raw[5] = 1;   /* 2^40 */
    path_in(p, sizeof p, "absurd.st");
    if ((fp = fopen(p, "wb"))) fwrite(raw, 1, 10, fp), fclose(fp);
    CHECK(st_open(p) == NULL && strstr(err_msg(), p) && strstr(err_msg(), "is absurd"), "absurd: %s", err_msg());
    path_in(p, sizeof p, "missing.st");
    CHECK(st_open(p) == NULL && strstr(err_msg(), p) && strstr(err_msg(), "cannot open"), "missing: %s", err_msg());
    CHECK(st_open(dir) == NULL && strstr(err_msg(), "not a regular file"), "dir: %s", err_msg());

    /* Accepted: gaps between tensors, trailing padding spaces, empty tensors anywhere, an empty header. */
    write_raw("gap.st", "{\"a\":" T("F32", "[1]", "[8,12]") ",\"z\":" T("F32", "[0]", "[4,4]") ",\"b\":"
              T("F32", "[1]", "[0,4]") "}        ", (unsigned char[16]){0}, 16);
    path_in(p, sizeof p, "gap.st");
    st_file *f = st_open(p);
    CHECK(f && st_count(f) == 3 && st_find(f, "b") && st_find(f, "z")->numel == 0, "gap: %s", f ? "" : err_msg());
    st_close(f);
    st_file *m = st_open_mem("\2\0\0\0\0\0\0\0{}", 10, "mem");
    CHECK(m && st_count(m) == 0 && !strcmp(st_path(m), "mem"), "empty header: %s", m ? "" : err_msg());
    st_close(m);
#undef T
}

/* The PyTorch-written fixtures (tests/fixtures/README.md): every file opens and every float tensor converts;
 * the checkpoint's I64 position_ids buffer reads back as 0..76. */
static void test_fixtures(void)
{
    static const char *const files[] = {
        "tests/fixtures/sd-tiny-a/unet/diffusion_pytorch_model.safetensors",
        "tests/fixtures/sd-tiny-a/vae/diffusion_pytorch_model.safetensors",
        "tests/fixtures/sd-tiny-a/text_encoder/model.safetensors",
        "tests/fixtures/sd-tiny-a/refs.safetensors",
        "tests/fixtures/sd-tiny-b/unet/diffusion_pytorch_model.safetensors",
        "tests/fixtures/sd-tiny-b.safetensors",
    };
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        st_file *f = st_open(files[i]);
        CHECK(f && st_count(f) > 10, "%s: %s", files[i], f ? "too few tensors" : err_msg());
        int bad = 0;
        for (int k = 0; f && k < st_count(f); k++) {
            const st_tensor *t = st_at(f, k);
            if (t->dtype != ST_F32 && t->dtype != ST_F16) continue;
            float *d = malloc((size_t)t->numel * sizeof *d + 1);
            bad += !d || st_to_f32(t, d) != 0;
            for (int64_t j = 0; d && j < t->numel; j++) bad += !isfinite(d[j]);
            free(d);
        }
        CHECK(bad == 0, "%s: %d tensors failed to convert or are not finite", files[i], bad);
        st_close(f);
    }
    st_file *f = st_open("tests/fixtures/sd-tiny-b.safetensors");
    const st_tensor *t = f ? st_find(f, "cond_stage_model.transformer.text_model.embeddings.position_ids") : NULL;
    CHECK(t && t->dtype == ST_I64 && t->ndim == 2 && t->shape[0] == 1 && t->shape[1] == 77, "position_ids header");
    int wrong = 0;
    for (int j = 0; t && j < 77; j++) {
        int64_t v;
        memcpy(&v, (const char *)t->data + 8 * j, 8);
        wrong += v != j;
    }
    CHECK(t && wrong == 0, "position_ids: %d values differ from 0..76", wrong);
    t = f ? st_find(f, "model_ema.decay") : NULL;
    CHECK(t && t->dtype == ST_F32 && t->ndim == 0 && t->numel == 1, "model_ema.decay is not an F32 scalar");
    st_close(f);
}

int main(void)
{
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_roundtrip();
    test_many();
    test_conversion();
    test_bad();
    test_fixtures();
    fuzz_stats fs = fuzz_safetensors_run(3000, 12345);
    CHECK(fs.iters == 3000 && fs.violations == 0 && fs.accepted > 50 && fs.rejected > 1000,
          "fuzz: %ld iterations, %ld accepted, %ld rejected, %ld violations", fs.iters, fs.accepted, fs.rejected,
          fs.violations);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", dir);
    return check_done("safetensors");
}

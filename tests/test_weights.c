/* weights: one namespace over several files, shape checks (trailing singleton dims), F16 conversion done once,
 * the old VAE attention names, name maps, messages naming file/tensor/shapes, and synthetic weights. */
#include "tests/check.h"
#include "common/err.h"
#include "augment/engine/safetensors.h"
#include "augment/engine/weights.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define UNET_A "tests/fixtures/sd-tiny-a/unet/diffusion_pytorch_model.safetensors"
#define VAE_B "tests/fixtures/sd-tiny-b/vae/diffusion_pytorch_model.safetensors"
#define CLIP_B "tests/fixtures/sd-tiny-b/text_encoder/model.safetensors"

static const char *prefix_map(const char *name, char *buf, size_t len, void *ctx)
{
    if (!strncmp(name, "skip.", 5)) return NULL;
    snprintf(buf, len, "%s%s", (const char *)ctx, name);
    return buf;
}

static void test_files(void)
{
    const char *paths[3] = {UNET_A, VAE_B, CLIP_B};
    weights *w = weights_open(paths, 3);
    CHECK(w != NULL, "open: %s", err_msg());
    if (!w) return;
    /* F32 straight from the mapping */
    int64_t s16[1] = {16}, pin[2] = {16, 16}, pin4[4] = {16, 16, 1, 1}, pin3[3] = {16, 16, 2};
    const float *b = weights_get(w, "conv_in.bias", 1, s16);
    CHECK(b != NULL && weights_owned_bytes(w) == 0, "F32 tensors are used in place: %s", err_msg());
    /* a 1x1 conv stored [16,16,1,1] serves a Linear [16,16], and as itself */
    const float *p2 = weights_get(w, "down_blocks.0.attentions.0.proj_in.weight", 2, pin);
    const float *p4 = weights_get(w, "down_blocks.0.attentions.0.proj_in.weight", 4, pin4);
    CHECK(p2 && p2 == p4, "trailing singleton dims: %s", err_msg());
    CHECK(!weights_get(w, "down_blocks.0.attentions.0.proj_in.weight", 3, pin3) &&
              strstr(err_msg(), "has shape [16,16,1,1], expected [16,16,2]") && strstr(err_msg(), UNET_A),
          "shape mismatch message: %s", err_msg());
    /* F16 from the second file, converted once; the new attention name finds the old "query" tensor */
    const char *q = "encoder.mid_block.attentions.0.to_q.weight";
    const float *f1 = weights_get(w, q, 2, pin);
    size_t owned = weights_owned_bytes(w);
    const float *f2 = weights_get(w, q, 2, pin);
    CHECK(f1 && f1 == f2 && owned == 16 * 16 * 4 && weights_owned_bytes(w) == owned, "F16 converted once (%zu)",
          owned);
    CHECK(weights_has(w, q) && weights_has(w, "encoder.mid_block.attentions.0.to_out.0.bias"), "old VAE names");
    st_file *f = st_open(VAE_B);
    if (f && f1) {
        float ref[256];
        st_to_f32(st_find(f, "encoder.mid_block.attentions.0.query.weight"), ref);
        CHECK(!memcmp(ref, f1, sizeof ref), "F16 values");
    }
    st_close(f);
    /* an integer tensor is refused by dtype, a missing one by name with the files listed */
    int64_t pid[2] = {1, 77};
    CHECK(!weights_get(w, "text_model.embeddings.position_ids", 2, pid) && strstr(err_msg(), "I64"),
          "integer dtype: %s", err_msg());
    CHECK(!weights_get(w, "no.such.weight", 1, s16) && strstr(err_msg(), "no.such.weight") &&
              strstr(err_msg(), CLIP_B) && strstr(err_msg(), "[16]"),
          "missing: %s", err_msg());
    CHECK(!weights_has(w, "no.such.weight"), "has");
    weights_close(w);

    /* a name map: requested names get a prefix; NULL means "not in this format" */
    const char *one = UNET_A;
    w = weights_open(&one, 1);
    weights_set_map(w, prefix_map, "conv_");
    CHECK(weights_get(w, "in.bias", 1, s16) != NULL, "mapped: %s", err_msg());
    CHECK(!weights_get(w, "out.bias", 1, s16) && strstr(err_msg(), "out.bias (stored as conv_out.bias)"),
          "mapped message names both: %s", err_msg());
    CHECK(!weights_has(w, "skip.x"), "map returning NULL");
    weights_close(w);
    const char *bad = "tests/fixtures/no-such-file.safetensors";
    CHECK(weights_open(&bad, 1) == NULL && strstr(err_msg(), "no-such-file"), "open failure: %s", err_msg());
}

static void test_random(void)
{
    weights *a = weights_random(7, 0.5f), *b = weights_random(7, 0.5f), *c = weights_random(8, 0.5f);
    int64_t s[2] = {300, 200}, s1[1] = {300};
    const float *x = weights_get(a, "blk.proj.weight", 2, s), *y = weights_get(b, "blk.proj.weight", 2, s);
    const float *z = weights_get(c, "blk.proj.weight", 2, s), *o = weights_get(a, "blk.other.weight", 2, s);
    CHECK(x && y && z && o, "random get");
    CHECK(!memcmp(x, y, 300 * 200 * sizeof(float)), "same seed and name: same values");
    CHECK(memcmp(x, z, 300 * 200 * sizeof(float)) && memcmp(x, o, 300 * 200 * sizeof(float)),
          "seed and name both change the values");
    double m = 0, v = 0;
    for (int i = 0; i < 60000; i++) m += x[i];
    m /= 60000;
    for (int i = 0; i < 60000; i++) v += (x[i] - m) * (x[i] - m);
    v = sqrt(v / 60000);
    CHECK(fabs(m) < 0.01 && fabs(v - 0.5) < 0.01, "mean %g, std %g (want 0, 0.5)", m, v);
    const float *g = weights_get(a, "blk.norm1.weight", 1, s1), *bias = weights_get(a, "blk.norm1.bias", 1, s1);
    int ones = 1;
    double bmax = 0;
    for (int i = 0; i < 300; i++) ones &= g[i] == 1.0f, bmax = fmax(bmax, fabs(bias[i]));
    CHECK(ones && bmax > 0 && bmax <= 0.05 * 1.7321 + 1e-6, "norm weights 1, biases small (max %g)", bmax);
    CHECK(weights_get(a, "blk.proj.weight", 2, s) == x, "made once");
    CHECK(!weights_get(a, "blk.proj.weight", 1, s1) && strstr(err_msg(), "blk.proj.weight"), "size change: %s",
          err_msg());
    weights_close(a), weights_close(b), weights_close(c);
}

/* Writes a one-tensor F16 safetensors file ("h", shape [n]) by hand. */
static int write_f16(const char *path, const uint16_t *v, int n)
{
    char hdr[128];
    int len = snprintf(hdr, sizeof hdr, "{\"h\":{\"dtype\":\"F16\",\"shape\":[%d],\"data_offsets\":[0,%d]}}", n, 2 * n);
    while (len % 8) hdr[len++] = ' ';
    unsigned char n8[8] = {(unsigned char)len};
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    fwrite(n8, 1, 8, f);
    fwrite(hdr, 1, (size_t)len, f);
    fwrite(v, 2, (size_t)n, f);
    return fclose(f);
}

/* A NaN or infinity in a weight is refused when the tensor is loaded, naming file and tensor (F32 in place, F16
 * converted, and again when asked a second time). */
static void test_nonfinite(void)
{
    char dir[] = "build/genie_test_weights_XXXXXX";
    if (!mkdtemp(dir)) {
        CHECK(0, "mkdtemp");
        return;
    }
    char p32[128], p16[128];
    snprintf(p32, sizeof p32, "%s/nan.safetensors", dir);
    snprintf(p16, sizeof p16, "%s/inf.safetensors", dir);
    float good[6] = {1, -2, 3e38f, -3e38f, 0, 1e-30f}, bad[6] = {1, 2, 3, NAN, 5, NAN};
    const char *names[2] = {"good", "conv.weight"};
    const float *data[2] = {good, bad};
    int nd[2] = {1, 2};
    const int64_t shapes[2][ST_MAX_DIMS] = {{6}, {2, 3}};
    CHECK(st_write_f32(p32, 2, names, data, nd, shapes) == 0, "write: %s", err_msg());
    const uint16_t h[4] = {0x3c00, 0x7c00, 0xbc00, 0x0001};   /* 1, +inf, -1, the smallest subnormal */
    CHECK(write_f16(p16, h, 4) == 0, "write f16");
    const char *paths[2] = {p32, p16};
    weights *w = weights_open(paths, 2);
    CHECK(w != NULL, "open: %s", err_msg());
    if (!w) return;
    int64_t s6[1] = {6}, s23[2] = {2, 3}, s4[1] = {4};
    CHECK(weights_get(w, "good", 1, s6) != NULL, "finite extremes load: %s", err_msg());
    for (int round = 0; round < 2; round++) {
        err_set("stale");
        CHECK(!weights_get(w, "conv.weight", 2, s23) && strstr(err_msg(), p32) && strstr(err_msg(), "conv.weight") &&
                  strstr(err_msg(), "2 non-finite values") && strstr(err_msg(), "element 3"),
              "F32 NaN (round %d): %s", round, err_msg());
        err_set("stale");
        CHECK(!weights_get(w, "h", 1, s4) && strstr(err_msg(), p16) && strstr(err_msg(), "tensor h ") &&
                  strstr(err_msg(), "1 non-finite value ") && strstr(err_msg(), "element 1"),
              "F16 inf (round %d): %s", round, err_msg());
    }
    weights_close(w);
    /* through a name map the stored name is given as well */
    w = weights_open(paths, 1);
    weights_set_map(w, prefix_map, "conv.");
    CHECK(w && !weights_get(w, "weight", 2, s23) && strstr(err_msg(), "tensor weight (stored as conv.weight)"),
          "mapped: %s", err_msg());
    weights_close(w);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0, "rm");
}

int main(void)
{
    test_files();
    test_random();
    test_nonfinite();
    return check_done("test_weights");
}

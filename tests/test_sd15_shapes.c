/* The real SD 1.5 networks at full width and depth, built from synthetic weights (weights_random), run at a tiny
 * size: every tensor the configs ask for has the expected shape (parameter totals are the published ones:
 * UNet 859,520,964, VAE 83,653,863, CLIP text model 123,060,480) and the outputs have the expected sizes and
 * are finite. */
#include "tests/check.h"
#include "augment/engine/clip.h"
#include "common/err.h"
#include "augment/engine/backend/ops.h"
#include "augment/engine/unet.h"
#include "augment/engine/vae.h"
#include "augment/engine/weights.h"
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* n floats that must be written, followed by a guard that must not be */
static float *guarded(size_t n)
{
    float *p = malloc((n + 64) * sizeof *p);
    for (size_t i = 0; i < n + 64; i++) p[i] = 12345.0f;
    return p;
}

static void check_output(const char *what, const float *p, size_t n)
{
    size_t bad = 0, unwritten = 0, over = 0;
    for (size_t i = 0; i < n; i++) bad += !isfinite(p[i]), unwritten += p[i] == 12345.0f;
    for (size_t i = n; i < n + 64; i++) over += p[i] != 12345.0f;
    CHECK(!bad && unwritten < n / 100 + 1 && !over, "%s: %zu non-finite, %zu unwritten, %zu written past the end",
          what, bad, unwritten, over);
}

static void sd15(unet_config *u, vae_config *v, clip_config *c)
{
    memset(u, 0, sizeof *u);
    *u = (unet_config){.in_channels = 4, .out_channels = 4, .sample_size = 64, .n_blocks = 4,
                       .block_out_channels = {320, 640, 1280, 1280},
                       .down_block_types = {SD_CROSS_ATTN_DOWN_BLOCK, SD_CROSS_ATTN_DOWN_BLOCK,
                                            SD_CROSS_ATTN_DOWN_BLOCK, SD_DOWN_BLOCK},
                       .up_block_types = {SD_UP_BLOCK, SD_CROSS_ATTN_UP_BLOCK, SD_CROSS_ATTN_UP_BLOCK,
                                          SD_CROSS_ATTN_UP_BLOCK},
                       .layers_per_block = 2, .attention_head_dim = {8, 8, 8, 8}, .cross_attention_dim = 768,
                       .norm_num_groups = 32, .norm_eps = 1e-5f, .use_linear_projection = 0, .flip_sin_to_cos = 1,
                       .freq_shift = 0, .transformer_layers_per_block = 1};
    *v = (vae_config){.in_channels = 3, .out_channels = 3, .latent_channels = 4, .sample_size = 512, .n_blocks = 4,
                      .block_out_channels = {128, 256, 512, 512}, .layers_per_block = 2, .norm_num_groups = 32,
                      .scaling_factor = 0.18215f};
    *c = (clip_config){.vocab_size = 49408, .hidden_size = 768, .intermediate_size = 3072, .num_hidden_layers = 12,
                       .num_attention_heads = 12, .max_position_embeddings = 77, .layer_norm_eps = 1e-5f,
                       .hidden_act = SD_ACT_QUICK_GELU, .bos_token_id = 49406, .eos_token_id = 49407,
                       .pad_token_id = 49407};
}

int main(void)
{
    unet_config uc;
    vae_config vc;
    clip_config cc;
    sd15(&uc, &vc, &cc);
    ops_backend *be = ops_cpu_create(0);
    CHECK(be != NULL, "%s", err_msg());
    if (!be) return check_done("test_sd15_shapes");
    double t0 = now();

    /* CLIP: 77 tokens of one prompt */
    weights *wc = weights_random(1, 0.02f);
    clip_model *cm = clip_load(&cc, wc, be, 1);
    CHECK(cm != NULL, "clip_load: %s", err_msg());
    CHECK(weights_owned_bytes(wc) == 123060480ull * 4, "CLIP parameters %zu", weights_owned_bytes(wc) / 4);
    if (cm) {
        int ids[77];
        ids[0] = 49406;
        for (int i = 1; i < 77; i++) ids[i] = i < 8 ? 320 + 17 * i : 49407;
        float *out = guarded(77 * 768);
        CHECK(!clip_encode(cm, ids, 1, 77, out), "clip_encode: %s", err_msg());
        check_output("clip [1,77,768]", out, 77 * 768);
        free(out);
    }
    clip_free(cm);
    weights_close(wc);
    double t1 = now();
    printf("  clip: %.2f s\n", t1 - t0);

    /* VAE: one 64x64 image -> 8x8 latent -> 64x64 image */
    weights *wv = weights_random(2, 0.02f);
    vae_model *vm = vae_load(&vc, wv, be, VAE_ENCODER | VAE_DECODER, 1, 64, 64);
    CHECK(vm != NULL, "vae_load: %s", err_msg());
    CHECK(weights_owned_bytes(wv) == 83653863ull * 4, "VAE parameters %zu", weights_owned_bytes(wv) / 4);
    if (vm) {
        CHECK(vae_factor(vm) == 8, "VAE factor %d", vae_factor(vm));
        float *img = malloc(3 * 64 * 64 * sizeof(float)), *mean = guarded(4 * 8 * 8), *logvar = guarded(4 * 8 * 8);
        for (int i = 0; i < 3 * 64 * 64; i++) img[i] = (float)((i * 37) % 255) / 127.5f - 1.0f;
        CHECK(!vae_encode(vm, img, 1, 64, 64, mean, logvar), "vae_encode: %s", err_msg());
        check_output("vae mean [1,4,8,8]", mean, 4 * 8 * 8);
        check_output("vae logvar [1,4,8,8]", logvar, 4 * 8 * 8);
        float *dec = guarded(3 * 64 * 64);
        CHECK(!vae_decode(vm, mean, 1, 8, 8, dec), "vae_decode: %s", err_msg());
        check_output("vae decode [1,3,64,64]", dec, 3 * 64 * 64);
        free(img), free(mean), free(logvar), free(dec);
    }
    vae_free(vm);
    weights_close(wv);
    double t2 = now();
    printf("  vae: %.2f s\n", t2 - t1);

    /* UNet: latent 1x4x8x8 with a 77x768 context */
    weights *wu = weights_random(3, 0.02f);
    unet_model *um = unet_load(&uc, wu, be, 1, 8, 8, 77);
    CHECK(um != NULL, "unet_load: %s", err_msg());
    CHECK(weights_owned_bytes(wu) == 859520964ull * 4, "UNet parameters %zu", weights_owned_bytes(wu) / 4);
    double t3 = now();
    if (um) {
        CHECK(unet_factor(um) == 8, "UNet factor %d", unet_factor(um));
        float *x = malloc(4 * 64 * sizeof(float)), *ctx = malloc(77 * 768 * sizeof(float)), *out = guarded(4 * 64);
        for (int i = 0; i < 4 * 64; i++) x[i] = sinf(0.37f * i);
        for (int i = 0; i < 77 * 768; i++) ctx[i] = cosf(0.11f * i);
        float t = 981;
        CHECK(!unet_forward(um, x, &t, NULL, ctx, 1, 8, 8, 77, out), "unet_forward: %s", err_msg());
        check_output("unet [1,4,8,8]", out, 4 * 64);
        free(x), free(ctx), free(out);
    }
    unet_free(um);
    weights_close(wu);
    double t4 = now();
    printf("  unet: synthesis+load %.2f s, forward %.2f s\n", t3 - t2, t4 - t3);
    be->destroy(be);
    return check_done("test_sd15_shapes");
}

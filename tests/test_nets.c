/* CLIP, VAE and UNet against the PyTorch references of tests/fixtures/sd-tiny-{a,b} (scripts/sd_ref.py):
 * sd-tiny-a has F32 weights and 1x1-conv proj_in/out, sd-tiny-b F16 weights, Linear projections, per-block head
 * counts and the deprecated VAE attention names. Also the single-file checkpoint of sd-tiny-b through the LDM
 * name map, and bad inputs: a missing tensor, a mis-shaped tensor, a batch beyond the arena, a NaN input. */
#include "tests/check.h"
#include "augment/engine/clip.h"
#include "common/err.h"
#include "augment/engine/model_load.h"
#include "augment/engine/backend/ops.h"
#include "augment/engine/safetensors.h"
#include "augment/engine/unet.h"
#include "augment/engine/vae.h"
#include "augment/engine/weights.h"
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TOL 1e-4

static ops_backend *be;

static const st_tensor *ref(st_file *r, const char *name)
{
    const st_tensor *t = st_find(r, name);
    CHECK(t != NULL, "reference %s missing", name);
    return t;
}

static float *ref_f32(st_file *r, const char *name)
{
    const st_tensor *t = ref(r, name);
    if (!t) return NULL;
    float *d = malloc(t->numel * sizeof *d);
    st_to_f32(t, d);
    return d;
}

static void expect(const char *fam, const char *what, const float *got, const float *want, size_t n)
{
    double e = check_max_abs(got, want, n);
    printf("  %s %-28s max abs err %.3g\n", fam, what, e);
    CHECK(e <= TOL, "%s %s: max abs error %g > %g", fam, what, e, TOL);
}

static weights *open1(const char *dir, const char *file)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    const char *p = path;
    weights *w = weights_open(&p, 1);
    CHECK(w != NULL, "open %s: %s", path, err_msg());
    return w;
}

static void test_clip(const char *fam, st_file *r, const clip_config *cc, weights *w)
{
    const st_tensor *ids_t = ref(r, "tok.ids");
    float *ids_f = ref_f32(r, "tok.ids"), *want = ref_f32(r, "clip.hidden");
    if (!ids_t || !want) return;
    int B = (int)ids_t->shape[0], L = (int)ids_t->shape[1], *ids = malloc(sizeof(int) * B * L);
    for (int i = 0; i < B * L; i++) ids[i] = (int)ids_f[i];
    clip_model *m = clip_load(cc, w, be, B);
    CHECK(m != NULL, "%s clip_load: %s", fam, err_msg());
    if (m) {
        size_t n = (size_t)B * L * cc->hidden_size;
        float *out = malloc(n * sizeof *out);
        CHECK(!clip_encode(m, ids, B, L, out), "%s clip_encode: %s", fam, err_msg());
        expect(fam, "clip last_hidden_state", out, want, n);
        /* one prompt alone gives the same rows (no cross-talk between sequences) */
        CHECK(!clip_encode(m, ids + 2 * L, 1, L, out), "%s clip_encode B=1: %s", fam, err_msg());
        expect(fam, "clip prompt 2 alone", out, want + 2 * (size_t)L * cc->hidden_size, (size_t)L * cc->hidden_size);
        ids[5] = cc->vocab_size;
        CHECK(clip_encode(m, ids, 1, L, out) == -1 && strstr(err_msg(), "vocabulary"), "bad id: %s", err_msg());
        free(out);
    }
    clip_free(m);
    free(ids), free(ids_f), free(want);
}

static void test_vae(const char *fam, st_file *r, const vae_config *vc, weights *w)
{
    const st_tensor *img_t = ref(r, "vae.image"), *z_t = ref(r, "vae.dec_in");
    if (!img_t || !z_t) return;
    int B = (int)img_t->shape[0], H = (int)img_t->shape[2], W = (int)img_t->shape[3];
    int h = (int)z_t->shape[2], wd = (int)z_t->shape[3], L = vc->latent_channels;
    vae_model *m = vae_load(vc, w, be, VAE_ENCODER | VAE_DECODER, B, H, W);
    CHECK(m != NULL, "%s vae_load: %s", fam, err_msg());
    if (!m) return;
    CHECK(vae_factor(m) == H / h, "%s vae factor %d", fam, vae_factor(m));
    float *img = ref_f32(r, "vae.image"), *mean_r = ref_f32(r, "vae.mean"), *logvar_r = ref_f32(r, "vae.logvar");
    size_t nl = (size_t)B * L * h * wd, ni = (size_t)B * vc->out_channels * H * W;
    float *mean = malloc(nl * sizeof(float)), *logvar = malloc(nl * sizeof(float)), *out = malloc(ni * sizeof(float));
    CHECK(!vae_encode(m, img, B, H, W, mean, logvar), "%s vae_encode: %s", fam, err_msg());
    expect(fam, "vae encode mean", mean, mean_r, nl);
    expect(fam, "vae encode logvar", logvar, logvar_r, nl);
    float *z = ref_f32(r, "vae.dec_in"), *dec_r = ref_f32(r, "vae.dec_out");
    CHECK(!vae_decode(m, z, B, h, wd, out), "%s vae_decode: %s", fam, err_msg());
    expect(fam, "vae decode", out, dec_r, ni);
    CHECK(vae_decode(m, z, B + 1, h, wd, out) == -1 && strstr(err_msg(), "work memory"),
          "%s decode beyond the arena: %s", fam, err_msg());
    CHECK(vae_encode(m, img, B, H + 1, W, mean, logvar) == -1, "%s encode of a size that does not divide", fam);
    vae_free(m);
    free(img), free(mean_r), free(logvar_r), free(mean), free(logvar), free(out), free(z), free(dec_r);
}

static void test_unet(const char *fam, st_file *r, const unet_config *uc, weights *w, int quick)
{
    const st_tensor *x_t = ref(r, "unet.x"), *ctx_t = ref(r, "clip.hidden");
    if (!x_t || !ctx_t) return;
    int B = (int)x_t->shape[0], h = (int)x_t->shape[2], wd = (int)x_t->shape[3], L = (int)ctx_t->shape[1];
    unet_model *m = unet_load(uc, w, be, B, h, wd, L);
    CHECK(m != NULL, "%s unet_load: %s", fam, err_msg());
    if (!m) return;
    float *x = ref_f32(r, "unet.x"), *ctx = ref_f32(r, "clip.hidden");  /* rows 0 ("") and 1 are the context */
    size_t n = (size_t)B * uc->out_channels * h * wd, n1 = n / B;
    float *out = malloc(n * sizeof(float)), *want[3];
    const int ts[3] = {999, 500, 1};
    for (int i = 0; i < 3; i++) {
        char name[32];
        snprintf(name, sizeof name, "unet.out.t%d", ts[i]);
        want[i] = ref_f32(r, name);
        if (quick && i == 1) continue;
        float t[2] = {(float)ts[i], (float)ts[i]};
        CHECK(!unet_forward(m, x, t, NULL, ctx, B, h, wd, L, out), "%s unet_forward: %s", fam, err_msg());
        snprintf(name, sizeof name, "unet t=%d batch %d", ts[i], B);
        expect(fam, name, out, want[i], n);
    }
    if (!quick) {
        /* per-item timesteps in one batch, and an item alone */
        float t2[2] = {999, 1};
        CHECK(!unet_forward(m, x, t2, NULL, ctx, 2, h, wd, L, out), "%s unet_forward: %s", fam, err_msg());
        expect(fam, "unet t=[999,1] item 0", out, want[0], n1);
        expect(fam, "unet t=[999,1] item 1", out + n1, want[2] + n1, n1);
        float t1 = 500;
        CHECK(!unet_forward(m, x + n1, &t1, NULL, ctx + (size_t)L * uc->cross_attention_dim, 1, h, wd, L, out),
              "%s unet_forward B=1: %s", fam, err_msg());
        expect(fam, "unet t=500 item 1 alone", out, want[1] + n1, n1);
        CHECK(unet_forward(m, x, t2, NULL, ctx, 3, h, wd, L, out) == -1 && strstr(err_msg(), "work memory"),
              "%s batch beyond the arena: %s", fam, err_msg());
        x[7] = NAN;
        CHECK(unet_forward(m, x, t2, NULL, ctx, B, h, wd, L, out) == -1 && strstr(err_msg(), "non-finite") &&
                  strstr(err_msg(), "unet"),
              "%s NaN input: %s", fam, err_msg());
    }
    unet_free(m);
    for (int i = 0; i < 3; i++) free(want[i]);
    free(x), free(ctx), free(out);
}

static void test_family(const char *fam)
{
    char dir[256], path[512];
    snprintf(dir, sizeof dir, "tests/fixtures/%s", fam);
    unet_config uc;
    vae_config vc;
    clip_config cc;
    CHECK(!sd_load_configs(dir, &uc, &vc, &cc, NULL), "%s configs: %s", fam, err_msg());
    snprintf(path, sizeof path, "%s/refs.safetensors", dir);
    st_file *r = st_open(path);
    CHECK(r != NULL, "%s: %s", path, err_msg());
    if (!r) return;
    weights *wc = open1(dir, "text_encoder/model.safetensors");
    weights *wv = open1(dir, "vae/diffusion_pytorch_model.safetensors");
    weights *wu = open1(dir, "unet/diffusion_pytorch_model.safetensors");
    if (wc) test_clip(fam, r, &cc, wc);
    if (wv) test_vae(fam, r, &vc, wv);
    if (wu) test_unet(fam, r, &uc, wu, 0);
    weights_close(wc), weights_close(wv), weights_close(wu);
    st_close(r);
}

/* The same sd-tiny-b weights as one LDM checkpoint, read through model_load's name maps (configs from the
 * diffusers folder): F16 tensors, VAE attention stored as 1x1 convs, reversed decoder block order. */
static void test_single_file(void)
{
    unet_config uc;
    vae_config vc;
    clip_config cc;
    int ok = !sd_load_configs("tests/fixtures/sd-tiny-b", &uc, &vc, &cc, NULL);
    CHECK(ok, "configs: %s", err_msg());
    st_file *r = st_open("tests/fixtures/sd-tiny-b/refs.safetensors");
    const char *p = "tests/fixtures/sd-tiny-b.safetensors";
    weights *w = weights_open(&p, 1);
    CHECK(w != NULL, "%s", err_msg());
    if (ok && r && w) {
        sd_ldm_map map = {.unet = &uc, .n_vae_blocks = vc.n_blocks, .clip_has_text_model = 1};
        weights_set_map(w, sd_map_clip, &map);
        test_clip("single", r, &cc, w);
        weights_set_map(w, sd_map_vae, &map);
        test_vae("single", r, &vc, w);
        weights_set_map(w, sd_map_unet, &map);
        test_unet("single", r, &uc, w, 1);
    }
    weights_close(w);
    st_close(r);
}

/* A copy of sd-tiny-a's UNet weights with one tensor dropped or reshaped must fail to load, naming it. */
static void test_bad_weights(void)
{
    const char *dir = "tests/fixtures/sd-tiny-a";
    unet_config uc;
    if (sd_load_configs(dir, &uc, NULL, NULL, NULL)) return;
    st_file *f = st_open("tests/fixtures/sd-tiny-a/unet/diffusion_pytorch_model.safetensors");
    CHECK(f != NULL, "%s", err_msg());
    if (!f) return;
    int n = st_count(f);
    const char **names = calloc(n, sizeof *names);
    const float **data = calloc(n, sizeof *data);
    float **bufs = calloc(n, sizeof *bufs);
    int *ndim = calloc(n, sizeof *ndim);
    int64_t (*shape)[ST_MAX_DIMS] = calloc(n, sizeof *shape);
    const char *victim = "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight";
    const char *tmpdir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char path[512];
    snprintf(path, sizeof path, "%s/test_nets_%d.safetensors", tmpdir, (int)getpid());
    for (int mode = 0; mode < 2; mode++) {
        int k = 0;
        for (int i = 0; i < n; i++) {
            const st_tensor *t = st_at(f, i);
            int hit = !strcmp(t->name, victim);
            if (hit && mode == 0) continue;                  /* missing */
            bufs[k] = malloc(t->numel * sizeof(float));
            st_to_f32(t, bufs[k]);
            names[k] = t->name;
            data[k] = bufs[k];
            ndim[k] = t->ndim;
            memcpy(shape[k], t->shape, sizeof shape[k]);
            if (hit) shape[k][1] -= 1, shape[k][0] = t->numel / shape[k][1];  /* same bytes, wrong shape */
            k++;
        }
        CHECK(!st_write_f32(path, k, names, data, ndim, (const int64_t(*)[ST_MAX_DIMS])shape), "write: %s", err_msg());
        for (int i = 0; i < k; i++) free(bufs[i]);
        const char *p = path;
        weights *w = weights_open(&p, 1);
        unet_model *m = w ? unet_load(&uc, w, be, 1, 8, 8, 77) : NULL;
        CHECK(!m && strstr(err_msg(), victim), "mode %d: load must fail naming %s: %s", mode, victim, err_msg());
        if (mode == 0) CHECK(strstr(err_msg(), "not found") != NULL, "missing: %s", err_msg());
        if (mode == 1) CHECK(strstr(err_msg(), "expected [16,32]") != NULL, "wrong shape: %s", err_msg());
        printf("  bad weights (%s): %s\n", mode ? "wrong shape" : "missing", err_msg());
        unet_free(m);
        weights_close(w);
    }
    unlink(path);
    free(names), free(data), free(bufs), free(ndim), free(shape);
    st_close(f);
}

/* The whole UNet on 1 and on 2 threads: bitwise the same output. */
static void test_threads(void)
{
    const char *dir = "tests/fixtures/sd-tiny-b";
    unet_config uc;
    if (sd_load_configs(dir, &uc, NULL, NULL, NULL)) return;
    st_file *r = st_open("tests/fixtures/sd-tiny-b/refs.safetensors");
    weights *w = open1(dir, "unet/diffusion_pytorch_model.safetensors");
    ops_backend *b1 = ops_cpu_create(1), *b2 = ops_cpu_create(2);
    if (r && w && b1 && b2) {
        float *x = ref_f32(r, "unet.x"), *ctx = ref_f32(r, "clip.hidden"), *o[2];
        float t[2] = {999, 1};
        size_t n = 2 * 4 * 8 * 8;
        for (int k = 0; k < 2; k++) {
            unet_model *m = unet_load(&uc, w, k ? b2 : b1, 2, 8, 8, 77);
            o[k] = calloc(n, sizeof(float));
            CHECK(m && !unet_forward(m, x, t, NULL, ctx, 2, 8, 8, 77, o[k]), "%s", err_msg());
            unet_free(m);
        }
        CHECK(!memcmp(o[0], o[1], n * sizeof(float)), "UNet output depends on the thread count");
        free(x), free(ctx), free(o[0]), free(o[1]);
    }
    if (b1) b1->destroy(b1);
    if (b2) b2->destroy(b2);
    weights_close(w);
    st_close(r);
}

int main(void)
{
    be = ops_cpu_create(0);
    CHECK(be != NULL, "%s", err_msg());
    if (!be) return check_done("test_nets");
    test_family("sd-tiny-a");
    test_family("sd-tiny-b");
    test_single_file();
    test_bad_weights();
    test_threads();
    be->destroy(be);
    return check_done("test_nets");
}

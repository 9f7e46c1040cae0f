/* The engine end to end against the PyTorch reference (scripts/sd_ref.py, diffusers 0.19 semantics):
 * img2img and txt2img latent trajectories and decoded images for DDIM and DPM-Solver++ 2M with the stored noise,
 * on both tiny model families and on the single-file checkpoint; batch composition; argument errors. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "tests/check.h"
#include "src/cmd/cli.h"
#include "augment/engine/engine.h"
#include "common/err.h"
#include "common/font.h"
#include "common/imgio.h"
#include "augment/engine/safetensors.h"

#define FIX "tests/fixtures/"
#define MAXB 4

typedef struct {
    st_file *f;
    float *buf[64];
    int n;
} refs;

static const float *ref(refs *r, const char *name, size_t numel)
{
    const st_tensor *t = st_find(r->f, name);
    CHECK(t != NULL, "reference %s missing", name);
    if (!t || (size_t)t->numel != numel) {
        CHECK(t == NULL, "reference %s has %lld values, expected %zu", name, t ? (long long)t->numel : 0LL, numel);
        return NULL;
    }
    float *b = malloc(sizeof(float) * numel);
    st_to_f32(t, b);
    r->buf[r->n++] = b;
    return b;
}

static void refs_close(refs *r)
{
    for (int i = 0; i < r->n; i++) free(r->buf[i]);
    st_close(r->f);
}

/* latents per item: lat[item][0] initial, lat[item][i + 1] after the step at schedule index i */
typedef struct {
    size_t nl;
    float *lat[MAXB][64];
} tracer;

static void trace_fn(void *ctx, int item, int step_index, const float *x)
{
    tracer *t = ctx;
    if (item < MAXB && step_index + 1 < 64) {
        if (!t->lat[item][step_index + 1]) t->lat[item][step_index + 1] = malloc(sizeof(float) * t->nl);
        memcpy(t->lat[item][step_index + 1], x, sizeof(float) * t->nl);
    }
}

static void tracer_free(tracer *t)
{
    for (int i = 0; i < MAXB; i++)
        for (int j = 0; j < 64; j++) free(t->lat[i][j]), t->lat[i][j] = NULL;
}

static float *load_image(const char *path, int W, int H)
{
    img_u8 im = {0};
    if (imgio_load(path, 0, 0, &im)) {
        CHECK(0, "%s", err_msg());
        return NULL;
    }
    CHECK(im.w == W && im.h == H, "%s is %dx%d, expected %dx%d", path, im.w, im.h, W, H);
    float *p = malloc(sizeof(float) * 3 * W * H);
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < W * H; i++) p[c * W * H + i] = im.rgb[i * 3 + c] / 255.0f;
    imgio_free(&im);
    return p;
}

/* One fixture run: img2img (or txt2img) of the two reference items, compared step by step. */
static void check_run(const char *family, const char *model, const char *config_dir, enum sd_sched_kind kind,
                      int txt2img)
{
    char p[512];
    const char *sk = kind == SD_SCHED_DDIM ? "ddim" : "dpm";
    const char *mode = txt2img ? "txt2img" : "img2img";
    snprintf(p, sizeof p, FIX "%s/refs.safetensors", family);
    refs r = {.f = st_open(p)};
    CHECK(r.f != NULL, "%s", err_msg());
    if (!r.f) return;
    tracer tr = {0};
    engine_opts o;
    engine_opts_default(&o);
    o.model = model;
    o.config_dir = config_dir;
    o.threads = 2;
    o.max_batch = MAXB;
    o.vae_batch = 2;
    o.scheduler = kind;
    o.steps = txt2img ? 3 : 5;             /* refs.json: txt2img 3 steps; img2img 5 steps at strength 0.6 */
    o.trace = trace_fn;
    o.trace_ctx = &tr;
    engine *e = engine_load(&o);
    CHECK(e != NULL, "%s: %s", model, err_msg());
    if (!e) {
        refs_close(&r);
        return;
    }
    engine_info info;
    engine_get_info(e, &info);
    const size_t nl = (size_t)info.latent_channels * info.latent_h * info.latent_w;
    const size_t ni = (size_t)3 * info.height * info.width;
    tr.nl = nl;
    const char *prompts[2] = {"a photo of a cat.", "A photo of a tench, Tinca tinca"};
    snprintf(p, sizeof p, "%s.%s.latents", mode, sk);
    const float *want_lat = ref(&r, p, 3 * 2 * nl);
    snprintf(p, sizeof p, "%s.%s.image", mode, sk);
    const float *want_img = ref(&r, p, 2 * ni);
    const float *vae_noise = ref(&r, "img2img.vae_noise", 2 * nl);
    const float *lat_noise = ref(&r, "img2img.latent_noise", 2 * nl);
    snprintf(p, sizeof p, "img2img.%s.x_init", sk);
    const float *want_init = txt2img ? lat_noise : ref(&r, p, 2 * nl);
    float *img[2] = {0}, *out[MAXB];
    for (int k = 0; k < MAXB; k++) out[k] = calloc(ni, sizeof(float));
    if (!txt2img)
        for (int k = 0; k < 2; k++) {
            snprintf(p, sizeof p, FIX "%s/img%d.png", family, k);
            img[k] = load_image(p, info.width, info.height);
        }
    engine_item it[MAXB];
    memset(it, 0, sizeof it);
    for (int k = 0; k < 2; k++) {
        it[k].image = img[k];
        it[k].prompt = engine_prompt(e, prompts[k]);
        CHECK(it[k].prompt >= 0, "%s", err_msg());
        it[k].r = 0.6;
        it[k].out = out[k];
        it[k].vae_noise = vae_noise ? vae_noise + k * nl : NULL;
        it[k].latent_noise = lat_noise ? lat_noise + k * nl : NULL;
    }
    if (!want_lat || !want_img || !vae_noise || !lat_noise || !want_init || (!txt2img && (!img[0] || !img[1])))
        goto done;

    /* both items as one batch: trajectory and image against the reference */
    CHECK(engine_img2img(e, it, 2) == 0, "%s %s %s: %s", model, mode, sk, err_msg());
    const int first = txt2img ? 0 : 2;    /* N - int(N * 0.6) = 2 */
    for (int k = 0; k < 2; k++) {
        double d = tr.lat[k][0] ? check_max_abs(tr.lat[k][0], want_init + k * nl, nl) : INFINITY;
        CHECK(d <= 1e-4, "%s %s %s item %d: initial latents differ by %g", model, mode, sk, k, d);
        for (int s = 0; s < 3; s++) {
            const float *got = tr.lat[k][first + s + 1];
            d = got ? check_max_abs(got, want_lat + (s * 2 + k) * nl, nl) : INFINITY;
            CHECK(d <= 2e-4, "%s %s %s item %d: latents after step %d differ by %g", model, mode, sk, k, s + 1, d);
        }
        d = check_max_abs(out[k], want_img + k * ni, ni);
        CHECK(d <= 2e-4, "%s %s %s item %d: decoded image differs by %g", model, mode, sk, k, d);
    }

    /* batch 1, and batched behind an item of another strength (joins later) and one that starts earlier:
     * an item's result does not depend on its company */
    float *alone = malloc(sizeof(float) * ni);
    memcpy(alone, out[1], sizeof(float) * ni);
    engine_item one = it[1];
    one.out = out[2];
    CHECK(engine_img2img(e, &one, 1) == 0, "%s", err_msg());
    CHECK(check_max_abs(out[2], alone, ni) <= 1e-5, "%s %s %s: batch 1 differs from batch 2 by %g", model, mode, sk,
          check_max_abs(out[2], alone, ni));
    if (!txt2img) {
        engine_item mix[3] = {it[0], it[1], it[1]};
        mix[0].r = 1.0;                    /* starts at index 0 */
        mix[0].out = out[3];
        mix[1].out = out[2];
        mix[2].r = 0.2;                    /* one step, joins at index 4 */
        mix[2].out = out[0];
        mix[2].vae_noise = mix[2].latent_noise = NULL;
        mix[2].seed = 7;
        CHECK(engine_img2img(e, mix, 3) == 0, "%s", err_msg());
        CHECK(check_max_abs(out[2], alone, ni) <= 1e-5, "%s %s: item in a mixed-r batch differs by %g", model, sk,
              check_max_abs(out[2], alone, ni));
        /* the r = 0.2 item alone gives the same as inside the batch */
        engine_item solo = mix[2];
        float *again = malloc(sizeof(float) * ni);
        solo.out = again;
        CHECK(engine_img2img(e, &solo, 1) == 0, "%s", err_msg());
        CHECK(check_max_abs(again, out[0], ni) <= 1e-5, "Philox-noised item depends on its batch (%g)",
              check_max_abs(again, out[0], ni));
        free(again);
    }
    free(alone);
    if (!txt2img) {
        /* strengths 0.4 and 1.0 (still from the image: add_noise at the first timestep) in one mixed batch */
        snprintf(p, sizeof p, "img2img.%s.r04.final", sk);
        const float *want04 = ref(&r, p, 2 * nl);
        snprintf(p, sizeof p, "img2img.%s.r10.final", sk);
        const float *want10 = ref(&r, p, 2 * nl);
        float *lat[MAXB];
        engine_item mix[MAXB];
        for (int k = 0; k < MAXB; k++) {
            mix[k] = it[k % 2];
            mix[k].r = k < 2 ? 0.4 : 1.0;
            mix[k].out = out[k];
            mix[k].latents_out = lat[k] = malloc(sizeof(float) * nl);
        }
        CHECK(engine_img2img(e, mix, MAXB) == 0, "%s", err_msg());
        for (int k = 0; k < MAXB && want04 && want10; k++) {
            const float *want = (k < 2 ? want04 : want10) + (k % 2) * nl;
            double d = check_max_abs(lat[k], want, nl);
            CHECK(d <= 2e-4, "%s %s item %d at r=%.1f: final latents differ by %g", model, sk, k % 2, mix[k].r, d);
        }
        for (int k = 0; k < MAXB; k++) free(lat[k]);
    }
done:
    engine_free(e);
    for (int k = 0; k < 2; k++) free(img[k]);
    for (int k = 0; k < MAXB; k++) free(out[k]);
    tracer_free(&tr);
    refs_close(&r);
}

/* z0 from the posterior mean instead of a sample (engine option vae_mean) */
static void check_mean(const char *family, enum sd_sched_kind kind)
{
    char p[512];
    const char *sk = kind == SD_SCHED_DDIM ? "ddim" : "dpm";
    snprintf(p, sizeof p, FIX "%s/refs.safetensors", family);
    refs r = {.f = st_open(p)};
    CHECK(r.f != NULL, "%s", err_msg());
    if (!r.f) return;
    engine_opts o;
    engine_opts_default(&o);
    snprintf(p, sizeof p, FIX "%s", family);
    o.model = p;
    o.max_batch = 2;
    o.scheduler = kind;
    o.steps = 5;
    o.vae_mean = 1;
    engine *e = engine_load(&o);
    CHECK(e != NULL, "%s", err_msg());
    if (e) {
        engine_info info;
        engine_get_info(e, &info);
        const size_t nl = (size_t)info.latent_channels * info.latent_h * info.latent_w;
        const size_t ni = (size_t)3 * info.height * info.width;
        const float *lat_noise = ref(&r, "img2img.latent_noise", 2 * nl);
        char name[64];
        snprintf(name, sizeof name, "img2img.%s.mean.final", sk);
        const float *want = ref(&r, name, 2 * nl);
        const char *prompts[2] = {"a photo of a cat.", "A photo of a tench, Tinca tinca"};
        engine_item it[2];
        float *img[2], *out[2], *lat[2];
        memset(it, 0, sizeof it);
        for (int k = 0; k < 2; k++) {
            snprintf(p, sizeof p, FIX "%s/img%d.png", family, k);
            img[k] = load_image(p, info.width, info.height);
            out[k] = malloc(sizeof(float) * ni);
            lat[k] = malloc(sizeof(float) * nl);
            it[k] = (engine_item){.image = img[k], .prompt = engine_prompt(e, prompts[k]), .r = 0.6, .out = out[k],
                                  .latent_noise = lat_noise ? lat_noise + k * nl : NULL, .latents_out = lat[k]};
        }
        if (want && lat_noise && img[0] && img[1]) {
            CHECK(engine_img2img(e, it, 2) == 0, "%s", err_msg());
            for (int k = 0; k < 2; k++) {
                double d = check_max_abs(lat[k], want + k * nl, nl);
                CHECK(d <= 2e-4, "%s %s item %d: posterior-mean final latents differ by %g", family, sk, k, d);
            }
        }
        for (int k = 0; k < 2; k++) free(img[k]), free(out[k]), free(lat[k]);
        engine_free(e);
    }
    refs_close(&r);
}

static void check_errors(void)
{
    engine_opts o;
    engine_opts_default(&o);
    o.model = FIX "sd-tiny-a";
    o.steps = 5;
    o.max_batch = 2;
    engine *e = engine_load(&o);
    CHECK(e != NULL, "%s", err_msg());
    if (!e) return;
    engine_info info;
    engine_get_info(e, &info);
    CHECK(info.height == 16 && info.width == 16 && info.latent_h == 8 && info.latent_channels == 4,
          "model size from sample_size x VAE factor: %dx%d", info.width, info.height);
    size_t ni = (size_t)3 * info.height * info.width;
    float *src = calloc(ni, sizeof(float)), *out = calloc(ni, sizeof(float));
    for (size_t i = 0; i < ni; i++) src[i] = (float)(i % 17) / 16.0f;
    int empty = engine_prompt(e, "");
    CHECK(empty >= 0 && engine_prompt(e, "") == empty, "empty prompt allowed and cached");
    int cat = engine_prompt(e, "a photo of a cat.");
    CHECK(cat >= 0 && cat != empty && engine_prompt(e, "a photo of a cat.") == cat, "prompt cache");
    engine_item it = {.image = src, .prompt = empty, .r = 0.8, .seed = 3, .out = out};
    CHECK(engine_img2img(e, &it, 1) == 0, "empty prompt: %s", err_msg());
    double bad_r[4] = {0.0, -0.5, 1.5, NAN};
    for (int i = 0; i < 4; i++) {
        it.r = bad_r[i];
        CHECK(engine_img2img(e, &it, 1) == -1 && strstr(err_msg(), "r ="), "r = %g accepted", bad_r[i]);
    }
    it.r = 0.1;                          /* int(5 * 0.1) = 0 steps */
    CHECK(engine_img2img(e, &it, 1) == -1 && strstr(err_msg(), "no denoising step"), "r too small: %s", err_msg());
    it.r = 0.5;
    it.prompt = 99;
    CHECK(engine_img2img(e, &it, 1) == -1 && strstr(err_msg(), "prompt"), "bad prompt handle");
    it.prompt = cat;
    engine_item three[3] = {it, it, it};
    CHECK(engine_img2img(e, three, 3) == -1, "more items than max_batch refused");

    /* same seed -> same result; another seed -> another result */
    float *out2 = calloc(ni, sizeof(float));
    CHECK(engine_img2img(e, &it, 1) == 0, "%s", err_msg());
    it.out = out2;
    CHECK(engine_img2img(e, &it, 1) == 0 && check_max_abs(out, out2, ni) == 0, "same seed reproduces");
    it.seed = 4;
    CHECK(engine_img2img(e, &it, 1) == 0 && check_max_abs(out, out2, ni) > 1e-3, "another seed differs");
    engine_free(e);

    /* CFG off (guidance 1): eps is the conditional prediction alone, a different image */
    o.guidance = 1.0;
    e = engine_load(&o);
    CHECK(e != NULL, "%s", err_msg());
    if (e) {
        it.prompt = engine_prompt(e, "a photo of a cat.");
        it.out = out;
        CHECK(engine_img2img(e, &it, 1) == 0 && check_max_abs(out, out2, ni) > 1e-3, "guidance 1 differs from 7.5");
        engine_free(e);
    }
    o.height = 18;
    CHECK(engine_load(&o) == NULL && strstr(err_msg(), "multiple"), "bad size: %s", err_msg());
    o.height = 0;
    o.model = FIX "no-such-model";
    CHECK(engine_load(&o) == NULL && strstr(err_msg(), "no-such-model"), "missing model: %s", err_msg());
    free(src);
    free(out);
    free(out2);
}

/* NaN in the latents is an error naming the step */
static void check_nan(void)
{
    engine_opts o;
    engine_opts_default(&o);
    o.model = FIX "sd-tiny-a";
    o.steps = 5;
    engine *e = engine_load(&o);
    CHECK(e != NULL, "%s", err_msg());
    if (!e) return;
    engine_info info;
    engine_get_info(e, &info);
    size_t nl = (size_t)info.latent_channels * info.latent_h * info.latent_w, ni = (size_t)3 * info.height * info.width;
    float *noise = calloc(nl, sizeof(float)), *out = calloc(ni, sizeof(float));
    noise[5] = NAN;
    engine_item it = {.prompt = engine_prompt(e, "a photo of a cat."), .r = 1.0, .out = out, .latent_noise = noise};
    CHECK(engine_img2img(e, &it, 1) == -1 && strstr(err_msg(), "step 1/5"), "NaN latents: %s", err_msg());
    free(noise);
    free(out);
    engine_free(e);
}

/* genie img2img / sweep through the CLI: the PNG is the reference image as 8 bits */
static void check_cli(void)
{
    refs r = {.f = st_open(FIX "sd-tiny-a/refs.safetensors")};
    CHECK(r.f != NULL, "%s", err_msg());
    if (!r.f) return;
    const size_t ni = 3 * 16 * 16;
    const float *want = ref(&r, "img2img.ddim.image", 2 * ni);
    char out[256], strip[256];
    snprintf(out, sizeof out, "build/genie-test-engine-%d.png", (int)getpid());
    snprintf(strip, sizeof strip, "build/genie-test-engine-strip-%d.png", (int)getpid());
    char *argv[] = {"-model", FIX "sd-tiny-a", "-i", FIX "sd-tiny-a/img0.png", "-p", "a photo of a cat.",
                    "-r", "0.6", "-steps", "5", "-scheduler", "ddim", "-noise", FIX "sd-tiny-a/noise.safetensors",
                    "-threads", "1", "-o", out};
    CHECK(cli_img2img(sizeof argv / sizeof argv[0], argv) == 0, "genie img2img failed");
    img_u8 im = {0};
    if (want && imgio_load(out, 0, 0, &im) == 0) {
        CHECK(im.w == 16 && im.h == 16, "output is %dx%d", im.w, im.h);
        int worst = 0;
        for (int c = 0; c < 3; c++)
            for (int i = 0; i < 256; i++) {
                int d = abs((int)im.rgb[i * 3 + c] - (int)lrintf(want[c * 256 + i] * 255.0f));
                if (d > worst) worst = d;
            }
        CHECK(worst <= 1, "PNG differs from round(reference * 255) by %d levels", worst);
    } else {
        CHECK(0, "cannot read %s: %s", out, err_msg());
    }
    char *sweep[] = {"-model", FIX "sd-tiny-a", "-i", FIX "sd-tiny-a/img1.png", "-p", "a photo", "-steps",
                     "10", "-size", "32x32", "-o", strip};
    CHECK(cli_sweep(sizeof sweep / sizeof sweep[0], sweep) == 0, "genie sweep failed");
    if (imgio_load(strip, 0, 0, &im) == 0) {
        /* 11 tiles of 32 px under a band of darknet's glyphs (the font's height + 2), dark ink on white */
        font *fnt = font_load(FONT_DARKNET_DIR, 0);
        int band = fnt ? font_height(fnt) + 2 : -1, dark = 0;
        font_free(fnt);
        CHECK(im.w == 11 * 32 && im.h == 32 + band, "strip is %dx%d (label band %d)", im.w, im.h, band);
        for (int x = 32; x < im.w; x++)
            for (int y = 0; y < band && y < im.h; y++) dark += im.rgb[((size_t)y * im.w + x) * 3] < 100;
        CHECK(dark > 10 * 20, "labels drawn (%d dark pixels)", dark);
    }
    char *bad[] = {"-model", FIX "sd-tiny-a", "-i", FIX "sd-tiny-a/img0.png", "-r", "2", "-o", out};
    CHECK(cli_img2img(sizeof bad / sizeof bad[0], bad) == -1 && strstr(err_msg(), "-r"), "r = 2 accepted by the CLI");
    char *bad2[] = {"-model", FIX "sd-tiny-a", "-steps", "x", "-o", out};
    CHECK(cli_txt2img(sizeof bad2 / sizeof bad2[0], bad2) == -1 && strstr(err_msg(), "-steps"), "bad -steps");
    /* options a command does not use are refused, not dropped */
    char *t2i_i[] = {"-model", FIX "sd-tiny-a", "-i", FIX "sd-tiny-a/img0.png", "-o", out};
    CHECK(cli_txt2img(sizeof t2i_i / sizeof t2i_i[0], t2i_i) == -1 && strstr(err_msg(), "txt2img: -i is not used"),
          "txt2img -i: %s", err_msg());
    char *t2i_r[] = {"-model", FIX "sd-tiny-a", "-r", "0.5", "-o", out};
    CHECK(cli_txt2img(sizeof t2i_r / sizeof t2i_r[0], t2i_r) == -1 && strstr(err_msg(), "txt2img: -r is not used"),
          "txt2img -r: %s", err_msg());
    char *sw_r[] = {"-model", FIX "sd-tiny-a", "-i", FIX "sd-tiny-a/img1.png", "-r", "0.5", "-o", strip};
    CHECK(cli_sweep(sizeof sw_r / sizeof sw_r[0], sw_r) == -1 && strstr(err_msg(), "sweep: -r is not used"),
          "sweep -r: %s", err_msg());
    /* a missing output directory is said before the model loads, against the output's name */
    char *nodir[] = {"-model", FIX "sd-tiny-a", "-steps", "1", "-o", "build/no/such/dir/x.png"};
    CHECK(cli_txt2img(sizeof nodir / sizeof nodir[0], nodir) == -1 && strstr(err_msg(), "x.png: directory") &&
              !strstr(err_msg(), ".tmp"),
          "missing directory: %s", err_msg());
    /* -max-pixels below the source's size: a clean error (and, under ASan, no leak of the half-loaded file) */
    char *small[] = {"-model", FIX "sd-tiny-a", "-i", FIX "sd-tiny-a/img0.png", "-p", "x", "-steps", "2", "-max-pixels",
                     "10", "-o", out};
    CHECK(cli_img2img(sizeof small / sizeof small[0], small) == -1 && strstr(err_msg(), "img0.png"), "-max-pixels: %s",
          err_msg());
    /* a prompt past the text encoder's 77 tokens: said, not cut silently */
    char said_long[4096], cmd_long[1024] = "$G txt2img -model data/models/fmnist-ldm -steps 1 -o build/genie-test-long.png -p 'A";
    for (int i = 0; i < 90; i++) strcat(cmd_long, " very");
    strcat(cmd_long, " long coat'");
    int rc_long = check_sh(cmd_long, said_long, sizeof said_long);
    CHECK(rc_long == 0 && strstr(said_long, " tokens; the text encoder takes 75, the rest is cut"),
          "a 93-word prompt: rc %d: %s", rc_long, said_long);
    remove("build/genie-test-long.png");
    /* more engine threads than cores: capped, said once */
    char cmd[512], said[4096];
    snprintf(cmd, sizeof cmd, "$G txt2img -model %ssd-tiny-a -steps 1 -threads 1000 -o %s", FIX, out);
    int rc = check_sh(cmd, said, sizeof said);
    CHECK(rc == 0 && strstr(said, "1000 engine threads asked") && strstr(said, "cores here: using"),
          "-threads 1000: rc %d: %s", rc, said);
    imgio_free(&im);
    remove(out);
    remove(strip);
    refs_close(&r);
}

int main(void)
{
    for (int kind = 0; kind < 2; kind++)
        for (int t2i = 0; t2i < 2; t2i++) {
            check_run("sd-tiny-a", FIX "sd-tiny-a", NULL, kind, t2i);
            check_run("sd-tiny-b", FIX "sd-tiny-b", NULL, kind, t2i);
        }
    /* the single-file checkpoint with the folder's configs gives the folder's results */
    check_run("sd-tiny-b", FIX "sd-tiny-b.safetensors", FIX "sd-tiny-b", SD_SCHED_DPMPP_2M, 0);
    for (int kind = 0; kind < 2; kind++) {
        check_mean("sd-tiny-a", kind);
        check_mean("sd-tiny-b", kind);
    }
    check_errors();
    check_nan();
    check_cli();
    return check_done("test_engine");
}

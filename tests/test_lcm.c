/* Latent consistency models against the PyTorch reference (scripts/sd_ref.py, diffusers 0.27's LCMScheduler,
 * TCDScheduler, cond_proj and LatentConsistencyModel(Img2Img)Pipeline; tests/fixtures/sd-tiny-lcm): the LCM
 * (and TCD) timesteps for several (steps, strength, original_inference_steps), one scheduler step (epsilon and
 * v-prediction, with and without the injected noise; TCD at eta 0, 0.3 and 1), the UNet with and without
 * timestep_cond, and txt2img / img2img end to end on the engine with its Philox noise between steps (TCD: img2img
 * at eta 0.3); the config keys, the scheduler names and what is refused. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tests/check.h"
#include "augment/engine/backend/ops.h"
#include "augment/engine/engine.h"
#include "augment/engine/model_load.h"
#include "augment/engine/safetensors.h"
#include "augment/engine/scheduler.h"
#include "augment/engine/unet.h"
#include "augment/engine/weights.h"
#include "common/err.h"
#include "common/imgio.h"

#define LCM "tests/fixtures/sd-tiny-lcm"
#define NL 256                  /* latents [4, 8, 8] */

static st_file *R;

/* a reference tensor as float32 (malloc'd), its value count in *n; NULL (and a failed check) when missing */
static float *ref(const char *name, size_t *n)
{
    const st_tensor *t = R ? st_find(R, name) : NULL;
    CHECK(t != NULL, "reference %s missing", name);
    if (!t) return NULL;
    float *b = malloc(sizeof(float) * (size_t)t->numel);
    st_to_f32(t, b);
    if (n) *n = (size_t)t->numel;
    return b;
}

static scheduler *make_sched(enum sd_sched_kind kind, int orig, int vpred)
{
    sched_config c;
    sd_default_configs(NULL, NULL, NULL, &c);
    c.original_inference_steps = orig;
    c.prediction_epsilon = !vpred;
    scheduler *s = scheduler_create(kind, &c);
    CHECK(s != NULL, "%s", err_msg());
    return s;
}

static void test_config(void)
{
    CHECK(scheduler_kind_parse("lcm") == SD_SCHED_LCM && !strcmp(scheduler_kind_name(SD_SCHED_LCM), "lcm") &&
              strstr(SCHEDULER_NAMES, "lcm"), "the name lcm");
    CHECK(scheduler_kind_parse("tcd") == SD_SCHED_TCD && !strcmp(scheduler_kind_name(SD_SCHED_TCD), "tcd") &&
              strstr(SCHEDULER_NAMES, "tcd"), "the name tcd");
    unet_config u;
    sched_config s;
    CHECK(sd_load_configs(LCM, &u, NULL, NULL, &s) == 0, "%s", err_msg());
    CHECK(u.time_cond_proj_dim == 8 && s.original_inference_steps == 50 && s.timestep_scaling == 10.0f &&
              s.prediction_epsilon, "sd-tiny-lcm configs: time_cond_proj_dim %d, original_inference_steps %d, "
          "timestep_scaling %g", u.time_cond_proj_dim, s.original_inference_steps, s.timestep_scaling);
    /* v-prediction is read, run by lcm and refused by the others */
    s.prediction_epsilon = 0;
    scheduler *d = scheduler_create(SD_SCHED_DDIM, &s);
    CHECK(!d && strstr(err_msg(), "epsilon"), "DDIM with v_prediction: %s", d ? "accepted" : err_msg());
    scheduler_free(d);
    scheduler *l = scheduler_create(SD_SCHED_LCM, &s);
    CHECK(l != NULL, "%s", err_msg());
    scheduler_free(l);
    l = scheduler_create(SD_SCHED_TCD, &s);
    CHECK(l != NULL, "tcd with v_prediction: %s", err_msg());
    /* eta is TCD's gamma in [0, 1] */
    CHECK(l && scheduler_set_eta(l, -0.1) == -1 && strstr(err_msg(), "eta") && scheduler_set_eta(l, 1.5) == -1 &&
              scheduler_set_eta(l, 1.0) == 0, "eta outside [0, 1] accepted");
    scheduler_free(l);
    /* a config without clip_sample takes each class's default, as diffusers' from_config does: DDIMScheduler
     * clips x0, LCMScheduler does not */
    FILE *f = fopen("build/tests/lcm-noclip.json", "w");
    CHECK(f && fputs("{\"beta_schedule\": \"scaled_linear\", \"beta_start\": 0.00085, \"beta_end\": 0.012}", f) >= 0 &&
              fclose(f) == 0, "write build/tests/lcm-noclip.json");
    CHECK(sd_parse_sched_config("build/tests/lcm-noclip.json", &s) == 0, "%s", err_msg());
    for (int k = 0; k < 2; k++) {
        scheduler *x = scheduler_create(k ? SD_SCHED_LCM : SD_SCHED_DDIM, &s);
        float prev[4] = {0};
        sched_state st;
        sched_state_init(&st, prev, 4);
        int start;
        ops_step c = {0};
        CHECK(x && !scheduler_set_timesteps(x, 4) && !scheduler_begin(x, &st, 1.0, &start) &&
                  !scheduler_prepare(x, &st, 0, &c), "%s", err_msg());
        CHECK(c.clip == !k, "%s without clip_sample: clip %d, diffusers' default %d", k ? "lcm" : "ddim", c.clip, !k);
        scheduler_free(x);
    }
    /* diffusers' single-file conversion maps no cond_proj: an LCM UNet config over a single file is refused */
    sd_model m;
    CHECK(sd_model_find("tests/fixtures/sd-tiny-b.safetensors", LCM, &m) == -1 && strstr(err_msg(), "cond_proj"),
          "single file with time_cond_proj_dim: %s", err_msg());
}

static void test_timesteps(void)
{
    /* (steps, strength %, original_inference_steps), as make_fixtures.py LCM_TIMESTEPS */
    static const int combos[][3] = {{4, 100, 50}, {4, 50, 50}, {2, 60, 50}, {1, 100, 50}, {8, 100, 20},
                                    {3, 30, 20},  {5, 70, 30}, {7, 100, 7}};
    for (size_t c = 0; c < sizeof combos / sizeof *combos; c++) {
        const int n = combos[c][0], orig = combos[c][2];
        const double r = combos[c][1] / 100.0;
        char name[64];
        snprintf(name, sizeof name, "lcm.t.n%d.s%d.o%d", n, combos[c][1], orig);
        size_t k = 0;
        float *want = ref(name, &k);
        /* TCDScheduler.set_timesteps is LCMScheduler's */
        scheduler *s = make_sched(c % 2 ? SD_SCHED_TCD : SD_SCHED_LCM, orig, 0);
        if (!want || !s) {
            free(want), scheduler_free(s);
            continue;
        }
        CHECK(scheduler_set_timesteps(s, n) == 0 && scheduler_num_steps(s) == n && k == (size_t)n, "%s: %s", name,
              err_msg());
        sched_state st;
        sched_state_init(&st, NULL, 0);
        int start = -1;
        CHECK(scheduler_begin(s, &st, r, &start) == 0 && start == 0, "%s: begin: %s", name, err_msg());
        int ok = 1;
        for (int i = 0; i < n; i++) ok &= scheduler_item_timestep(s, &st, i) == (int)want[i];
        CHECK(ok, "%s: timesteps differ from diffusers' (first %d, want %g)", name, scheduler_item_timestep(s, &st, 0),
              want[0]);
        scheduler_free(s);
        free(want);
    }
    /* the LCM paper's 4-step schedule; strength 1 is the shared schedule */
    scheduler *s = make_sched(SD_SCHED_LCM, 50, 0);
    if (!s) return;
    CHECK(scheduler_set_timesteps(s, 4) == 0, "%s", err_msg());
    CHECK(scheduler_timestep(s, 0) == 999 && scheduler_timestep(s, 1) == 759 && scheduler_timestep(s, 2) == 499 &&
              scheduler_timestep(s, 3) == 259, "4 steps: 999, 759, 499, 259");
    sched_state st;
    sched_state_init(&st, NULL, 0);
    int start;
    /* int(50 * 0.06) = 3 original timesteps for 4 steps; strength outside (0, 1] */
    CHECK(scheduler_begin(s, &st, 0.06, &start) == -1 && strstr(err_msg(), "fewer than 4 steps"), "%s", err_msg());
    CHECK(scheduler_begin(s, &st, 0.0, &start) == -1 && scheduler_begin(s, &st, 1.5, &start) == -1, "strength range");
    CHECK(scheduler_set_timesteps(s, 51) == -1 && strstr(err_msg(), "original_inference_steps"), "%s", err_msg());
    scheduler_free(s);
}

/* eta < 0: LCM; else TCD at that eta (step index 1 injects noise when eta > 0, index 3 is the last) */
static void test_step(double eta)
{
    float *x = ref("step.x", NULL), *eps = ref("step.eps", NULL), *noise = ref("step.noise", NULL);
    for (int v = 0; v < 2 && x && eps && noise; v++)
        for (int i = 1; i <= 3; i += 2) {
            char name[48];
            if (eta < 0)
                snprintf(name, sizeof name, "step.%s.i%d", v ? "v" : "eps", i);
            else
                snprintf(name, sizeof name, "tcd.step.%s.e%d.i%d", v ? "v" : "eps", (int)lround(eta * 100), i);
            float *want = ref(name, NULL);
            scheduler *s = make_sched(eta < 0 ? SD_SCHED_LCM : SD_SCHED_TCD, 50, v);
            if (s && eta >= 0) CHECK(scheduler_set_eta(s, eta) == 0, "%s", err_msg());
            if (want && s && !scheduler_set_timesteps(s, 4)) {
                float y[64], nz[64];
                memcpy(y, x, sizeof y);
                memcpy(nz, noise, sizeof nz);
                sched_state st;
                sched_state_init(&st, nz, 64);
                int start;
                CHECK(scheduler_begin(s, &st, 1.0, &start) == 0, "%s", err_msg());
                CHECK(scheduler_step(s, &st, i, eps, y, 64) == 0, "%s: %s", name, err_msg());
                double d = check_max_abs(y, want, 64);
                CHECK(d <= 1e-5, "%s: step differs from diffusers' by %g", name, d);
            }
            scheduler_free(s);
            free(want);
        }
    free(x), free(eps), free(noise);
}

static void test_unet(void)
{
    unet_config uc;
    if (sd_load_configs(LCM, &uc, NULL, NULL, NULL)) {
        CHECK(0, "%s", err_msg());
        return;
    }
    const char *p = LCM "/unet/diffusion_pytorch_model.safetensors";
    weights *w = weights_open(&p, 1);
    ops_backend *be = ops_cpu_create(2);
    unet_model *m = w && be ? unet_load(&uc, w, be, 2, 8, 8, 77) : NULL;
    CHECK(m != NULL, "unet_load: %s", err_msg());
    float *x = ref("unet.x", NULL), *ctx = ref("unet.ctx", NULL), *tc = ref("unet.tcond", NULL);
    const char *names[3] = {"unet.out.t999", "unet.out.t259", "unet.nocond.t999"};
    const float ts[3] = {999, 259, 999};
    for (int k = 0; k < 3 && m && x && ctx && tc; k++) {
        float *want = ref(names[k], NULL), out[2 * NL], t[2] = {ts[k], ts[k]};
        CHECK(unet_forward(m, x, t, k < 2 ? tc : NULL, ctx, 2, 8, 8, 77, out) == 0, "%s", err_msg());
        double d = want ? check_max_abs(out, want, 2 * NL) : INFINITY;
        CHECK(d <= 1e-4, "%s: UNet output differs by %g", names[k], d);
        free(want);
    }
    free(x), free(ctx), free(tc);
    unet_free(m);
    weights_close(w);
    if (be) be->destroy(be);
}

typedef struct {
    float *lat[2][8];
} tracer;

static void trace_fn(void *ctx, int item, int step_index, const float *x)
{
    tracer *t = ctx;
    if (item < 2 && step_index + 1 < 8) {
        if (!t->lat[item][step_index + 1]) t->lat[item][step_index + 1] = malloc(sizeof(float) * NL);
        memcpy(t->lat[item][step_index + 1], x, sizeof(float) * NL);
    }
}

static float *load_image(const char *path)
{
    img_u8 im = {0};
    if (imgio_load(path, 0, 0, &im)) {
        CHECK(0, "%s", err_msg());
        return NULL;
    }
    float *p = malloc(sizeof(float) * 3 * 16 * 16);
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < 256; i++) p[c * 256 + i] = im.rgb[i * 3 + c] / 255.0f;
    imgio_free(&im);
    return p;
}

/* txt2img and img2img (strengths 0.5 and 0.8 in one batch) on the engine, step by step against the reference;
 * tcd: img2img with TCD at the fixtures' eta 0.3 */
static void test_engine(int img2img, int tcd)
{
    const char *mode = img2img ? "img2img" : "txt2img", *pre = tcd ? "tcd." : "";
    char what[24];
    snprintf(what, sizeof what, "%s%s", pre, mode);
    tracer tr = {0};
    engine_opts o;
    engine_opts_default(&o);
    o.model = LCM;
    o.threads = 2;
    o.max_batch = 2;
    o.vae_batch = 2;
    o.scheduler = tcd ? SD_SCHED_TCD : SD_SCHED_LCM;
    o.eta = 0.3;
    o.steps = 3;
    o.guidance = 8.5;
    o.trace = trace_fn;
    o.trace_ctx = &tr;
    engine *e = engine_load(&o);
    CHECK(e != NULL, "%s", err_msg());
    if (!e) return;
    /* guidance goes into the UNet's condition: no CFG pair, so the UNet was sized for 2 rows, not 4 */
    CHECK(engine_bench_unet(e, 3) == -1, "an LCM-distilled UNet runs one row per item");
    char name[64];
    snprintf(name, sizeof name, "%s%s.latents", pre, mode);
    float *want_lat = ref(name, NULL);
    snprintf(name, sizeof name, "%s%s.image", pre, mode);
    float *want_img = ref(name, NULL);
    /* TCD starts from LCM's timesteps: the same initial latents */
    snprintf(name, sizeof name, "%s.x_init", mode);
    float *want_init = ref(name, NULL);
    float *vn = ref("vae_noise", NULL), *ln = ref("latent_noise", NULL);
    const char *prompts[2] = {"a photo of a cat.", "A photo of a tench, Tinca tinca"};
    float *img[2] = {0}, *out[3];
    for (int k = 0; k < 3; k++) out[k] = calloc(3 * 256, sizeof(float));
    engine_item it[2];
    memset(it, 0, sizeof it);
    for (int k = 0; k < 2; k++) {
        if (img2img) {
            snprintf(name, sizeof name, "tests/fixtures/sd-tiny-a/img%d.png", k);
            img[k] = load_image(name);
        }
        it[k].image = img[k];
        it[k].prompt = engine_prompt(e, prompts[k]);
        it[k].r = k ? 0.8 : 0.5;
        it[k].seed = 5;
        it[k].stream = (uint64_t)k;
        it[k].out = out[k];
        it[k].vae_noise = vn ? vn + k * NL : NULL;
        it[k].latent_noise = ln ? ln + k * NL : NULL;
    }
    if (want_lat && want_img && want_init && vn && ln && (!img2img || (img[0] && img[1]))) {
        CHECK(engine_img2img(e, it, 2) == 0, "%s: %s", what, err_msg());
        for (int k = 0; k < 2; k++) {
            double d = tr.lat[k][0] ? check_max_abs(tr.lat[k][0], want_init + k * NL, NL) : INFINITY;
            CHECK(d <= 1e-4, "%s item %d: initial latents differ by %g", what, k, d);
            for (int s = 0; s < 3; s++) {
                d = tr.lat[k][s + 1] ? check_max_abs(tr.lat[k][s + 1], want_lat + (s * 2 + k) * NL, NL) : INFINITY;
                CHECK(d <= 2e-4, "%s item %d: latents after step %d differ by %g", what, k, s + 1, d);
            }
            d = check_max_abs(out[k], want_img + k * 3 * 256, 3 * 256);
            CHECK(d <= 2e-4, "%s item %d: decoded image differs by %g", what, k, d);
        }
        /* an item alone gives what it gave in the batch (its own schedule, its own noise) */
        engine_item one = it[1];
        one.out = out[2];
        CHECK(engine_img2img(e, &one, 1) == 0, "%s", err_msg());
        CHECK(check_max_abs(out[2], out[1], 3 * 256) <= 1e-5, "%s: batch 1 differs from batch 2 by %g", what,
              check_max_abs(out[2], out[1], 3 * 256));
        /* an item on another Philox stream gets other noise between steps */
        one.stream = 9;
        CHECK(engine_img2img(e, &one, 1) == 0 && check_max_abs(out[2], out[1], 3 * 256) > 1e-3,
              "%s: the injected noise does not follow the item's stream", what);
    }
    if (img2img) {
        engine_item bad = it[0];
        bad.r = 0.05;            /* int(50 * 0.05) = 2 original timesteps for 3 steps */
        CHECK(engine_img2img(e, &bad, 1) == -1 && strstr(err_msg(), "fewer than 3 steps"), "%s", err_msg());
    }
    engine_free(e);
    for (int k = 0; k < 2; k++) {
        free(img[k]);
        for (int s = 0; s < 8; s++) free(tr.lat[k][s]);
    }
    for (int k = 0; k < 3; k++) free(out[k]);
    free(want_lat), free(want_img), free(want_init), free(vn), free(ln);
}

int main(void)
{
    R = st_open(LCM "/refs.safetensors");
    CHECK(R != NULL, "%s", err_msg());
    test_config();
    test_timesteps();
    test_step(-1);
    test_step(0.0);
    test_step(0.3);
    test_step(1.0);
    test_unet();
    test_engine(0, 0);
    test_engine(1, 0);
    test_engine(1, 1);
    st_close(R);
    return check_done("test_lcm");
}

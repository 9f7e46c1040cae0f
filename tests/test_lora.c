/* LoRA files merged at load (augment/engine/lora.h) against the PyTorch reference (scripts/make_lora_fixtures.py:
 * the branches unmerged beside their layers, as diffusers 0.19 and kohya-ss compute them): CLIP and UNet outputs
 * and the img2img image of sd-tiny-a with a diffusers-format and a kohya-ss file (F16, alphas, 3x3 conv LoRA), the
 * CLI's -lora and genie.cfg's lora=, and the refusals: a key that matches nothing, a shape that does not fit, a
 * missing partner, a file that is not safetensors, PEFT's spelling, bad multipliers. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "tests/check.h"
#include "src/cmd/cli.h"
#include "augment/engine/backend/backend.h"
#include "augment/engine/clip.h"
#include "augment/engine/engine.h"
#include "augment/engine/lora.h"
#include "augment/engine/model_load.h"
#include "augment/engine/safetensors.h"
#include "augment/engine/unet.h"
#include "augment/engine/weights.h"
#include "augment/genie/genie_cfg.h"
#include "augment/genie/recipe.h"
#include "common/err.h"
#include "common/imgio.h"

#define FIX "tests/fixtures/"
#define LORA FIX "lora/"
#define TOL 1e-4

static float *ref(st_file *r, const char *name, size_t numel)
{
    const st_tensor *t = st_find(r, name);
    CHECK(t && (size_t)t->numel == numel, "reference %s missing or not %zu values", name, numel);
    if (!t || (size_t)t->numel != numel) return NULL;
    float *d = malloc(numel * sizeof *d);
    st_to_f32(t, d);
    return d;
}

static void expect(const char *what, const float *got, const float *want, size_t n, double tol)
{
    double e = want ? check_max_abs(got, want, n) : INFINITY;
    printf("  %-40s max abs err %.3g\n", what, e);
    CHECK(e <= tol, "%s: max abs error %g > %g", what, e, tol);
}

/* CLIP on prompts 0 and 1 and the UNet at t=500 on unet.x, with the LoRA `arg` merged; against the refs prefix. */
static void check_nets(const char *arg, const char *prefix, st_file *r, st_file *base)
{
    sd_model m;
    CHECK(!sd_model_find(FIX "sd-tiny-a", NULL, &m), "%s", err_msg());
    ops_backend *be = backend_create("cpu", 2, NULL);
    const char *up = m.unet_path, *cp = m.clip_path;
    weights *wu = weights_open(&up, 1), *wc = weights_open(&cp, 1);
    lora_set *l = lora_open(&arg, 1);
    CHECK(be && wu && wc && l, "%s: %s", arg, err_msg());
    if (!be || !wu || !wc || !l) goto out;
    weights_set_lora(wu, l, LORA_UNET);
    weights_set_lora(wc, l, LORA_TEXT);
    const int L = 77, C = m.clip.hidden_size;
    clip_model *clip = clip_load(&m.clip, wc, be, 2);
    unet_model *unet = unet_load(&m.unet, wu, be, 2, 8, 8, L);
    CHECK(clip && unet, "%s: %s", arg, err_msg());
    CHECK(!lora_check_used(l), "%s: %s", arg, err_msg());
    float *ids_f = ref(base, "tok.ids", 6 * L), *x = ref(base, "unet.x", 2 * 4 * 64);
    char name[128];
    snprintf(name, sizeof name, "%s.clip.hidden", prefix);
    float *want_h = ref(r, name, 2 * L * C);
    snprintf(name, sizeof name, "%s.unet.out", prefix);
    float *want_u = ref(r, name, 2 * 4 * 64);
    if (clip && unet && ids_f && x) {
        int ids[2 * 77];
        for (int i = 0; i < 2 * L; i++) ids[i] = (int)ids_f[i];
        float *h = malloc(sizeof(float) * 2 * L * C), out[2 * 4 * 64], t[2] = {500, 500};
        CHECK(!clip_encode(clip, ids, 2, L, h), "%s", err_msg());
        snprintf(name, sizeof name, "%s: clip last_hidden_state", arg);
        expect(name, h, want_h, (size_t)2 * L * C, TOL);
        /* the UNet on the reference context, so its error is its own */
        CHECK(!unet_forward(unet, x, t, NULL, want_h ? want_h : h, 2, 8, 8, L, out), "%s", err_msg());
        snprintf(name, sizeof name, "%s: unet t=500", arg);
        expect(name, out, want_u, 2 * 4 * 64, TOL);
        free(h);
    }
    clip_free(clip);
    unet_free(unet);
    free(ids_f), free(x), free(want_h), free(want_u);
out:
    lora_free(l);
    weights_close(wu), weights_close(wc);
    if (be) be->destroy(be);
}

/* The engine's img2img (DDIM, 5 steps, strength 0.6, the stored noise) with the LoRA `arg`. */
static void check_img2img(const char *arg, const char *prefix, st_file *r)
{
    engine_opts o;
    engine_opts_default(&o);
    o.model = FIX "sd-tiny-a";
    o.threads = 2;
    o.max_batch = 2;
    o.steps = 5;
    o.lora[o.n_lora++] = arg;
    engine *e = engine_load(&o);
    CHECK(e != NULL, "%s: %s", arg, err_msg());
    st_file *nf = st_open(FIX "sd-tiny-a/noise.safetensors");
    float *vn = nf ? ref(nf, "vae_noise", 2 * 256) : NULL, *ln = nf ? ref(nf, "latent_noise", 2 * 256) : NULL;
    char name[128];
    snprintf(name, sizeof name, "%s.img2img.image", prefix);
    float *want = ref(r, name, 2 * 3 * 256);
    const char *prompts[2] = {"a photo of a cat.", "A photo of a tench, Tinca tinca"};
    if (e && vn && ln) {
        engine_item it[2];
        float out[2][3 * 256], img[2][3 * 256];
        memset(it, 0, sizeof it);
        for (int k = 0; k < 2; k++) {
            char p[128];
            img_u8 im = {0};
            snprintf(p, sizeof p, FIX "sd-tiny-a/img%d.png", k);
            CHECK(!imgio_load(p, 0, 0, &im) && im.w == 16 && im.h == 16, "%s", p);
            for (int c = 0; c < 3; c++)
                for (int i = 0; i < 256 && im.rgb; i++) img[k][c * 256 + i] = im.rgb[i * 3 + c] / 255.0f;
            imgio_free(&im);
            it[k] = (engine_item){.image = img[k], .prompt = engine_prompt(e, prompts[k]), .r = 0.6,
                                  .out = out[k], .vae_noise = vn + k * 64 * 4, .latent_noise = ln + k * 64 * 4};
        }
        CHECK(!engine_img2img(e, it, 2), "%s", err_msg());
        snprintf(name, sizeof name, "%s: img2img image", arg);
        expect(name, out[0], want, 2 * 3 * 256, 2e-4);
    }
    engine_free(e);
    if (nf) st_close(nf);
    free(vn), free(ln), free(want);
}

/* The CLI's -lora gives the engine's image, 8-bit (row 0 of the kohya reference). */
static void check_cli(st_file *r)
{
    char out[256];
    snprintf(out, sizeof out, "build/genie-test-lora-%d.png", (int)getpid());
    char *argv[] = {"-model", FIX "sd-tiny-a", "-lora", LORA "kohya.safetensors:0.7", "-i", FIX "sd-tiny-a/img0.png",
                    "-p", "a photo of a cat.", "-r", "0.6", "-steps", "5", "-scheduler", "ddim",
                    "-noise", FIX "sd-tiny-a/noise.safetensors", "-threads", "1", "-o", out};
    CHECK(cli_img2img(sizeof argv / sizeof argv[0], argv) == 0, "genie img2img -lora: %s", err_msg());
    float *want = ref(r, "kohya.img2img.image", 2 * 3 * 256);
    img_u8 im = {0};
    if (want && !imgio_load(out, 0, 0, &im)) {
        int worst = 0;
        for (int c = 0; c < 3; c++)
            for (int i = 0; i < 256; i++) {
                int d = abs((int)im.rgb[i * 3 + c] - (int)lrintf(want[c * 256 + i] * 255.0f));
                if (d > worst) worst = d;
            }
        CHECK(worst <= 1, "-lora PNG differs from round(reference * 255) by %d levels", worst);
    } else {
        CHECK(0, "cannot read %s: %s", out, err_msg());
    }
    imgio_free(&im);
    free(want);
    remove(out);
    /* a repeatable option: more than LORA_MAX is refused by the parser */
    char *many[2 * LORA_MAX + 6] = {"-model", FIX "sd-tiny-a", "-o", out};
    for (int i = 0; i <= LORA_MAX; i++) many[4 + 2 * i] = "-lora", many[5 + 2 * i] = LORA "kohya.safetensors";
    CHECK(cli_txt2img(2 * LORA_MAX + 6, many) == -1 && strstr(err_msg(), "-lora given more than 8 times"),
          "9 x -lora: %s", err_msg());
}

/* engine_load with one LoRA file must fail with a message holding each of the words. */
static void refused(const char *arg, const char *what, const char *w1, const char *w2, const char *w3)
{
    engine_opts o;
    engine_opts_default(&o);
    o.model = FIX "sd-tiny-a";
    o.threads = 1;
    o.lora[o.n_lora++] = arg;
    engine *e = engine_load(&o);
    const char *m = err_msg();
    CHECK(!e && strstr(m, w1) && (!w2 || strstr(m, w2)) && (!w3 || strstr(m, w3)), "%s: %s", what,
          e ? "loaded" : m);
    engine_free(e);
}

static char written[16][256];
static int n_written;

static const char *write_lora(const char *tag, int n, const char *const *names, const int64_t (*shape)[ST_MAX_DIMS],
                              const int *ndim)
{
    char *p = written[n_written++ % 16];
    snprintf(p, 256, "build/test-lora-%s-%d.safetensors", tag, (int)getpid());
    float *zeros = calloc(4096, sizeof(float));
    const float *data[4] = {zeros, zeros, zeros, zeros};
    CHECK(!st_write_f32(p, n, names, data, ndim, shape), "%s", err_msg());
    free(zeros);
    return p;
}

static void check_refusals(void)
{
    const char *Q = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q";
    char dn[200], upn[200], al[200];
    snprintf(dn, sizeof dn, "%s.lora_down.weight", Q);
    snprintf(upn, sizeof upn, "%s.lora_up.weight", Q);
    snprintf(al, sizeof al, "%s.alpha", Q);
    int nd2[3] = {2, 2, 1};
    /* sd-tiny-a's attn1.to_q is [16, 16] */
    const int64_t ok[3][ST_MAX_DIMS] = {{4, 16}, {16, 4}, {1}};
    const char *names[3] = {dn, upn, al};
    const char *p = write_lora("ok", 3, names, ok, nd2);
    engine_opts o;
    engine_opts_default(&o);
    o.model = FIX "sd-tiny-a";
    o.threads = 1;
    o.lora[o.n_lora++] = p;
    engine *e = engine_load(&o);
    CHECK(e != NULL, "a well-formed zero LoRA: %s", err_msg());
    engine_free(e);

    const char *names_z[2] = {"lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_z.lora_down.weight",
                              "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_z.lora_up.weight"};
    refused(write_lora("nomatch", 2, names_z, ok, nd2), "a key matching nothing", names_z[0], "matches no weight",
            "UNet");
    const char *names_te[2] = {"lora_te_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight",
                               "lora_te_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_up.weight"};
    refused(write_lora("te", 2, names_te, ok, nd2), "a UNet module under lora_te_", names_te[0], "text encoder", NULL);
    const int64_t wide[2][ST_MAX_DIMS] = {{4, 17}, {16, 4}};
    refused(write_lora("shape", 2, names, wide, nd2), "a shape that does not fit", dn, "[4,17]", "[16,16]");
    const int64_t rank[2][ST_MAX_DIMS] = {{4, 16}, {16, 3}};
    refused(write_lora("rank", 2, names, rank, nd2), "ranks that differ", "[16,3]", "[4,16]", "do not fit");
    refused(write_lora("partner", 1, names, ok, nd2), "a down without its up", dn, "no partner", upn);
    const char *only_alpha[1] = {al};
    const int64_t one[1][ST_MAX_DIMS] = {{1}};
    int nd1[1] = {1};
    refused(write_lora("alpha", 1, only_alpha, one, nd1), "an alpha alone", al, "no lora_down", NULL);
    const char *peft[2] = {"unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight",
                           "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_B.weight"};
    refused(write_lora("peft", 2, peft, ok, nd2), "PEFT keys", peft[0], "lora_A/lora_B", NULL);
    const char *odd[2] = {"unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora.down.weight",
                          "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.alpha"};
    refused(write_lora("odd", 2, odd, ok, nd2), "a key of no known form", odd[1], "not a LoRA weight", NULL);
    const char *mixed[2] = {dn, "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora.up.weight"};
    refused(write_lora("mixed", 2, mixed, ok, nd2), "kohya and diffusers keys mixed", mixed[1], "kohya-ss", NULL);
    /* the old (unprefixed) diffusers format is the UNet's */
    const char *old[2] = {"down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_q_lora.down.weight",
                          "down_blocks.0.attentions.0.transformer_blocks.0.attn1.processor.to_q_lora.up.weight"};
    o.lora[0] = write_lora("old", 2, old, ok, nd2);
    e = engine_load(&o);
    CHECK(e != NULL, "the old diffusers format: %s", err_msg());
    engine_free(e);
    refused(FIX "sd-tiny-a/unet/config.json", "a file that is not safetensors", "sd-tiny-a/unet/config.json", "LoRA",
            NULL);
    refused("build/no-such-lora.safetensors", "a missing file", "build/no-such-lora.safetensors", NULL, NULL);

    char path[64];
    double s;
    CHECK(!lora_spec_parse("a.safetensors:0.5", path, sizeof path, &s) && !strcmp(path, "a.safetensors") && s == 0.5,
          "file:0.5 -> %s %g", path, s);
    CHECK(!lora_spec_parse("a.safetensors", path, sizeof path, &s) && !strcmp(path, "a.safetensors") && s == 1,
          "file alone");
    CHECK(!lora_spec_parse("dir:x/a.safetensors", path, sizeof path, &s) && !strcmp(path, "dir:x/a.safetensors") &&
              s == 1, "a ':' in the path: %s", path);
    CHECK(!lora_spec_parse("a:-1", path, sizeof path, &s) && s == -1, "negative multiplier");
    CHECK(lora_spec_parse("a.safetensors:1000", path, sizeof path, &s) == -1 && strstr(err_msg(), "-100..100"),
          "multiplier 1000: %s", err_msg());
    CHECK(lora_spec_parse(":0.5", path, sizeof path, &s) == -1 && strstr(err_msg(), "no file"), "no file");
    for (int i = 0; i < n_written && i < 16; i++) remove(written[i]);
}

/* genie.cfg's lora= (comma separated), its checks, and what recipe writes and stamps from it */
static void check_cfg(void)
{
    char p[128];
    snprintf(p, sizeof p, "build/test-lora-%d.cfg", (int)getpid());
    FILE *f = fopen(p, "w");
    fprintf(f, "[genie]\nmodel=" FIX "sd-tiny-a\nlora=" LORA "kohya.safetensors:0.7, " LORA "diffusers.safetensors\n");
    fclose(f);
    genie_cfg c;
    CHECK(!genie_cfg_read(p, &c), "%s", err_msg());
    CHECK(c.n_lora == 2 && !strcmp(c.lora[0], LORA "kohya.safetensors:0.7") &&
              !strcmp(c.lora[1], LORA "diffusers.safetensors"), "lora= read as %d entries", c.n_lora);
    char buf[4096] = "";
    FILE *m = fmemopen(buf, sizeof buf, "w");
    CHECK(!recipe_write_cfg(m, &c), "%s", err_msg());
    fclose(m);
    CHECK(strstr(buf, "\nlora=" LORA "kohya.safetensors:0.7," LORA "diffusers.safetensors\n") != NULL, "recipe: %s",
          buf);
    genie_opts go;
    genie_opts_default(&go);
    go.eo.lora[go.eo.n_lora++] = c.lora[0];
    char *labels[1] = {"a"}, *words[1] = {"a"}, s1[2048], s2[2048];
    CHECK(!recipe_settings(&go, labels, words, 1, 0, NULL, s1, sizeof s1) && strstr(s1, "LoRA " LORA "kohya"),
          "settings: %s", s1);
    go.eo.n_lora = 0;
    CHECK(!recipe_settings(&go, labels, words, 1, 0, NULL, s2, sizeof s2) && strcmp(s1, s2) && !strstr(s2, "LoRA"),
          "settings without LoRA: %s", s2);
    const char *bad[] = {"lora=" LORA "kohya.safetensors:500\n", "lora=build/no-such-lora.safetensors\n",
                         "lora=a,b,c,d,e,f,g,h,i\n"};
    const char *want[] = {"'lora'", "no-such-lora", "'lora'"};
    for (int i = 0; i < 3; i++) {
        f = fopen(p, "w");
        fprintf(f, "[genie]\nmodel=" FIX "sd-tiny-a\n%s", bad[i]);
        fclose(f);
        CHECK(genie_cfg_read(p, &c) == -1 && strstr(err_msg(), want[i]), "%s: %s", bad[i], err_msg());
    }
    remove(p);
}

int main(void)
{
    st_file *r = st_open(LORA "refs.safetensors"), *base = st_open(FIX "sd-tiny-a/refs.safetensors");
    CHECK(r && base, "%s", err_msg());
    if (!r || !base) return check_done("test_lora");
    check_nets(LORA "diffusers.safetensors", "diffusers", r, base);
    check_nets(LORA "kohya.safetensors:0.7", "kohya", r, base);
    /* multiplier 0: the model's own outputs */
    {
        float *hu = ref(base, "unet.out.t500", 2 * 4 * 64);
        sd_model m;
        sd_model_find(FIX "sd-tiny-a", NULL, &m);
        const char *arg = LORA "kohya.safetensors:0", *up = m.unet_path;
        ops_backend *be = backend_create("cpu", 2, NULL);
        weights *wu = weights_open(&up, 1);
        lora_set *l = lora_open(&arg, 1);
        weights_set_lora(wu, l, LORA_UNET);
        unet_model *u = unet_load(&m.unet, wu, be, 2, 8, 8, 77);
        float *x = ref(base, "unet.x", 2 * 4 * 64), *ctx = ref(base, "clip.hidden", 6 * 77 * 32), out[512];
        float t[2] = {500, 500};
        CHECK(u && !unet_forward(u, x, t, NULL, ctx, 2, 8, 8, 77, out), "%s", err_msg());
        expect("kohya:0 is the model itself", out, hu, 512, TOL);
        unet_free(u);
        lora_free(l);
        weights_close(wu);
        be->destroy(be);
        free(hu), free(x), free(ctx);
    }
    check_img2img(LORA "diffusers.safetensors", "diffusers", r);
    check_img2img(LORA "kohya.safetensors:0.7", "kohya", r);
    check_cli(r);
    check_refusals();
    check_cfg();
    st_close(r);
    st_close(base);
    return check_done("test_lora");
}

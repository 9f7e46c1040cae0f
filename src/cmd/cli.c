/* genie img2img / txt2img / sweep / bench-engine: argument parsing, image in/out, progress, timing. */
#include "src/cmd/cli.h"
#include "common/args.h"
#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "augment/engine/backend/backend.h"
#include "augment/engine/engine.h"
#include "common/err.h"
#include "augment/genie/genie.h"
#include "augment/genie/recipe.h"
#include "common/util.h"
#include "common/imgio.h"
#include "common/image.h"
#include "common/pool.h"
#include "augment/engine/safetensors.h"
#include "augment/engine/scheduler.h"

typedef struct {
    engine_opts eo;
    const char *input, *prompt, *output, *noise, *ref;
    double r;
    uint64_t seed;
    int batch, repeat;
    int verbose;                    /* -v: the backend's memory after the run */
    int ada;                        /* bench-engine -ada: the items cycle through GeNIe-Ada's r set */
    double flops;                   /* bench-engine -flops: FLOPs of one UNet call at the CFG batch (0: none) */
    int peak;                       /* bench-engine -peak: also measure sgemm's GFLOP/s on the same threads */
} cli_args;

static int parse_args(const char *name, int argc, char **argv, cli_args *a)
{
    memset(a, 0, sizeof *a);
    engine_opts_default(&a->eo);
    /* the bundled Fashion-MNIST model, GeNIe's (augment/genie/recipe.c) */
    a->eo.model = recipe_defaults()->model;
    a->r = -1;   /* not given: 0.8 where an r is used, and an error where none is */
    a->seed = 1;
    a->batch = 1;
    a->repeat = 3;
    const char *sched = NULL, *size = NULL, *device = NULL, *note;
    int max_px = 0;
    const arg_opt opts[] = {ARG_OPT("-vae-mean", ARG_SWITCH, &a->eo.vae_mean),
                            ARG_OPT("-model", ARG_STR, &a->eo.model),
                            ARG_OPT("-config", ARG_STR, &a->eo.config_dir),
                            ARG_REPEAT("-lora", a->eo.lora, &a->eo.n_lora, LORA_MAX),
                            ARG_OPT("-device", ARG_STR, &device),
                            ARG_OPT("-precision", ARG_STR, &a->eo.precision),
                            ARG_OPT("-v", ARG_SWITCH, &a->verbose),
                            ARG_OPT("-ada", ARG_SWITCH, &a->ada),
                            ARG_OPT("-peak", ARG_SWITCH, &a->peak),
                            ARG_RANGE("-flops", ARG_DOUBLE, &a->flops, 0, 1e18),
                            ARG_OPT("-i", ARG_STR, &a->input),
                            ARG_OPT("-p", ARG_STR, &a->prompt),
                            ARG_OPT("-o", ARG_STR, &a->output),
                            ARG_OPT("-noise", ARG_STR, &a->noise),
                            ARG_OPT("-ref", ARG_STR, &a->ref),
                            ARG_RANGE("-r", ARG_DOUBLE, &a->r, 0, 1),
                            ARG_RANGE("-guidance", ARG_DOUBLE, &a->eo.guidance, 0, 100),
                            ARG_RANGE("-eta", ARG_DOUBLE, &a->eo.eta, 0, 1),
                            ARG_RANGE("-steps", ARG_INT, &a->eo.steps, 1, 1000),
                            ARG_RANGE("-threads", ARG_INT, &a->eo.threads, 0, 1024),
                            ARG_RANGE("-batch", ARG_INT, &a->batch, 1, 256),
                            ARG_RANGE("-repeat", ARG_INT, &a->repeat, 1, 1000),
                            ARG_OPT("-seed", ARG_U64, &a->seed),
                            ARG_OPT("-scheduler", ARG_STR, &sched),
                            ARG_OPT("-size", ARG_STR, &size),
                            ARG_RANGE("-max-pixels", ARG_INT, &max_px, 1, 1 << 30),
                            ARG_END};
    char *pos[1];
    if (args_parse(name, argc, argv, opts, pos, 0) < 0) return -1;
    imgio_set_max_pixels(max_px);
    a->eo.device = backend_choose(device, &note);
    if (note) fprintf(stderr, "genie: %s\n", note);
    if (sched) {
        int k = scheduler_kind_parse(sched);
        if (k < 0) return err_set("-scheduler: \"%s\" (" SCHEDULER_NAMES ")", sched);
        a->eo.scheduler = (enum sd_sched_kind)k;
    }
    if (size) {
        int w, h, n = 0;
        if (sscanf(size, "%dx%d%n", &w, &h, &n) != 2 || size[n] || w <= 0 || h <= 0 || w > 8192 || h > 8192)
            return err_set("-size: \"%s\" is not WxH", size);
        a->eo.width = w;
        a->eo.height = h;
    }
    return 0;
}

/* ---- progress on stderr, once a run has taken more than a second ---- */
typedef struct {
    double t0;
    int shown;
    double t_first, t_last;         /* when step 1 and the latest step ended: the denoising rate */
    int last;
} progress_state;

static void progress_fn(void *ctx, int step, int total)
{
    progress_state *p = ctx;
    double now = util_now(), el = now - p->t0;
    if (step == 1) p->t_first = now;
    p->t_last = now;
    p->last = step;
    if (el < 1.0 && step < total) return;
    if (el < 1.0 && !p->shown) return;
    fprintf(stderr, "\rstep %d/%d, %.1f s", step, total, el);
    p->shown = 1;
    if (step == total) fputc('\n', stderr);
}

/* ---- images ---- */

static float *load_source(const char *path, int w, int h)
{
    img_u8 im = {0};
    if (imgio_load(path, w, h, &im)) {
        imgio_free(&im);   /* a load that fails part way may hold its file buffer */
        return NULL;
    }
    float *p = malloc(sizeof(float) * 3 * (size_t)w * h);
    if (!p) {
        imgio_free(&im);
        err_set("%s: out of memory", path);
        return NULL;
    }
    int rc = image_to_planar(&im, w, h, p);
    imgio_free(&im);
    if (rc) {
        free(p);
        err_wrap("%s: ", path);
        return NULL;
    }
    return p;
}

static int write_image(const char *path, const float *img, int w, int h)
{
    unsigned char *rgb = malloc((size_t)w * h * 3);
    if (!rgb) return err_set("%s: out of memory", path);
    image_from_planar(img, w, h, rgb, w);
    int rc = imgio_write(path, rgb, w, h, 95);
    free(rgb);
    return rc;
}

/* ---- external noise: vae_noise / latent_noise [B, C, h, w]; item k takes entry min(k, B-1) ---- */
typedef struct {
    st_file *f;
    float *vae, *lat;
    int n;
} noise_file;

static int noise_load(noise_file *nf, const char *path, const engine_info *info)
{
    memset(nf, 0, sizeof *nf);
    if (!path) return 0;
    if (!(nf->f = st_open(path))) return -1;
    const char *names[2] = {"vae_noise", "latent_noise"};
    float **dst[2] = {&nf->vae, &nf->lat};
    for (int k = 0; k < 2; k++) {
        const st_tensor *t = st_find(nf->f, names[k]);
        if (!t) return err_set("%s: tensor %s is missing", path, names[k]);
        if (t->ndim != 4 || t->shape[0] < 1 || t->shape[1] != info->latent_channels || t->shape[2] != info->latent_h ||
            t->shape[3] != info->latent_w)
            return err_set("%s: tensor %s must be [B, %d, %d, %d]", path, names[k], info->latent_channels,
                           info->latent_h, info->latent_w);
        if (k == 1 && t->shape[0] != nf->n) return err_set("%s: vae_noise and latent_noise batch sizes differ", path);
        nf->n = (int)t->shape[0];
        if (!(*dst[k] = malloc(sizeof(float) * t->numel))) return err_set("%s: out of memory", path);
        if (st_to_f32(t, *dst[k])) return -1;
    }
    return 0;
}

static void noise_apply(const noise_file *nf, engine_item *it, int k, size_t nl)
{
    if (!nf->f) return;
    int j = k < nf->n ? k : nf->n - 1;
    it->vae_noise = nf->vae + j * nl;
    it->latent_noise = nf->lat + j * nl;
}

static void noise_free(noise_file *nf)
{
    free(nf->vae);
    free(nf->lat);
    st_close(nf->f);
}

/* peak resident set (VmHWM) of this process in MiB, or -1 */
static double peak_rss_mb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %lf kB", &kb) == 1) break;
    if (f) fclose(f);
    return kb < 0 ? -1 : kb / 1024.0;
}

/* one line on stderr: what the backend holds (-v) */
static void print_memory(const engine_info *in)
{
    const double MB = 1048576.0;
    fprintf(stderr, "genie: memory on %s (%s): weights %.1f MB, buffers %.1f MB, peak %.1f MB, host staging %.1f MB",
            in->device, in->precision, in->mem_weights / MB, in->mem_buffers / MB, in->mem_peak / MB,
            in->mem_host / MB);
    if (in->device_total)
        fprintf(stderr, "; device %.1f of %.1f MB in use (all processes)", in->device_used / MB,
                in->device_total / MB);
    fputc('\n', stderr);
}

/* ---- -peak: the GFLOP/s a product can reach here ---- */

#define PEAK_N 2048

typedef struct {
    const float *a, *b;
    float *c;
    int rows;                       /* rows of c per task */
} peak_job;

static void peak_task(void *v, int t, int worker)
{
    const peak_job *j = v;
    int r0 = t * j->rows, m = PEAK_N - r0 < j->rows ? PEAK_N - r0 : j->rows;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, PEAK_N, PEAK_N, 1.0f, j->a + (size_t)r0 * PEAK_N,
                PEAK_N, j->b, PEAK_N, 0.0f, j->c + (size_t)r0 * PEAK_N, PEAK_N);
}

/* OpenBLAS sgemm at 2048^3 as the CPU backend runs its products: single-threaded sgemm calls (the engine has set
 * OpenBLAS to one thread) on a pool of `threads`, one block of rows each; the best of 3 after a warm-up, in
 * GFLOP/s, or -1 + err_msg(). */
static double sgemm_peak_gflops(int threads)
{
    size_t n = (size_t)PEAK_N * PEAK_N;
    float *a = malloc(3 * n * sizeof(float));
    pool *p = a ? pool_create(threads, 0) : NULL;
    if (!p) {
        if (a) err_wrap("-peak: ");
        else err_set("-peak: out of memory");
        free(a);
        return -1;
    }
    for (size_t i = 0; i < 2 * n; i++) a[i] = (float)(i % 17) * 0.0625f - 0.5f;
    peak_job j = {a, a + n, a + 2 * n, (PEAK_N + threads - 1) / threads};
    double best = 0;
    for (int k = 0; k < 4; k++) {
        double t0 = util_now();
        pool_run(p, peak_task, &j, threads);
        double g = 2.0 * n * PEAK_N / (util_now() - t0) / 1e9;
        if (k && g > best) best = g;
    }
    pool_free(p);
    free(a);
    return best;
}

/* ---- commands ---- */

enum { MODE_IMG2IMG, MODE_TXT2IMG, MODE_SWEEP, MODE_BENCH };

static int run(const char *name, int argc, char **argv, int mode)
{
    cli_args a;
    engine *e = NULL;
    float *src = NULL, *outs = NULL;
    unsigned char *canvas = NULL;
    noise_file nf = {0};
    int rc = -1;
    if (parse_args(name, argc, argv, &a)) goto done;
    if (mode != MODE_TXT2IMG && !a.input) {
        err_set("%s: -i <source image> is required", name);
        goto done;
    }
    if (mode != MODE_BENCH && !a.output) {
        err_set("%s: -o <output> is required", name);
        goto done;
    }
    if ((a.ada || a.peak || a.flops > 0) && mode != MODE_BENCH) {
        err_set("%s: -ada, -flops and -peak are for bench-engine", name);
        goto done;
    }
    /* an option a command does not use is an error, not silently dropped */
    if (mode == MODE_TXT2IMG && (a.input || a.r >= 0)) {
        err_set("txt2img: %s is not used (txt2img starts from noise; img2img starts from an image at -r)",
                a.input ? "-i" : "-r");
        goto done;
    }
    if (mode == MODE_SWEEP && a.r >= 0) {
        err_set("sweep: -r is not used (the strip runs r = 0.1 ... 1.0)");
        goto done;
    }
    if (a.r < 0) a.r = 0.8;
    if (a.output && util_check_dest(a.output)) goto done;   /* before the model is loaded and the work is done */
    if (!a.prompt) a.prompt = "";
    const int n = mode == MODE_SWEEP ? 10 : mode == MODE_BENCH ? a.batch : 1;
    genie_opts ada;   /* -ada: GeNIe-Ada's default r set, cycled over the batch */
    genie_opts_default(&ada);
    a.eo.max_batch = n;
    progress_state ps = {0};
    a.eo.progress = progress_fn;
    a.eo.progress_ctx = &ps;
    double t_load = util_now();
    if (!(e = engine_load(&a.eo))) goto done;
    t_load = util_now() - t_load;
    engine_info info;
    engine_get_info(e, &info);
    const size_t ni = (size_t)3 * info.width * info.height;
    const size_t nl = (size_t)info.latent_channels * info.latent_h * info.latent_w;
    if (noise_load(&nf, a.noise, &info)) goto done;
    if (a.input && !(src = load_source(a.input, info.width, info.height))) goto done;
    if (!(outs = malloc(sizeof(float) * ni * n))) {
        err_set("out of memory");
        goto done;
    }
    double t_prompt = util_now();
    int ph = engine_prompt(e, a.prompt);
    t_prompt = util_now() - t_prompt;
    if (ph < 0) goto done;
    engine_item items[10];
    engine_item *it = mode == MODE_BENCH ? calloc(n, sizeof *it) : items;
    if (!it) {
        err_set("out of memory");
        goto done;
    }
    memset(it, 0, sizeof(engine_item) * n);
    for (int k = 0; k < n; k++) {
        it[k].image = mode == MODE_TXT2IMG ? NULL : src;
        it[k].prompt = ph;
        it[k].r = mode == MODE_SWEEP ? (k + 1) / 10.0 : a.ada ? ada.r_set[k % ada.n_r] : a.r;
        it[k].seed = a.seed;
        it[k].stream = mode == MODE_BENCH ? (uint64_t)k : 0;
        it[k].out = outs + k * ni;
        noise_apply(&nf, &it[k], k, nl);
    }
    double t_unet = 0;
    if (mode == MODE_BENCH) {
        /* one UNet forward at the CFG batch (warm-up, then the median of -repeat runs) */
        int ub = info.cfg_pair ? 2 * n : n;
        double ts[1000];
        if (engine_bench_unet(e, ub)) goto bench_done;
        for (int k = 0; k < a.repeat; k++) {
            double t0 = util_now();
            if (engine_bench_unet(e, ub)) goto bench_done;
            ts[k] = util_now() - t0;
        }
        for (int x = 1; x < a.repeat; x++)
            for (int y = x; y > 0 && ts[y - 1] > ts[y]; y--) {
                double tt = ts[y];
                ts[y] = ts[y - 1];
                ts[y - 1] = tt;
            }
        t_unet = ts[a.repeat / 2];
        printf("genie unet_forward_s %.4f\n", t_unet);
        printf("genie unet_batch %d\n", ub);
        if (a.flops > 0) {
            printf("genie unet_flops %.0f\n", a.flops);
            printf("genie unet_gflops_s %.2f\n", a.flops / t_unet / 1e9);
        }
    }
    ps.t0 = util_now();
    if (engine_img2img(e, it, n)) goto bench_done;
    double t_run = util_now() - ps.t0;
    engine_get_info(e, &info);
    if (a.verbose) print_memory(&info);
    if (mode == MODE_BENCH) {
        double mean = 0;
        for (size_t i = 0; i < ni * n; i++) mean += outs[i];
        const double MB = 1048576.0;
        printf("genie device %s\n", a.eo.device);
        printf("genie precision %s\n", info.precision);
        printf("genie load_s %.4f\n", t_load);
        printf("genie clip_s %.4f\n", t_prompt);
        printf("genie img2img_s %.4f\n", t_prompt + t_run);
        printf("genie img2img_mean %.6f\n", mean / (ni * n));
        /* steps 2..last: the first step also waits for the VAE encode queued before it */
        if (ps.last > 1) {
            double it_s = (ps.last - 1) / (ps.t_last - ps.t_first);
            printf("genie denoise_it_s %.3f\n", it_s);
            printf("genie ms_per_item_step %.3f\n", 1000.0 / (it_s * n));
        }
        printf("genie images_per_s %.3f\n", n / t_run);
        printf("genie mem_weights_mb %.1f\n", info.mem_weights / MB);
        printf("genie mem_buffers_mb %.1f\n", info.mem_buffers / MB);
        printf("genie mem_peak_mb %.1f\n", info.mem_peak / MB);
        if (info.device_total) printf("genie device_used_mb %.1f\n", info.device_used / MB);
        printf("genie weights_mb %.1f\n", info.weight_file_bytes / 1048576.0);
        printf("genie peak_rss_mb %.1f\n", peak_rss_mb());
        if (a.peak) {
            int cores = util_cores(), th = a.eo.threads > 0 && a.eo.threads < cores ? a.eo.threads : cores;
            double g = strcmp(a.eo.device, "cpu") ? 0 : sgemm_peak_gflops(th);
            if (g < 0) goto bench_done;
            if (g > 0) printf("genie sgemm_peak_gflops_s %.2f\n", g);
        }
        if (a.ref) {
            st_file *rf = st_open(a.ref);
            const st_tensor *t = rf ? st_find(rf, "image") : NULL;
            if (!t || (size_t)t->numel != ni * n) {
                if (rf) err_set("%s: no tensor image of %zu values", a.ref, ni * n);
                st_close(rf);
                goto bench_done;
            }
            float *want = malloc(sizeof(float) * t->numel);
            double d = 0;
            if (want && !st_to_f32(t, want))
                for (size_t i = 0; i < ni * n; i++) d = fmax(d, fabs(want[i] - outs[i]));
            free(want);
            st_close(rf);
            printf("genie max_abs_diff_vs_torch %.3g\n", d);
        }
    } else if (mode == MODE_SWEEP) {
        /* source + 10 results side by side, each under its r in darknet's alphabet */
        const int W = info.width, H = info.height;
        unsigned char *rgb = malloc(ni * (n + 1));
        if (!rgb) {
            err_set("out of memory");
            goto bench_done;
        }
        font *fnt = font_load(FONT_DARKNET_DIR, H / 128 < 7 ? H / 128 : 7);   /* 11 px high below 128, 53 at 512 */
        if (!fnt) fprintf(stderr, "genie: %s: the strip goes without labels\n", err_msg());
        const unsigned char *tiles[11];
        const char *labels[11] = {NULL};
        char text[10][16];
        image_from_planar(src, W, H, rgb, W);
        tiles[0] = rgb;
        for (int k = 0; k < n; k++) {
            image_from_planar(outs + k * ni, W, H, rgb + (k + 1) * ni, W);
            tiles[k + 1] = rgb + (k + 1) * ni;
            snprintf(text[k], sizeof text[k], "r=%.1f", it[k].r);
            labels[k + 1] = text[k];
        }
        const image_grid layout = {.rows = 1, .cols = n + 1, .tile_w = W, .tile_h = H, .font = fnt,
                                   .label_pos = IMAGE_LABEL_ABOVE};
        int cw, ch;
        canvas = image_grid_build(&layout, tiles, labels, &cw, &ch);
        font_free(fnt);
        free(rgb);
        if (!canvas) goto bench_done;
        if (imgio_write(a.output, canvas, cw, ch, 95)) goto bench_done;
    } else if (write_image(a.output, outs, info.width, info.height)) {
        goto bench_done;
    }
    rc = 0;
bench_done:
    if (it != items) free(it);
done:
    noise_free(&nf);
    engine_free(e);
    free(src);
    free(outs);
    free(canvas);
    return rc;
}

int cli_img2img(int argc, char **argv) { return run("img2img", argc, argv, MODE_IMG2IMG); }
int cli_txt2img(int argc, char **argv) { return run("txt2img", argc, argv, MODE_TXT2IMG); }
int cli_sweep(int argc, char **argv) { return run("sweep", argc, argv, MODE_SWEEP); }
int cli_bench_engine(int argc, char **argv) { return run("bench-engine", argc, argv, MODE_BENCH); }

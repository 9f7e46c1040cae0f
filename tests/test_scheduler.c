/* DDIM and DPM-Solver++ 2M against diffusers-0.19-semantics PyTorch (scripts/sd_ref.py): known answers computed
 * with torch for SD 1.5's scheduler config, and the fixture tables when they are present. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tests/check.h"
#include "common/csv.h"
#include "common/err.h"
#include "augment/engine/model_load.h"
#include "augment/engine/safetensors.h"
#include "augment/engine/scheduler.h"

static const float X[8] = {0.5f, -1.25f, 2.0f, 0.0f, -0.3f, 1.7f, -2.2f, 0.9f};
static const float E[8] = {0.1f, 0.4f, -0.8f, 1.2f, -0.5f, 0.05f, 0.6f, -1.1f};

static void test_tables(const scheduler *s)
{
    /* torch.cumprod(1 - torch.linspace(0.00085**.5, 0.012**.5, 1000)**2) */
    const int idx[5] = {0, 1, 499, 998, 999};
    const double want[5] = {0.9991499781608582, 0.9982960224151611, 0.2776694595813751, 0.0047166962176561356,
                            0.0046600960195064545};
    const float *ac = scheduler_alphas_cumprod(s);
    for (int i = 0; i < 5; i++)
        CHECK(fabs(ac[idx[i]] - want[i]) <= 2e-7 * want[i], "alphas_cumprod[%d] = %.10g, torch %.10g", idx[i],
              ac[idx[i]], want[i]);
}

static void test_ddim(const sched_config *cfg)
{
    scheduler *s = scheduler_create(SD_SCHED_DDIM, cfg);
    CHECK(s != NULL, "%s", err_msg());
    test_tables(s);
    CHECK(scheduler_set_timesteps(s, 50) == 0, "%s", err_msg());
    CHECK(scheduler_num_steps(s) == 50, "50 steps");
    int ok = 1;
    for (int i = 0; i < 50; i++) ok &= scheduler_timestep(s, i) == 981 - 20 * i;
    CHECK(ok, "DDIM N=50 leading timesteps are 981, 961, ..., 1");

    CHECK(scheduler_set_timesteps(s, 10) == 0, "%s", err_msg());
    CHECK(scheduler_timestep(s, 3) == 601 && scheduler_timestep(s, 9) == 1, "DDIM N=10 timesteps");
    const double want3[8] = {0.620789647102356, -1.7800661325454712, 2.9042515754699707, -0.4210928678512573,
                             -0.21807311475276947, 2.212448835372925, -3.096421718597412, 1.566587209701538};
    const double want9[8] = {0.49899962544441223, -1.255391240119934, 2.010568618774414, -0.014570139348506927,
                             -0.2940574288368225, 1.700119972229004, -2.208225965499878, 0.9137408137321472};
    float x[8];
    sched_state st;
    memcpy(x, X, sizeof x);
    sched_state_init(&st, NULL, 0);
    CHECK(scheduler_step(s, &st, 3, E, x, 8) == 0, "%s", err_msg());
    double d = 0;
    for (int i = 0; i < 8; i++) d = fmax(d, fabs(x[i] - want3[i]));
    CHECK(d <= 2e-6, "DDIM step at t=601 differs from torch by %g", d);
    memcpy(x, X, sizeof x);
    sched_state_init(&st, NULL, 0);
    CHECK(scheduler_step(s, &st, 9, E, x, 8) == 0, "%s", err_msg());
    d = 0;
    for (int i = 0; i < 8; i++) d = fmax(d, fabs(x[i] - want9[i]));
    CHECK(d <= 2e-6, "DDIM last step (previous alpha = alphas_cumprod[0]) differs from torch by %g", d);
    CHECK(scheduler_step(s, &st, 5, E, x, 8) == -1, "a step that does not follow the last one is refused");

    CHECK(scheduler_set_timesteps(s, 0) == -1 && scheduler_set_timesteps(s, 1001) == -1, "step count range");
    scheduler_free(s);
}

static void test_dpm(const sched_config *cfg)
{
    scheduler *s = scheduler_create(SD_SCHED_DPMPP_2M, cfg);
    CHECK(s != NULL, "%s", err_msg());
    test_tables(s);
    /* 0.19 DPM-Solver default spacing "linspace": np.linspace(0, 999, 51).round()[::-1][:-1] */
    static const int want50[50] = {999, 979, 959, 939, 919, 899, 879, 859, 839, 819, 799, 779, 759, 739, 719, 699,
                                   679, 659, 639, 619, 599, 579, 559, 539, 519, 500, 480, 460, 440, 420, 400, 380,
                                   360, 340, 320, 300, 280, 260, 240, 220, 200, 180, 160, 140, 120, 100, 80, 60,
                                   40, 20};
    CHECK(scheduler_set_timesteps(s, 50) == 0, "%s", err_msg());
    int ok = scheduler_num_steps(s) == 50;
    for (int i = 0; ok && i < 50; i++) ok &= scheduler_timestep(s, i) == want50[i];
    CHECK(ok, "DPM-Solver++ N=50 linspace timesteps");

    /* img2img-like: join at index 6 of 10 (first order), two second-order steps, lower-order final step */
    CHECK(scheduler_set_timesteps(s, 10) == 0, "%s", err_msg());
    CHECK(scheduler_timestep(s, 5) == 500 && scheduler_timestep(s, 9) == 100, "DPM N=10 timesteps");
    static const double want[4][8] = {
        {0.6254041194915771, -1.5609619617462158, 2.7615580558776855, -0.4128481149673462, -0.07350660860538483,
         2.061133861541748, -2.762991428375244, 1.5864862203598022},
        {0.7524440288543701, -1.8370412588119507, 3.52402925491333, -0.8583840131759644, 0.2016696184873581,
         2.3943779468536377, -3.2746567726135254, 2.3158926963806152},
        {0.8742830157279968, -2.0680761337280273, 4.258538246154785, -1.32680344581604, 0.5178983807563782,
         2.683048725128174, -3.715174913406372, 3.06435227394104},
        {1.005958080291748, -2.2835795879364014, 5.121277332305908, -1.978261113166809, 0.987923264503479,
         2.9477901458740234, -4.144192695617676, 4.038311958312988}};
    float x[8], e[8], prev[8];
    sched_state st;
    sched_state_init(&st, prev, 8);
    memcpy(x, X, sizeof x);
    for (int k = 6; k < 10; k++) {
        for (int i = 0; i < 8; i++) e[i] = E[i] * (1.0f + 0.1f * k) - 0.05f * k;
        CHECK(scheduler_step(s, &st, k, e, x, 8) == 0, "%s", err_msg());
        double d = 0;
        for (int i = 0; i < 8; i++) d = fmax(d, fabs(x[i] - want[k - 6][i]) / fmax(1.0, fabs(want[k - 6][i])));
        CHECK(d <= 2e-6, "DPM-Solver++ step at index %d differs from torch by %g", k, d);
    }
    sched_state nobuf;
    sched_state_init(&nobuf, NULL, 0);
    CHECK(scheduler_step(s, &nobuf, 0, E, x, 8) == -1, "DPM step without a state buffer is refused");
    scheduler_free(s);

    sched_config bad = *cfg;
    bad.solver_order = 3;
    CHECK(scheduler_create(SD_SCHED_DPMPP_2M, &bad) == NULL && strstr(err_msg(), "solver_order"), "order 3: %s",
          err_msg());
}

static void test_spacings(const sched_config *cfg)
{
    sched_config c = *cfg;
    c.timestep_spacing = SD_SPACING_LEADING;
    scheduler *s = scheduler_create(SD_SCHED_DPMPP_2M, &c);
    /* leading for DPM: ratio 1000 // 51 = 19, (arange(51) * 19)[::-1][:-1] + 1 */
    CHECK(s && scheduler_set_timesteps(s, 50) == 0 && scheduler_timestep(s, 0) == 951 &&
              scheduler_timestep(s, 49) == 20, "DPM leading");
    scheduler_free(s);
    c.timestep_spacing = SD_SPACING_TRAILING;
    s = scheduler_create(SD_SCHED_DDIM, &c);
    /* trailing: round(arange(1000, 0, -1000/30)) - 1: 999, 966, ..., 32 */
    CHECK(s && scheduler_set_timesteps(s, 30) == 0 && scheduler_timestep(s, 0) == 999 &&
              scheduler_timestep(s, 1) == 966 && scheduler_timestep(s, 29) == 32, "DDIM trailing");
    scheduler_free(s);
    c.timestep_spacing = SD_SPACING_LINSPACE;
    s = scheduler_create(SD_SCHED_DDIM, &c);
    /* linspace: np.linspace(0, 999, 7).round()[::-1] = 999, 832, 666, 500, 333, 166, 0 */
    CHECK(s && scheduler_set_timesteps(s, 7) == 0 && scheduler_timestep(s, 0) == 999 &&
              scheduler_timestep(s, 1) == 832 && scheduler_timestep(s, 3) == 500 && scheduler_timestep(s, 6) == 0,
          "DDIM linspace");
    scheduler_free(s);
}

/* A scheduler of kind "ddim" or "dpm" with this spacing name on SD 1.5's config (steps_offset 1). */
static scheduler *sched_by_name(const sched_config *cfg, const char *kind, const char *spacing)
{
    sched_config c = *cfg;
    c.timestep_spacing = !strcmp(spacing, "leading")    ? SD_SPACING_LEADING
                         : !strcmp(spacing, "linspace") ? SD_SPACING_LINSPACE
                                                        : SD_SPACING_TRAILING;
    return scheduler_create(!strcmp(kind, "ddim") ? SD_SCHED_DDIM : SD_SCHED_DPMPP_2M, &c);
}

/* FNV-1a 64 of the scheduler's timesteps written as decimals joined by commas (the fixture's fnv1a64) */
static unsigned long long timesteps_hash(const scheduler *s)
{
    unsigned long long h = 0xcbf29ce484222325ull;
    char num[16];
    for (int i = 0; i < scheduler_num_steps(s); i++) {
        snprintf(num, sizeof num, i ? ",%d" : "%d", scheduler_timestep(s, i));
        for (const char *p = num; *p; p++) h = (h ^ (unsigned char)*p) * 0x100000001b3ull;
    }
    return h;
}

/* diffusers 0.19's schedule is refused (its first or last timestep outside the table: diffusers itself would fail,
 * or read alphas_cumprod[-1]) with a message saying why; else the engine's timesteps are the same. Returns 1 when
 * the engine agrees, and writes what it did into got. */
static int agrees(scheduler *s, int n, int count, int first, int last, char *got, size_t len)
{
    int rc = scheduler_set_timesteps(s, n);
    if (first >= 1000 || last < 0) {
        snprintf(got, len, "rc %d: %s", rc, rc ? err_msg() : "accepted");
        return rc == -1 && strstr(err_msg(), "diffusers 0.19");
    }
    if (rc) {
        snprintf(got, len, "refused: %s", err_msg());
        return 0;
    }
    snprintf(got, len, "%d timesteps, %d .. %d", scheduler_num_steps(s), scheduler_timestep(s, 0),
             scheduler_timestep(s, scheduler_num_steps(s) - 1));
    return scheduler_num_steps(s) == count && scheduler_timestep(s, 0) == first &&
           scheduler_timestep(s, count - 1) == last;
}

/* diffusers 0.19's set_timesteps for every 1..1000 steps x spacing x scheduler (tests/fixtures/sched/timesteps.csv,
 * from scripts/sd_ref.py's line-for-line copy: count, first, last, FNV-1a 64 of the list). */
static void test_timestep_table(const sched_config *cfg)
{
    csv_reader r;
    CHECK(csv_open(&r, "tests/fixtures/sched/timesteps.csv") == 0, "%s", err_msg());
    int rows = 0, bad = 0, nf;
    while ((nf = csv_read(&r)) > 0) {
        if (r.line == 1) continue;
        if (nf != 7) {
            CHECK(0, "%s:%d: %d fields", r.path, r.line, nf);
            break;
        }
        char **f = r.field, got[512];
        scheduler *s = sched_by_name(cfg, f[0], f[1]);
        int ok = s && agrees(s, atoi(f[2]), atoi(f[3]), atoi(f[4]), atoi(f[5]), got, sizeof got);
        if (ok && atoi(f[4]) < 1000 && atoi(f[5]) >= 0) ok = timesteps_hash(s) == strtoull(f[6], NULL, 16);
        if (!ok && bad++ < 10)
            CHECK(0, "%s:%d: %s %s %s steps: diffusers %s timesteps, %s .. %s; engine: %s", r.path, r.line, f[0], f[1],
                  f[2], f[3], f[4], f[5], s ? got : err_msg());
        scheduler_free(s);
        rows++;
    }
    CHECK(nf == 0, "%s", err_msg());
    csv_close(&r);
    CHECK(rows == 6000 && bad == 0, "%d of %d schedules differ from diffusers 0.19's", bad, rows);
}

/* The cases that once differed, in full (tests/fixtures/sched/timesteps-edges.csv): DDIM linspace with 1 step is
 * [0]; trailing at 48 and 96 steps has 936 (numpy's arange gives 937.4999999999999); trailing at 61 steps makes 62
 * timesteps ending in -1 and leading with n = T (DDIM) or T - 1 (DPM) reaches timestep 1000: refused, saying why. */
static void test_timestep_edges(const sched_config *cfg)
{
    csv_reader r;
    CHECK(csv_open(&r, "tests/fixtures/sched/timesteps-edges.csv") == 0, "%s", err_msg());
    int rows = 0, nf;
    while ((nf = csv_read(&r)) > 0) {
        if (r.line == 1) continue;
        int want[1001], count = 0, n = atoi(r.field[2]);
        for (char *p = r.field[3], *end; count < 1001 && *p; p = end) want[count++] = (int)strtol(p, &end, 10);
        scheduler *s = sched_by_name(cfg, r.field[0], r.field[1]);
        char got[512];
        int ok = s && agrees(s, n, count, want[0], want[count - 1], got, sizeof got);
        for (int i = 0; ok && want[0] < 1000 && want[count - 1] >= 0 && i < count; i++)
            ok = scheduler_timestep(s, i) == want[i];
        CHECK(ok, "%s %s %d steps: diffusers starts %d, %d, %d, %d and ends %d (%d timesteps); engine: %s",
              r.field[0], r.field[1], n, want[0], want[count > 1], want[count > 2 ? 2 : 0], want[count > 3 ? 3 : 0],
              want[count - 1], count, got);
        scheduler_free(s);
        rows++;
    }
    csv_close(&r);
    CHECK(rows == 11, "%d edge cases", rows);
}

/* The fixture tables and trajectories (tests/fixtures/sd-tiny-a/refs.safetensors, sched.*). */
static float *fx(st_file *f, const char *name, size_t numel)
{
    const st_tensor *t = st_find(f, name);
    CHECK(t && (size_t)t->numel == numel, "fixture %s missing or not %zu values", name, numel);
    if (!t || (size_t)t->numel != numel) return NULL;
    float *b = malloc(sizeof(float) * numel);
    st_to_f32(t, b);
    return b;
}

static void test_fixtures(const sched_config *cfg)
{
    st_file *f = st_open("tests/fixtures/sd-tiny-a/refs.safetensors");
    CHECK(f != NULL, "%s", err_msg());
    if (!f) return;
    scheduler *s[2] = {scheduler_create(SD_SCHED_DDIM, cfg), scheduler_create(SD_SCHED_DPMPP_2M, cfg)};
    const char *kn[2] = {"ddim", "dpm"};
    float *ac = fx(f, "sched.alphas_cumprod", 1000);
    if (ac) {
        double d = check_max_abs(ac, scheduler_alphas_cumprod(s[0]), 1000);
        CHECK(d == 0, "alphas_cumprod differs from the fixture by %g", d);
    }
    free(ac);
    const int ns[4] = {5, 20, 25, 50};
    for (int k = 0; k < 2; k++)
        for (int j = 0; j < 4; j++) {
            char name[64];
            snprintf(name, sizeof name, "sched.%s.t%d", kn[k], ns[j]);
            if (!st_find(f, name)) continue;          /* DDIM has no t25 */
            float *t = fx(f, name, ns[j]);
            CHECK(scheduler_set_timesteps(s[k], ns[j]) == 0 && scheduler_num_steps(s[k]) == ns[j], "%s", name);
            int ok = t != NULL;
            for (int i = 0; ok && i < ns[j]; i++) ok = scheduler_timestep(s[k], i) == (int)t[i];
            CHECK(ok, "%s: timesteps differ", name);
            free(t);
        }
    /* trajectories from sched.x with the model output sched.eps[k] at executed step k */
    const size_t n = 64;
    float *x0 = fx(f, "sched.x", n), *eps = fx(f, "sched.eps", 20 * n);
    struct { const char *name; int steps, start; } runs[] = {
        {"n5s0", 5, 0}, {"n20s0", 20, 0}, {"n5s2", 5, 2},
    };
    for (int k = 0; k < 2 && x0 && eps; k++)
        for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++) {
            char name[64];
            snprintf(name, sizeof name, "sched.%s.%s", kn[k], runs[r].name);
            if (!st_find(f, name)) continue;
            int len = runs[r].steps - runs[r].start;
            float *want = fx(f, name, len * n);
            if (!want || scheduler_set_timesteps(s[k], runs[r].steps)) {
                CHECK(0, "%s: %s", name, err_msg());
                free(want);
                continue;
            }
            float x[64], prev[64];
            sched_state st;
            sched_state_init(&st, prev, n);
            memcpy(x, x0, sizeof x);
            double worst = 0;
            for (int i = 0; i < len; i++) {
                CHECK(scheduler_step(s[k], &st, runs[r].start + i, eps + i * n, x, n) == 0, "%s", err_msg());
                for (size_t j = 0; j < n; j++) {
                    double w = want[i * n + j];
                    worst = fmax(worst, fabs(x[j] - w) / fmax(1.0, fabs(w)));
                }
            }
            /* relative: these trajectories grow to |x| ~ 46, and torch's log table (Sleef) differs from libm's in
             * the last bit of ~20 entries, which DPM-Solver's exp(-h) carries (DDIM matches exactly) */
            CHECK(worst <= 2e-6, "%s: trajectory differs from the fixture by %g (relative)", name, worst);
            free(want);
        }
    free(x0);
    free(eps);
    scheduler_free(s[0]);
    scheduler_free(s[1]);
    st_close(f);
}

int main(void)
{
    sched_config cfg;
    sd_default_configs(NULL, NULL, NULL, &cfg);
    test_ddim(&cfg);
    test_dpm(&cfg);
    test_spacings(&cfg);
    test_fixtures(&cfg);
    test_timestep_table(&cfg);
    test_timestep_edges(&cfg);
    return check_done("test_scheduler");
}

/* DDIM and DPM-Solver++ (2M) as diffusers 0.19 computes them, LCMScheduler as diffusers 0.27 does (its
 * set_timesteps: the evenly spaced indices into the original schedule that 0.26 introduced; 0.24-0.25 took
 * origin[::-skip][:N] instead), TCDScheduler as 0.27 does (LCM's timesteps, its own step): tables and step
 * arithmetic in float32, in the order torch evaluates the expressions; index arithmetic of set_timesteps in double
 * as numpy does it. */
#include "augment/engine/scheduler.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "common/err.h"

struct scheduler {
    enum sd_sched_kind kind;
    sched_config cfg;
    enum sd_spacing spacing;
    int T;                      /* num_train_timesteps */
    float *acp;                 /* alphas_cumprod [T] */
    float final_acp;            /* DDIM: ᾱ used when the previous timestep is < 0 */
    float *alpha_t, *sigma_t, *lambda_t;    /* DPM-Solver: sqrt(ᾱ), sqrt(1-ᾱ), log alpha - log sigma */
    double eta;                 /* TCD: the step's stochasticity (gamma in the paper) */
    int n;                      /* inference steps */
    int *ts;                    /* [n] descending */
};

/* torch.linspace(start, end, steps, dtype=float32) as the CPU kernel computes it (AVX2 build): blocks of 8 lanes
 * whose base is start + step*idx (or end - step*(steps-idx-1) from the block at halfway on) with one rounding
 * (the compiler fuses it), then base + step*lane rounded twice; the last steps % 16 values on the scalar path.
 * This reproduces torch's betas bit for bit, so alphas_cumprod matches exactly. */
static void linspace_f32(float start, float end, int steps, float *out)
{
    const float step = (end - start) / (float)(steps - 1);
    const int half = steps / 2, nvec = steps / 16 * 16;
    for (int i0 = 0; i0 < nvec; i0 += 8) {
        float base = i0 < half ? fmaf(step, (float)i0, start) : fmaf(-step, (float)(steps - i0 - 1), end);
        for (int l = 0; l < 8; l++) {
            float d = step * (float)l;
            out[i0 + l] = base + d;
        }
    }
    for (int i = nvec; i < steps; i++)
        out[i] = i < half ? fmaf(step, (float)i, start) : fmaf(-step, (float)(steps - i - 1), end);
}

int scheduler_kind_parse(const char *name)
{
    if (!strcmp(name, "ddim")) return SD_SCHED_DDIM;
    if (!strcmp(name, "dpmpp2m") || !strcmp(name, "dpm")) return SD_SCHED_DPMPP_2M;
    if (!strcmp(name, "lcm")) return SD_SCHED_LCM;
    if (!strcmp(name, "tcd")) return SD_SCHED_TCD;
    return -1;
}

int scheduler_own_timesteps(enum sd_sched_kind kind) { return kind == SD_SCHED_LCM || kind == SD_SCHED_TCD; }

const char *scheduler_kind_name(enum sd_sched_kind kind)
{
    return kind == SD_SCHED_DDIM ? "ddim" : kind == SD_SCHED_LCM ? "lcm" : kind == SD_SCHED_TCD ? "tcd" : "dpmpp2m";
}

scheduler *scheduler_create(enum sd_sched_kind kind, const sched_config *cfg)
{
    if (kind != SD_SCHED_DDIM && kind != SD_SCHED_DPMPP_2M && kind != SD_SCHED_LCM && kind != SD_SCHED_TCD) {
        err_set("scheduler: unknown kind %d", (int)kind);
        return NULL;
    }
    if (!cfg->prediction_epsilon && kind != SD_SCHED_LCM && kind != SD_SCHED_TCD) {
        err_set("scheduler: %s runs epsilon prediction only (v_prediction: lcm, tcd)", scheduler_kind_name(kind));
        return NULL;
    }
    if (cfg->thresholding) {
        err_set("scheduler: dynamic thresholding is not supported");
        return NULL;
    }
    if (kind == SD_SCHED_DPMPP_2M) {
        if (cfg->solver_order != 2) {
            err_set("scheduler config: DPM-Solver solver_order %d is not supported (only 2)", cfg->solver_order);
            return NULL;
        }
        if (!cfg->algorithm_dpmsolverpp) {
            err_set("scheduler config: DPM-Solver algorithm_type dpmsolver is not supported (only dpmsolver++)");
            return NULL;
        }
        if (cfg->use_karras_sigmas) {
            err_set("scheduler config: use_karras_sigmas is not supported");
            return NULL;
        }
    }
    int T = cfg->num_train_timesteps;
    if (T < 2 || T > 100000) {
        err_set("scheduler config: num_train_timesteps %d is out of range", T);
        return NULL;
    }
    scheduler *s = calloc(1, sizeof *s);
    if (!s) {
        err_set("scheduler: out of memory");
        return NULL;
    }
    s->kind = kind;
    s->cfg = *cfg;
    s->T = T;
    s->spacing = cfg->timestep_spacing != SD_SPACING_UNSET ? cfg->timestep_spacing
               : kind == SD_SCHED_DDIM ? SD_SPACING_LEADING : SD_SPACING_LINSPACE;
    s->acp = malloc(sizeof(float) * T);
    s->alpha_t = malloc(sizeof(float) * T);
    s->sigma_t = malloc(sizeof(float) * T);
    s->lambda_t = malloc(sizeof(float) * T);
    s->ts = malloc(sizeof(int) * T);
    if (!s->acp || !s->alpha_t || !s->sigma_t || !s->lambda_t || !s->ts) {
        scheduler_free(s);
        err_set("scheduler: out of memory");
        return NULL;
    }
    float *betas = s->alpha_t;     /* scratch until the DPM tables are filled */
    if (cfg->beta_schedule_scaled_linear) {
        linspace_f32((float)sqrt(cfg->beta_start), (float)sqrt(cfg->beta_end), T, betas);
        for (int i = 0; i < T; i++) betas[i] = betas[i] * betas[i];
    } else {
        linspace_f32((float)cfg->beta_start, (float)cfg->beta_end, T, betas);
    }
    /* torch.cumprod on the CPU accumulates float32 in double */
    double acc = 1.0;
    for (int i = 0; i < T; i++) {
        acc *= (double)(1.0f - betas[i]);
        s->acp[i] = (float)acc;
    }
    s->final_acp = cfg->set_alpha_to_one ? 1.0f : s->acp[0];
    for (int i = 0; i < T; i++) {
        s->alpha_t[i] = sqrtf(s->acp[i]);
        s->sigma_t[i] = sqrtf(1.0f - s->acp[i]);
        s->lambda_t[i] = logf(s->alpha_t[i]) - logf(s->sigma_t[i]);
    }
    return s;
}

void scheduler_free(scheduler *s)
{
    if (!s) return;
    free(s->acp);
    free(s->alpha_t);
    free(s->sigma_t);
    free(s->lambda_t);
    free(s->ts);
    free(s);
}

/* numpy's np.linspace(0, stop, num)[i].round(): i * (stop / div), the last one exactly stop, but a single value is
 * start, 0 (numpy sets the endpoint only for num > 1); round half even */
static int np_linspace_round(double stop, int num, int i)
{
    if (num == 1) return 0;
    if (i == num - 1) return (int)rint(stop);
    return (int)rint((double)i * (stop / (double)(num - 1)));
}

/* Trailing spacing: np.round(np.arange(T, 0, -T / n)) - 1 with numpy's arithmetic. The length is ceil(-T / step),
 * which rounding can make n + 1; element i is T + i * ((T + step) - T) (numpy's fill: element 1 minus element 0 as
 * the stride), so 1000 - 3 * 1000/48 comes out 937.4999999999999, not 937.5. The n + 1 case ends in timestep -1,
 * which diffusers 0.19 keeps and would index as alphas_cumprod[-1] (the last entry): refused here. */
static int trailing_timesteps(const scheduler *s, int n, int *ts)
{
    const int T = s->T;
    const double step = -((double)T / n), delta = ((double)T + step) - (double)T;
    const int len = (int)ceil((double)-T / step);
    if (len != n)
        return err_set("scheduler: trailing spacing with %d steps: diffusers 0.19 makes %d timesteps, the last %d "
                       "(numpy's arange(%d, 0, -%d/%d) has %d elements), which it would read as the last entry of "
                       "alphas_cumprod; choose another number of steps", n, len,
                       (int)rint((double)T + (double)(len - 1) * delta) - 1, T, T, n, len);
    for (int i = 0; i < n; i++) ts[i] = (int)rint((double)T + (double)i * delta) - 1;
    return 0;
}

static const char *spacing_name(enum sd_spacing sp)
{
    return sp == SD_SPACING_LEADING ? "leading" : sp == SD_SPACING_LINSPACE ? "linspace" : "trailing";
}

int scheduler_set_timesteps(scheduler *s, int n)
{
    const int T = s->T;
    if (n < 1 || n > T) return err_set("scheduler: %d inference steps (1..%d supported)", n, T);
    const int off = s->cfg.steps_offset;
    int *ts = s->ts, k = 0;
    if (scheduler_own_timesteps(s->kind)) {
        const int orig = s->cfg.original_inference_steps;
        if (n > orig)
            return err_set("scheduler: %s takes at most original_inference_steps = %d steps, not %d",
                           scheduler_kind_name(s->kind), orig, n);
        s->n = n;
        sched_state st = {.lcm_len = orig};
        for (int i = 0; i < n; i++) ts[i] = scheduler_item_timestep(s, &st, i);
        return 0;
    }
    if (s->spacing == SD_SPACING_TRAILING && trailing_timesteps(s, n, ts)) return -1;
    if (s->kind == SD_SCHED_DDIM) {
        if (s->spacing == SD_SPACING_LINSPACE) {
            for (int i = 0; i < n; i++) ts[i] = np_linspace_round(T - 1, n, n - 1 - i);
        } else if (s->spacing == SD_SPACING_LEADING) {
            int ratio = T / n;
            for (int i = 0; i < n; i++) ts[i] = (n - 1 - i) * ratio + off;
        }
        k = n;
    } else {
        /* lambda_min_clipped is -inf: the last usable timestep is T */
        if (s->spacing == SD_SPACING_LINSPACE) {
            for (int i = 0; i < n; i++) ts[i] = np_linspace_round(T - 1, n + 1, n - i);
        } else if (s->spacing == SD_SPACING_LEADING) {
            int ratio = T / (n + 1);
            for (int i = 0; i < n; i++) ts[i] = (n - i) * ratio + off;
        }
        /* 0.19 drops repeated timesteps (possible when n is close to T), keeping first occurrences */
        k = 0;
        for (int i = 0; i < n; i++) {
            int dup = 0;
            for (int j = 0; j < k && !dup; j++) dup = ts[j] == ts[i];
            if (!dup) ts[k++] = ts[i];
        }
    }
    /* leading + steps_offset can pass the table's end (DDIM at n = T, DPM at n = T - 1, steps_offset 1) */
    for (int i = 0; i < k; i++)
        if (ts[i] >= T)
            return err_set("scheduler: %s spacing with %d steps and steps_offset %d gives timestep %d, past the "
                           "training timesteps 0..%d (diffusers 0.19 makes the same schedule and fails with an "
                           "IndexError on its tables at the first step); use fewer steps", spacing_name(s->spacing), n,
                           off, ts[i], T - 1);
    s->n = k;
    return 0;
}

int scheduler_num_steps(const scheduler *s) { return s->n; }
int scheduler_timestep(const scheduler *s, int i) { return s->ts[i]; }
const float *scheduler_alphas_cumprod(const scheduler *s) { return s->acp; }
float scheduler_init_noise_sigma(const scheduler *s) { return 1.0f; }

void sched_state_init(sched_state *st, float *prev, size_t n)
{
    st->prev = prev;
    st->n = n;
    st->lower_order_nums = 0;
    st->last_index = -1;
    st->lcm_len = 0;
}

int scheduler_begin(const scheduler *s, sched_state *st, double r, int *start)
{
    const int N = s->n;
    if (!(r > 0.0 && r <= 1.0)) return err_set("scheduler: strength %g is outside (0, 1]", r);
    if (scheduler_own_timesteps(s->kind)) {
        /* set_timesteps(strength): int(original_steps * strength) original timesteps, len // N of them per step */
        const int len = (int)(s->cfg.original_inference_steps * r);
        if (len / N < 1)
            return err_set("scheduler: strength %g leaves int(%d * %g) = %d original timesteps, fewer than %d steps",
                           r, s->cfg.original_inference_steps, r, len, N);
        st->lcm_len = len;
        *start = 0;
        return 0;
    }
    /* pipeline get_timesteps: init = min(int(N * strength), N); t_start = N - init */
    int steps = (int)(N * r);
    if (steps > N) steps = N;
    if (steps < 1) return err_set("scheduler: strength %g gives no denoising step with %d steps", r, N);
    *start = N - steps;
    return 0;
}

/* LCM: the original schedule is (j + 1) * k - 1 for j < len (k = T // original_steps), reversed; step i takes
 * entry floor(i * (len / N)) of it (np.linspace(0, len, N, endpoint=False), floored) */
int scheduler_item_timestep(const scheduler *s, const sched_state *st, int i)
{
    if (!scheduler_own_timesteps(s->kind)) return s->ts[i];
    const int len = st->lcm_len, k = s->T / s->cfg.original_inference_steps;
    const int j = (int)floor((double)i * ((double)len / (double)s->n));
    return (len - j) * k - 1;
}

static void ddim_coefs(const scheduler *s, int t, ops_step *c)
{
    int prev_t = t - s->T / s->n;
    float a_t = s->acp[t];
    float a_prev = prev_t >= 0 ? s->acp[prev_t] : s->final_acp;
    float b_t = 1.0f - a_t;
    *c = (ops_step){.kind = OPS_STEP_DDIM, .s_eps = sqrtf(b_t), .s_x0 = sqrtf(a_t), .clip = s->cfg.clip_sample != 0,
                    .clip_range = s->cfg.clip_sample_range, .c_a = sqrtf(a_prev),
                    .c_b = sqrtf(1.0f - a_prev - 0.0f)};   /* eta = 0: std_dev_t is 0 */
}

static void dpm_coefs(const scheduler *s, sched_state *st, int idx, ops_step *c)
{
    const int N = s->n, t = s->ts[idx], prev_t = idx == N - 1 ? 0 : s->ts[idx + 1];
    const int lower_order_final = idx == N - 1 && s->cfg.lower_order_final && N < 15;
    const float al_s = s->alpha_t[t], sg_s = s->sigma_t[t];
    const float al_t = s->alpha_t[prev_t], sg_t = s->sigma_t[prev_t];
    const float h = s->lambda_t[prev_t] - s->lambda_t[t];
    const float c_d0 = al_t * (expf(-h) - 1.0f);
    *c = (ops_step){.kind = OPS_STEP_DPM1, .s_eps = sg_s, .s_x0 = al_s, .c_a = sg_t / sg_s, .c_b = c_d0};
    if (!(st->lower_order_nums < 1 || lower_order_final)) {
        const int s1 = s->ts[idx - 1];
        const float h0 = s->lambda_t[t] - s->lambda_t[s1];
        c->kind = OPS_STEP_DPM2;
        c->inv_r0 = 1.0f / (h0 / h);
        c->midpoint = s->cfg.solver_midpoint;
        c->c_d1 = c->midpoint ? 0.5f * c_d0 : al_t * ((expf(-h) - 1.0f) / h + 1.0f);
    }
    if (st->lower_order_nums < 2) st->lower_order_nums++;
}

/* LCMScheduler.step: the DDIM data prediction (or v-prediction's), the consistency boundary condition
 * denoised = c_out * x0 + c_skip * x with torch's float32 scalings at t * timestep_scaling, then noise to the next
 * timestep but after the last step */
static int lcm_coefs(const scheduler *s, const sched_state *st, int i, ops_step *c)
{
    if (!st->lcm_len) return err_set("scheduler: lcm step before scheduler_begin");
    const int t = scheduler_item_timestep(s, st, i), last = i == s->n - 1;
    const int prev_t = last ? t : scheduler_item_timestep(s, st, i + 1);
    const float a_t = s->acp[t], b_t = 1.0f - a_t, a_prev = s->acp[prev_t], b_prev = 1.0f - a_prev;
    const float st_ = (float)t * s->cfg.timestep_scaling, d = st_ * st_ + 0.25f;   /* sigma_data = 0.5 */
    *c = (ops_step){.kind = OPS_STEP_LCM, .s_eps = sqrtf(b_t), .s_x0 = sqrtf(a_t), .clip = s->cfg.clip_sample > 0,
                    .clip_range = s->cfg.clip_sample_range, .c_a = sqrtf(a_prev), .c_b = sqrtf(b_prev),
                    .c_skip = 0.25f / d, .c_out = st_ / sqrtf(d), .vpred = !s->cfg.prediction_epsilon,
                    .noise = !last};
    return 0;
}

/* TCDScheduler.step: x0 and eps from the model output, the DDIM update to s = floor((1 - eta) * prev_t) (torch
 * multiplies in float32), then with eta > 0 and before the last step noise from s forward to prev_t; the last step
 * goes to timestep 0 */
static int tcd_coefs(const scheduler *s, const sched_state *st, int i, ops_step *c)
{
    if (!st->lcm_len) return err_set("scheduler: tcd step before scheduler_begin");
    const int t = scheduler_item_timestep(s, st, i), last = i == s->n - 1;
    const int prev_t = last ? 0 : scheduler_item_timestep(s, st, i + 1);
    const int ts = (int)floorf((float)(1.0 - s->eta) * (float)prev_t);
    const float a_t = s->acp[t], b_t = 1.0f - a_t, a_prev = s->acp[prev_t], a_s = s->acp[ts], b_s = 1.0f - a_s;
    const float q = a_prev / a_s;
    *c = (ops_step){.kind = OPS_STEP_TCD, .s_eps = sqrtf(b_t), .s_x0 = sqrtf(a_t), .c_a = sqrtf(a_s),
                    .c_b = sqrtf(b_s), .n_a = sqrtf(q), .n_b = sqrtf(1.0f - q), .vpred = !s->cfg.prediction_epsilon,
                    .noise = s->eta > 0.0 && !last};
    return 0;
}

int scheduler_set_eta(scheduler *s, double eta)
{
    if (!(eta >= 0.0 && eta <= 1.0)) return err_set("scheduler: eta %g is outside [0, 1]", eta);
    s->eta = eta;
    return 0;
}

int scheduler_prepare(const scheduler *s, sched_state *st, int i, ops_step *c)
{
    if (i < 0 || i >= s->n) return err_set("scheduler: step index %d outside 0..%d", i, s->n - 1);
    if (st->last_index >= 0 && i != st->last_index + 1)
        return err_set("scheduler: step %d follows step %d; an item must step through consecutive indices", i,
                       st->last_index);
    if (s->kind == SD_SCHED_DDIM) {
        ddim_coefs(s, s->ts[i], c);
    } else if (s->kind == SD_SCHED_LCM) {
        if (lcm_coefs(s, st, i, c)) return -1;
    } else if (s->kind == SD_SCHED_TCD) {
        if (tcd_coefs(s, st, i, c)) return -1;
    } else {
        if (!st->prev) return err_set("scheduler: DPM-Solver state has no buffer");
        dpm_coefs(s, st, i, c);
    }
    st->last_index = i;
    return 0;
}

int scheduler_step(const scheduler *s, sched_state *st, int i, const float *eps, float *sample, size_t n)
{
    if (s->kind != SD_SCHED_DDIM && (!st->prev || st->n < n))
        return err_set("scheduler: %s state has no buffer for %zu values", scheduler_kind_name(s->kind), n);
    ops_step c;
    if (scheduler_prepare(s, st, i, &c)) return -1;
    ops_step_host(&c, eps, sample, st->prev, n);
    return 0;
}

void scheduler_noise_scales(const scheduler *s, int t, float *sa, float *sb)
{
    const float a = s->acp[t];
    *sa = sqrtf(a);
    *sb = sqrtf(1.0f - a);
}


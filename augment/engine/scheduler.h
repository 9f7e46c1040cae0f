/* DDIM (eta 0) and DPM-Solver++ 2M with diffusers 0.19 semantics, and LCM (latent consistency models) with
 * diffusers 0.27's LCMScheduler and TCDScheduler (trajectory consistency: LCM's timesteps, a DDIM step to an
 * intermediate timestep and noise from there, so eta 0 keeps the trajectory of the noised source and eta 1 is
 * LCM-like): the same float32 tables (betas by a float32 linspace, alphas_cumprod), the same
 * timestep selection per class and spacing, the same step arithmetic in float32.
 *
 * The scheduler itself is read-only after scheduler_set_timesteps; what changes during sampling lives in a
 * sched_state per item, so items of one batch may be at different steps (DDIM/DPM img2img items with different
 * strengths join the schedule at their own start index) or on different schedules (LCM and TCD img2img items
 * with different strengths run all N steps over timesteps of their own). */
#ifndef GENIE_SCHEDULER_H
#define GENIE_SCHEDULER_H
#include <stddef.h>
#include "augment/engine/backend/ops.h"
#include "augment/engine/sdconfig.h"

typedef struct scheduler scheduler;

/* The scheduler names every command and genie.cfg accept: "ddim", "dpmpp2m" ("dpm" for short), "lcm" and "tcd".
 * The kind, or -1 when the name is none of them; scheduler_kind_name gives the canonical name back. */
#define SCHEDULER_NAMES "ddim, dpmpp2m, lcm or tcd"
int scheduler_kind_parse(const char *name);
const char *scheduler_kind_name(enum sd_sched_kind kind);
/* 1 for LCM and TCD: every item runs all N steps over timesteps of its own, drawn at its strength (so any r that
 * leaves N original timesteps gives steps); 0 for DDIM and DPM-Solver, whose items run int(N * r) shared steps. */
int scheduler_own_timesteps(enum sd_sched_kind kind);

/* NULL + err_msg() on a config the chosen scheduler cannot run (e.g. DPM solver_order 3, karras sigmas). */
scheduler *scheduler_create(enum sd_sched_kind kind, const sched_config *cfg);
void scheduler_free(scheduler *s);
/* TCD's eta (the paper's gamma) in [0, 1], the argument diffusers passes to every TCDScheduler.step: 0 is
 * deterministic, 1 re-noises fully; 0 until set. Other kinds ignore it. -1 + err_msg() outside [0, 1]. */
int scheduler_set_eta(scheduler *s, double eta);

/* Chooses the n inference timesteps (descending; LCM, TCD: those of strength 1). -1 + err_msg() if n is out of range
 * (LCM, TCD: also n > original_inference_steps). */
int scheduler_set_timesteps(scheduler *s, int n);
int scheduler_num_steps(const scheduler *s);
/* i-th timestep, 0 <= i < num_steps (LCM, TCD: strength 1) */
int scheduler_timestep(const scheduler *s, int i);
const float *scheduler_alphas_cumprod(const scheduler *s);  /* [num_train_timesteps], float32 as torch has it */
float scheduler_init_noise_sigma(const scheduler *s);      /* 1 for both */

/* Per-item sampling state. DPM-Solver++ keeps the previous data prediction and LCM (TCD) takes the noise it injects
 * there: prev must hold n floats (sized by the caller, so stepping never allocates); DDIM does not use it (prev
 * may be NULL). */
typedef struct {
    float *prev;
    size_t n;
    int lower_order_nums;   /* steps taken so far, capped at the solver order */
    int last_index;         /* index of the last step taken, -1 before the first */
    int lcm_len;            /* LCM: original timesteps the item's schedule is drawn from, int(original * strength) */
} sched_state;

void sched_state_init(sched_state *st, float *prev, size_t n);

/* An item's strength r in (0, 1] (txt2img: 1), by the scheduler's img2img rule: the index of its first step into
 * *start. DDIM, DPM-Solver (StableDiffusionImg2ImgPipeline.get_timesteps): int(N * r) steps of the shared schedule
 * from index N - int(N * r). LCM and TCD (LatentConsistencyModelImg2ImgPipeline, strength inside set_timesteps): all N
 * steps from index 0 over the item's own timesteps, drawn from the first int(original_inference_steps * r)
 * original ones. -1 + err_msg() when r gives no step (LCM: fewer original timesteps than steps). */
int scheduler_begin(const scheduler *s, sched_state *st, double r, int *start);
/* The timestep of the item's step at schedule index i (its own schedule under LCM and TCD, else scheduler_timestep). */
int scheduler_item_timestep(const scheduler *s, const sched_state *st, int i);

/* One step at timestep index i for one item: sample[n] <- previous sample, given the (guided) noise prediction
 * eps[n]. Items must step through consecutive indices (first step anywhere). LCM, TCD: st->prev holds the noise to
 * inject (drawn by the caller before the step). -1 + err_msg() on misuse. */
int scheduler_step(const scheduler *s, sched_state *st, int i, const float *eps, float *sample, size_t n);

/* The host half of scheduler_step: checks the index, advances st and fills c for a backend's sched_step op,
 * which does the per-element half on st->prev (a backend buffer then; LCM, TCD: c->noise says whether the step injects
 * noise, to be in st->prev when the op runs). -1 + err_msg() on misuse. */
int scheduler_prepare(const scheduler *s, sched_state *st, int i, ops_step *c);

/* diffusers' add_noise as two scales, x_t = sa * x0 + sb * noise with sa = sqrt(acp[t]) and sb = sqrt(1 - acp[t]),
 * for a backend's lincomb op */
void scheduler_noise_scales(const scheduler *s, int t, float *sa, float *sb);

#endif

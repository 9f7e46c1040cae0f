/* Backend-neutral tensor ops for the diffusion networks (clip.c, vae.c, unet.c).
 *
 * One op per function, forward only, float32. Images are NCHW; token sequences are row-major [B, T, C]. A
 * backend (ops_cpu.c, ops_cuda.cu) fills an ops_backend with function pointers that work on its own
 * memory ("device" pointers): model code never sees which one it runs on.
 *
 * Work memory comes from an ops_arena, a stack allocator over one backend buffer. A model sizes its arena at
 * load with a dry run of its forward pass at the largest batch/size it must serve: in a dry run the arena only
 * counts and the OPS_RUN wrapper below skips the op. A forward pass then only pushes and pops; it never allocates.
 * A backend (and the models on it) is driven by one thread at a time; the backend parallelises inside each op. */
#ifndef GENIE_OPS_H
#define GENIE_OPS_H
#include <stddef.h>
#include <stdint.h>

/* count_nonfinite's answer on a failed backend: never a count a caller could take for finite data */
#define OPS_COUNT_FAILED SIZE_MAX

/* The longest key sequence attention supports (a per-thread score tile holds at least one row). */
#define OPS_MAX_KEYS (1 << 22)

enum ops_act { OPS_ACT_NONE, OPS_ACT_SILU, OPS_ACT_GELU, OPS_ACT_QUICK_GELU };

/* One scheduler update's coefficients (scheduler_prepare fills them on the host). Per element:
 *   m = (x - s_eps*eps) / s_x0, clamped to [-clip_range, clip_range] when clip (the data prediction)
 *   OPS_STEP_DDIM: x = c_a*m + c_b*eps
 *   OPS_STEP_DPM1: x = c_a*x - c_b*m; prev = m
 *   OPS_STEP_DPM2: d1 = inv_r0*(m - prev); a = c_a*x - c_b*m; x = midpoint ? a - c_d1*d1 : a + c_d1*d1; prev = m
 *   OPS_STEP_LCM:  m as above, or m = s_x0*x - s_eps*eps when vpred (then clamped the same way);
 *                  d = c_out*m + c_skip*x; x = noise ? c_a*d + c_b*prev : d (prev holds the injected noise)
 *   OPS_STEP_TCD:  m as LCM's but never clamped, e = eps, or e = s_x0*eps + s_eps*x when vpred;
 *                  s = c_a*m + c_b*e; x = noise ? n_a*s + n_b*prev : s (prev holds the injected noise) */
enum ops_step_kind { OPS_STEP_DDIM, OPS_STEP_DPM1, OPS_STEP_DPM2, OPS_STEP_LCM, OPS_STEP_TCD };
typedef struct ops_step {
    enum ops_step_kind kind;
    float s_eps, s_x0;
    int clip;
    float clip_range;
    float c_a, c_b;
    float inv_r0, c_d1;
    int midpoint;
    float c_skip, c_out;
    float n_a, n_b;
    int vpred;
    int noise;                  /* the step mixes in the noise in prev (LCM, TCD): the caller draws it there first */
} ops_step;

/* The CPU loop of the sched_step op (ops_cpu.c); scheduler_step runs it on host arrays. */
void ops_step_host(const ops_step *c, const float *eps, float *x, float *prev, size_t n);

/* The precision weights are stored in. f32: every op in float32. f16/bf16 (the CUDA backend): weights are
 * converted at weight_put and stay in that type on the device; linear and conv2d round their input activations to
 * it and multiply with float32 accumulation; the other ops that take weights (norms' gamma/beta, embedding tables,
 * biases) read them widened to float32; activations between ops stay float32. */
enum ops_precision { OPS_F32, OPS_F16, OPS_BF16 };

/* What a backend holds, in bytes (its allocations; on the CPU, weights are the host arrays handed to weight_put). */
typedef struct {
    size_t weights;             /* weights now, in their stored precision */
    size_t buffers;             /* buffers now: arenas, engine state, scratch */
    size_t peak;                /* most weights + buffers at once */
    size_t host;                /* host staging buffers (host_alloc; pinned on a device) */
    size_t device_used, device_total;   /* the whole device as the driver reports it (all processes); 0 on the CPU */
} ops_mem;

typedef struct ops_backend ops_backend;
struct ops_backend {
    const char *name;
    void *impl;
    int weights_on_host;   /* weight_put keeps the host array (the CPU): it must outlive the weights */

    /* memory: device buffers of n floats; weights are handed over from host float32 arrays (the CPU backend
     * keeps the host pointer, a device backend copies, converting to its precision). A weight stored in f16/bf16
     * is only for the ops that take weights: never download or copy it. */
    float *(*alloc)(ops_backend *be, size_t n);
    void (*release)(ops_backend *be, float *p);
    const float *(*weight_put)(ops_backend *be, const float *host, size_t n);
    void (*weight_drop)(ops_backend *be, const float *dev);
    void (*upload)(ops_backend *be, float *dst, const float *host, size_t n);
    void (*download)(ops_backend *be, float *host, const float *src, size_t n);
    void (*copy)(ops_backend *be, float *dst, const float *src, size_t n);   /* regions may overlap */
    /* NaN/inf values among x[0..n); OPS_COUNT_FAILED once the backend has failed (its sync then says why) */
    size_t (*count_nonfinite)(ops_backend *be, const float *x, size_t n);
    /* zeroed host memory for data going to and from the backend (pinned on a device, so copies run at full
     * speed); NULL + err_msg() on failure */
    void *(*host_alloc)(ops_backend *be, size_t bytes);
    void (*host_free)(ops_backend *be, void *p);
    void (*mem)(ops_backend *be, ops_mem *m);
    enum ops_precision precision;

    /* y[B,Cout,Ho,Wo] = conv(x[B,Cin,H,W], w[Cout,Cin,k,k]) + bias; pads are top, left, bottom, right;
     * Ho = (H + pt + pb - k) / stride + 1 */
    void (*conv2d)(ops_backend *be, const float *x, int B, int Cin, int H, int W, const float *w,
                   const float *bias, int Cout, int k, int stride, const int pad[4], float *y);
    /* y[rows,out] = x[rows,in] @ w[out,in]^T + bias (bias may be NULL) */
    void (*linear)(ops_backend *be, const float *x, int rows, int in, const float *w, const float *bias,
                   int out, float *y);
    /* per (batch, group) statistics over C/G channels x HW; then affine and an optional activation; y may be x */
    void (*group_norm)(ops_backend *be, const float *x, int B, int C, int HW, int G, float eps,
                       const float *gamma, const float *beta, enum ops_act act, float *y);
    void (*layer_norm)(ops_backend *be, const float *x, int rows, int C, float eps, const float *gamma,
                       const float *beta, float *y);
    /* y = a + b (y may alias a or b) */
    void (*add)(ops_backend *be, const float *a, const float *b, size_t n, float *y);
    void (*mul)(ops_backend *be, const float *a, const float *b, size_t n, float *y);
    /* x[b,c,:] += v[b,c]: the time embedding added to a ResNet's feature map */
    void (*add_channel)(ops_backend *be, float *x, int B, int C, int HW, const float *v);
    void (*act)(ops_backend *be, enum ops_act act, const float *x, size_t n, float *y);    /* y may be x */
    /* y[rows,inner] = x[:, :inner] * gelu(x[:, inner:]) for x[rows, 2*inner] */
    void (*geglu)(ops_backend *be, const float *x, int rows, int inner, float *y);
    /* Multi-head scaled dot-product attention, Tk <= OPS_MAX_KEYS. Row t of batch b of q starts at
     * q + (b*Tq + t)*ldq, the same for k, v (ldk, ldv) and out (heads*dh contiguous); head h uses columns
     * h*dh .. h*dh+dh-1.
     * causal: query t sees keys 0..t. Scores are never materialised for all heads at once. */
    void (*attention)(ops_backend *be, const float *q, int ldq, const float *k, int ldk, const float *v, int ldv,
                      int B, int Tq, int Tk, int heads, int dh, float scale, int causal, float *out);
    void (*upsample2x)(ops_backend *be, const float *x, int B, int C, int H, int W, float *y);
    /* y[B, Ca+Cb, HW] = cat(a[B,Ca,HW], b[B,Cb,HW]) along channels */
    void (*concat)(ops_backend *be, const float *a, int Ca, const float *b, int Cb, int B, int HW, float *y);
    /* [B,C,HW] -> [B,HW,C] and back */
    void (*to_tokens)(ops_backend *be, const float *x, int B, int C, int HW, float *y);
    void (*from_tokens)(ops_backend *be, const float *x, int B, int C, int HW, float *y);
    /* y[B,dim] = sinusoidal embedding of the host timesteps t[B] (diffusers get_timestep_embedding, max period
     * 10000): half = dim/2, f_i = exp(-ln(1e4) i / (half - shift)); [sin, cos], or [cos, sin] when flip. A device
     * may read t when the op runs: keep it unchanged until the next sync (and from host_alloc under replay). */
    void (*timestep_embedding)(ops_backend *be, const float *t, int B, int dim, int flip, float shift, float *y);
    /* y[B,L,C] = tok[ids[b,l]] + pos[l], ids on the host (validated by the caller) */
    void (*embed_tokens)(ops_backend *be, const int *ids, int B, int L, const float *tok, const float *pos, int C,
                         float *y);

    /* The sampling loop's elementwise work, so the engine's state stays in backend memory. The scalars come from
     * the host (scheduler.c, engine.c); each op is the engine's former host loop, element by element in the same
     * float operations, so the CPU backend's results are those of that loop bit for bit. */
    void (*fill)(ops_backend *be, float *y, size_t n, float v);
    /* y[n] = philox_fill_normal(seed, stream) (common/philox.h; a device computes it with its own logf/sinf/cosf) */
    void (*fill_normal)(ops_backend *be, float *y, size_t n, uint64_t seed, uint64_t stream);
    /* y = a*x + b*z, or y = a*x when z is NULL (y may alias x or z) */
    void (*lincomb)(ops_backend *be, float a, const float *x, float b, const float *z, size_t n, float *y);
    /* y = x / d: a true division (diffusers' latents / scaling_factor), not a product with 1/d */
    void (*div_scalar)(ops_backend *be, const float *x, float d, size_t n, float *y);
    /* y = fminf(fmaxf(x, lo), hi) (y may be x) */
    void (*clamp)(ops_backend *be, const float *x, float lo, float hi, size_t n, float *y);
    /* classifier-free guidance: y = u + g*(c - u) */
    void (*guide)(ops_backend *be, const float *u, const float *c, float g, size_t n, float *y);
    /* the VAE posterior sample: z = sf*(mu + expf(0.5*lv)*eps), or z = sf*mu when eps is NULL */
    void (*vae_sample)(ops_backend *be, const float *mu, const float *lv, const float *eps, float sf, size_t n,
                       float *z);
    /* one scheduler update of x[n] in place given the noise prediction eps[n] (see ops_step); prev[n] is
     * DPM-Solver's previous data prediction (read and replaced), LCM's noise to inject (read; unused on its last
     * step), NULL for DDIM */
    void (*sched_step)(ops_backend *be, const struct ops_step *c, const float *eps, float *x, float *prev, size_t n);
    /* Runs fn(ctx), which must only queue this backend's ops (no downloads, syncs, allocations or finite checks)
     * and queue the same ones on the same buffers whenever key is the same. The CUDA backend runs it directly the
     * first time, records it as a CUDA graph the second and replays the graph from then on, so host arrays its
     * ops read (timesteps) must come from host_alloc. The CPU backend calls fn. Returns what fn returned (0 when
     * a recording was launched); a recording during which fn failed is dropped, never launched. */
    int (*replay)(ops_backend *be, uint64_t key, int (*fn)(void *ctx), void *ctx);
    /* waits for queued work: 0, or -1 + err_msg() when the backend met an error (a device's ops return void) */
    int (*sync)(ops_backend *be);

    void (*destroy)(ops_backend *be);
};

/* CPU backend: OpenBLAS sgemm plus a persistent pthread pool of nthreads (<= 0: the number of online CPUs).
 * Results do not depend on nthreads: work is split into tiles chosen from the sizes alone and every tile runs
 * single-threaded sgemm. NULL + err_msg() on failure. */
ops_backend *ops_cpu_create(int nthreads);
int ops_cpu_threads(const ops_backend *be);

/* ---- arena ---- */
typedef struct {
    ops_backend *be;
    float *base;
    size_t cap, top, peak;      /* in floats */
    int dry;                    /* counting only: no memory, ops are skipped */
} ops_arena;

/* Arena pushes are rounded to 16 floats (64 bytes) so every buffer is cache-line aligned. A forward pass does
 * a dry run first and refuses sizes whose peak exceeds cap, so a real push never overflows. */
static inline float *ar_push(ops_arena *a, size_t n)
{
    size_t at = a->top;
    a->top += (n + 15) & ~(size_t)15;
    if (a->top > a->peak) a->peak = a->top;
    return a->dry ? NULL : a->base + at;
}
static inline size_t ar_mark(const ops_arena *a) { return a->top; }
static inline void ar_pop(ops_arena *a, size_t mark) { a->top = mark; }

/* Starts a dry run (counting only) or a real one. */
static inline void ar_begin(ops_arena *a, int dry)
{
    a->dry = dry;
    a->top = a->peak = 0;
}

/* Makes the arena hold at least n floats (a backend allocation, done at load). -1 on failure. */
static inline int ar_reserve(ops_arena *a, size_t n)
{
    if (n <= a->cap) return 0;
    float *p = a->be->alloc(a->be, n);
    if (!p) return -1;
    if (a->base) a->be->release(a->be, a->base);
    a->base = p;
    a->cap = n;
    return 0;
}

static inline void ar_free(ops_arena *a)
{
    if (a->base) a->be->release(a->be, a->base);
    a->base = NULL;
    a->cap = 0;
}

/* ---- op wrappers: skip the work during a dry run ---- */
#define OPS_RUN(a, op, ...) do { if (!(a)->dry) (a)->be->op((a)->be, __VA_ARGS__); } while (0)

#endif

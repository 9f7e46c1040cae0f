/* CUDA backend of ops.h: every op on one device, queued on one stream; activations always float32.
 *
 * Matrix products are cuBLAS SGEMM with the default math mode (full float32, no TF32): linear is one GEMM,
 * conv2d is im2col + GEMM per batch item and pixel chunk. With f16/bf16 weights (ops_precision) a product's input
 * is rounded to the weights' type on the way (linear: a conversion kernel; conv2d: im2col writes that type) and
 * the product is cublasGemmEx with float32 accumulation and a float32 result; norms, embeddings and biases read
 * their reduced weights widened to float. The memtrack table says which pointers are reduced weights. Everything
 * else is a kernel written against the CPU op it mirrors in ops_cpu.c (same formulas, same float/double choices),
 * so the two backends agree to rounding: tests/test_backend_ops.c compares them op by op. Attention is flash-style: scores live in registers and
 * shared memory one key tile at a time, with an online softmax; no Tq x Tk buffer is ever written.
 *
 * The stream is a blocking one, so it stays ordered with work on the legacy default stream (rng_cuda_fill_normal
 * called directly, as the tests do); the fill_normal op itself queues on the stream. Errors are sticky per backend
 * (see ops_cuda.h).
 *
 * replay records a sequence of ops (the UNet forward of a denoising step) as a CUDA graph per key and launches it
 * in one call; a graph holds the addresses it was recorded with, so one that used the scratch buffer is recorded
 * again after the buffer moves (scratch_gen). */
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "common/err.h"
#include "augment/engine/backend/memtrack.h"
#include "augment/engine/backend/ops.h"
}
#include "augment/engine/backend/ops_cuda.h"
#include "augment/engine/backend/rng_cuda.h"

#define FULL_MASK 0xffffffffu
#define EW_THREADS 256
/* im2col columns per GEMM: at most this many floats (64 MB); larger maps are cut into pixel chunks */
#define CONV_COL_FLOATS ((size_t)1 << 24)
/* bounce buffer of an overlapping copy, in floats */
#define COPY_BOUNCE ((size_t)1 << 22)
/* timesteps per timestep_embedding launch */
#define TS_CHUNK 32
/* replay keys with a graph; more keys run their ops directly */
#define GRAPH_SLOTS 64
/* cuBLAS's workspace, ours so that direct and recorded products use the same one (cuBLAS's size for Hopper) */
#define BLAS_WORKSPACE ((size_t)32 << 20)

typedef struct {
    uint64_t key;
    int runs;                           /* calls so far: the first runs directly, the second records */
    int direct;                         /* recording failed: always run directly */
    unsigned gen;                       /* scratch_gen when recorded */
    cudaGraphExec_t exec;
} graph_slot;

typedef struct {
    ops_backend be;
    int dev;
    cudaStream_t stream;
    cublasHandle_t blas;
    void *blas_ws;
    float *scratch;                     /* im2col columns, converted inputs, copy bounces; grown on demand */
    size_t scratch_n;
    memtrack mt;                        /* every allocation, for the report and the weights' types */
    unsigned scratch_gen;               /* bumped whenever the scratch buffer moves */
    float *ts_dev;                      /* TS_CHUNK timesteps, copied from the host as each launch runs */
    graph_slot graphs[GRAPH_SLOTS];
    int n_graphs;
    size_t graph_launches;
    unsigned long long *count_dev;      /* count_nonfinite's counter */
    char err[256];                      /* the first error, "" while there is none */
} cuda_be;

/* ---- errors ---- */

static void fail(cuda_be *c, const char *what, const char *why)
{
    if (c->err[0]) return;   /* the first error explains the ones that follow */
    snprintf(c->err, sizeof c->err, "cuda backend: %s: %s", what, why);
    err_set("%s", c->err);
}

static bool cu_ok(cuda_be *c, cudaError_t e, const char *what)
{
    if (e == cudaSuccess) return true;
    cudaGetLastError();      /* clear it, so the next launch check does not report it again */
    fail(c, what, cudaGetErrorString(e));
    return false;
}

static bool cb_ok(cuda_be *c, cublasStatus_t s, const char *what)
{
    if (s == CUBLAS_STATUS_SUCCESS) return true;
    fail(c, what, cublasGetStatusString(s));
    return false;
}

static void launched(cuda_be *c, const char *what) { cu_ok(c, cudaGetLastError(), what); }

/* The backend behind be, with its device current for this thread (a backend may be driven by another thread
 * than the one that created it). */
static cuda_be *use(ops_backend *be)
{
    cuda_be *c = (cuda_be *)be->impl;
    cu_ok(c, cudaSetDevice(c->dev), "cudaSetDevice");
    return c;
}

static unsigned ew_blocks(size_t n)
{
    size_t g = (n + EW_THREADS - 1) / EW_THREADS;
    return (unsigned)(g < 65536 ? g : 65536);   /* grid-stride loops do the rest */
}

#define FOR_N(i, n) \
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (size_t)gridDim.x * blockDim.x)

/* A device buffer of at least n floats, shared by the ops that need temporary room (one at a time: they are
 * ordered on the stream). Growing waits for queued work that may still read the old buffer. */
static float *scratch(cuda_be *c, size_t n)
{
    if (n <= c->scratch_n) return c->scratch;
    cudaStreamCaptureStatus cap = cudaStreamCaptureStatusNone;
    if (cudaStreamIsCapturing(c->stream, &cap) == cudaSuccess && cap != cudaStreamCaptureStatusNone) {
        fail(c, "scratch", "cannot grow while a graph is recorded");   /* replay then runs the ops directly */
        return NULL;
    }
    if (c->scratch) {
        cu_ok(c, cudaStreamSynchronize(c->stream), "scratch");
        mt_remove(&c->mt, c->scratch);
        cu_ok(c, cudaFree(c->scratch), "scratch");
    }
    c->scratch = NULL;
    c->scratch_n = 0;
    void *p = NULL;
    if (!cu_ok(c, cudaMalloc(&p, n * sizeof(float)), "scratch allocation")) return NULL;
    if (mt_add(&c->mt, p, n * sizeof(float), MT_BUFFER)) {
        cudaFree(p);
        fail(c, "scratch allocation", err_msg());
        return NULL;
    }
    c->scratch = (float *)p;
    c->scratch_n = n;
    c->scratch_gen++;
    return c->scratch;
}

/* ---- device helpers ---- */

/* weights' storage types to float and back (round to nearest even) */
__device__ __forceinline__ float widen(float v) { return v; }
__device__ __forceinline__ float widen(__half v) { return __half2float(v); }
__device__ __forceinline__ float widen(__nv_bfloat16 v) { return __bfloat162float(v); }
template <typename T> __device__ __forceinline__ T narrow(float v);
template <> __device__ __forceinline__ float narrow<float>(float v) { return v; }
template <> __device__ __forceinline__ __half narrow<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 narrow<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

/* Runs the statements with T the C++ type of precision p. */
#define BY_PREC(p, T, ...)                                                                                         \
    do {                                                                                                           \
        switch (p) {                                                                                               \
        case OPS_F16: { typedef __half T; __VA_ARGS__; break; }                                                    \
        case OPS_BF16: { typedef __nv_bfloat16 T; __VA_ARGS__; break; }                                            \
        default: { typedef float T; __VA_ARGS__; break; }                                                          \
        }                                                                                                          \
    } while (0)

/* The type a weight operand is stored in: the backend's precision for the weights it converted, float for
 * anything else (f32 weights, buffers from alloc holding weights, as tests do). */
static enum ops_precision wprec(const cuda_be *c, const void *p)
{
    return p && mt_kind(&c->mt, p) == MT_WEIGHT_HALF ? c->be.precision : OPS_F32;
}

__device__ __forceinline__ float act_apply(int act, float x)
{
    switch (act) {
    case OPS_ACT_SILU: return x / (1.0f + expf(-x));
    case OPS_ACT_GELU: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752440f));   /* erf GELU, as the CPU */
    case OPS_ACT_QUICK_GELU: return x / (1.0f + expf(-1.702f * x));
    default: return x;
    }
}

/* Butterfly reductions: every lane ends with the same value (each step adds the same pair in either order). */
__device__ __forceinline__ float warp_sum(float v)
{
    for (int o = 16; o; o >>= 1) v += __shfl_xor_sync(FULL_MASK, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v)
{
    for (int o = 16; o; o >>= 1) v = fmaxf(v, __shfl_xor_sync(FULL_MASK, v, o));
    return v;
}

/* Sum over the block (blockDim.x a multiple of 32), in double, the same value in every thread. */
__device__ double block_sum(double v)
{
    __shared__ double part[32];
    for (int o = 16; o; o >>= 1) v += __shfl_xor_sync(FULL_MASK, v, o);
    int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
    __syncthreads();   /* a previous call's readers are done with part[] */
    if (lane == 0) part[w] = v;
    __syncthreads();
    double s = 0;
    for (int i = 0; i < nw; i++) s += part[i];
    return s;
}

/* ---- memory ---- */

/* Device memory recorded as kind; NULL + err_msg() when out of memory (the caller's to handle, not a broken
 * backend). */
static void *dev_alloc(cuda_be *c, size_t bytes, int kind)
{
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        cudaGetLastError();
        err_set("cuda backend: cannot allocate %zu MB: %s", bytes >> 20, cudaGetErrorString(e));
        return NULL;
    }
    if (mt_add(&c->mt, p, bytes, kind)) {
        cudaFree(p);
        return NULL;
    }
    return p;
}

/* cudaFree waits for the device, so queued ops reading p finish first */
static void dev_free(cuda_be *c, const void *p, const char *what)
{
    if (!p) return;
    mt_remove(&c->mt, p);
    cu_ok(c, cudaFree((void *)p), what);
}

static float *cuda_alloc(ops_backend *be, size_t n)
{
    return (float *)dev_alloc(use(be), n * sizeof(float), MT_BUFFER);
}

static void cuda_release(ops_backend *be, float *p) { dev_free(use(be), p, "release"); }

/* Host -> device copies wait for completion: the caller may reuse or free the host array on return. */
static bool to_device(cuda_be *c, float *dst, const float *host, size_t n, const char *what)
{
    if (!n) return true;
    return cu_ok(c, cudaMemcpyAsync(dst, host, n * sizeof(float), cudaMemcpyHostToDevice, c->stream), what) &&
           cu_ok(c, cudaStreamSynchronize(c->stream), what);
}

/* y[i] = x[i] in T; counts in *overflow (when given) the finite values that became infinite */
template <typename T>
__global__ void narrow_kernel(const float *x, size_t n, T *y, unsigned long long *overflow)
{
    unsigned long long k = 0;
    FOR_N(i, n) {
        T v = narrow<T>(x[i]);
        y[i] = v;
        k += isfinite(x[i]) && !isfinite(widen(v));
    }
    for (int o = 16; o; o >>= 1) k += __shfl_xor_sync(FULL_MASK, k, o);
    if (overflow && (threadIdx.x & 31) == 0 && k) atomicAdd(overflow, k);
}

/* chunk of a reduced weight's upload: float32 in the scratch buffer, converted on the device */
#define WEIGHT_CHUNK ((size_t)1 << 22)

/* f16/bf16: the floats go up through the scratch buffer in chunks and are converted there; a weight past the
 * reduced type's range (f16: 65504) is refused rather than stored as infinity. */
static const float *reduced_weight_put(cuda_be *c, const float *host, size_t n)
{
    const enum ops_precision p = c->be.precision;
    void *d = dev_alloc(c, n * 2, MT_WEIGHT_HALF);
    if (!d) return NULL;
    unsigned long long over = 0;
    bool ok = cu_ok(c, cudaMemsetAsync(c->count_dev, 0, sizeof over, c->stream), "weight_put");
    for (size_t at = 0; ok && at < n; at += WEIGHT_CHUNK) {
        size_t m = n - at < WEIGHT_CHUNK ? n - at : WEIGHT_CHUNK;
        float *buf = scratch(c, WEIGHT_CHUNK);
        if (!buf || !to_device(c, buf, host + at, m, "weight_put")) {
            ok = false;
            break;
        }
        BY_PREC(p, T, narrow_kernel<T><<<ew_blocks(m), EW_THREADS, 0, c->stream>>>(buf, m, (T *)d + at, c->count_dev));
        launched(c, "weight_put");
    }
    ok = ok && !c->err[0] &&
         cu_ok(c, cudaMemcpyAsync(&over, c->count_dev, sizeof over, cudaMemcpyDeviceToHost, c->stream),
               "weight_put") &&
         cu_ok(c, cudaStreamSynchronize(c->stream), "weight_put");
    if (ok && over) {
        dev_free(c, d, "weight_put");
        if (p == OPS_F16)
            err_set("%llu values beyond the range of f16 (65504): use -precision bf16 or f32", over);
        else
            err_set("%llu values beyond the range of bf16: use -precision f32", over);
        return NULL;
    }
    if (!ok) {
        dev_free(c, d, "weight_put");
        return NULL;
    }
    return (const float *)d;
}

static const float *cuda_weight_put(ops_backend *be, const float *host, size_t n)
{
    cuda_be *c = use(be);
    if (be->precision != OPS_F32) return reduced_weight_put(c, host, n);
    float *d = (float *)dev_alloc(c, n * sizeof(float), MT_WEIGHT);
    if (!d) return NULL;
    if (!to_device(c, d, host, n, "weight_put")) {
        dev_free(c, d, "weight_put");
        return NULL;
    }
    return d;
}

static void cuda_weight_drop(ops_backend *be, const float *dev) { dev_free(use(be), dev, "weight_drop"); }

/* pinned, so copies from and to it are direct DMA */
static void *cuda_host_alloc(ops_backend *be, size_t bytes)
{
    cuda_be *c = use(be);
    void *p = NULL;
    cudaError_t e = cudaHostAlloc(&p, bytes ? bytes : 1, cudaHostAllocDefault);
    if (e != cudaSuccess) {
        cudaGetLastError();
        err_set("cuda backend: cannot allocate %zu MB of pinned host memory: %s", bytes >> 20, cudaGetErrorString(e));
        return NULL;
    }
    memset(p, 0, bytes);
    if (mt_add(&c->mt, p, bytes, MT_HOST)) {
        cudaFreeHost(p);
        return NULL;
    }
    return p;
}

static void cuda_host_free(ops_backend *be, void *p)
{
    cuda_be *c = use(be);
    if (!p) return;
    mt_remove(&c->mt, p);
    cu_ok(c, cudaFreeHost(p), "host_free");
}

static void cuda_mem(ops_backend *be, ops_mem *m)
{
    cuda_be *c = use(be);
    size_t fr = 0, total = 0;
    if (cudaMemGetInfo(&fr, &total) != cudaSuccess) {
        cudaGetLastError();   /* a report without the device's figures, not a broken backend */
        fr = total = 0;
    }
    *m = (ops_mem){.weights = c->mt.bytes[MT_WEIGHT] + c->mt.bytes[MT_WEIGHT_HALF],
                   .buffers = c->mt.bytes[MT_BUFFER], .peak = c->mt.peak, .host = c->mt.bytes[MT_HOST],
                   .device_used = total - fr, .device_total = total};
}

static void cuda_upload(ops_backend *be, float *dst, const float *host, size_t n)
{
    to_device(use(be), dst, host, n, "upload");
}

static void cuda_download(ops_backend *be, float *host, const float *src, size_t n)
{
    cuda_be *c = use(be);
    if (n) cu_ok(c, cudaMemcpyAsync(host, src, n * sizeof(float), cudaMemcpyDeviceToHost, c->stream), "download");
    cu_ok(c, cudaStreamSynchronize(c->stream), "download");
}

/* cudaMemcpy may not overlap; an overlapping move goes through the scratch buffer in chunks, walked in the
 * direction that never overwrites source elements not yet read (as memmove). */
static void cuda_copy(ops_backend *be, float *dst, const float *src, size_t n)
{
    cuda_be *c = use(be);
    if (!n || dst == src) return;
    const size_t bytes = n * sizeof(float);
    if ((const char *)dst + bytes <= (const char *)src || (const char *)src + bytes <= (const char *)dst) {
        cu_ok(c, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, c->stream), "copy");
        return;
    }
    size_t S = n < COPY_BOUNCE ? n : COPY_BOUNCE;
    float *buf = scratch(c, S);
    if (!buf) return;
    for (size_t done = 0; done < n; done += S) {
        size_t m = n - done < S ? n - done : S;
        size_t at = dst < src ? done : n - done - m;   /* front to back when moving down, else back to front */
        if (!cu_ok(c, cudaMemcpyAsync(buf, src + at, m * sizeof(float), cudaMemcpyDeviceToDevice, c->stream),
                   "copy") ||
            !cu_ok(c, cudaMemcpyAsync(dst + at, buf, m * sizeof(float), cudaMemcpyDeviceToDevice, c->stream),
                   "copy"))
            return;
    }
}

__global__ void nonfinite_kernel(const float *x, size_t n, unsigned long long *count)
{
    unsigned long long k = 0;
    FOR_N(i, n) k += !isfinite(x[i]);
    for (int o = 16; o; o >>= 1) k += __shfl_xor_sync(FULL_MASK, k, o);
    if ((threadIdx.x & 31) == 0 && k) atomicAdd(count, k);
}

static size_t cuda_count_nonfinite(ops_backend *be, const float *x, size_t n)
{
    cuda_be *c = use(be);
    unsigned long long k = 0;
    if (n && cu_ok(c, cudaMemsetAsync(c->count_dev, 0, sizeof k, c->stream), "count_nonfinite")) {
        nonfinite_kernel<<<ew_blocks(n), EW_THREADS, 0, c->stream>>>(x, n, c->count_dev);
        launched(c, "count_nonfinite");
        cu_ok(c, cudaMemcpyAsync(&k, c->count_dev, sizeof k, cudaMemcpyDeviceToHost, c->stream), "count_nonfinite");
    }
    cu_ok(c, cudaStreamSynchronize(c->stream), "count_nonfinite");
    return c->err[0] ? OPS_COUNT_FAILED : (size_t)k;
}

/* ---- elementwise ---- */

__global__ void add_kernel(const float *a, const float *b, size_t n, float *y) { FOR_N(i, n) y[i] = a[i] + b[i]; }
__global__ void mul_kernel(const float *a, const float *b, size_t n, float *y) { FOR_N(i, n) y[i] = a[i] * b[i]; }
__global__ void act_kernel(int act, const float *x, size_t n, float *y) { FOR_N(i, n) y[i] = act_apply(act, x[i]); }
/* x[i] += v[i / inner % C]: add_channel (v per (b, c)) and the bias of linear and conv2d (per c) */
template <typename V> __global__ void bias_kernel(float *x, const V *v, size_t C, size_t inner, size_t n)
{
    FOR_N(i, n) x[i] += widen(v[i / inner % C]);
}
__global__ void geglu_kernel(const float *x, size_t inner, size_t n, float *y)
{
    FOR_N(i, n) {
        const float *h = x + i / inner * 2 * inner;
        size_t j = i % inner;
        y[i] = h[j] * act_apply(OPS_ACT_GELU, h[inner + j]);
    }
}

static void cuda_add(ops_backend *be, const float *a, const float *b, size_t n, float *y)
{
    cuda_be *c = use(be);
    if (!n) return;
    add_kernel<<<ew_blocks(n), EW_THREADS, 0, c->stream>>>(a, b, n, y);
    launched(c, "add");
}
static void cuda_mul(ops_backend *be, const float *a, const float *b, size_t n, float *y)
{
    cuda_be *c = use(be);
    if (!n) return;
    mul_kernel<<<ew_blocks(n), EW_THREADS, 0, c->stream>>>(a, b, n, y);
    launched(c, "mul");
}
static void cuda_act(ops_backend *be, enum ops_act act, const float *x, size_t n, float *y)
{
    cuda_be *c = use(be);
    if (!n) return;
    act_kernel<<<ew_blocks(n), EW_THREADS, 0, c->stream>>>((int)act, x, n, y);
    launched(c, "act");
}
static void bias_add(cuda_be *c, float *x, const float *v, size_t C, size_t inner, size_t n, const char *what)
{
    if (!n) return;
    BY_PREC(wprec(c, v), V, bias_kernel<V><<<ew_blocks(n), EW_THREADS, 0, c->stream>>>(x, (const V *)v, C, inner, n));
    launched(c, what);
}
static void cuda_add_channel(ops_backend *be, float *x, int B, int C, int HW, const float *v)
{
    /* v has B*C entries, so i / HW needs no modulo: C = B*C leaves it unchanged */
    bias_add(use(be), x, v, (size_t)B * C, HW, (size_t)B * C * HW, "add_channel");
}
static void cuda_geglu(ops_backend *be, const float *x, int rows, int inner, float *y)
{
    cuda_be *c = use(be);
    size_t n = (size_t)rows * inner;
    if (!n) return;
    geglu_kernel<<<ew_blocks(n), EW_THREADS, 0, c->stream>>>(x, inner, n, y);
    launched(c, "geglu");
}

/* ---- layout ---- */

__global__ void upsample_kernel(const float *x, size_t H, size_t W, size_t n, float *y)
{
    FOR_N(i, n) {
        size_t X = i % (2 * W), rest = i / (2 * W), Y = rest % (2 * H), plane = rest / (2 * H);
        y[i] = x[(plane * H + Y / 2) * W + X / 2];
    }
}

/* per batch item: na floats of a, then nb of b */
__global__ void concat_kernel(const float *a, size_t na, const float *b, size_t nb, size_t n, float *y)
{
    FOR_N(i, n) {
        size_t item = i / (na + nb), r = i % (na + nb);
        y[i] = r < na ? a[item * na + r] : b[item * nb + (r - na)];
    }
}

/* [R, S] -> [S, R] for each batch item (blockIdx.y), through a padded 32x32 tile so both the reads and the writes
 * are coalesced; blockIdx.x enumerates the tiles (flat, so neither side is bound by the 65535 limit of grid.y). */
__global__ void transpose_kernel(const float *x, int R, int S, int stiles, float *y)
{
    __shared__ float tile[32][33];
    size_t base = (size_t)blockIdx.y * R * S;
    int s0 = (blockIdx.x % stiles) * 32, r0 = (blockIdx.x / stiles) * 32;
    for (int i = threadIdx.y; i < 32; i += blockDim.y) {
        int r = r0 + i, s = s0 + threadIdx.x;
        if (r < R && s < S) tile[i][threadIdx.x] = x[base + (size_t)r * S + s];
    }
    __syncthreads();
    for (int i = threadIdx.y; i < 32; i += blockDim.y) {
        int s = s0 + i, r = r0 + threadIdx.x;
        if (s < S && r < R) y[base + (size_t)s * R + r] = tile[threadIdx.x][i];
    }
}

static void cuda_upsample2x(ops_backend *be, const float *x, int B, int C, int H, int W, float *y)
{
    cuda_be *c = use(be);
    size_t n = (size_t)B * C * 4 * H * W;
    if (!n) return;
    upsample_kernel<<<ew_blocks(n), EW_THREADS, 0, c->stream>>>(x, H, W, n, y);
    launched(c, "upsample2x");
}

static void cuda_concat(ops_backend *be, const float *a, int Ca, const float *b, int Cb, int B, int HW, float *y)
{
    cuda_be *c = use(be);
    size_t na = (size_t)Ca * HW, nb = (size_t)Cb * HW, n = (size_t)B * (na + nb);
    if (!n) return;
    concat_kernel<<<ew_blocks(n), EW_THREADS, 0, c->stream>>>(a, na, b, nb, n, y);
    launched(c, "concat");
}

static void transpose(cuda_be *c, const float *x, int B, int R, int S, float *y, const char *what)
{
    if (B <= 0 || R <= 0 || S <= 0) return;
    if (B > 65535) return fail(c, what, "more than 65535 batch items");
    int stiles = (S + 31) / 32;
    size_t tiles = (size_t)stiles * ((R + 31) / 32);
    transpose_kernel<<<dim3((unsigned)tiles, B), dim3(32, 8), 0, c->stream>>>(x, R, S, stiles, y);
    launched(c, what);
}
static void cuda_to_tokens(ops_backend *be, const float *x, int B, int C, int HW, float *y)
{
    transpose(use(be), x, B, C, HW, y, "to_tokens");
}
static void cuda_from_tokens(ops_backend *be, const float *x, int B, int C, int HW, float *y)
{
    transpose(use(be), x, B, HW, C, y, "from_tokens");
}

/* ---- normalisation ---- */

#define NORM_THREADS 512

/* One block per (b, g), whose C/G channels are contiguous in NCHW. Two passes as the CPU: the mean in double,
 * then the squares about its float rounding m, the rounding carried exactly (var = E[(x-m)^2] - (mean-m)^2);
 * then y = act(x * a + b) with a, b folded per channel. y may be x: every read of the statistics passes is
 * behind block_sum's barrier before the first write. */
template <typename T>
__global__ void __launch_bounds__(NORM_THREADS) group_norm_kernel(const float *x, int C, int HW, int G, float eps,
                                                                  const T *gamma, const T *beta, int act, float *y)
{
    int cg = C / G, g = blockIdx.x % G;
    size_t n = (size_t)cg * HW, off = (size_t)blockIdx.x * n;
    const float *xs = x + off;
    double s = 0;
    for (size_t i = threadIdx.x; i < n; i += blockDim.x) s += xs[i];
    double mean = block_sum(s) / n;
    float m = (float)mean;
    double s2 = 0;
    for (size_t i = threadIdx.x; i < n; i += blockDim.x) {
        double d = xs[i] - m;
        s2 += d * d;
    }
    double dm = mean - m, var = block_sum(s2) / n - dm * dm;
    float inv = (float)(1.0 / sqrt(var + eps));
    for (size_t i = threadIdx.x; i < n; i += blockDim.x) {
        int ch = g * cg + (int)(i / HW);
        float a = widen(gamma[ch]) * inv, b = widen(beta[ch]) - m * a;
        y[off + i] = act_apply(act, xs[i] * a + b);
    }
}

/* One block per row; statistics in double as the CPU (mean, then squares about the double mean). */
template <typename T>
__global__ void __launch_bounds__(NORM_THREADS) layer_norm_kernel(const float *x, int C, float eps, const T *gamma,
                                                                  const T *beta, float *y)
{
    const float *xr = x + (size_t)blockIdx.x * C;
    float *yr = y + (size_t)blockIdx.x * C;
    double s = 0;
    for (int i = threadIdx.x; i < C; i += blockDim.x) s += xr[i];
    double mean = block_sum(s) / C, ss = 0;
    for (int i = threadIdx.x; i < C; i += blockDim.x) ss += (xr[i] - mean) * (xr[i] - mean);
    ss = block_sum(ss);
    float inv = (float)(1.0 / sqrt(ss / C + eps)), m = (float)mean;
    for (int i = threadIdx.x; i < C; i += blockDim.x) yr[i] = (xr[i] - m) * inv * widen(gamma[i]) + widen(beta[i]);
}

static void cuda_group_norm(ops_backend *be, const float *x, int B, int C, int HW, int G, float eps,
                            const float *gamma, const float *beta, enum ops_act act, float *y)
{
    cuda_be *c = use(be);
    if (B <= 0 || C <= 0 || HW <= 0 || G <= 0) return;
    enum ops_precision p = wprec(c, gamma);
    if (p != wprec(c, beta)) return fail(c, "group_norm", "gamma and beta stored in different precisions");
    BY_PREC(p, T, group_norm_kernel<T><<<B * G, NORM_THREADS, 0, c->stream>>>(x, C, HW, G, eps, (const T *)gamma,
                                                                               (const T *)beta, (int)act, y));
    launched(c, "group_norm");
}

static void cuda_layer_norm(ops_backend *be, const float *x, int rows, int C, float eps, const float *gamma,
                            const float *beta, float *y)
{
    cuda_be *c = use(be);
    if (rows <= 0 || C <= 0) return;
    enum ops_precision p = wprec(c, gamma);
    if (p != wprec(c, beta)) return fail(c, "layer_norm", "gamma and beta stored in different precisions");
    /* rows are short (C <= a few thousand): a quarter block per row is plenty */
    BY_PREC(p, T, layer_norm_kernel<T><<<rows, NORM_THREADS / 4, 0, c->stream>>>(x, C, eps, (const T *)gamma,
                                                                                  (const T *)beta, y));
    launched(c, "layer_norm");
}

/* ---- matrix products ---- */

/* Column-major C[m,n] = op(A)[m,k] B[k,n] (cuBLAS's convention; callers map their row-major views onto it). */
static void gemm(cuda_be *c, cublasOperation_t ta, int m, int n, int k, const float *A, int lda, const float *Bm,
                 int ldb, float *C, int ldc, const char *what)
{
    const float one = 1.0f, zero = 0.0f;
    cb_ok(c, cublasSgemm(c->blas, ta, CUBLAS_OP_N, m, n, k, &one, A, lda, Bm, ldb, &zero, C, ldc), what);
}

/* The same with A and B in f16/bf16 (precision p): float32 accumulation and result (CUBLAS_COMPUTE_32F). */
static void gemm_ex(cuda_be *c, enum ops_precision p, cublasOperation_t ta, int m, int n, int k, const void *A,
                    int lda, const void *Bm, int ldb, float *C, int ldc, const char *what)
{
    const float one = 1.0f, zero = 0.0f;
    const cudaDataType t = p == OPS_BF16 ? CUDA_R_16BF : CUDA_R_16F;
    cb_ok(c, cublasGemmEx(c->blas, ta, CUBLAS_OP_N, m, n, k, &one, A, t, lda, Bm, t, ldb, &zero, C, CUDA_R_32F, ldc,
                          CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
          what);
}

/* Row-major y[rows,out] = x w^T is column-major y'[out,rows] = w' x' where w' is w read column-major ([in,out],
 * so transposed: op T) and x' is x read column-major ([in,rows]). */
static void cuda_linear(ops_backend *be, const float *x, int rows, int in, const float *w, const float *bias,
                        int out, float *y)
{
    cuda_be *c = use(be);
    if (rows <= 0 || out <= 0) return;
    enum ops_precision p = wprec(c, w);
    if (p == OPS_F32) {
        gemm(c, CUBLAS_OP_T, out, rows, in, w, in, x, in, y, out, "linear");
    } else {
        /* x rounded to the weights' type: GemmEx takes A and B of one type */
        size_t nx = (size_t)rows * in;
        float *xr = scratch(c, (nx + 1) / 2);
        if (!xr) return;
        if (nx) BY_PREC(p, T, narrow_kernel<T><<<ew_blocks(nx), EW_THREADS, 0, c->stream>>>(x, nx, (T *)xr, nullptr));
        launched(c, "linear input");
        gemm_ex(c, p, CUBLAS_OP_T, out, rows, in, w, in, xr, in, y, out, "linear");
    }
    if (bias) bias_add(c, y, bias, out, 1, (size_t)rows * out, "linear bias");
}

/* col[kk, p] (row-major [K, n]) for kk = (ci, ky, kx) and output pixels p0 .. p0+n-1; zero outside the image,
 * which also covers the bottom/right pads (they only lengthen Ho, Wo). */
template <typename T>
__global__ void im2col_kernel(const float *x, int H, int W, int k, int s, int pt, int pl, int Wo, int p0, int n,
                              size_t total, T *col)
{
    FOR_N(i, total) {
        int kk = (int)(i / n), p = p0 + (int)(i % n);
        int ci = kk / (k * k), ky = kk / k % k, kx = kk % k;
        int iy = p / Wo * s - pt + ky, ix = p % Wo * s - pl + kx;
        col[i] = narrow<T>(iy >= 0 && iy < H && ix >= 0 && ix < W ? x[((size_t)ci * H + iy) * W + ix] : 0.0f);
    }
}

/* Per batch item and chunk of n output pixels: y[Cout, p0:p0+n] = w[Cout, K] col[K, n], as column-major
 * y^T[n, Cout] = col^T[n, K] w^T[K, Cout] with ldc = P. A 1x1 stride-1 unpadded conv with float32 weights needs
 * no columns: x is already [K = Cin, P]; with f16/bf16 weights the columns are also x rounded to their type. */
static void cuda_conv2d(ops_backend *be, const float *x, int B, int Cin, int H, int W, const float *w,
                        const float *bias, int Cout, int k, int stride, const int pad[4], float *y)
{
    cuda_be *c = use(be);
    int Ho = (H + pad[0] + pad[2] - k) / stride + 1, Wo = (W + pad[1] + pad[3] - k) / stride + 1;
    int P = Ho * Wo, K = Cin * k * k;
    if (B <= 0 || Cout <= 0 || Ho <= 0 || Wo <= 0) return;
    if (K <= 0) return fail(c, "conv2d", "no input channels");
    const enum ops_precision p = wprec(c, w);
    const size_t esize = p == OPS_F32 ? sizeof(float) : 2;
    int direct = p == OPS_F32 && k == 1 && stride == 1 && !pad[0] && !pad[1] && !pad[2] && !pad[3];
    size_t chunk = P;
    float *col = NULL;
    if (!direct) {
        size_t fit = CONV_COL_FLOATS / K;
        chunk = fit < 1 ? 1 : fit < (size_t)P ? fit : P;
        if (!(col = scratch(c, ((size_t)K * chunk * esize + 3) / 4))) return;
    }
    for (int b = 0; b < B; b++) {
        const float *xb = x + (size_t)b * Cin * H * W;
        for (int p0 = 0; p0 < P; p0 += (int)chunk) {
            int n = P - p0 < (int)chunk ? P - p0 : (int)chunk;
            float *yb = y + (size_t)b * Cout * P + p0;
            if (direct) {
                gemm(c, CUBLAS_OP_N, n, Cout, K, xb + p0, P, w, K, yb, P, "conv2d");
                continue;
            }
            size_t total = (size_t)K * n;
            BY_PREC(p, T, im2col_kernel<T><<<ew_blocks(total), EW_THREADS, 0, c->stream>>>(
                              xb, H, W, k, stride, pad[0], pad[1], Wo, p0, n, total, (T *)col));
            launched(c, "conv2d im2col");
            if (p == OPS_F32) gemm(c, CUBLAS_OP_N, n, Cout, K, col, n, w, K, yb, P, "conv2d");
            else gemm_ex(c, p, CUBLAS_OP_N, n, Cout, K, col, n, w, K, yb, P, "conv2d");
        }
    }
    if (bias) bias_add(c, y, bias, Cout, P, (size_t)B * Cout * P, "conv2d bias");
}

/* ---- attention ---- */

/* Tile kernel (dh <= 160): a block takes ATT_BQ query rows of one (b, h), each warp ATT_R of them. Per tile of 32
 * keys in shared memory, lane l scores key l against the warp's rows (q broadcast from shared memory), the online
 * softmax rescales the running sums, and each lane accumulates output dims lane, lane+32, ... with the
 * probabilities shuffled from the lane that made them. */
#define ATT_BK 32
#define ATT_R 4
#define ATT_WARPS 4
#define ATT_BQ (ATT_R * ATT_WARPS)
#define ATT_TILE_DPL 5                 /* dims per lane: dh <= 160 (SD 1.5: 40, 80, 160; CLIP: 64) */
#define ATT_WIDE_WARPS 8
#define ATT_WIDE_MAX 512               /* the VAE's single-head mid attention: dh = 512 */

static size_t tile_smem(int dh)
{
    /* K rows padded to an odd stride: lane l reading row l hits 32 different banks */
    return (size_t)(ATT_BQ * dh + ATT_BK * (dh | 1) + ATT_BK * dh) * sizeof(float);
}

template <int DPL>
__global__ void __launch_bounds__(ATT_WARPS * 32)
    attn_tile_kernel(const float *q, int ldq, const float *k, int ldk, const float *v, int ldv, int Tq, int Tk,
                     int heads, int dh, float scale, int causal, float *out)
{
    extern __shared__ float sm[];
    const int ks = dh | 1;
    float *Qs = sm, *Ks = Qs + ATT_BQ * dh, *Vs = Ks + ATT_BK * ks;
    const int b = blockIdx.z, h = blockIdx.y, q0 = blockIdx.x * ATT_BQ;
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    const float *qb = q + (size_t)b * Tq * ldq + h * dh;
    const float *kb = k + (size_t)b * Tk * ldk + h * dh;
    const float *vb = v + (size_t)b * Tk * ldv + h * dh;
    for (int i = threadIdx.x; i < ATT_BQ * dh; i += blockDim.x) {
        int r = i / dh, d = i % dh;
        Qs[i] = q0 + r < Tq ? qb[(size_t)(q0 + r) * ldq + d] : 0.0f;   /* rows past Tq: computed, never stored */
    }
    float o[ATT_R][DPL], m[ATT_R], l[ATT_R];
#pragma unroll
    for (int r = 0; r < ATT_R; r++) {
        m[r] = -INFINITY;
        l[r] = 0.0f;
#pragma unroll
        for (int i = 0; i < DPL; i++) o[r][i] = 0.0f;
    }
    /* causal: no row of this block sees keys past its last row */
    const int kend = causal ? min(Tk, q0 + ATT_BQ) : Tk;
    const float *qw = Qs + w * ATT_R * dh;
    for (int j0 = 0; j0 < kend; j0 += ATT_BK) {
        __syncthreads();   /* the previous tile is consumed (and Qs is written, the first time) */
        for (int i = threadIdx.x; i < ATT_BK * dh; i += blockDim.x) {
            int jj = i / dh, d = i % dh, j = j0 + jj;
            Ks[jj * ks + d] = j < Tk ? kb[(size_t)j * ldk + d] : 0.0f;
            Vs[jj * dh + d] = j < Tk ? vb[(size_t)j * ldv + d] : 0.0f;
        }
        __syncthreads();
        float s[ATT_R];
#pragma unroll
        for (int r = 0; r < ATT_R; r++) s[r] = 0.0f;
        const float *kr = Ks + lane * ks;
        for (int d = 0; d < dh; d++) {
            float kd = kr[d];
#pragma unroll
            for (int r = 0; r < ATT_R; r++) s[r] += qw[r * dh + d] * kd;
        }
        /* Key 0 is visible to every row, so after the first tile each running max is finite: exp(-inf - m) = 0
         * masks the invisible keys and the first rescale (m = -inf) with no NaN. */
        const int j = j0 + lane;
        float p[ATT_R];
#pragma unroll
        for (int r = 0; r < ATT_R; r++) {
            int t = q0 + w * ATT_R + r;
            float sc = j < Tk && (!causal || j <= t) ? s[r] * scale : -INFINITY;
            float mn = fmaxf(m[r], warp_max(sc));
            float alpha = expf(m[r] - mn);
            p[r] = expf(sc - mn);
            l[r] = l[r] * alpha + warp_sum(p[r]);
            m[r] = mn;
#pragma unroll
            for (int i = 0; i < DPL; i++) o[r][i] *= alpha;
        }
        const int nk = min(ATT_BK, kend - j0);
        for (int jj = 0; jj < nk; jj++) {
            float vd[DPL];
#pragma unroll
            for (int i = 0; i < DPL; i++) {
                int d = lane + 32 * i;
                vd[i] = d < dh ? Vs[jj * dh + d] : 0.0f;
            }
#pragma unroll
            for (int r = 0; r < ATT_R; r++) {
                float pj = __shfl_sync(FULL_MASK, p[r], jj);
#pragma unroll
                for (int i = 0; i < DPL; i++) o[r][i] += pj * vd[i];
            }
        }
    }
    const int ldo = heads * dh;
#pragma unroll
    for (int r = 0; r < ATT_R; r++) {
        int t = q0 + w * ATT_R + r;
        if (t >= Tq) continue;
        float inv = 1.0f / l[r], *orow = out + ((size_t)b * Tq + t) * ldo + h * dh;
#pragma unroll
        for (int i = 0; i < DPL; i++) {
            int d = lane + 32 * i;
            if (d < dh) orow[d] = o[r][i] * inv;
        }
    }
}

/* Wide kernel (160 < dh <= 512): one warp per query row, q and the output row in registers (dims lane,
 * lane+32, ...), each score a warp-wide dot product; K and V rows read from global memory, shared through L1
 * by the block's warps, which work on neighbouring rows of the same (b, h). */
template <int DPL>
__global__ void __launch_bounds__(ATT_WIDE_WARPS * 32)
    attn_wide_kernel(const float *q, int ldq, const float *k, int ldk, const float *v, int ldv, int Tq, int Tk,
                     int heads, int dh, float scale, int causal, float *out)
{
    const int b = blockIdx.z, h = blockIdx.y, lane = threadIdx.x & 31;
    const int t = blockIdx.x * ATT_WIDE_WARPS + (threadIdx.x >> 5);
    if (t >= Tq) return;   /* the whole warp leaves; no barriers below */
    const float *qr = q + ((size_t)b * Tq + t) * ldq + h * dh;
    const float *kb = k + (size_t)b * Tk * ldk + h * dh;
    const float *vb = v + (size_t)b * Tk * ldv + h * dh;
    float qv[DPL], o[DPL], m = -INFINITY, l = 0.0f;
#pragma unroll
    for (int i = 0; i < DPL; i++) {
        int d = lane + 32 * i;
        qv[i] = d < dh ? qr[d] : 0.0f;
        o[i] = 0.0f;
    }
    const int kend = causal ? min(Tk, t + 1) : Tk;
    for (int j0 = 0; j0 < kend; j0 += 32) {
        const int nk = min(32, kend - j0);
        float sc = -INFINITY;   /* lane jj keeps the score of key j0 + jj */
        for (int jj = 0; jj < nk; jj++) {
            const float *kr = kb + (size_t)(j0 + jj) * ldk;
            float part = 0.0f;
#pragma unroll
            for (int i = 0; i < DPL; i++) {
                int d = lane + 32 * i;
                if (d < dh) part += qv[i] * kr[d];
            }
            part = warp_sum(part);
            if (lane == jj) sc = part * scale;
        }
        float mn = fmaxf(m, warp_max(sc)), alpha = expf(m - mn), p = expf(sc - mn);
        l = l * alpha + warp_sum(p);
        m = mn;
#pragma unroll
        for (int i = 0; i < DPL; i++) o[i] *= alpha;
        for (int jj = 0; jj < nk; jj++) {
            const float *vr = vb + (size_t)(j0 + jj) * ldv;
            float pj = __shfl_sync(FULL_MASK, p, jj);
#pragma unroll
            for (int i = 0; i < DPL; i++) {
                int d = lane + 32 * i;
                if (d < dh) o[i] += pj * vr[d];
            }
        }
    }
    float inv = 1.0f / l, *orow = out + ((size_t)b * Tq + t) * heads * dh + h * dh;
#pragma unroll
    for (int i = 0; i < DPL; i++) {
        int d = lane + 32 * i;
        if (d < dh) orow[d] = o[i] * inv;
    }
}

static void cuda_attention(ops_backend *be, const float *q, int ldq, const float *k, int ldk, const float *v,
                           int ldv, int B, int Tq, int Tk, int heads, int dh, float scale, int causal, float *out)
{
    cuda_be *c = use(be);
    if (B <= 0 || Tq <= 0 || heads <= 0 || dh <= 0) return;
    if (Tk <= 0 || Tk > OPS_MAX_KEYS || dh > ATT_WIDE_MAX || B > 65535 || heads > 65535) {
        char why[192];
        snprintf(why, sizeof why, "unsupported shape: %d keys (1..%d), head dim %d (at most %d), batch %d and %d "
                 "heads (at most 65535 each)", Tk, OPS_MAX_KEYS, dh, ATT_WIDE_MAX, B, heads);
        return fail(c, "attention", why);
    }
    if (dh <= 32 * ATT_TILE_DPL) {
        dim3 grid((Tq + ATT_BQ - 1) / ATT_BQ, heads, B);
        size_t sm = tile_smem(dh);
#define TILE(D)                                                                                                    \
    attn_tile_kernel<D><<<grid, ATT_WARPS * 32, sm, c->stream>>>(q, ldq, k, ldk, v, ldv, Tq, Tk, heads, dh, scale, \
                                                                 causal, out)
        switch ((dh + 31) / 32) {
        case 1: TILE(1); break;
        case 2: TILE(2); break;
        case 3: TILE(3); break;
        case 4: TILE(4); break;
        default: TILE(5); break;
        }
#undef TILE
    } else {
        dim3 grid((Tq + ATT_WIDE_WARPS - 1) / ATT_WIDE_WARPS, heads, B);
        if (dh <= 256)
            attn_wide_kernel<8><<<grid, ATT_WIDE_WARPS * 32, 0, c->stream>>>(q, ldq, k, ldk, v, ldv, Tq, Tk, heads,
                                                                              dh, scale, causal, out);
        else
            attn_wide_kernel<16><<<grid, ATT_WIDE_WARPS * 32, 0, c->stream>>>(q, ldq, k, ldk, v, ldv, Tq, Tk, heads,
                                                                               dh, scale, causal, out);
    }
    launched(c, "attention");
}

/* ---- embeddings ---- */

/* Token ids travel as kernel parameters (copied with the launch, nothing to upload or wait for); timesteps go
 * through device memory instead, so a replayed graph reads them anew. */
#define EMB_IDS 512
struct emb_args {
    int ids[EMB_IDS];
};

/* The CPU's float expressions, with exp, sin and cos evaluated in double and rounded once: the correctly rounded
 * values glibc's expf/sinf/cosf give but for rare last-ulp cases. Index half is the zero of an odd dim. */
__global__ void timestep_kernel(const float *t, int nb, int dim, int flip, float shift, float lnp, float *y)
{
    const int half = dim / 2;
    FOR_N(idx, (size_t)nb * (half + 1)) {
        int b = (int)(idx / (half + 1)), i = (int)(idx % (half + 1));
        float *e = y + (size_t)b * dim;
        if (i == half) {
            if (dim % 2) e[dim - 1] = 0.0f;
            continue;
        }
        float f = (float)exp((double)(-lnp * (float)i / ((float)half - shift)));
        float ang = t[b] * f, s = (float)sin((double)ang), co = (float)cos((double)ang);
        e[i] = flip ? co : s;
        e[half + i] = flip ? s : co;
    }
}

static void cuda_timestep_embedding(ops_backend *be, const float *t, int B, int dim, int flip, float shift,
                                    float *y)
{
    cuda_be *c = use(be);
    float lnp = (float)log(10000.0);
    for (int b0 = 0; b0 < B && dim > 0; b0 += TS_CHUNK) {
        int nb = B - b0 < TS_CHUNK ? B - b0 : TS_CHUNK;
        /* stream-ordered: the next chunk's copy waits for this chunk's kernel */
        if (!cu_ok(c, cudaMemcpyAsync(c->ts_dev, t + b0, nb * sizeof(float), cudaMemcpyHostToDevice, c->stream),
                   "timestep_embedding"))
            return;
        size_t n = (size_t)nb * (dim / 2 + 1);
        timestep_kernel<<<ew_blocks(n), EW_THREADS, 0, c->stream>>>(c->ts_dev, nb, dim, flip, shift, lnp,
                                                                   y + (size_t)b0 * dim);
        launched(c, "timestep_embedding");
    }
}

/* rows r0 .. r0+nr-1 of the flat [B*L] token sequence */
template <typename T>
__global__ void embed_kernel(emb_args a, int r0, int nr, int L, const T *tok, const T *pos, int C, float *y)
{
    FOR_N(idx, (size_t)nr * C) {
        int j = (int)(idx / C), ch = (int)(idx % C), r = r0 + j;
        y[(size_t)r * C + ch] = widen(tok[(size_t)a.ids[j] * C + ch]) + widen(pos[(size_t)(r % L) * C + ch]);
    }
}

static void cuda_embed_tokens(ops_backend *be, const int *ids, int B, int L, const float *tok, const float *pos,
                              int C, float *y)
{
    cuda_be *c = use(be);
    int rows = B * L;
    enum ops_precision p = wprec(c, tok);
    if (p != wprec(c, pos)) return fail(c, "embed_tokens", "token and position tables stored in different precisions");
    for (int r0 = 0; r0 < rows && C > 0; r0 += EMB_IDS) {
        emb_args a;
        int nr = rows - r0 < EMB_IDS ? rows - r0 : EMB_IDS;
        memcpy(a.ids, ids + r0, nr * sizeof(int));
        size_t n = (size_t)nr * C;
        BY_PREC(p, T, embed_kernel<T><<<ew_blocks(n), EW_THREADS, 0, c->stream>>>(a, r0, nr, L, (const T *)tok,
                                                                                    (const T *)pos, C, y));
        launched(c, "embed_tokens");
    }
}

/* ---- the sampling loop's elementwise ops (ops_cpu.c's loops, element by element) ---- */

/* The __f*_rn intrinsics are never contracted into FMAs, so these round as the CPU's loops (built without FMA)
 * do: equal bit for bit, but for vae_sample's expf. */
__global__ void fill_kernel(float *y, size_t n, float v) { FOR_N(i, n) y[i] = v; }
__global__ void lincomb_kernel(float a, const float *x, float b, const float *z, size_t n, float *y)
{
    FOR_N(i, n) y[i] = z ? __fadd_rn(__fmul_rn(a, x[i]), __fmul_rn(b, z[i])) : __fmul_rn(a, x[i]);
}
__global__ void div_kernel(const float *x, float d, size_t n, float *y) { FOR_N(i, n) y[i] = __fdiv_rn(x[i], d); }
__global__ void clamp_kernel(const float *x, float lo, float hi, size_t n, float *y)
{
    FOR_N(i, n) y[i] = fminf(fmaxf(x[i], lo), hi);
}
__global__ void guide_kernel(const float *u, const float *c, float g, size_t n, float *y)
{
    FOR_N(i, n) y[i] = __fadd_rn(u[i], __fmul_rn(g, __fsub_rn(c[i], u[i])));
}
__global__ void vae_sample_kernel(const float *mu, const float *lv, const float *eps, float sf, size_t n, float *z)
{
    FOR_N(i, n) z[i] = __fmul_rn(sf, eps ? __fadd_rn(mu[i], __fmul_rn(expf(__fmul_rn(0.5f, lv[i])), eps[i])) : mu[i]);
}
__global__ void sched_step_kernel(ops_step c, const float *eps, float *x, float *prev, size_t n)
{
    FOR_N(i, n) {
        if (c.kind == OPS_STEP_LCM) {
            float m = c.vpred ? __fsub_rn(__fmul_rn(c.s_x0, x[i]), __fmul_rn(c.s_eps, eps[i]))
                              : __fdiv_rn(__fsub_rn(x[i], __fmul_rn(c.s_eps, eps[i])), c.s_x0);
            if (c.clip) m = m < -c.clip_range ? -c.clip_range : m > c.clip_range ? c.clip_range : m;
            float d = __fadd_rn(__fmul_rn(c.c_out, m), __fmul_rn(c.c_skip, x[i]));
            x[i] = c.noise ? __fadd_rn(__fmul_rn(c.c_a, d), __fmul_rn(c.c_b, prev[i])) : d;
            continue;
        }
        if (c.kind == OPS_STEP_TCD) {
            float m = c.vpred ? __fsub_rn(__fmul_rn(c.s_x0, x[i]), __fmul_rn(c.s_eps, eps[i]))
                              : __fdiv_rn(__fsub_rn(x[i], __fmul_rn(c.s_eps, eps[i])), c.s_x0);
            float e = c.vpred ? __fadd_rn(__fmul_rn(c.s_x0, eps[i]), __fmul_rn(c.s_eps, x[i])) : eps[i];
            float xs = __fadd_rn(__fmul_rn(c.c_a, m), __fmul_rn(c.c_b, e));
            x[i] = c.noise ? __fadd_rn(__fmul_rn(c.n_a, xs), __fmul_rn(c.n_b, prev[i])) : xs;
            continue;
        }
        float m = __fdiv_rn(__fsub_rn(x[i], __fmul_rn(c.s_eps, eps[i])), c.s_x0);
        if (c.kind == OPS_STEP_DDIM) {
            if (c.clip) m = m < -c.clip_range ? -c.clip_range : m > c.clip_range ? c.clip_range : m;
            x[i] = __fadd_rn(__fmul_rn(c.c_a, m), __fmul_rn(c.c_b, eps[i]));
            continue;
        }
        float a = __fsub_rn(__fmul_rn(c.c_a, x[i]), __fmul_rn(c.c_b, m));
        if (c.kind == OPS_STEP_DPM2) {
            float d1 = __fmul_rn(c.inv_r0, __fsub_rn(m, prev[i]));
            a = c.midpoint ? __fsub_rn(a, __fmul_rn(c.c_d1, d1)) : __fadd_rn(a, __fmul_rn(c.c_d1, d1));
        }
        x[i] = a;
        prev[i] = m;
    }
}

static void cuda_fill(ops_backend *be, float *y, size_t n, float v)
{
    cuda_be *c = use(be);
    if (!n) return;
    fill_kernel<<<ew_blocks(n), EW_THREADS, 0, c->stream>>>(y, n, v);
    launched(c, "fill");
}

/* On the backend's stream, not the legacy default one: sync must wait for the noise (a blocking stream's
 * synchronize does not wait for legacy-stream work), and a launch into the legacy stream is illegal while any
 * blocking stream of the device is being captured (replay, or another backend's recording). */
static void cuda_fill_normal(ops_backend *be, float *y, size_t n, uint64_t seed, uint64_t stream)
{
    cuda_be *c = use(be);
    if (rng_cuda_fill_normal(seed, stream, y, n, c->stream)) fail(c, "fill_normal", err_msg());
}

static void cuda_lincomb(ops_backend *be, float a, const float *x, float b, const float *z, size_t n, float *y)
{
    cuda_be *c = use(be);
    if (!n) return;
    lincomb_kernel<<<ew_blocks(n), EW_THREADS, 0, c->stream>>>(a, x, b, z, n, y);
    launched(c, "lincomb");
}

static void cuda_div_scalar(ops_backend *be, const float *x, float d, size_t n, float *y)
{
    cuda_be *c = use(be);
    if (!n) return;
    div_kernel<<<ew_blocks(n), EW_THREADS, 0, c->stream>>>(x, d, n, y);
    launched(c, "div_scalar");
}

static void cuda_clamp(ops_backend *be, const float *x, float lo, float hi, size_t n, float *y)
{
    cuda_be *c = use(be);
    if (!n) return;
    clamp_kernel<<<ew_blocks(n), EW_THREADS, 0, c->stream>>>(x, lo, hi, n, y);
    launched(c, "clamp");
}

static void cuda_guide(ops_backend *be, const float *u, const float *cc, float g, size_t n, float *y)
{
    cuda_be *c = use(be);
    if (!n) return;
    guide_kernel<<<ew_blocks(n), EW_THREADS, 0, c->stream>>>(u, cc, g, n, y);
    launched(c, "guide");
}

static void cuda_vae_sample(ops_backend *be, const float *mu, const float *lv, const float *eps, float sf, size_t n,
                            float *z)
{
    cuda_be *c = use(be);
    if (!n) return;
    vae_sample_kernel<<<ew_blocks(n), EW_THREADS, 0, c->stream>>>(mu, lv, eps, sf, n, z);
    launched(c, "vae_sample");
}

static void cuda_sched_step(ops_backend *be, const ops_step *st, const float *eps, float *x, float *prev, size_t n)
{
    cuda_be *c = use(be);
    if (!n) return;
    sched_step_kernel<<<ew_blocks(n), EW_THREADS, 0, c->stream>>>(*st, eps, x, prev, n);
    launched(c, "sched_step");
}

/* ---- graphs ---- */

static graph_slot *graph_of(cuda_be *c, uint64_t key)
{
    for (int i = 0; i < c->n_graphs; i++)
        if (c->graphs[i].key == key) return &c->graphs[i];
    if (c->n_graphs == GRAPH_SLOTS) return NULL;
    graph_slot *g = &c->graphs[c->n_graphs++];
    memset(g, 0, sizeof *g);
    g->key = key;
    return g;
}

/* First call of a key: fn directly (it sizes the scratch buffer and loads kernels and cuBLAS's choices); second:
 * recorded (ThreadLocal mode: other threads' CUDA calls cannot spoil it) and launched; then launched. Nothing
 * runs while recording, so a recording that fails (an op not capturable, the scratch buffer needing to grow) is
 * dropped with the errors it raised and the key runs its ops directly from then on. One during which fn itself
 * failed (a host-side check, before or after queueing) is dropped too and fn's result returned: the key warms up
 * and records again on its next calls. */
static int cuda_replay(ops_backend *be, uint64_t key, int (*fn)(void *ctx), void *ctx)
{
    cuda_be *c = use(be);
    graph_slot *g = graph_of(c, key);
    if (!g || g->direct || c->err[0]) return fn(ctx);
    if (g->exec && g->gen == c->scratch_gen) {
        if (cu_ok(c, cudaGraphLaunch(g->exec, c->stream), "graph launch")) c->graph_launches++;
        return 0;
    }
    if (g->exec) {   /* recorded with a scratch buffer since freed: warm up and record again */
        cudaGraphExecDestroy(g->exec);
        g->exec = NULL;
        g->runs = 0;
    }
    if (g->runs++ == 0) return fn(ctx);
    cudaGraph_t graph = NULL;
    cudaGraphExec_t exec = NULL;
    int rc = 0;
    bool ok = cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeThreadLocal) == cudaSuccess;
    if (ok) {
        rc = fn(ctx);
        ok = cudaStreamEndCapture(c->stream, &graph) == cudaSuccess && !c->err[0] && !rc &&
             cudaGraphInstantiate(&exec, graph, 0) == cudaSuccess;
    }
    if (graph) cudaGraphDestroy(graph);
    if (!ok) {   /* dropped with the errors the recording raised */
        cudaGetLastError();
        c->err[0] = 0;
        if (rc) {   /* fn failed: warm up and record again on the next calls */
            g->runs = 0;
            return rc;
        }
        g->direct = 1;
        return fn(ctx);
    }
    g->exec = exec;
    g->gen = c->scratch_gen;
    if (cu_ok(c, cudaGraphLaunch(g->exec, c->stream), "graph launch")) c->graph_launches++;
    return 0;
}

/* ---- lifetime ---- */

static void cuda_destroy(ops_backend *be)
{
    if (!be) return;
    cuda_be *c = (cuda_be *)be->impl;
    cudaSetDevice(c->dev);
    if (c->stream) cudaStreamSynchronize(c->stream);
    if (c->scratch) cudaFree(c->scratch);
    if (c->ts_dev) cudaFree(c->ts_dev);
    for (int i = 0; i < c->n_graphs; i++)
        if (c->graphs[i].exec) cudaGraphExecDestroy(c->graphs[i].exec);
    mt_free(&c->mt);
    if (c->count_dev) cudaFree(c->count_dev);
    if (c->blas) cublasDestroy(c->blas);
    if (c->blas_ws) cudaFree(c->blas_ws);   /* after the handle that may use it */
    if (c->stream) cudaStreamDestroy(c->stream);
    cudaGetLastError();
    free(c);
}

static int device_count(const char **why)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        cudaGetLastError();
        if (why) *why = cudaGetErrorString(e);
        return 0;
    }
    if (why) *why = "no CUDA device";
    return n;
}

extern "C" int ops_cuda_device_count(void) { return device_count(NULL); }

extern "C" size_t ops_cuda_graph_launches(const ops_backend *be)
{
    return ((const cuda_be *)be->impl)->graph_launches;
}

extern "C" const char *ops_cuda_error(const ops_backend *be)
{
    const cuda_be *c = (const cuda_be *)be->impl;
    return c->err[0] ? c->err : NULL;
}

extern "C" int ops_cuda_sync(ops_backend *be)
{
    cuda_be *c = use(be);
    cu_ok(c, cudaStreamSynchronize(c->stream), "sync");
    return c->err[0] ? err_set("%s", c->err) : 0;
}

extern "C" ops_backend *ops_cuda_create(int device, enum ops_precision precision)
{
    const char *why;
    int n = device_count(&why);
    if (n <= 0) {
        err_set("cuda backend: %s", why);
        return NULL;
    }
    if (device < 0 || device >= n) {
        err_set("cuda backend: no device %d (%d present)", device, n);
        return NULL;
    }
    int major = 0;
    if (precision == OPS_BF16 &&
        (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess || major < 8)) {
        cudaGetLastError();
        err_set("cuda backend: bf16 products need compute capability 8.0 or later (device %d has %d.x): use f16 or "
                "f32", device, major);
        return NULL;
    }
    cuda_be *c = (cuda_be *)calloc(1, sizeof *c);
    if (!c) {
        err_set("cuda backend: out of memory");
        return NULL;
    }
    ops_backend *be = &c->be;
    be->name = "cuda";
    be->impl = c;
    be->precision = precision;
    be->host_alloc = cuda_host_alloc;
    be->host_free = cuda_host_free;
    be->mem = cuda_mem;
    be->replay = cuda_replay;
    be->alloc = cuda_alloc;
    be->release = cuda_release;
    be->weight_put = cuda_weight_put;
    be->weight_drop = cuda_weight_drop;
    be->upload = cuda_upload;
    be->download = cuda_download;
    be->copy = cuda_copy;
    be->count_nonfinite = cuda_count_nonfinite;
    be->conv2d = cuda_conv2d;
    be->linear = cuda_linear;
    be->group_norm = cuda_group_norm;
    be->layer_norm = cuda_layer_norm;
    be->add = cuda_add;
    be->mul = cuda_mul;
    be->add_channel = cuda_add_channel;
    be->act = cuda_act;
    be->geglu = cuda_geglu;
    be->attention = cuda_attention;
    be->upsample2x = cuda_upsample2x;
    be->concat = cuda_concat;
    be->to_tokens = cuda_to_tokens;
    be->from_tokens = cuda_from_tokens;
    be->timestep_embedding = cuda_timestep_embedding;
    be->embed_tokens = cuda_embed_tokens;
    be->fill = cuda_fill;
    be->fill_normal = cuda_fill_normal;
    be->lincomb = cuda_lincomb;
    be->div_scalar = cuda_div_scalar;
    be->clamp = cuda_clamp;
    be->guide = cuda_guide;
    be->vae_sample = cuda_vae_sample;
    be->sched_step = cuda_sched_step;
    be->sync = ops_cuda_sync;
    be->destroy = cuda_destroy;
    c->dev = device;
    void *cnt = NULL, *ts = NULL;
    /* non-blocking: no implicit ordering with the legacy default stream, so a darknet trainer on the same device
     * never waits on the engine's work nor breaks its graph capture (cudaErrorStreamCaptureImplicit); every op of
     * the engine names this stream */
    bool ok = cu_ok(c, cudaSetDevice(device), "cudaSetDevice") &&
              cu_ok(c, cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking), "stream") &&
              cu_ok(c, cudaMalloc(&cnt, sizeof(unsigned long long)), "counter allocation") &&
              cu_ok(c, cudaMalloc(&ts, TS_CHUNK * sizeof(float)), "timestep buffer");
    c->count_dev = (unsigned long long *)cnt;
    c->ts_dev = (float *)ts;
    ok = ok && cb_ok(c, cublasCreate(&c->blas), "cublasCreate") && cb_ok(c, cublasSetStream(c->blas, c->stream),
                                                                         "cublasSetStream") &&
         cu_ok(c, cudaMalloc(&c->blas_ws, BLAS_WORKSPACE), "cuBLAS workspace") &&
         /* after cublasSetStream, which resets the workspace */
         cb_ok(c, cublasSetWorkspace(c->blas, c->blas_ws, BLAS_WORKSPACE), "cublasSetWorkspace") &&
         /* full float32 products: the default math mode never uses TF32 for SGEMM */
         cb_ok(c, cublasSetMathMode(c->blas, CUBLAS_DEFAULT_MATH), "cublasSetMathMode");
    /* the dh = 160 tile needs ~51 KB of shared memory, past the 48 KB a launch gets without asking */
    ok = ok &&
         cu_ok(c, cudaFuncSetAttribute(attn_tile_kernel<1>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       (int)tile_smem(32)), "attention setup") &&
         cu_ok(c, cudaFuncSetAttribute(attn_tile_kernel<2>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       (int)tile_smem(64)), "attention setup") &&
         cu_ok(c, cudaFuncSetAttribute(attn_tile_kernel<3>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       (int)tile_smem(96)), "attention setup") &&
         cu_ok(c, cudaFuncSetAttribute(attn_tile_kernel<4>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       (int)tile_smem(128)), "attention setup") &&
         cu_ok(c, cudaFuncSetAttribute(attn_tile_kernel<5>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       (int)tile_smem(160)), "attention setup");
    if (!ok) {
        char msg[256];
        snprintf(msg, sizeof msg, "%s (device %d)", c->err, device);
        cuda_destroy(be);
        err_set("%s", msg);
        return NULL;
    }
    return be;
}

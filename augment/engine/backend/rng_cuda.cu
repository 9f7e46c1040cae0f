#include "augment/engine/backend/rng_cuda.h"
#include "common/philox.h"
#include <cuda_runtime.h>

extern "C" {
#include "common/err.h"
}

/* Thread t handles Philox blocks t, t + stride, ...; block j gives elements 4j .. 4j+3, exactly as on the host. */
__global__ static void fill_normal_kernel(uint64_t seed, uint64_t stream, float *out, size_t n)
{
    size_t nblocks = (n + 3) / 4, stride = (size_t)gridDim.x * blockDim.x;
    for (size_t j = (size_t)blockIdx.x * blockDim.x + threadIdx.x; j < nblocks; j += stride) {
        uint32_t w[4];
        float v[4];
        philox_block(seed, stream, j, w);
        philox_box_muller(w[0], w[1], &v[0], &v[1]);
        philox_box_muller(w[2], w[3], &v[2], &v[3]);
        size_t base = 4 * j;
        for (int k = 0; k < 4 && base + k < n; k++) out[base + k] = v[k];
    }
}

extern "C" int rng_cuda_fill_normal(uint64_t seed, uint64_t stream, float *dev_out, size_t n, cudaStream_t on)
{
    if (!n) return 0;
    if (!dev_out) return err_set("rng_cuda_fill_normal: no output buffer for %zu values", n);
    const int threads = 256;
    size_t nblocks = (n + 3) / 4, grid = (nblocks + threads - 1) / threads;
    if (grid > 8192) grid = 8192;   /* the grid-stride loop covers the rest */
    fill_normal_kernel<<<(unsigned)grid, threads, 0, on>>>(seed, stream, dev_out, n);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess)
        return err_set("rng_cuda_fill_normal: launch for %zu values failed: %s", n, cudaGetErrorString(e));
    return 0;
}

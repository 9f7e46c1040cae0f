/* CUDA twin of philox_fill_normal: the same index-addressed Philox4x32-10 normals, computed on the device, so
 * diffusion noise does not depend on whether the CPU or the GPU engine made it. Only built with `make GPU=1`. */
#ifndef GENIE_RNG_CUDA_H
#define GENIE_RNG_CUDA_H
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* dev_out[i] = normal element i of stream (seed, stream) for i < n, into device memory, queued on the CUDA stream
 * `on` (a cudaStream_t; NULL: the legacy default stream), asynchronous: later errors surface at the next
 * synchronising call. A backend queues its noise on its own stream, so its sync waits for it and a CUDA graph can
 * record it (the legacy stream may not be used while any blocking stream of the context is being captured). The
 * values are philox_fill_normal's up to the last-ulp differences of the device's logf/sinf/cosf. -1 + err_msg()
 * on a CUDA error. */
struct CUstream_st;
int rng_cuda_fill_normal(uint64_t seed, uint64_t stream, float *dev_out, size_t n, struct CUstream_st *on);

#ifdef __cplusplus
}
#endif
#endif

/* CUDA backend of ops.h (built with `make GPU=1`): the same ops on one device, weights in f32, f16 or bf16.
 *
 * Buffers are cudaMalloc'd; weight_put copies the host floats to the device (converted to f16/bf16 there, a value
 * past f16's range refused); host_alloc is pinned memory. Every op is queued on the backend's own stream (cuBLAS
 * bound to it), so a call returns before the work is done; download and count_nonfinite wait for it. Matrix
 * products are cuBLAS SGEMM in full float32 (TF32 off), or cublasGemmEx on f16/bf16 inputs with float32
 * accumulation; the rest are kernels that mirror ops_cpu.c (tests/test_backend_ops.c compares every op against
 * it, tolerances stated there).
 *
 * Errors: ops return void, so the first CUDA or cuBLAS error is recorded in the backend (and err_set) and stays:
 * ops_cuda_error() returns it, and count_nonfinite returns SIZE_MAX from then on, so the model code's finite checks
 * (nn_check_finite) stop a forward pass that went wrong on the device; the backend's sync op (ops_cuda_sync) reports
 * it too, which the engine calls once per denoising step. Out of memory is not such an error: alloc
 * and weight_put then return NULL + err_msg() and the backend stays usable. A kernel that faults shows at the next
 * synchronising call, named after that call (CUDA_LAUNCH_BLOCKING=1 names the kernel). Nothing here exits or
 * aborts. */
#ifndef GENIE_OPS_CUDA_H
#define GENIE_OPS_CUDA_H
#include "augment/engine/backend/ops.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Number of usable CUDA devices; 0 when there is none or no driver (never fails). */
int ops_cuda_device_count(void);

/* A backend on device `device` with weights in `precision` (see ops.h: f16/bf16 weights, float32 activations and
 * accumulation); NULL + err_msg() when there is no such device or it cannot be set up. */
ops_backend *ops_cuda_create(int device, enum ops_precision precision);

/* The first CUDA/cuBLAS error this backend met ("cuda backend: <op>: <reason>"), NULL while there is none. Errors
 * of queued work show only after a synchronising call (download, count_nonfinite, ops_cuda_sync). */
const char *ops_cuda_error(const ops_backend *be);

/* How many times this backend launched a recorded graph (replay). */
size_t ops_cuda_graph_launches(const ops_backend *be);

/* Waits for the queued work: 0, or -1 + err_msg() when the backend has met an error. */
int ops_cuda_sync(ops_backend *be);

#ifdef __cplusplus
}
#endif
#endif

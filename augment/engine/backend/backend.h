/* Backend selection by name ("cpu", "cuda", "cuda:N"): the one place that knows which backends this build has,
 * so the model and engine code stays free of build switches. */
#ifndef GENIE_BACKEND_H
#define GENIE_BACKEND_H
#include "augment/engine/backend/ops.h"

/* A backend for device (NULL: "cpu"); threads is the CPU backend's pool size (<= 0: all online CPUs); precision
 * "f32", "f16" or "bf16" (ops.h), NULL for the device's default: f16 on CUDA, f32 on the CPU, which computes in f32
 * only. NULL + err_msg() on an unknown name or precision, a precision the device lacks, a CUDA name in a build
 * without CUDA, or a device that cannot be set up. */
ops_backend *backend_create(const char *device, int threads, const char *precision);

/* Whether name has the form of a device: cpu, cuda or cuda:N (N of 1 to 3 digits). Whether this build and machine
 * have it is backend_create's to say. */
int backend_name_valid(const char *name);

/* "f32", "f16", "bf16" */
const char *backend_precision_name(enum ops_precision p);

/* The device a command runs on: requested (NULL: the default, "cuda" when built with CUDA, else "cpu"). A CUDA
 * request in a CUDA build with no device present becomes "cpu", with *note set to the line saying so (else
 * NULL); anything else is returned as given, for backend_create to accept or refuse. */
const char *backend_choose(const char *requested, const char **note);

#endif

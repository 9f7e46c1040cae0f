/* Backend selection (see backend.h). Only this file knows whether the build has CUDA. */
#include "augment/engine/backend/backend.h"
#include <stdlib.h>
#include <string.h>
#include "common/err.h"
#ifdef GENIE_CUDA
#include "augment/engine/backend/ops_cuda.h"
#endif

/* "cuda" -> 0, "cuda:N" -> N (1 to 3 digits); -1 when name is not a CUDA device name */
static int cuda_index(const char *name)
{
    if (strncmp(name, "cuda", 4)) return -1;
    if (!name[4]) return 0;
    const char *d = name + 5;
    size_t len = name[4] == ':' ? strspn(d, "0123456789") : 0;
    return len && len <= 3 && !d[len] ? atoi(d) : -1;
}

int backend_name_valid(const char *name) { return !strcmp(name, "cpu") || cuda_index(name) >= 0; }

static const char *const PREC_NAMES[] = {[OPS_F32] = "f32", [OPS_F16] = "f16", [OPS_BF16] = "bf16"};

const char *backend_precision_name(enum ops_precision p) { return PREC_NAMES[p]; }

ops_backend *backend_create(const char *device, int threads, const char *precision)
{
    int prec = -1;
    for (int i = 0; precision && i < (int)(sizeof PREC_NAMES / sizeof *PREC_NAMES); i++)
        if (!strcmp(precision, PREC_NAMES[i])) prec = i;
    if (precision && prec < 0) {
        err_set("precision \"%s\": expected f32, f16 or bf16", precision);
        return NULL;
    }
    if (!device || !strcmp(device, "cpu")) {
        if (prec > OPS_F32) {
            err_set("precision %s: the CPU backend computes in f32 only", precision);
            return NULL;
        }
        return ops_cpu_create(threads);
    }
    int idx = cuda_index(device);
    if (idx < 0) {
        err_set("device \"%s\": expected cpu, cuda or cuda:N", device);
        return NULL;
    }
#ifdef GENIE_CUDA
    return ops_cuda_create(idx, prec < 0 ? OPS_F16 : (enum ops_precision)prec);
#else
    err_set("device \"%s\": built without CUDA: make GPU=1", device);
    return NULL;
#endif
}

const char *backend_choose(const char *requested, const char **note)
{
    *note = NULL;
#ifdef GENIE_CUDA
    if (!requested || cuda_index(requested) >= 0) {
        if (ops_cuda_device_count() > 0) return requested ? requested : "cuda";
        *note = "no CUDA device present: running on the CPU";
        return "cpu";
    }
    return requested;
#else
    return requested ? requested : "cpu";
#endif
}

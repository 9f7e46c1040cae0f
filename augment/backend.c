/* Backend selection (see backend.h). Only this file knows whether the build has CUDA. */
#include "backend.h"
#include <stdlib.h>
#include <string.h>
#include "err.h"
#ifdef GENIE_CUDA
#include "ops_cuda.h"
#endif

/* "cuda" -> 0, "cuda:N" -> N; -1 when name is not a CUDA device name */
static int cuda_index(const char *name)
{
    if (strncmp(name, "cuda", 4)) return -1;
    if (!name[4]) return 0;
    if (name[4] != ':' || name[5] < '0' || name[5] > '9') return -1;
    char *end;
    long n = strtol(name + 5, &end, 10);
    return *end || n > 1024 ? -1 : (int)n;
}

ops_backend *backend_create(const char *device, int threads)
{
    if (!device || !strcmp(device, "cpu")) return ops_cpu_create(threads);
    int idx = cuda_index(device);
    if (idx < 0) {
        err_set("device \"%s\": expected cpu, cuda or cuda:N", device);
        return NULL;
    }
#ifdef GENIE_CUDA
    return ops_cuda_create(idx);
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

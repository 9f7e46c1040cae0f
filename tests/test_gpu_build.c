/* The GPU build without a device: darknet.h's layout assert holds for each define set of libdarknet, and the GPU
 * binary (build-gpu/genie, or $GENIE_GPU), finding no device, says so in one line and trains on the CPU to the CPU
 * binary's accuracy. Tolerance: 0.5 points of top-1 on 1000 test images after the same 60 iterations from one seed
 * (measured: the weights come out byte-identical, both builds running the same CPU kernels of src/net/blas.c). With a
 * device present the training group is scripts/gpu_check.sh's, and is skipped here. */
#include "tests/check.h"

#include <unistd.h>

#define DIR "build/test_gpu_build"

/* netio.c (the file with the assert) compiled alone with one define set; 0 when it compiles */
static int compile_netio(const char *defines)
{
    char cmd[1024], out[4096];
    snprintf(cmd, sizeof cmd, "cc -std=gnu11 -fsyntax-only -I. -I/usr/lib/darknet/include -I/usr/local/cuda/include "
                              "%s src/net/netio.c", defines);
    return check_sh(cmd, out, sizeof out);
}

static double top1(const char *out)
{
    const char *p = strstr(out, "top-1: ");
    return p ? atof(p + 7) : -1;
}

int main(void)
{
    CHECK(compile_netio("") == 0, "netio.c without defines (Debian's libdarknet.so)");
    if (access("/usr/local/cuda/include/cuda_runtime.h", R_OK) == 0) {
        CHECK(compile_netio("-DGPU") == 0, "netio.c with GPU: sizeof(layer) 1672");
        CHECK(compile_netio("-DCUDNN") != 0, "CUDNN without GPU must not compile");
        if (access("/usr/local/cuda/include/cudnn.h", R_OK) == 0)
            CHECK(compile_netio("-DGPU -DCUDNN") == 0, "netio.c with GPU and CUDNN: sizeof(layer) 1752");
        else
            printf("skipped: GPU+CUDNN layout (no cudnn.h)\n");
    } else {
        printf("skipped: GPU layouts (no CUDA headers)\n");
    }

    const char *gpu = getenv("GENIE_GPU") ? getenv("GENIE_GPU") : "build-gpu/genie";
    if (access(gpu, X_OK) != 0) {
        printf("skipped: no GPU build (%s; make GPU=1)\n", gpu);
        return check_done("test_gpu_build");
    }
    char cmd[2048], out[16384];
    check_sh("rm -rf " DIR " && mkdir -p " DIR " && head -n 1000 data/fmnist/test.list > " DIR "/valid.list && "
             "sed -e 's/^max_batches=.*/max_batches=60/' -e 's/^batch=.*/batch=32/' cfg/fmnist.cfg > " DIR "/t.cfg",
             out, sizeof out);
    for (int b = 0; b < 2; b++) {
        snprintf(cmd, sizeof cmd, "sed -e 's|^backup=.*|backup=" DIR "/%d|' -e 's|^valid=.*|valid=" DIR "/valid.list|' "
                 "cfg/fmnist.data > " DIR "/%d.data", b, b);
        check_sh(cmd, out, sizeof out);
    }
    snprintf(cmd, sizeof cmd, "%s classifier train " DIR "/1.data " DIR "/t.cfg -seed 3 -threads 2 2>&1 | head -n 1", gpu);
    check_sh(cmd, out, sizeof out);
    if (!strstr(out, "no CUDA device")) {
        printf("skipped: a CUDA device is present (scripts/gpu_check.sh compares GPU and CPU training)\n");
        return check_done("test_gpu_build");
    }
    snprintf(cmd, sizeof cmd, "%s classifier train x y -gpu 0", gpu);
    CHECK(check_sh(cmd, out, sizeof out) != 0 && strstr(out, "-gpu 0: 0 CUDA devices"), "-gpu 0 without a device: %s",
          out);
    CHECK(check_sh("$G classifier train x y -gpu 0", out, sizeof out) != 0 && strstr(out, "built without CUDA"),
          "the CPU build refuses -gpu 0: %s", out);

    double acc[2];
    for (int b = 0; b < 2; b++) {
        const char *bin = b ? gpu : "$G";
        snprintf(cmd, sizeof cmd, "%s classifier train " DIR "/%d.data " DIR "/t.cfg -seed 3 -threads 2 >/dev/null && "
                 "%s classifier valid " DIR "/%d.data " DIR "/t.cfg " DIR "/%d/t.weights -threads 2", bin, b, bin, b, b);
        int rc = check_sh(cmd, out, sizeof out);
        acc[b] = top1(out);
        CHECK(rc == 0 && acc[b] > 0.3, "%s: rc %d, top-1 %.4f: %s", b ? "GPU build" : "CPU build", rc, acc[b], out);
    }
    CHECK(fabs(acc[0] - acc[1]) <= 0.005, "top-1: CPU build %.4f, GPU build on the CPU %.4f", acc[0], acc[1]);
    printf("top-1 after 60 iterations: CPU build %.4f, GPU build without a device %.4f\n", acc[0], acc[1]);
    return check_done("test_gpu_build");
}

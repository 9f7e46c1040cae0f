/* genie: darknet-style command dispatch. The one command table below gives both the dispatch and the help. */
#include "common/err.h"
#include "src/cmd/bench_loader.h"
#include "src/cmd/cli.h"
#include "src/cmd/generate.h"
#include "src/cmd/plan.h"
#include "src/cmd/prepare.h"
#include "src/cmd/show_recipe.h"
#include "src/train/classifier.h"

#include <signal.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* A handler gets the arguments after the command's name (argc >= 1) and returns 0, or -1 with err_msg(). */
typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *usage; /* its lines of the help, each printed after two spaces */
} command;

static const command commands[] = {
    {"prepare", prepare_main,
     "prepare fmnist <outdir> [-seed S]\n"
     "prepare fmnist-lt <outdir> [-seed S] [-from data/fmnist]   (another long-tail split)\n"
     "prepare big-jpegs <outdir> [-n 1024] [-size 500x375] [-quality 90]   (photo-sized JPEGs for benchmarks)"},
    {"classifier", classifier_main,
     "classifier train <data> <cfg> [weights] [-clear] [-seed S] [-threads N] [-topk] [-gpu N|-1]\n"
     "classifier valid <data> <cfg> <weights> [-csv confusion.csv] [-predictions p.csv] [-soft] [-gpu N|-1]\n"
     "classifier predict <data> <cfg> <weights> <image> [-gpu N|-1]"},
    {"plan", plan_main,
     "plan <data> -mode genie|ada|img2img|txt2img|roundtrip -dir OUT -o plan.csv [-confusion csv]   (src/cmd/plan.h)"},
    {"generate", generate_main,
     "generate <plan.csv> -data D [-model M] [-batch B] [-backbone cfg -weights W]   (see src/cmd/generate.h)"},
    {"recipe", show_recipe_main, "recipe <genie.cfg>   (its settings with the defaults filled in, as key=value lines)"},
    {"img2img", cli_img2img,
     "img2img -model M -i src -p \"A photo of a T\" -r 0.8 -o out.png [-steps N] [-guidance G] [-seed S]\n"
     "        [-scheduler ddim|dpmpp2m|lcm|tcd] [-eta E] [-threads N] [-size WxH] [-noise file.safetensors] [-vae-mean]\n"
     "        [-device cpu|cuda[:N]] [-precision f32|f16|bf16] [-lora file.safetensors[:scale]]... [-v]"},
    {"txt2img", cli_txt2img, "txt2img -model M -p \"prompt\" -o out.png [options as img2img]"},
    {"sweep", cli_sweep, "sweep -model M -i src -p \"prompt\" -o strip.png   (r = 0.1 ... 1.0, labelled strip)"},
    {"bench-engine", cli_bench_engine,
     "bench-engine -model M -i src -p \"prompt\" [-r R] [-batch B] [-repeat K] [-ada]\n"
     "        [-flops F (one UNet call's FLOPs: GFLOP/s)] [-peak (sgemm's GFLOP/s on these threads)]"},
    {"bench-loader", bench_loader_main,
     "bench-loader <data> <cfg> [-threads N] [-batches K]   (genie's loader vs darknet's load_data)"},
};

static void usage(void)
{
    fprintf(stderr, "usage: genie <command> ...\n");
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        for (const char *l = commands[i].usage; *l;) {
            size_t n = strcspn(l, "\n");
            fprintf(stderr, "  %.*s\n", (int)n, l);
            l += n + (l[n] == '\n');
        }
}

/* OpenBLAS chooses its kernels from the CPU it recognises, and the kernel sets round differently: one seed trained
 * other weights on another machine (and a virtual CPU it does not recognise gets its slow SSE3 kernels). Every
 * machine with AVX2 and FMA runs the Haswell set, the one the committed results were made with; OpenBLAS reads
 * the choice when it loads, before main, so the process starts again once with it set. OPENBLAS_CORETYPE given by
 * the user is kept. */
static void pin_blas_kernels(char **argv)
{
    if (getenv("OPENBLAS_CORETYPE")) return;
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return;
    if (setenv("OPENBLAS_CORETYPE", "Haswell", 1) == 0) execv("/proc/self/exe", argv);
    /* no /proc: OpenBLAS's own choice, as before */
}

int main(int argc, char **argv)
{
    pin_blas_kernels(argv);
    /* Past a file-size limit a write must fail with EFBIG (and be reported as any failed write), not kill us. */
    signal(SIGXFSZ, SIG_IGN);
    /* a command without arguments, or none, or an unknown one: the help */
    for (size_t i = 0; argc >= 3 && i < sizeof commands / sizeof *commands; i++) {
        if (strcmp(argv[1], commands[i].name) != 0) continue;
        if (commands[i].run(argc - 2, argv + 2)) {
            fprintf(stderr, "genie: %s\n", err_msg());
            return 1;
        }
        /* stopped by a signal, with what could be saved saved: the shell's convention, 128 + the signal */
        return classifier_signal() ? 128 + classifier_signal() : 0;
    }
    usage();
    return 1;
}

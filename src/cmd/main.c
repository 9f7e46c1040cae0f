/* genie: darknet-style command dispatch. */
#include "common/args.h"
#include "src/cmd/bench_loader.h"
#include "src/train/classifier.h"
#include "src/cmd/cli.h"
#include "common/err.h"
#include "src/cmd/generate.h"
#include "src/cmd/plan.h"
#include "src/cmd/prepare.h"
#include "src/cmd/show_recipe.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(void)
{
    fprintf(stderr,
            "usage: genie <command> ...\n"
            "  classifier train <data> <cfg> [weights] [-clear] [-seed S] [-threads N] [-topk]\n"
            "  classifier valid <data> <cfg> <weights> [-csv confusion.csv] [-predictions p.csv] [-soft]\n"
            "  classifier predict <data> <cfg> <weights> <image>\n"
            "  img2img -model M -i src -p \"A photo of a T\" -r 0.8 -o out.png [-steps N] [-guidance G] [-seed S]\n"
            "          [-scheduler ddim|dpmpp2m] [-threads N] [-size WxH] [-noise file.safetensors] [-vae-mean]\n"
            "          [-device cpu|cuda[:N]] [-precision f32|f16|bf16] [-v]\n"
            "  txt2img -model M -p \"prompt\" -o out.png [options as img2img]\n"
            "  sweep -model M -i src -p \"prompt\" -o strip.png   (r = 0.1 ... 1.0, labelled strip)\n"
            "  bench-engine -model M -i src -p \"prompt\" [-r R] [-batch B] [-repeat K] [-ada]\n"
            "  bench-loader <data> <cfg> [-threads N] [-batches K]   (genie's loader vs darknet's load_data)\n"
            "  generate <plan.csv> -data D [-model M] [-batch B] [-backbone cfg -weights W]   (see src/cmd/generate.h)\n"
            "  recipe <genie.cfg>   (its settings with the defaults filled in, as key=value lines)\n"
            "  plan <data> -mode genie|ada|img2img|txt2img|roundtrip -dir OUT -o plan.csv [-confusion csv]   (src/cmd/plan.h)\n"
            "  prepare fmnist <outdir> [-seed S]\n"
            "  prepare fmnist-lt <outdir> [-seed S] [-from data/fmnist]   (another long-tail split)\n"
            "  prepare big-jpegs <outdir> [-n 1024] [-size 500x375] [-quality 90]   (photo-sized JPEGs for benchmarks)\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage();
        return 1;
    }
    /* Past a file-size limit a write must fail with EFBIG (and be reported as any failed write), not kill us. */
    signal(SIGXFSZ, SIG_IGN);
    if (argc >= 3 && strcmp(argv[1], "prepare") == 0 &&
        (strcmp(argv[2], "fmnist") == 0 || strcmp(argv[2], "fmnist-lt") == 0)) {
        uint64_t seed = 1;
        const char *from = "data/fmnist";
        int lt = strcmp(argv[2], "fmnist-lt") == 0;
        /* -from only for fmnist-lt: for fmnist the table ends before it */
        const arg_opt opts[] = {ARG_OPT("-seed", ARG_U64, &seed), ARG_OPT(lt ? "-from" : NULL, ARG_STR, &from),
                                ARG_END};
        char *pos[1];
        int np = args_parse(lt ? "prepare fmnist-lt" : "prepare fmnist", argc - 3, argv + 3, opts, pos, 1);
        if (np == 0) err_set("usage: genie prepare %s <outdir>%s [-seed S]", argv[2], lt ? " [-from data/fmnist]" : "");
        if (np < 1 || (lt ? prepare_fmnist_lt(from, pos[0], seed) : prepare_fmnist(pos[0], seed))) {
            fprintf(stderr, "genie: %s\n", err_msg());
            return 1;
        }
        fprintf(stderr, lt ? "prepared a Fashion-MNIST-LT split in %s/train.list\n"
                           : "prepared Fashion-MNIST and Fashion-MNIST-LT in %s\n", pos[0]);
        return 0;
    }
    if (argc >= 3 && strcmp(argv[1], "prepare") == 0 && strcmp(argv[2], "big-jpegs") == 0) {
        int n = 1024, quality = 90;
        const char *from = "data/fmnist", *size = "500x375";
        uint64_t seed = 1;
        const arg_opt opts[] = {ARG_RANGE("-n", ARG_INT, &n, 1, 10000000), ARG_RANGE("-quality", ARG_INT, &quality, 1, 100),
                                ARG_OPT("-size", ARG_STR, &size), ARG_OPT("-from", ARG_STR, &from),
                                ARG_OPT("-seed", ARG_U64, &seed), ARG_END};
        char *pos[1];
        int w = 0, h = 0, k = 0, np = args_parse("prepare big-jpegs", argc - 3, argv + 3, opts, pos, 1);
        if (np == 0) err_set("usage: genie prepare big-jpegs <outdir> [-n 1024] [-size 500x375] [-quality 90] [-from data/fmnist]");
        else if (np > 0 && (sscanf(size, "%dx%d%n", &w, &h, &k) != 2 || size[k] || w < 8 || h < 8 || w > 8192 || h > 8192))
            np = err_set("prepare big-jpegs: -size \"%s\" is not WxH (8..8192)", size);
        if (np < 1 || prepare_big_jpegs(from, pos[0], n, w, h, quality, seed)) {
            fprintf(stderr, "genie: %s\n", err_msg());
            return 1;
        }
        fprintf(stderr, "prepared %d %dx%d JPEGs in %s/train.list\n", n, w, h, pos[0]);
        return 0;
    }
    static const struct {
        const char *name;
        int (*run)(int, char **);
    } diffusion[] = {{"img2img", cli_img2img}, {"txt2img", cli_txt2img}, {"sweep", cli_sweep},
                     {"bench-engine", cli_bench_engine}};
    for (size_t i = 0; i < sizeof diffusion / sizeof *diffusion; i++)
        if (strcmp(argv[1], diffusion[i].name) == 0) return diffusion[i].run(argc - 1, argv + 1);
    if (argc >= 3 && (strcmp(argv[1], "classifier") == 0 || strcmp(argv[1], "bench-loader") == 0 ||
                      strcmp(argv[1], "generate") == 0 || strcmp(argv[1], "plan") == 0 ||
                      strcmp(argv[1], "recipe") == 0)) {
        int rc = strcmp(argv[1], "classifier") == 0 ? classifier_main(argc - 2, argv + 2)
                 : strcmp(argv[1], "generate") == 0 ? generate_main(argc - 2, argv + 2)
                 : strcmp(argv[1], "plan") == 0     ? plan_main(argc - 2, argv + 2)
                 : strcmp(argv[1], "recipe") == 0   ? show_recipe_main(argc - 2, argv + 2)
                                                    : bench_loader_main(argc - 2, argv + 2);
        if (rc) {
            fprintf(stderr, "genie: %s\n", err_msg());
            return 1;
        }
        /* stopped by a signal, with what could be saved saved: the shell's convention, 128 + the signal */
        return classifier_signal() ? 128 + classifier_signal() : 0;
    }
    usage();
    return 1;
}

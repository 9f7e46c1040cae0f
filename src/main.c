/* genie: darknet-style command dispatch. */
#include "classifier.h"
#include "err.h"
#include "prepare.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(void)
{
    fprintf(stderr,
            "usage: genie <command> ...\n"
            "  classifier train <data> <cfg> [weights] [-clear] [-seed S] [-threads N] [-topk]\n"
            "  classifier valid <data> <cfg> <weights> [-csv confusion.csv]\n"
            "  classifier predict <data> <cfg> <weights> <image>\n"
            "  prepare fmnist <outdir> [-seed S]\n");
}

int main(int argc, char **argv)
{
    if (argc >= 4 && strcmp(argv[1], "prepare") == 0 && strcmp(argv[2], "fmnist") == 0) {
        uint64_t seed = 1;
        for (int i = 4; i + 1 < argc; i++)
            if (strcmp(argv[i], "-seed") == 0) seed = strtoull(argv[i + 1], NULL, 10);
        if (prepare_fmnist(argv[3], seed)) {
            fprintf(stderr, "genie: %s\n", err_msg());
            return 1;
        }
        fprintf(stderr, "prepared Fashion-MNIST and Fashion-MNIST-LT in %s\n", argv[3]);
        return 0;
    }
    if (argc >= 3 && strcmp(argv[1], "classifier") == 0) {
        if (classifier_main(argc - 2, argv + 2)) {
            fprintf(stderr, "genie: %s\n", err_msg());
            return 1;
        }
        return 0;
    }
    usage();
    return 1;
}

/* genie: darknet-style command dispatch. */
#include <stdio.h>
#include <string.h>

static void usage(void)
{
    fprintf(stderr, "usage: genie <command> ...\n"
                    "  classifier train|valid|predict <data> <cfg> [weights] [options]\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage();
        return 1;
    }
    usage();
    return 1;
}

/* `genie prepare`: Fashion-MNIST and Fashion-MNIST-LT in darknet layout (fmnist), another long-tail split
 * (fmnist-lt), photo-sized JPEGs for the loader benchmark (big-jpegs). */
#ifndef GENIE_PREPARE_H
#define GENIE_PREPARE_H
/* argv[0] is the subcommand. Returns 0, or -1 with err_msg(). */
int prepare_main(int argc, char **argv);
#endif

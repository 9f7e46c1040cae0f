/* `genie bench-loader`: genie's loader against libdarknet's load_data. */
#ifndef GENIE_BENCH_LOADER_H
#define GENIE_BENCH_LOADER_H
int bench_loader_main(int argc, char **argv);
#endif

/* Command-line front ends of the diffusion engine, one handler per command of src/cmd/main.c's table. Each takes
 * the arguments after the command's name and returns 0, or -1 with err_msg().
 *
 *   genie img2img -model M -i src -p "prompt" -r 0.8 -o out.png [common options]
 *   genie txt2img -model M -p "prompt" -o out.png [common options]
 *   genie sweep   -model M -i src -p "prompt" -o strip.png [common options]   (r = 0.1 ... 1.0 in one batch)
 *   genie bench-engine -model M -i src -p "prompt" [-r R] [-batch B] [-repeat K] [-ref out.safetensors]
 * -model defaults to the bundled data/models/fmnist-ldm.
 * common: [-config DIR] [-steps 50] [-guidance 7.5] [-seed 1] [-scheduler ddim|dpmpp2m|lcm] [-threads N]
 *         [-size WxH] [-noise file.safetensors] [-vae-mean] [-device cpu|cuda|cuda:N]
 * -device defaults to cuda in a GPU=1 build with a device present, else cpu; a GPU=1 build asked for cuda with no
 * device runs on the CPU and says so in one line on stderr; a CPU build refuses cuda. */
#ifndef GENIE_CLI_H
#define GENIE_CLI_H

int cli_img2img(int argc, char **argv);
int cli_txt2img(int argc, char **argv);
int cli_sweep(int argc, char **argv);
int cli_bench_engine(int argc, char **argv);

#endif

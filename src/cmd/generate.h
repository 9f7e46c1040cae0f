/* `genie generate`: a plan of GeNIe requests (CSV) -> images and an index, in engine batches through
 * augment/genie/genie.h (the path the online module uses), resumable: outputs that exist are skipped.
 *
 * Plan (header line required, fields without commas):
 *   source,target,r,seed,output
 *   data/fmnist/images/train/00012_coat.jpg,shirt,0.8,17,gen/genie/00000_shirt.png
 *   ,shirt,1,18,gen/t2i/00000_shirt.png                     (no source: txt2img)
 *   data/fmnist/images/train/00012_coat.jpg,shirt,ada,19,gen/ada/00000_shirt.png
 *   data/fmnist/images/train/00012_coat.jpg,coat,0,0,rt/00012_coat.png       (r 0: VAE round trip)
 * target is a label of the labels file; its prompt is the template with the label's prompt words.
 *
 * Index (written whole after every batch; default <plan>.index.csv):
 *   output,source,target,r,seed,gaps       (r: the one used; gaps: Ada's d_1;...;d_4, else empty) */
#ifndef GENIE_GENERATE_H
#define GENIE_GENERATE_H

int generate_main(int argc, char **argv);

#endif

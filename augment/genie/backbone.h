/* f_theta for GeNIe-Ada: a darknet classifier used as a feature extractor. The only file of augment/ that
 * includes darknet.h (with the defines of the libdarknet it links: its struct layout depends on them). In a GPU
 * build a network built on the device (the trainer's, f_theta's) is copied device to device and the embedded layer's
 * output is pulled from the device.
 *
 * An embedding is the output of one layer (default: the input of the last connected/convolutional layer, i.e.
 * the classifier's penultimate features), averaged over space when spatial, L2-normalised. Images go through the
 * classifier's own evaluation transform (shorter side to the net size, centre crop), as the trainer sees them. */
#ifndef GENIE_BACKBONE_H
#define GENIE_BACKBONE_H
#include "common/imgio.h"

typedef struct backbone backbone;

/* embed_layer: a layer index whose OUTPUT is embedded, or -1 for the default. NULL + err_msg(). */
backbone *backbone_load(const char *cfg, const char *weights, int embed_layer, int max_batch);
void backbone_free(backbone *b);
int backbone_dim(const backbone *b);
int backbone_max_batch(const backbone *b);

/* Copies a network's parameters into this backbone, the same walk as a weights file: every saved layer's weights
 * and biases, and batch-norm scales and running statistics. `src` is the trainer's network, built from the same
 * cfg; the caller picks the moment (an iteration boundary, the backbone not in use). It only reads src. 0, or -1 +
 * err_msg() when the two networks' layers differ. */
struct network;
int backbone_copy_params(backbone *b, const struct network *src);
/* The same between two networks of one cfg; and a network of a cfg alone, to stage a snapshot in (the trainer
 * copies into it at an iteration boundary, f_theta picks it up between generation batches). */
int backbone_net_copy(struct network *dst, const struct network *src);
struct network *backbone_net_new(const char *cfg);
/* The same parameters as one flat array, layer by layer (what backbone_net_copy copies, in its order): how many
 * floats, and the network into out / from in (n floats, as backbone_net_floats says). The snapshot a generator rank
 * of an MPI job receives. 0, or -1 + err_msg() when n does not match. */
size_t backbone_net_floats(const struct network *net);
int backbone_net_pack(const struct network *net, float *out, size_t n);
int backbone_net_unpack(struct network *net, const float *in, size_t n);
void backbone_net_free(struct network *net);
/* Makes the calling thread run darknet layers (f_theta) on a compute pool of its own with `threads` threads, so it
 * never waits on the trainer's pool or its buffers; backbone_pool_end hands it back. NULL (out of memory or
 * threads): the layers run on the calling thread alone, to the same bits; backbone_pool_end takes NULL. */
struct blas_pool;
struct blas_pool *backbone_pool_begin(int threads);
void backbone_pool_end(struct blas_pool *pool);

/* n <= max_batch decoded images -> n rows of backbone_dim floats. 0, or -1 + err_msg(). */
int backbone_embed(backbone *b, const img_u8 *imgs, int n, float *out);

#endif

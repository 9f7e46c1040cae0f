/* Layers shared by the three networks (clip.c, vae.c, unet.c): parameter loading with shape checks, and the
 * ResNet block both the UNet and the VAE are made of. Internal to the model code. */
#ifndef GENIE_NN_H
#define GENIE_NN_H
#include "augment/engine/backend/ops.h"
#include "augment/engine/weights.h"

/* Every parameter a model holds, handed to the backend at load and dropped at free. */
typedef struct {
    ops_backend *be;
    weights *w;
    const float **p;
    int n, cap;
} nn_params;

typedef struct { const float *w, *b; int cin, cout, k; } nn_conv;
typedef struct { const float *w, *b; int in, out; } nn_linear;
typedef struct { const float *g, *b; int c, groups; float eps; } nn_norm;

/* Loaders take the tensor prefix as printf arguments ("down_blocks.%d.resnets.%d.conv1"); -1 + err_msg(). */
int nn_conv_load(nn_params *P, nn_conv *c, int cin, int cout, int k, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
/* bias: 0 = none */
int nn_linear_load(nn_params *P, nn_linear *l, int in, int out, int bias, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
/* groups 0: a LayerNorm */
int nn_norm_load(nn_params *P, nn_norm *n, int c, int groups, float eps, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
/* A tensor of any shape (embedding tables). */
const float *nn_tensor_load(nn_params *P, int ndim, const int64_t *shape, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void nn_params_free(nn_params *P);

/* diffusers ResnetBlock2D: GN-SiLU-conv3x3 (+ time embedding projection per channel) GN-SiLU-conv3x3, plus the
 * input (through a 1x1 conv when the channel count changes); output scale factor 1. */
typedef struct {
    int cin, cout, temb;
    nn_norm norm1, norm2;
    nn_conv conv1, conv2, shortcut;
    nn_linear temb_proj;
} nn_resnet;

int nn_resnet_load(nn_params *P, nn_resnet *r, int cin, int cout, int temb_dim, int groups, float eps,
                   const char *prefix);
/* Returns a new arena buffer [B, cout, H, W]; temb_silu is SiLU(time embedding) [B, temb_dim] or NULL. */
float *nn_resnet_forward(ops_arena *a, const nn_resnet *r, const float *x, int B, int H, int W,
                         const float *temb_silu);

/* Small forwards over the arena: each returns a new buffer. */
float *nn_conv_forward(ops_arena *a, const nn_conv *c, const float *x, int B, int H, int W, int stride,
                       const int pad[4]);
float *nn_linear_forward(ops_arena *a, const nn_linear *l, const float *x, int rows);
float *nn_group_norm_forward(ops_arena *a, const nn_norm *n, const float *x, int B, int HW, enum ops_act act);
float *nn_layer_norm_forward(ops_arena *a, const nn_norm *n, const float *x, int rows);

/* Moves h (computed above arena position slot) down to slot and drops everything above it, so a chain of blocks
 * keeps the arena about one block's temporaries deep. Returns the new place of h. */
float *nn_settle(ops_arena *a, size_t slot, const float *h, size_t n);

/* -1 + err naming the network and stage when x[n] holds a NaN or infinity (skipped in a dry run). */
int nn_check_finite(ops_arena *a, const float *x, size_t n, const char *net, const char *stage);

#endif

/* Weights by name: one namespace over one or more safetensors files, handed out as float32 views with their
 * shapes checked against what the network expects.
 *
 * F32 tensors are used in place from the mmap'd file (when 4-byte aligned); F16/BF16 (and unaligned F32) are
 * converted once, on first request, and kept until weights_close. A name map translates the diffusers names the
 * model code asks for into the names a file stores (single-file CompVis checkpoints). */
#ifndef GENIE_WEIGHTS_H
#define GENIE_WEIGHTS_H
#include <stddef.h>
#include <stdint.h>
#include "augment/engine/lora.h"

typedef struct weights weights;

/* Opens n safetensors files as one namespace (a name found in an earlier file wins). NULL + err_msg(). */
weights *weights_open(const char *const *paths, int n);

/* Translates a diffusers-style name into the stored one, writing into buf[len] (or returning a constant);
 * NULL means "not stored in this format". A NULL map is the identity. */
typedef const char *(*weights_map_fn)(const char *name, char *buf, size_t len, void *ctx);
void weights_set_map(weights *w, weights_map_fn map, void *ctx);

/* LoRA entries of part l merged into the weights handed out from now on (l NULL: none); l must outlive the
 * requests. A merged tensor is an owned float32 copy, merged once. */
void weights_set_lora(weights *w, lora_set *l, enum lora_part part);

/* float32 view of tensor `name`, checked against shape[ndim]; a stored shape that differs only by trailing
 * singleton dims is accepted (attention projections stored as 1x1 convs [C,C,1,1] where a Linear [C,C] is
 * expected). Missing to_q/to_k/to_v/to_out.0 fall back to the old diffusers VAE names query/key/value/proj_attn.
 * NULL + err_msg() naming the file(s), the tensor (requested and stored names) and both shapes; also NULL, naming
 * file and tensor, when the values hold a NaN or infinity (found at load, not as NaN latents later). */
const float *weights_get(weights *w, const char *name, int ndim, const int64_t *shape);
int weights_has(weights *w, const char *name);

/* Weights that exist for any requested name and shape, synthesised deterministically on first request from
 * Philox keyed by (seed, hash of the name): uniform with standard deviation std; normalisation weights are 1,
 * biases are uniform with std/10. For full-size shape tests without checkpoint files. */
weights *weights_random(uint64_t seed, float std);

/* Bytes of float32 memory converted or synthesised so far (not counting mmap'd F32 tensors). */
size_t weights_owned_bytes(const weights *w);

void weights_close(weights *w);

#endif

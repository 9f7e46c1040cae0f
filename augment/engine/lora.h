/* LoRA files merged into the weights at load: W += multiplier * scale * up @ down, once, in float32 before the
 * backend takes the weight (so no cost per step). Two formats, told apart by their keys:
 *
 * - diffusers 0.19 (what its load_lora_weights reads): keys prefixed "unet." / "text_encoder." (or, the old
 *   format, UNet keys with no prefix); UNet attention processors "<attn>.processor.to_{q,k,v,out}_lora.{down,up}
 *   .weight" (to_out is to_out.0) and "<module>.lora.{down,up}.weight" (0.19 takes these for ff.net.0.proj,
 *   ff.net.2 and proj_in/proj_out; genie for any weight it loads); text encoder "<layer>.self_attn.to_{q,k,v,out}
 *   _lora.{down,up}.weight" (q/k/v/out_proj) and "<module>.lora_linear_layer.{down,up}.weight". 0.19 reads no
 *   alpha from such a file: scale 1. PEFT's lora_A/lora_B spellings (later diffusers) are refused.
 * - kohya-ss (sd-scripts): "lora_unet_<module>" / "lora_te_<module>" with '.' written '_', each with
 *   ".lora_down.weight", ".lora_up.weight" and an optional ".alpha" (scale alpha/rank, else 1). Linear layers,
 *   1x1 convolutions and kxk convolutions (down [r, in, k, k], up [out, r, 1, 1]) alike, as sd-scripts merges
 *   them (diffusers 0.19 drops the convolution entries; genie applies them).
 *
 * A key of the wrong form, an up without its down (or the reverse), an alpha alone, mismatched ranks, a delta
 * whose shape is not the weight's, and an entry that matches no weight of the model are refused, naming the file,
 * the key and the shapes. */
#ifndef GENIE_LORA_H
#define GENIE_LORA_H
#include <stddef.h>
#include <stdint.h>

#define LORA_MAX 8          /* LoRA files per model */
#define LORA_SCALE_MAX 100  /* |multiplier| at most */

enum lora_part { LORA_UNET, LORA_TEXT };

typedef struct lora_set lora_set;

/* "file.safetensors[:multiplier]" (multiplier 1 when absent; a suffix after the last ':' that is not a number is
 * part of the path): the path into path[len]. 0, or -1 + err_msg() naming arg. */
int lora_spec_parse(const char *arg, char *path, size_t len, double *multiplier);

/* Reads n "file[:multiplier]" arguments (n <= LORA_MAX). NULL + err_msg(). */
lora_set *lora_open(const char *const *args, int n);

/* Whether any entry of part is for the weight `name` (a diffusers name ending in ".weight", as the model code
 * asks for it). */
int lora_touches(const lora_set *l, enum lora_part part, const char *name);

/* Adds every entry of part for `name` into w, the stored tensor of shape[ndim] (from file `file`, for messages),
 * and marks them used. The number applied, or -1 + err_msg() naming the key and both shapes. */
int lora_apply(lora_set *l, enum lora_part part, const char *name, const char *file, float *w, int ndim,
               const int64_t *shape);

/* -1 + err_msg() naming the first entry that matched no weight of the model; 0 when all were applied. */
int lora_check_used(const lora_set *l);

void lora_free(lora_set *l);

#endif

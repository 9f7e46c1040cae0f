/* CLIP text encoder (transformers CLIPTextModel): token + position embeddings, pre-LN transformer layers with a
 * causal mask, final LayerNorm; SD takes last_hidden_state as the UNet's context. */
#ifndef GENIE_CLIP_H
#define GENIE_CLIP_H
#include "augment/engine/backend/ops.h"
#include "augment/engine/sdconfig.h"
#include "augment/engine/weights.h"

typedef struct clip_model clip_model;

/* Builds the encoder from cfg and the text_model.* tensors of w, on backend be, with work memory for up to
 * max_batch sequences of max_position_embeddings tokens. NULL + err_msg() on a missing or mis-shaped tensor. */
clip_model *clip_load(const clip_config *cfg, weights *w, ops_backend *be, int max_batch);
/* out[B, L, hidden] = last_hidden_state for ids[B, L] (L <= max_position_embeddings). -1 + err_msg() on an id
 * out of range, a size beyond the arena, or a non-finite output. */
int clip_encode(clip_model *m, const int *ids, int B, int L, float *out);
void clip_free(clip_model *m);

#endif

/* diffusers -> LDM single-file weight names (see ldm_map.h): convert_from_ckpt.py, read backwards. */
#include "augment/engine/ldm_map.h"
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int take(const char **s, const char *prefix)
{
    size_t n = strlen(prefix);
    if (strncmp(*s, prefix, n)) return 0;
    *s += n;
    return 1;
}

/* A decimal index followed by '.', e.g. "12." */
static int take_index(const char **s, int *out)
{
    const char *p = *s;
    int v = 0, digits = 0;
    while (*p >= '0' && *p <= '9' && digits < 6) v = v * 10 + (*p++ - '0'), digits++;
    if (!digits || *p != '.') return 0;
    *out = v;
    *s = p + 1;
    return 1;
}

static const char *emit(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static const char *emit(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, len, fmt, ap);
    va_end(ap);
    return n < 0 || (size_t)n >= len ? NULL : buf;
}

/* ResnetBlock2D sub-names -> LDM ResBlock names */
static const char *unet_res_sub(const char **rest)
{
    static const char *const map[][2] = {
        {"norm1.", "in_layers.0."},          {"conv1.", "in_layers.2."},  {"time_emb_proj.", "emb_layers.1."},
        {"norm2.", "out_layers.0."},         {"conv2.", "out_layers.3."}, {"conv_shortcut.", "skip_connection."},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (take(rest, map[i][0])) return map[i][1];
    return NULL;
}

const char *sd_map_unet(const char *name, char *buf, size_t len, void *ctx)
{
    const sd_ldm_map *m = ctx;
    const unet_config *u = m->unet;
    const int per = u->layers_per_block + 1;
    const char *s = name, *sub;
    int i, j;
    if (take(&s, "conv_in.")) return emit(buf, len, LDM_UNET_PFX "input_blocks.0.0.%s", s);
    if (take(&s, "time_embedding.linear_1.")) return emit(buf, len, LDM_UNET_PFX "time_embed.0.%s", s);
    if (take(&s, "time_embedding.linear_2.")) return emit(buf, len, LDM_UNET_PFX "time_embed.2.%s", s);
    if (take(&s, "conv_norm_out.")) return emit(buf, len, LDM_UNET_PFX "out.0.%s", s);
    if (take(&s, "conv_out.")) return emit(buf, len, LDM_UNET_PFX "out.2.%s", s);
    if (take(&s, "down_blocks.") && take_index(&s, &i) && i < u->n_blocks) {
        if (take(&s, "resnets.") && take_index(&s, &j) && j < u->layers_per_block && (sub = unet_res_sub(&s)))
            return emit(buf, len, LDM_UNET_PFX "input_blocks.%d.0.%s%s", 1 + i * per + j, sub, s);
        if (take(&s, "attentions.") && take_index(&s, &j) && j < u->layers_per_block)
            return emit(buf, len, LDM_UNET_PFX "input_blocks.%d.1.%s", 1 + i * per + j, s);
        if (take(&s, "downsamplers.0.conv."))
            return emit(buf, len, LDM_UNET_PFX "input_blocks.%d.0.op.%s", (i + 1) * per, s);
        return NULL;
    }
    s = name;
    if (take(&s, "mid_block.")) {
        if (take(&s, "resnets.") && take_index(&s, &j) && j < 2 && (sub = unet_res_sub(&s)))
            return emit(buf, len, LDM_UNET_PFX "middle_block.%d.%s%s", 2 * j, sub, s);
        if (take(&s, "attentions.0.")) return emit(buf, len, LDM_UNET_PFX "middle_block.1.%s", s);
        return NULL;
    }
    if (take(&s, "up_blocks.") && take_index(&s, &i) && i < u->n_blocks) {
        if (take(&s, "resnets.") && take_index(&s, &j) && j < per && (sub = unet_res_sub(&s)))
            return emit(buf, len, LDM_UNET_PFX "output_blocks.%d.0.%s%s", i * per + j, sub, s);
        if (take(&s, "attentions.") && take_index(&s, &j) && j < per)
            return emit(buf, len, LDM_UNET_PFX "output_blocks.%d.1.%s", i * per + j, s);
        /* the upsampler follows the last layer's resnet (and its attention, where the block has one) */
        if (take(&s, "upsamplers.0.conv."))
            return emit(buf, len, LDM_UNET_PFX "output_blocks.%d.%d.conv.%s", i * per + per - 1,
                        u->up_block_types[i] == SD_CROSS_ATTN_UP_BLOCK ? 2 : 1, s);
    }
    return NULL;
}

static const char *vae_res_sub(const char **rest)
{
    static const char *const map[][2] = {
        {"norm1.", "norm1."}, {"conv1.", "conv1."}, {"norm2.", "norm2."}, {"conv2.", "conv2."},
        {"conv_shortcut.", "nin_shortcut."},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (take(rest, map[i][0])) return map[i][1];
    return NULL;
}

/* mid-block attention: diffusers 0.19 names (and the older query/key/value/proj_attn) -> attn_1.*, as q/k/v/proj_out
 * or, when the file kept the new diffusers names (to_qkv), as to_q/to_k/to_v/to_out.0 */
static const char *vae_attn_sub(const char **rest, int to_qkv)
{
    static const char *const map[][3] = {
        {"group_norm.", "norm.", "norm."},
        {"to_q.", "q.", "to_q."},  {"to_k.", "k.", "to_k."},  {"to_v.", "v.", "to_v."},
        {"to_out.0.", "proj_out.", "to_out.0."},
        {"query.", "q.", "to_q."}, {"key.", "k.", "to_k."},   {"value.", "v.", "to_v."},
        {"proj_attn.", "proj_out.", "to_out.0."},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (take(rest, map[i][0])) return map[i][to_qkv ? 2 : 1];
    return NULL;
}

const char *sd_map_vae(const char *name, char *buf, size_t len, void *ctx)
{
    const sd_ldm_map *m = ctx;
    const int nb = m->n_vae_blocks;
    const char *s = name, *sub;
    int i, j;
    const char *part = take(&s, "encoder.") ? "encoder" : take(&s, "decoder.") ? "decoder" : NULL;
    if (!part) {
        if (take(&s, "quant_conv.") || take(&s, "post_quant_conv.")) return emit(buf, len, LDM_VAE_PFX "%s", name);
        return NULL;
    }
    if (take(&s, "conv_in.") || take(&s, "conv_out.")) return emit(buf, len, LDM_VAE_PFX "%s", name);
    if (take(&s, "conv_norm_out.")) return emit(buf, len, LDM_VAE_PFX "%s.norm_out.%s", part, s);
    if (take(&s, "mid_block.")) {
        if (take(&s, "resnets.") && take_index(&s, &j) && j < 2 && (sub = vae_res_sub(&s)))
            return emit(buf, len, LDM_VAE_PFX "%s.mid.block_%d.%s%s", part, j + 1, sub, s);
        if (take(&s, "attentions.0.") && (sub = vae_attn_sub(&s, m->vae_attn_to_qkv)))
            return emit(buf, len, LDM_VAE_PFX "%s.mid.attn_1.%s%s", part, sub, s);
        return NULL;
    }
    if (part[0] == 'e' && take(&s, "down_blocks.") && take_index(&s, &i) && i < nb) {
        if (take(&s, "resnets.") && take_index(&s, &j) && (sub = vae_res_sub(&s)))
            return emit(buf, len, LDM_VAE_PFX "encoder.down.%d.block.%d.%s%s", i, j, sub, s);
        if (take(&s, "downsamplers.0.conv."))
            return emit(buf, len, LDM_VAE_PFX "encoder.down.%d.downsample.conv.%s", i, s);
        return NULL;
    }
    /* the LDM decoder numbers its up blocks from the lowest resolution upwards: reversed */
    if (part[0] == 'd' && take(&s, "up_blocks.") && take_index(&s, &i) && i < nb) {
        if (take(&s, "resnets.") && take_index(&s, &j) && (sub = vae_res_sub(&s)))
            return emit(buf, len, LDM_VAE_PFX "decoder.up.%d.block.%d.%s%s", nb - 1 - i, j, sub, s);
        if (take(&s, "upsamplers.0.conv."))
            return emit(buf, len, LDM_VAE_PFX "decoder.up.%d.upsample.conv.%s", nb - 1 - i, s);
    }
    return NULL;
}

const char *sd_map_clip(const char *name, char *buf, size_t len, void *ctx)
{
    const sd_ldm_map *m = ctx;
    const char *s = name;
    if (!take(&s, "text_model.")) return NULL;
    return m->clip_has_text_model ? emit(buf, len, "cond_stage_model.transformer.text_model.%s", s)
                                  : emit(buf, len, "cond_stage_model.transformer.%s", s);
}

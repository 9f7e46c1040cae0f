/* Config parsing (diffusers defaults, SD 1.5 values, errors naming file and value) and the LDM name map. */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "tests/check.h"
#include "augment/engine/engine.h"
#include "common/err.h"
#include "augment/engine/model_load.h"
#include "augment/engine/safetensors.h"
#include "augment/engine/weights.h"

static char tmpdir[256];

static void write_file(const char *rel, const char *text)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", tmpdir, rel);
    FILE *f = fopen(p, "w");
    fputs(text, f);
    fclose(f);
}

static const char *tmp_path(const char *rel)
{
    static char p[512];
    snprintf(p, sizeof p, "%s/%s", tmpdir, rel);
    return p;
}

/* SD 1.5's unet/config.json as published */
static const char *sd15_unet =
    "{\"_class_name\": \"UNet2DConditionModel\", \"_diffusers_version\": \"0.6.0\", \"act_fn\": \"silu\","
    " \"attention_head_dim\": 8, \"block_out_channels\": [320, 640, 1280, 1280], \"center_input_sample\": false,"
    " \"cross_attention_dim\": 768, \"down_block_types\": [\"CrossAttnDownBlock2D\", \"CrossAttnDownBlock2D\","
    " \"CrossAttnDownBlock2D\", \"DownBlock2D\"], \"downsample_padding\": 1, \"flip_sin_to_cos\": true,"
    " \"freq_shift\": 0, \"in_channels\": 4, \"layers_per_block\": 2, \"mid_block_scale_factor\": 1,"
    " \"norm_eps\": 1e-05, \"norm_num_groups\": 32, \"out_channels\": 4, \"sample_size\": 64,"
    " \"up_block_types\": [\"UpBlock2D\", \"CrossAttnUpBlock2D\", \"CrossAttnUpBlock2D\", \"CrossAttnUpBlock2D\"]}";

static void test_sd15(void)
{
    unet_config u, d;
    write_file("unet.json", sd15_unet);
    CHECK(sd_parse_unet_config(tmp_path("unet.json"), &u) == 0, "%s", err_msg());
    sd_default_configs(&d, NULL, NULL, NULL);
    CHECK(u.n_blocks == 4 && u.block_out_channels[3] == 1280 && u.block_out_channels[1] == 640, "channels");
    CHECK(u.down_block_types[0] == SD_CROSS_ATTN_DOWN_BLOCK && u.down_block_types[3] == SD_DOWN_BLOCK, "down types");
    CHECK(u.up_block_types[0] == SD_UP_BLOCK && u.up_block_types[3] == SD_CROSS_ATTN_UP_BLOCK, "up types");
    CHECK(u.attention_head_dim[0] == 8 && u.attention_head_dim[3] == 8, "heads");
    CHECK(u.cross_attention_dim == 768 && u.sample_size == 64 && u.layers_per_block == 2, "sizes");
    CHECK(u.flip_sin_to_cos == 1 && u.freq_shift == 0 && u.norm_eps == 1e-5f, "embedding");
    CHECK(memcmp(&u, &d, sizeof u) == 0, "SD 1.5 file equals the built-in SD 1.5 config");

    /* defaults: an empty object gives UNet2DConditionModel's defaults (cross_attention_dim 1280) */
    write_file("empty.json", "{}");
    CHECK(sd_parse_unet_config(tmp_path("empty.json"), &u) == 0, "%s", err_msg());
    CHECK(u.cross_attention_dim == 1280 && u.n_blocks == 4 && u.sample_size == 0, "unet defaults");
    vae_config v;
    CHECK(sd_parse_vae_config(tmp_path("empty.json"), &v) == 0, "%s", err_msg());
    CHECK(v.n_blocks == 1 && v.block_out_channels[0] == 64 && v.layers_per_block == 1 && v.latent_channels == 4 &&
              v.scaling_factor == 0.18215f, "vae defaults");
    clip_config c;
    CHECK(sd_parse_clip_config(tmp_path("empty.json"), &c) == 0, "%s", err_msg());
    CHECK(c.hidden_size == 512 && c.num_hidden_layers == 12 && c.hidden_act == SD_ACT_QUICK_GELU, "clip defaults");
    sched_config s;
    CHECK(sd_parse_sched_config(tmp_path("empty.json"), &s) == 0, "%s", err_msg());
    CHECK(s.beta_start == 0.0001 && s.beta_end == 0.02 && !s.beta_schedule_scaled_linear && s.clip_sample &&
              s.set_alpha_to_one && s.timestep_spacing == SD_SPACING_UNSET && s.prediction_epsilon &&
              s.original_inference_steps == 50 && s.timestep_scaling == 10.0f, "scheduler defaults");
    CHECK(u.time_cond_proj_dim == 0, "no time_cond_proj_dim by default");
    /* v_prediction is read (LCM runs it; DDIM and DPM-Solver refuse it when built) */
    write_file("vpred.json", "{\"prediction_type\": \"v_prediction\"}");
    CHECK(sd_parse_sched_config(tmp_path("vpred.json"), &s) == 0 && !s.prediction_epsilon, "v_prediction: %s",
          err_msg());

    /* SD 1.5's scheduler config (PNDM class, read as DDIM/DPM) */
    write_file("sched.json", "{\"_class_name\": \"PNDMScheduler\", \"beta_end\": 0.012, \"beta_schedule\":"
                             " \"scaled_linear\", \"beta_start\": 0.00085, \"num_train_timesteps\": 1000,"
                             " \"set_alpha_to_one\": false, \"skip_prk_steps\": true, \"steps_offset\": 1,"
                             " \"trained_betas\": null, \"clip_sample\": false}");
    CHECK(sd_parse_sched_config(tmp_path("sched.json"), &s) == 0, "%s", err_msg());
    sched_config sd;
    sd_default_configs(NULL, NULL, NULL, &sd);
    CHECK(memcmp(&s, &sd, sizeof s) == 0, "SD 1.5 scheduler file equals the built-in one");
}

static void test_lists(void)
{
    unet_config u;
    write_file("u2.json", "{\"block_out_channels\": [32, 64], \"attention_head_dim\": [2, 4],"
                          " \"down_block_types\": [\"CrossAttnDownBlock2D\", \"DownBlock2D\"],"
                          " \"up_block_types\": [\"UpBlock2D\", \"CrossAttnUpBlock2D\"], \"layers_per_block\": 1,"
                          " \"cross_attention_dim\": 32, \"sample_size\": 16, \"norm_num_groups\": 8}");
    CHECK(sd_parse_unet_config(tmp_path("u2.json"), &u) == 0, "%s", err_msg());
    CHECK(u.n_blocks == 2 && u.attention_head_dim[0] == 2 && u.attention_head_dim[1] == 4, "head list");
    CHECK(u.layers_per_block == 1 && u.norm_num_groups == 8 && u.cross_attention_dim == 32, "small unet");
}

static void expect_error(const char *json, int which, const char *needle1, const char *needle2)
{
    unet_config u;
    vae_config v;
    clip_config c;
    sched_config s;
    write_file("bad.json", json);
    const char *p = tmp_path("bad.json");
    int rc = which == 0 ? sd_parse_unet_config(p, &u) : which == 1 ? sd_parse_vae_config(p, &v)
           : which == 2 ? sd_parse_clip_config(p, &c) : sd_parse_sched_config(p, &s);
    CHECK(rc == -1, "bad config accepted: %s", json);
    CHECK(strstr(err_msg(), "bad.json") && strstr(err_msg(), needle1) && (!needle2 || strstr(err_msg(), needle2)),
          "message '%s' lacks the file or '%s'", err_msg(), needle1);
}

static void test_errors(void)
{
    expect_error("{\"down_block_types\": [\"CrossAttnDownBlock2D\", \"SimpleCrossAttnDownBlock2D\","
                 " \"CrossAttnDownBlock2D\", \"DownBlock2D\"]}", 0, "SimpleCrossAttnDownBlock2D", "down_block_types");
    expect_error("{\"layers_per_block\": \"2\"}", 0, "layers_per_block", "integer");
    expect_error("{\"in_channels\": 4.5}", 0, "in_channels", NULL);
    expect_error("{\"use_linear_projection\": 1}", 0, "use_linear_projection", NULL);
    expect_error("{\"block_out_channels\": [320, 640]}", 0, "block_out_channels", NULL);
    expect_error("{\"attention_head_dim\": [8, 8]}", 0, "attention_head_dim", NULL);
    expect_error("{\"class_embed_type\": \"timestep\"}", 0, "class_embed_type", NULL);
    expect_error("{\"act_fn\": \"mish\"}", 0, "mish", NULL);
    expect_error("{\"up_block_types\": [\"AttnUpDecoderBlock2D\"]}", 1, "AttnUpDecoderBlock2D", NULL);
    expect_error("{\"hidden_act\": \"relu\"}", 2, "relu", NULL);
    expect_error("{\"hidden_size\": 100, \"num_attention_heads\": 12}", 2, "hidden_size", NULL);
    expect_error("{\"prediction_type\": \"sample\"}", 3, "sample", NULL);
    expect_error("{\"time_cond_proj_dim\": 2}", 0, "time_cond_proj_dim", "at least 4");
    expect_error("{\"original_inference_steps\": 1001}", 3, "original_inference_steps", NULL);
    expect_error("{\"timestep_scaling\": 0}", 3, "timestep_scaling", "positive");
    expect_error("{\"beta_schedule\": \"squaredcos_cap_v2\"}", 3, "squaredcos_cap_v2", NULL);
    expect_error("{\"timestep_spacing\": 3}", 3, "timestep_spacing", NULL);
    expect_error("{\"num_train_timesteps\": 1000,", 3, "JSON", NULL);
    expect_error("[1, 2]", 3, "object", NULL);
    /* values out of their range are refused when read, naming the key (not found as NaN latents later) */
    expect_error("{\"norm_eps\": -1}", 0, "norm_eps", "positive");
    expect_error("{\"norm_eps\": 0}", 0, "norm_eps", "positive");
    expect_error("{\"norm_eps\": 1e999}", 0, "norm_eps", "finite");
    expect_error("{\"sample_size\": -8}", 0, "sample_size", "positive");
    expect_error("{\"sample_size\": 0}", 0, "sample_size", "positive");
    expect_error("{\"freq_shift\": 1000}", 0, "freq_shift", NULL);
    expect_error("{\"freq_shift\": -1}", 0, "freq_shift", NULL);
    expect_error("{\"cross_attention_dim\": [768, 0, 768, 768]}", 0, "cross_attention_dim", "positive");
    expect_error("{\"norm_num_groups\": 0}", 0, "norm_num_groups", "positive");
    expect_error("{\"scaling_factor\": 1e999}", 1, "scaling_factor", "finite");
    expect_error("{\"scaling_factor\": -0.18215}", 1, "scaling_factor", "positive");
    expect_error("{\"sample_size\": -512}", 1, "sample_size", "positive");
    expect_error("{\"latent_channels\": 0}", 1, "latent_channels", "positive");
    expect_error("{\"layer_norm_eps\": -1}", 2, "layer_norm_eps", "positive");
    expect_error("{\"layer_norm_eps\": 0}", 2, "layer_norm_eps", "positive");
    expect_error("{\"num_hidden_layers\": 0}", 2, "num_hidden_layers", "positive");
    expect_error("{\"max_position_embeddings\": -77}", 2, "max_position_embeddings", "positive");
    expect_error("{\"clip_sample_range\": -1}", 3, "clip_sample_range", "positive");
    expect_error("{\"num_train_timesteps\": 1}", 3, "num_train_timesteps", NULL);
    expect_error("{\"beta_end\": 1e999}", 3, "beta_end", "finite");
    expect_error("{\"solver_order\": 0}", 3, "solver_order", "positive");
    unet_config u;
    CHECK(sd_parse_unet_config(tmp_path("does-not-exist.json"), &u) == -1 &&
              strstr(err_msg(), "does-not-exist.json"), "missing file: %s", err_msg());
}

/* The LDM map against the names convert_from_ckpt.py produces for SD 1.5 (known answers). */
static void test_map(void)
{
    unet_config u;
    vae_config v;
    sd_default_configs(&u, &v, NULL, NULL);
    sd_ldm_map m = {.unet = &u, .n_vae_blocks = 4, .clip_has_text_model = 1};
    static const char *const unet_pairs[][2] = {
        {"conv_in.weight", "input_blocks.0.0.weight"},
        {"time_embedding.linear_2.bias", "time_embed.2.bias"},
        {"down_blocks.0.resnets.1.conv1.weight", "input_blocks.2.0.in_layers.2.weight"},
        {"down_blocks.1.resnets.0.conv_shortcut.weight", "input_blocks.4.0.skip_connection.weight"},
        {"down_blocks.1.attentions.1.transformer_blocks.0.attn2.to_k.weight",
         "input_blocks.5.1.transformer_blocks.0.attn2.to_k.weight"},
        {"down_blocks.2.downsamplers.0.conv.bias", "input_blocks.9.0.op.bias"},
        {"down_blocks.3.resnets.1.time_emb_proj.weight", "input_blocks.11.0.emb_layers.1.weight"},
        {"mid_block.resnets.1.norm2.weight", "middle_block.2.out_layers.0.weight"},
        {"mid_block.attentions.0.proj_out.weight", "middle_block.1.proj_out.weight"},
        {"up_blocks.0.resnets.2.conv2.weight", "output_blocks.2.0.out_layers.3.weight"},
        {"up_blocks.0.upsamplers.0.conv.weight", "output_blocks.2.1.conv.weight"},
        {"up_blocks.1.upsamplers.0.conv.weight", "output_blocks.5.2.conv.weight"},
        {"up_blocks.2.attentions.0.norm.weight", "output_blocks.6.1.norm.weight"},
        {"up_blocks.3.resnets.2.norm1.bias", "output_blocks.11.0.in_layers.0.bias"},
        {"conv_norm_out.weight", "out.0.weight"},
        {"conv_out.bias", "out.2.bias"},
    };
    char buf[256], want[256];
    for (size_t i = 0; i < sizeof unet_pairs / sizeof unet_pairs[0]; i++) {
        snprintf(want, sizeof want, "model.diffusion_model.%s", unet_pairs[i][1]);
        const char *got = sd_map_unet(unet_pairs[i][0], buf, sizeof buf, &m);
        CHECK(got && !strcmp(got, want), "%s -> %s, expected %s", unet_pairs[i][0], got ? got : "NULL", want);
    }
    static const char *const vae_pairs[][2] = {
        {"encoder.down_blocks.1.resnets.0.conv_shortcut.weight", "encoder.down.1.block.0.nin_shortcut.weight"},
        {"encoder.down_blocks.0.downsamplers.0.conv.weight", "encoder.down.0.downsample.conv.weight"},
        {"encoder.mid_block.attentions.0.to_q.weight", "encoder.mid.attn_1.q.weight"},
        {"decoder.mid_block.attentions.0.to_out.0.bias", "decoder.mid.attn_1.proj_out.bias"},
        {"decoder.mid_block.attentions.0.group_norm.weight", "decoder.mid.attn_1.norm.weight"},
        {"decoder.mid_block.attentions.0.value.weight", "decoder.mid.attn_1.v.weight"},
        {"decoder.mid_block.resnets.1.conv2.weight", "decoder.mid.block_2.conv2.weight"},
        {"decoder.up_blocks.0.resnets.2.norm1.weight", "decoder.up.3.block.2.norm1.weight"},
        {"decoder.up_blocks.2.upsamplers.0.conv.bias", "decoder.up.1.upsample.conv.bias"},
        {"decoder.conv_norm_out.weight", "decoder.norm_out.weight"},
        {"post_quant_conv.weight", "post_quant_conv.weight"},
        {"encoder.conv_out.bias", "encoder.conv_out.bias"},
    };
    for (size_t i = 0; i < sizeof vae_pairs / sizeof vae_pairs[0]; i++) {
        snprintf(want, sizeof want, "first_stage_model.%s", vae_pairs[i][1]);
        const char *got = sd_map_vae(vae_pairs[i][0], buf, sizeof buf, &m);
        CHECK(got && !strcmp(got, want), "%s -> %s, expected %s", vae_pairs[i][0], got ? got : "NULL", want);
    }
    /* a file that kept the new diffusers attention names (vae_attn_to_qkv) */
    static const char *const qkv_pairs[][2] = {
        {"encoder.mid_block.attentions.0.to_q.weight", "encoder.mid.attn_1.to_q.weight"},
        {"decoder.mid_block.attentions.0.to_out.0.bias", "decoder.mid.attn_1.to_out.0.bias"},
        {"decoder.mid_block.attentions.0.proj_attn.weight", "decoder.mid.attn_1.to_out.0.weight"},
        {"decoder.mid_block.attentions.0.group_norm.weight", "decoder.mid.attn_1.norm.weight"},
    };
    m.vae_attn_to_qkv = 1;
    for (size_t i = 0; i < sizeof qkv_pairs / sizeof qkv_pairs[0]; i++) {
        snprintf(want, sizeof want, "first_stage_model.%s", qkv_pairs[i][1]);
        const char *got = sd_map_vae(qkv_pairs[i][0], buf, sizeof buf, &m);
        CHECK(got && !strcmp(got, want), "%s -> %s, expected %s", qkv_pairs[i][0], got ? got : "NULL", want);
    }
    m.vae_attn_to_qkv = 0;
    const char *got = sd_map_clip("text_model.encoder.layers.3.self_attn.q_proj.weight", buf, sizeof buf, &m);
    CHECK(got && !strcmp(got, "cond_stage_model.transformer.text_model.encoder.layers.3.self_attn.q_proj.weight"),
          "clip map: %s", got ? got : "NULL");
    CHECK(sd_map_unet("down_blocks.7.resnets.0.conv1.weight", buf, sizeof buf, &m) == NULL, "out-of-range block");
    CHECK(sd_map_unet("bogus.weight", buf, sizeof buf, &m) == NULL, "unknown name");
    CHECK(sd_map_unet("conv_in.weight", buf, 8, &m) == NULL, "buffer too small");
}

/* Both fixture folders: every config value as written in their config.json files. */
static void test_fixture_folders(void)
{
    sd_model m;
    CHECK(sd_model_find("tests/fixtures/sd-tiny-a", NULL, &m) == 0, "%s", err_msg());
    CHECK(!m.single_file && strstr(m.unet_path, "unet/diffusion_pytorch_model.safetensors") &&
              strstr(m.clip_path, "text_encoder/model.safetensors") && strstr(m.tokenizer_dir, "sd-tiny-a/tokenizer"),
          "sd-tiny-a paths");
    const unet_config *u = &m.unet;
    CHECK(u->n_blocks == 2 && u->block_out_channels[0] == 16 && u->block_out_channels[1] == 24 &&
              u->layers_per_block == 1 && u->attention_head_dim[0] == 2 && u->attention_head_dim[1] == 2 &&
              u->cross_attention_dim == 32 && u->norm_num_groups == 8 && u->sample_size == 8 &&
              !u->use_linear_projection && u->down_block_types[0] == SD_CROSS_ATTN_DOWN_BLOCK &&
              u->down_block_types[1] == SD_DOWN_BLOCK && u->up_block_types[0] == SD_UP_BLOCK &&
              u->up_block_types[1] == SD_CROSS_ATTN_UP_BLOCK && u->transformer_layers_per_block == 1,
          "sd-tiny-a unet config");
    CHECK(m.vae.n_blocks == 2 && m.vae.block_out_channels[0] == 8 && m.vae.block_out_channels[1] == 16 &&
              m.vae.layers_per_block == 1 && m.vae.norm_num_groups == 4 && m.vae.latent_channels == 4 &&
              m.vae.sample_size == 16 && m.vae.scaling_factor == 0.18215f, "sd-tiny-a vae config");
    CHECK(m.clip.hidden_size == 32 && m.clip.num_hidden_layers == 2 && m.clip.num_attention_heads == 2 &&
              m.clip.intermediate_size == 64 && m.clip.vocab_size == 581 && m.clip.max_position_embeddings == 77 &&
              m.clip.hidden_act == SD_ACT_QUICK_GELU, "sd-tiny-a clip config");
    sched_config sd;
    sd_default_configs(NULL, NULL, NULL, &sd);
    CHECK(memcmp(&m.sched, &sd, sizeof sd) == 0, "sd-tiny-a scheduler config is SD 1.5's");

    CHECK(sd_model_find("tests/fixtures/sd-tiny-b", NULL, &m) == 0, "%s", err_msg());
    CHECK(u->n_blocks == 3 && u->block_out_channels[0] == 8 && u->block_out_channels[2] == 16 &&
              u->layers_per_block == 2 && u->attention_head_dim[0] == 1 && u->attention_head_dim[1] == 2 &&
              u->attention_head_dim[2] == 4 && u->cross_attention_dim == 48 && u->norm_num_groups == 4 &&
              u->use_linear_projection && u->down_block_types[1] == SD_CROSS_ATTN_DOWN_BLOCK &&
              u->down_block_types[2] == SD_DOWN_BLOCK && u->up_block_types[0] == SD_UP_BLOCK &&
              u->up_block_types[2] == SD_CROSS_ATTN_UP_BLOCK, "sd-tiny-b unet config");
    CHECK(m.vae.n_blocks == 3 && m.vae.block_out_channels[2] == 16 && m.vae.layers_per_block == 2 &&
              m.vae.sample_size == 32, "sd-tiny-b vae config");
    CHECK(m.clip.hidden_size == 48 && m.clip.num_attention_heads == 4 && m.clip.intermediate_size == 96,
          "sd-tiny-b clip config");
}

/* Every float tensor of the folder, asked for by its diffusers name through the single file's map, is bitwise the
 * folder's. */
static int compare_net(const char *folder_file, const char *single, weights_map_fn map, void *ctx)
{
    st_file *f = st_open(folder_file);
    const char *p1[1] = {folder_file}, *p2[1] = {single};
    weights *wf = weights_open(p1, 1), *ws = weights_open(p2, 1);
    int bad = 0, n = 0;
    if (!f || !wf || !ws) {
        CHECK(0, "%s", err_msg());
        bad = 1;
        goto out;
    }
    weights_set_map(ws, map, ctx);
    for (int i = 0; i < st_count(f); i++) {
        const st_tensor *t = st_at(f, i);
        if (t->dtype != ST_F32 && t->dtype != ST_F16) continue;     /* position_ids */
        const float *a = weights_get(wf, t->name, t->ndim, t->shape);
        const float *b = weights_get(ws, t->name, t->ndim, t->shape);
        if (!a || !b || memcmp(a, b, sizeof(float) * t->numel)) {
            CHECK(0, "%s: %s differs or is missing in %s: %s", folder_file, t->name, single, err_msg());
            bad++;
        }
        n++;
    }
    CHECK(n > 10, "%s: only %d tensors compared", folder_file, n);
out:
    weights_close(wf);
    weights_close(ws);
    st_close(f);
    return bad;
}

static void test_single_file(void)
{
    const char *single = "tests/fixtures/sd-tiny-b.safetensors";
    sd_model folder, m;
    CHECK(sd_model_find("tests/fixtures/sd-tiny-b", NULL, &folder) == 0, "%s", err_msg());
    /* without configs: sizes come from the tensors; heads cannot (48 is not a multiple of 64) */
    CHECK(sd_model_find(single, NULL, &m) == -1 && strstr(err_msg(), "heads") && strstr(err_msg(), single),
          "single file without configs: %s", err_msg());
    CHECK(sd_model_find(single, "tests/fixtures/sd-tiny-b", &m) == 0, "%s", err_msg());
    CHECK(m.single_file && !strcmp(m.unet_path, single) && !strcmp(m.vae_path, single), "single-file paths");
    CHECK(memcmp(&m.unet, &folder.unet, sizeof m.unet) == 0 && memcmp(&m.vae, &folder.vae, sizeof m.vae) == 0 &&
              memcmp(&m.clip, &folder.clip, sizeof m.clip) == 0, "single file + configs = folder configs");
    CHECK(m.map.clip_has_text_model == 1 && m.map.n_vae_blocks == 3 && m.map.unet == &m.unet, "map context");
    CHECK(compare_net("tests/fixtures/sd-tiny-b/unet/diffusion_pytorch_model.safetensors", single, sd_map_unet,
                      &m.map) == 0, "unet weights through the map");
    CHECK(compare_net("tests/fixtures/sd-tiny-b/vae/diffusion_pytorch_model.safetensors", single, sd_map_vae,
                      &m.map) == 0, "vae weights through the map");
    CHECK(compare_net("tests/fixtures/sd-tiny-b/text_encoder/model.safetensors", single, sd_map_clip, &m.map) == 0,
          "clip weights through the map");

    /* what the tensors tell, with only the text encoder's config given (for its head count) */
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "mkdir -p %s/cfg/text_encoder && cp tests/fixtures/sd-tiny-b/text_encoder/config.json "
             "%s/cfg/text_encoder/", tmpdir, tmpdir);
    CHECK(system(cmd) == 0, "copy config");
    CHECK(sd_model_find(single, tmp_path("cfg"), &m) == 0, "%s", err_msg());
    const unet_config *u = &m.unet, *fu = &folder.unet;
    int same = u->n_blocks == fu->n_blocks && u->layers_per_block == fu->layers_per_block &&
               u->cross_attention_dim == fu->cross_attention_dim && u->in_channels == 4 && u->out_channels == 4 &&
               u->use_linear_projection == fu->use_linear_projection &&
               u->transformer_layers_per_block == fu->transformer_layers_per_block;
    for (int i = 0; same && i < u->n_blocks; i++)
        same = u->block_out_channels[i] == fu->block_out_channels[i] &&
               u->down_block_types[i] == fu->down_block_types[i] && u->up_block_types[i] == fu->up_block_types[i];
    CHECK(same, "UNet sizes inferred from the tensors equal the folder's config");
    CHECK(!strcmp(m.tokenizer_dir, "data/clip-tokenizer"), "no tokenizer/ near the file or config: the project's CLIP "
          "vocabulary, got %s", m.tokenizer_dir);
    same = m.vae.n_blocks == folder.vae.n_blocks && m.vae.layers_per_block == folder.vae.layers_per_block &&
           m.vae.latent_channels == 4 && m.vae.in_channels == 3 && m.vae.out_channels == 3;
    for (int i = 0; same && i < m.vae.n_blocks; i++) same = m.vae.block_out_channels[i] == folder.vae.block_out_channels[i];
    CHECK(same, "VAE sizes inferred from the tensors equal the folder's config");

    /* a truncated checkpoint is refused with its name */
    FILE *in = fopen(single, "rb");
    char trunc[512];
    snprintf(trunc, sizeof trunc, "%s/trunc.safetensors", tmpdir);
    FILE *out = fopen(trunc, "wb");
    if (in && out) {
        char buf[4096];
        size_t n, total = 0;
        while ((n = fread(buf, 1, sizeof buf, in)) > 0 && total < 40000) fwrite(buf, 1, n, out), total += n;
    }
    if (in) fclose(in);
    if (out) fclose(out);
    CHECK(sd_model_find(trunc, "tests/fixtures/sd-tiny-b", &m) == -1 && strstr(err_msg(), "trunc.safetensors"),
          "truncated checkpoint: %s", err_msg());
    CHECK(sd_model_find("tests/fixtures/sd-tiny-b/unet", NULL, &m) == -1 && strstr(err_msg(), "model_index.json"),
          "a folder that is no pipeline: %s", err_msg());
}

/* The sd-tiny-b single file as diffusers 0.19's convert_diffusers_to_original_stable_diffusion.py writes a folder
 * with the 0.14+ VAE attention names: its attention renaming knows only query/key/value/proj_attn and its reshape
 * only q/k/v/proj_out, so attn_1.to_q/to_k/to_v/to_out.0 stay, as 2-D Linear weights. F32 (F16 -> F32 is exact);
 * integer tensors left out. */
static int write_to_qkv_file(const char *src, const char *dst)
{
    static const char *const from[] = {"q.", "k.", "v.", "proj_out."}, *const to[] = {"to_q.", "to_k.", "to_v.",
                                                                                       "to_out.0."};
    st_file *f = st_open(src);
    if (!f) return -1;
    int n = 0, renamed = 0, cap = st_count(f);
    char **names = calloc(cap, sizeof *names);
    float **data = calloc(cap, sizeof *data);
    int *ndim = calloc(cap, sizeof *ndim);
    int64_t(*shape)[ST_MAX_DIMS] = calloc(cap, sizeof *shape);
    int rc = names && data && ndim && shape ? 0 : -1;
    for (int i = 0; !rc && i < cap; i++) {
        const st_tensor *t = st_at(f, i);
        if (t->dtype != ST_F32 && t->dtype != ST_F16) continue;
        char name[512];
        snprintf(name, sizeof name, "%s", t->name);
        ndim[n] = t->ndim;
        memcpy(shape[n], t->shape, sizeof shape[n]);
        char *p = strstr(name, ".mid.attn_1.");
        for (int k = 0; p && !strncmp(name, "first_stage_model.", 18) && k < 4; k++)
            if (!strncmp(p + 12, from[k], strlen(from[k]))) {
                snprintf(p + 12, sizeof name - (p + 12 - name), "%s%s", to[k], t->name + (p + 12 - name) +
                         strlen(from[k]));
                if (ndim[n] == 4) ndim[n] = 2;       /* [C,C,1,1] -> [C,C] */
                renamed++;
                break;
            }
        names[n] = strdup(name);
        data[n] = malloc(sizeof(float) * t->numel);
        rc = names[n] && data[n] ? st_to_f32(t, data[n]) : -1;
        n++;
    }
    /* encoder and decoder: q, k, v, proj_out, each weight and bias */
    if (!rc && renamed != 16) rc = err_set("%s: renamed %d attention tensors, expected 16", src, renamed);
    if (!rc) rc = st_write_f32(dst, n, (const char *const *)names, (const float *const *)data, ndim, shape);
    for (int i = 0; i < n; i++) free(names[i]), free(data[i]);
    free(names), free(data), free(ndim), free(shape);
    st_close(f);
    return rc;
}

/* One VAE round trip of a fixed pattern through the engine on a model: 0 and out[3*32*32], or -1. */
static int roundtrip(const char *model, float *out)
{
    static float img[3 * 32 * 32];
    for (int i = 0; i < 3 * 32 * 32; i++) img[i] = (float)((i * 37) % 101) / 100.0f;
    engine_opts o;
    engine_opts_default(&o);
    o.model = model;
    o.config_dir = "tests/fixtures/sd-tiny-b";
    o.threads = 1;
    engine *e = engine_load(&o);
    engine_item it = {.image = img, .out = out};
    int rc = e ? engine_roundtrip(e, &it, 1) : -1;
    engine_free(e);
    return rc;
}

/* A single file whose VAE attention keeps the new diffusers names loads as the q/k/v/proj_out file does: the same
 * weights, the same round trip bit for bit (it used to be refused: attn_1.q.weight not found). */
static void test_single_file_to_qkv(void)
{
    const char *single = "tests/fixtures/sd-tiny-b.safetensors";
    char file[600];
    snprintf(file, sizeof file, "%s/to_qkv.safetensors", tmpdir);
    CHECK(write_to_qkv_file(single, file) == 0, "%s", err_msg());
    sd_model m;
    CHECK(sd_model_find(single, "tests/fixtures/sd-tiny-b", &m) == 0 && !m.map.vae_attn_to_qkv, "q/k/v file: %s",
          err_msg());
    CHECK(sd_model_find(file, "tests/fixtures/sd-tiny-b", &m) == 0 && m.map.vae_attn_to_qkv, "to_q file: %s",
          err_msg());
    CHECK(compare_net("tests/fixtures/sd-tiny-b/vae/diffusion_pytorch_model.safetensors", file, sd_map_vae,
                      &m.map) == 0, "vae weights of the to_q file through the map");
    static float a[3 * 32 * 32], b[3 * 32 * 32];
    CHECK(roundtrip(single, a) == 0, "q/k/v file round trip: %s", err_msg());
    int rc = roundtrip(file, b);
    CHECK(rc == 0, "to_q file round trip: %s", err_msg());
    CHECK(rc == 0 && memcmp(a, b, sizeof a) == 0, "the to_q file's round trip differs from the q/k/v file's");
}

/* sd_model_find on a folder holding only model_index.json with this text: -1 naming the file and needle. */
static void expect_index_error(const char *json, const char *needle)
{
    write_file("mi/model_index.json", json);
    sd_model m;
    int rc = sd_model_find(tmp_path("mi"), NULL, &m);
    CHECK(rc == -1, "model_index.json accepted: %s", json);
    CHECK(strstr(err_msg(), "mi/model_index.json") && strstr(err_msg(), needle), "message '%s' lacks the file or '%s'",
          err_msg(), needle);
}

#define INDEX_OK_HEAD                                                                                                 \
    "{\"_class_name\": \"StableDiffusionPipeline\", \"scheduler\": [\"diffusers\", \"PNDMScheduler\"],"          \
    " \"text_encoder\": [\"transformers\", \"CLIPTextModel\"], \"tokenizer\": [\"transformers\", \"CLIPTokenizer\"],"

static void test_model_index(void)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "mkdir -p %s/mi", tmpdir);
    CHECK(system(cmd) == 0, "mkdir");
    expect_index_error("{\"unet\": 5}", "\"unet\" must be a [library, class] pair");
    expect_index_error(INDEX_OK_HEAD " \"unet\": 5, \"vae\": [\"diffusers\", \"AutoencoderKL\"]}", "\"unet\"");
    expect_index_error(INDEX_OK_HEAD " \"unet\": [\"diffusers\"], \"vae\": [\"diffusers\", \"AutoencoderKL\"]}",
                       "\"unet\"");
    expect_index_error(INDEX_OK_HEAD " \"unet\": [\"diffusers\", 3], \"vae\": [\"diffusers\", \"AutoencoderKL\"]}",
                       "\"unet\"");
    expect_index_error(INDEX_OK_HEAD " \"unet\": [null, null], \"vae\": [\"diffusers\", \"AutoencoderKL\"]}",
                       "\"unet\"");
    expect_index_error(INDEX_OK_HEAD " \"unet\": [\"diffusers\", \"UNet2DConditionModel\"]}", "no \"vae\" entry");
    expect_index_error(INDEX_OK_HEAD " \"unet\": [\"diffusers\", \"UNet2DModel\"], \"vae\": [\"diffusers\","
                       " \"AutoencoderKL\"]}", "UNet2DModel");
    expect_index_error(INDEX_OK_HEAD " \"unet\": [\"diffusers\", \"UNet2DConditionModel\"], \"vae\": [\"diffusers\","
                       " \"AutoencoderTiny\"]}", "AutoencoderTiny");
    expect_index_error(INDEX_OK_HEAD " \"unet\": [\"my_lib\", \"UNet2DConditionModel\"], \"vae\": [\"diffusers\","
                       " \"AutoencoderKL\"]}", "my_lib");
    expect_index_error(INDEX_OK_HEAD " \"unet\": [\"diffusers\", \"UNet2DConditionModel\"], \"vae\": [\"diffusers\","
                       " \"AutoencoderKL\"], \"safety_checker\": [1, 2]}", "\"safety_checker\"");
    expect_index_error("{\"_class_name\": 7}", "_class_name");
    expect_index_error("[\"unet\"]", "object");
    expect_index_error("{\"unet\": ", "JSON");
    /* nulls for an absent optional part and plain pipeline arguments pass: the error is then the missing config */
    write_file("mi/model_index.json", INDEX_OK_HEAD " \"unet\": [\"diffusers\", \"UNet2DConditionModel\"], \"vae\":"
               " [\"diffusers\", \"AutoencoderKL\"], \"safety_checker\": [null, null], \"requires_safety_checker\":"
               " false, \"_diffusers_version\": \"0.19.0\"}");
    sd_model m;
    CHECK(sd_model_find(tmp_path("mi"), NULL, &m) == -1 && strstr(err_msg(), "unet/config.json"),
          "a valid model_index.json passes: %s", err_msg());
}

/* A copy of sd-tiny-a in tmpdir/name. */
static const char *copy_tiny(const char *name)
{
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "rm -rf %s/%s && cp -r tests/fixtures/sd-tiny-a %s/%s", tmpdir, name, tmpdir, name);
    CHECK(system(cmd) == 0, "%s", cmd);
    return tmp_path(name);
}

static void test_tokenizer_files(void)
{
    sd_model m;
    char dir[512], cmd[1400];
    snprintf(dir, sizeof dir, "%s", copy_tiny("tiny"));
    CHECK(sd_model_find(dir, NULL, &m) == 0, "the copy loads: %s", err_msg());
    /* a folder without its vocabulary fell back to another one whose ids the text encoder does not have */
    snprintf(cmd, sizeof cmd, "rm %s/tokenizer/vocab.json", dir);
    CHECK(system(cmd) == 0, "rm");
    CHECK(sd_model_find(dir, NULL, &m) == -1 && strstr(err_msg(), "tiny/tokenizer/vocab.json") &&
              strstr(err_msg(), "missing"), "no vocab.json: %s", err_msg());
    snprintf(cmd, sizeof cmd, "cp tests/fixtures/sd-tiny-a/tokenizer/vocab.json %s/tokenizer/ && rm "
             "%s/tokenizer/merges.txt", dir, dir);
    CHECK(system(cmd) == 0, "cp/rm");
    CHECK(sd_model_find(dir, NULL, &m) == -1 && strstr(err_msg(), "tiny/tokenizer/merges.txt") &&
              strstr(err_msg(), "missing"), "no merges.txt: %s", err_msg());
    snprintf(cmd, sizeof cmd, "rm -r %s/tokenizer", dir);
    CHECK(system(cmd) == 0, "rm -r");
    CHECK(sd_model_find(dir, NULL, &m) == -1 && strstr(err_msg(), "tiny") && strstr(err_msg(), "no tokenizer/"),
          "no tokenizer folder: %s", err_msg());
    /* a single file with a config folder whose tokenizer/ lacks a file: named too, no silent fallback */
    snprintf(cmd, sizeof cmd, "mkdir -p %s/tokcfg/tokenizer && cp -r tests/fixtures/sd-tiny-b/text_encoder "
             "tests/fixtures/sd-tiny-b/tokenizer/vocab.json %s/tokcfg/ && mv %s/tokcfg/vocab.json "
             "%s/tokcfg/tokenizer/", tmpdir, tmpdir, tmpdir, tmpdir);
    CHECK(system(cmd) == 0, "%s", cmd);
    CHECK(sd_model_find("tests/fixtures/sd-tiny-b.safetensors", tmp_path("tokcfg"), &m) == -1 &&
              strstr(err_msg(), "tokcfg/tokenizer/merges.txt"), "single file, incomplete tokenizer: %s", err_msg());
}

/* Overwrites element k of the F32 or F16 tensor `name` of a safetensors file with v (NaN or +-inf for F16). */
static int poke(const char *file, const char *name, long k, float v)
{
    FILE *fp = fopen(file, "r+b");
    unsigned char n8[8];
    if (!fp || fread(n8, 1, 8, fp) != 8) {
        if (fp) fclose(fp);
        return -1;
    }
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | n8[i];
    char *hdr = n < (1u << 26) ? calloc(1, n + 1) : NULL;
    cJSON *j = hdr && fread(hdr, 1, n, fp) == n ? cJSON_Parse(hdr) : NULL;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(t, "dtype");
    const cJSON *off = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(t, "data_offsets"), 0);
    int f16 = cJSON_IsString(dt) && !strcmp(dt->valuestring, "F16");
    long pos = cJSON_IsNumber(off) ? 8 + (long)n + (long)off->valuedouble + k * (f16 ? 2 : 4) : -1;
    unsigned char b[4];
    if (f16) {
        uint16_t h = v != v ? 0x7e00 : v > 0 ? 0x7c00 : 0xfc00;
        b[0] = (unsigned char)h, b[1] = (unsigned char)(h >> 8);
    } else {
        memcpy(b, &v, 4);
    }
    int rc = pos > 0 && !fseek(fp, pos, SEEK_SET) && fwrite(b, 1, f16 ? 2 : 4, fp) == (f16 ? 2u : 4u) ? 0 : -1;
    cJSON_Delete(j);
    free(hdr);
    return fclose(fp) || rc;
}

/* A NaN/inf weight is refused at load naming the file and the tensor (it used to show up as NaN latents at the
 * second denoising step, with no name); a bad config value is refused by sd_model_find. */
static void test_nonfinite_model(void)
{
    char dir[512], file[600];
    snprintf(dir, sizeof dir, "%s", copy_tiny("nan"));
    snprintf(file, sizeof file, "%s/unet/diffusion_pytorch_model.safetensors", dir);
    CHECK(poke(file, "up_blocks.1.resnets.0.conv2.weight", 5, NAN) == 0, "poke NaN");
    engine_opts o;
    engine_opts_default(&o);
    o.model = dir;
    o.threads = 1;
    o.steps = 3;
    engine *e = engine_load(&o);
    CHECK(e == NULL && strstr(err_msg(), "unet/diffusion_pytorch_model.safetensors") &&
              strstr(err_msg(), "up_blocks.1.resnets.0.conv2.weight") && strstr(err_msg(), "NaN"),
          "NaN weight: %s", err_msg());
    engine_free(e);

    /* F16 weights (converted at load) and the single file's LDM names: the stored name is given too */
    char single[600];
    snprintf(single, sizeof single, "%s/b.safetensors", tmpdir);
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "cp tests/fixtures/sd-tiny-b.safetensors %s", single);
    CHECK(system(cmd) == 0, "cp");
    CHECK(poke(single, "first_stage_model.decoder.up.0.block.1.conv1.weight", 0, INFINITY) == 0, "poke inf");
    o.model = single;
    o.config_dir = "tests/fixtures/sd-tiny-b";
    e = engine_load(&o);
    CHECK(e == NULL && strstr(err_msg(), "b.safetensors") &&
              strstr(err_msg(), "first_stage_model.decoder.up.0.block.1.conv1.weight") && strstr(err_msg(), "inf"),
          "inf F16 weight: %s", err_msg());
    engine_free(e);

    snprintf(dir, sizeof dir, "%s", copy_tiny("eps"));
    char p[600];
    snprintf(p, sizeof p, "%s/unet/config.json", dir);
    snprintf(cmd, sizeof cmd, "sed -i 's/\"norm_eps\": 1e-05/\"norm_eps\": -1/' %s", p);
    CHECK(system(cmd) == 0, "sed");
    sd_model m;
    CHECK(sd_model_find(dir, NULL, &m) == -1 && strstr(err_msg(), "eps/unet/config.json") &&
              strstr(err_msg(), "norm_eps"), "norm_eps -1: %s", err_msg());
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "build/genie-test-model-load-%d", (int)getpid());
    char cmd[300];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", tmpdir);
    if (system(cmd)) return 1;
    test_sd15();
    test_lists();
    test_errors();
    test_map();
    test_fixture_folders();
    test_single_file();
    test_single_file_to_qkv();
    test_model_index();
    test_tokenizer_files();
    test_nonfinite_model();
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd)) return 1;
    return check_done("test_model_load");
}

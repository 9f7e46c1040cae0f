/* Config parsing (diffusers defaults, SD 1.5 values, errors naming file and value) and the LDM name map. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "check.h"
#include "err.h"
#include "model_load.h"

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
              s.set_alpha_to_one && s.timestep_spacing == SD_SPACING_UNSET, "scheduler defaults");

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
    expect_error("{\"prediction_type\": \"v_prediction\"}", 3, "v_prediction", NULL);
    expect_error("{\"beta_schedule\": \"squaredcos_cap_v2\"}", 3, "squaredcos_cap_v2", NULL);
    expect_error("{\"timestep_spacing\": 3}", 3, "timestep_spacing", NULL);
    expect_error("{\"num_train_timesteps\": 1000,", 3, "JSON", NULL);
    expect_error("[1, 2]", 3, "object", NULL);
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
    const char *got = sd_map_clip("text_model.encoder.layers.3.self_attn.q_proj.weight", buf, sizeof buf, &m);
    CHECK(got && !strcmp(got, "cond_stage_model.transformer.text_model.encoder.layers.3.self_attn.q_proj.weight"),
          "clip map: %s", got ? got : "NULL");
    CHECK(sd_map_unet("down_blocks.7.resnets.0.conv1.weight", buf, sizeof buf, &m) == NULL, "out-of-range block");
    CHECK(sd_map_unet("bogus.weight", buf, sizeof buf, &m) == NULL, "unknown name");
    CHECK(sd_map_unet("conv_in.weight", buf, 8, &m) == NULL, "buffer too small");
}

int main(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/genie-test-model-load-%d", (int)getpid());
    char cmd[300];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", tmpdir);
    if (system(cmd)) return 1;
    test_sd15();
    test_lists();
    test_errors();
    test_map();
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd)) return 1;
    return check_done("test_model_load");
}

/* Config parsing (diffusers defaults, SD 1.5 values, errors naming file and value) and the LDM name map. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "check.h"
#include "err.h"
#include "model_load.h"
#include "safetensors.h"
#include "weights.h"

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
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd)) return 1;
    return check_done("test_model_load");
}

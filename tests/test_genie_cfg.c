/* genie.cfg: defaults, every key read, and each kind of bad file stopped with its file, line and key. */
#include "tests/check.h"
#include "common/err.h"
#include "augment/genie/genie_cfg.h"
#include "augment/engine/sdconfig.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define P "build/test_genie_cfg.cfg"

static void write_file(const char *text)
{
    FILE *f = fopen(P, "w");
    fputs(text, f);
    fclose(f);
}

static void bad(const char *text, const char *expect)
{
    genie_cfg c;
    write_file(text);
    int rc = genie_cfg_read(P, &c);
    CHECK(rc == -1 && strstr(err_msg(), P) && strstr(err_msg(), expect), "'%s': rc %d, message '%s' lacks '%s'", text,
          rc, err_msg(), expect);
}

int main(void)
{
    genie_cfg c, d;
    genie_cfg_default(&d);
    write_file("# nothing set\n[genie]\n");
    CHECK(genie_cfg_read(P, &c) == 0 && !memcmp(&c, &d, sizeof c), "an empty [genie] section is not the defaults: %s",
          err_msg());
    CHECK(c.mode == GENIE_MODE_ADA && c.r == 0.8 && c.n_r == 5 && c.r_set[0] == 0.5 && c.r_set[4] == 0.9 &&
              c.top_k == 4 && c.quota == 50 && c.targets == GENIE_TARGETS_FEW && c.sources == GENIE_SOURCES_CONFUSED &&
              !strcmp(c.prompt, "A photo of a {}") && !strcmp(c.model, "data/models/fmnist-ldm") && c.vae_batch == 1,
          "defaults");

    write_file("[genie]\nmodel = data/models/fmnist-ldm\nmode=img2img\nr=0.3\nr_set=0.4, 0.6\nsteps=10\nguidance=7.5\n"
               "scheduler=ddim\nprompt=a picture of one {}\nnames=data/x.names\ntargets=shirt, coat\nsources=same\n"
               "top_k=2\nquota=7\nshare=0.5\nring=16\nreuse=1\nsnapshot_every=20\nembed_layer=4\nthreads=2\n"
               "batch=3\nvae_batch=2\ncache=build/cache dir\nwarmup=0\nsync=1\ndevice=cuda:1\n");
    CHECK(genie_cfg_read(P, &c) == 0, "full file: %s", err_msg());
    CHECK(c.mode == GENIE_MODE_IMG2IMG && c.r == 0.3 && c.n_r == 2 && c.r_set[1] == 0.6 && c.steps == 10 &&
              c.guidance == 7.5 && c.scheduler == SD_SCHED_DDIM && !strcmp(c.prompt, "a picture of one {}") &&
              !strcmp(c.names, "data/x.names") && c.targets == GENIE_TARGETS_LIST && c.n_targets == 2 &&
              !strcmp(c.target_list[0], "shirt") && !strcmp(c.target_list[1], "coat") &&
              c.sources == GENIE_SOURCES_SAME && c.top_k == 2 && c.quota == 7 && c.share == 0.5 && c.ring == 16 &&
              c.reuse == 1 && c.snapshot_every == 20 && c.embed_layer == 4 && c.threads == 2 && c.batch == 3 &&
              c.vae_batch == 2 && !strcmp(c.cache, "build/cache dir") && c.warmup == 0 && c.sync == 1 &&
              !strcmp(c.device, "cuda:1"),
          "full file read wrong");
    CHECK(genie_cfg_read("cfg/fmnist-genie.cfg", &c) == 0 && c.mode == GENIE_MODE_ADA, "shipped cfg: %s", err_msg());
    /* the few-step cfg runs its model with the sampler it was distilled through, and names a bundled folder */
    struct stat st;
    char idx[1100];
    CHECK(genie_cfg_read("cfg/fmnist-genie-fast.cfg", &c) == 0 && c.mode == GENIE_MODE_ADA &&
              c.scheduler == SD_SCHED_TCD && c.steps == 2 && c.eta == 0 && c.vae_batch == c.batch,
          "shipped few-step cfg: %s", err_msg());
    snprintf(idx, sizeof idx, "%s/model_index.json", c.model);
    CHECK(stat(idx, &st) == 0, "shipped few-step cfg: model %s has no model_index.json", c.model);

    bad("[genie]\nmode=fancy\n", ":2: key 'mode' must be none, genie, genie-ada, img2img or txt2img, got 'fancy'");
    bad("[genie]\n\nr=1.5\n", ":3: key 'r' must be a number in (0, 1]");
    bad("[genie]\nr=0\n", ":2: key 'r' must be");
    bad("[genie]\nr_set=0.9,0.5\n", ":2: key 'r_set' must be increasing");
    bad("[genie]\nsteps=0\n", ":2: key 'steps' must be an integer in 1..1000, got '0'");
    bad("[genie]\nsteps=25x\n", ":2: key 'steps' must be");
    bad("[genie]\nguidance=nan\n", ":2: key 'guidance' must be");
    bad("[genie]\nshare=-0.1\n", ":2: key 'share' must be a number in [0, 1]");
    bad("[genie]\nreuse=0\n", ":2: key 'reuse' must be");
    bad("[genie]\nring=\n", ":2: key 'ring' must be");
    bad("[genie]\nsync=2\n", ":2: key 'sync' must be 0 or 1");
    bad("[genie]\ndevice=gpu\n", ":2: key 'device' must be cpu, cuda or cuda:N, got 'gpu'");
    bad("[genie]\ndevice=cuda:x\n", ":2: key 'device' must be");
    bad("[genie]\ndevice=cuda:\n", ":2: key 'device' must be");
    bad("[genie]\nscheduler=euler\n", ":2: key 'scheduler' must be ddim, dpmpp2m, lcm or tcd");
    bad("[genie]\nsources=best\n", ":2: key 'sources' must be confused, random or same");
    bad("[genie]\ntargets=,\n", ":2: key 'targets' must be few, all or a comma list of labels");
    bad("[genie]\nprompt=A photo\n", ":2: key 'prompt' must be a template with {}");
    bad("[genie]\nqouta=5\n", ":2: unknown key 'qouta' in [genie]");
    /* a value too long for its key says so (not "must be a template" or "must be a directory") */
    bad("[genie]\nprompt=A photo of a {} xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n", ":2: key 'prompt' is 306 bytes long, at most 255");
    {
        char cfg[1400] = "[genie]\ncache=";
        memset(cfg + strlen(cfg), 'd', 1100);
        strcat(cfg, "\n");
        bad(cfg, ":2: key 'cache' is 1100 bytes long, at most 1023");
    }
    bad("[genie]\njust words\n", ":2: expected key=value");
    bad("mode=genie\n[genie]\n", ":1: 'mode=genie' before the [genie] section");
    bad("[genie]\n[net]\n", ":2: [net]: the only section is [genie]");
    bad("[genie]\n[genie]\n", ":2: a second [genie] section");
    bad("# empty\n", "no [genie] section");
    bad("[genie]\nmodel=build/no/such/model\n", "model build/no/such/model: No such file or directory");
    bad("[genie]\nbatch=4\n", "batch=4 cannot hold one GeNIe-Ada request (5 ratios in r_set)");
    bad("[genie]\nbatch=10\n\nvae_batch=11\n", ":4: key 'vae_batch' = 11 is more than batch=10");
    bad("[genie]\nvae_batch=0\n", ":2: key 'vae_batch'");
    /* a list longer than the engine can hold; ratios that give the engine no denoising step (int(steps * r) = 0) */
    bad("[genie]\nr_set=0.1,0.15,0.2,0.25,0.3,0.35,0.4,0.45,0.5,0.55,0.6,0.65,0.7,0.75,0.8,0.85,0.9\n",
        ":2: key 'r_set' takes at most 16 values, got 17");
    bad("[genie]\nsteps=4\nr=0.2\n", ":3: key 'r' = 0.2 gives no denoising step with steps=4");
    bad("[genie]\nr=0.2\nmode=genie\nsteps=4\n", ":2: key 'r' = 0.2 gives no denoising step with steps=4");
    bad("[genie]\nsteps=4\nr_set=0.2,0.5\nr=0.5\n", ":3: key 'r_set' entry 0.2 gives no denoising step with steps=4");
    write_file("[genie]\nsteps=4\nr_set=0.25,0.5,0.75\nr=0.25\n");
    CHECK(genie_cfg_read(P, &c) == 0 && c.n_r == 3, "int(4 * 0.25) = 1 step is enough: %s", err_msg());
    /* lcm runs every step at any strength (its model's original_inference_steps bounds r, checked by the engine) */
    write_file("[genie]\nscheduler=lcm\nsteps=4\nr_set=0.2,0.5,0.8\nr=0.2\n");
    CHECK(genie_cfg_read(P, &c) == 0 && c.scheduler == SD_SCHED_LCM, "lcm with r = 0.2 at 4 steps: %s", err_msg());
    write_file("[genie]\nscheduler=tcd\neta=0\nsteps=4\nr_set=0.2,0.5,0.8\nr=0.2\n");
    CHECK(genie_cfg_read(P, &c) == 0 && c.scheduler == SD_SCHED_TCD && c.eta == 0.0, "tcd, eta 0, r = 0.2 at 4 steps: %s",
          err_msg());
    bad("[genie]\nscheduler=tcd\neta=1.5\n", ":3: key 'eta'");
    /* two ratios: Ada would always keep the second */
    bad("[genie]\nr_set=0.8,0.9\n", ":2: key 'r_set' has 2 ratios; genie-ada needs at least 3");
    write_file("[genie]\nmode=genie\nr_set=0.8,0.9\n");
    CHECK(genie_cfg_read(P, &c) == 0, "fixed-r genie ignores r_set: %s", err_msg());
    write_file("[genie]\nmode=txt2img\nsteps=1\n");
    CHECK(genie_cfg_read(P, &c) == 0, "txt2img uses no r: %s", err_msg());
    bad("[genie]\nshare=0.5\nsahre=0.5\n", ":3: unknown key 'sahre' in [genie] (did you mean 'share'?)");
    write_file("[genie]\nquota=5\nquota=9\n");
    CHECK(genie_cfg_read(P, &c) == 0 && c.quota == 9, "a key given twice takes the last value: %s", err_msg());
    write_file("\xEF\xBB\xBF[genie]\nquota=5\n");
    CHECK(genie_cfg_read(P, &c) == 0 && c.quota == 5, "a byte order mark: %s", err_msg());
    CHECK(genie_cfg_read("build", &c) == -1 && strstr(err_msg(), "build: is a directory"), "directory: %s", err_msg());

    write_file("[genie]\nmode=none\nmodel=build/no/such/model\n");
    CHECK(genie_cfg_read(P, &c) == 0, "mode=none needs no model: %s", err_msg());
    CHECK(genie_cfg_read("build/no/such.cfg", &c) == -1 && strstr(err_msg(), "build/no/such.cfg"), "missing file");
    remove(P);
    return check_done("genie_cfg");
}

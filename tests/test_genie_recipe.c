/* GeNIe's recipe held once: the scheduler names every command and genie.cfg accept alike; the Few threshold of the
 * trainer's report is the online module's; `genie generate` refuses to resume after a class was renamed inside
 * the same names file, and refuses a template without {}; Z_T is made of the same images offline and online (the
 * online rule: at most 64 per class, spread over the list), checked against the rule written out here; `genie
 * recipe` prints a genie.cfg as genie's reader resolves it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "augment/engine/scheduler.h"
#include "augment/genie/ada.h"
#include "augment/genie/genindex.h"
#include "augment/genie/genie.h"
#include "augment/genie/genie_cfg.h"
#include "augment/genie/module.h"
#include "augment/genie/recipe.h"
#include "common/err.h"
#include "common/imgio.h"
#include "src/train/dataset.h"
#include "tests/check.h"

#define DIR "build/tests/genie_recipe"
#define SRC "data/fmnist/images/test/00010_coat.jpg"
#define BACKBONE "-backbone cfg/fmnist.cfg -weights data/models/fmnist-judge.weights"

static void test_scheduler_names(void)
{
    CHECK(scheduler_kind_parse("ddim") == SD_SCHED_DDIM && scheduler_kind_parse("dpmpp2m") == SD_SCHED_DPMPP_2M &&
              scheduler_kind_parse("dpm") == SD_SCHED_DPMPP_2M && scheduler_kind_parse("euler") < 0,
          "scheduler names");
    CHECK(!strcmp(scheduler_kind_name(SD_SCHED_DDIM), "ddim") && !strcmp(scheduler_kind_name(SD_SCHED_DPMPP_2M), "dpmpp2m"),
          "canonical names");
    char out[8192], cmd[1024];
    const char *names[] = {"ddim", "dpmpp2m", "dpm"};
    for (int i = 0; i < 3; i++) {
        /* genie.cfg */
        genie_cfg c;
        snprintf(cmd, sizeof cmd, "[genie]\nscheduler=%s\n", names[i]);
        check_write_text(DIR "/s.cfg", cmd);
        CHECK(genie_cfg_read(DIR "/s.cfg", &c) == 0 && c.scheduler == scheduler_kind_parse(names[i]),
              "genie.cfg scheduler=%s: %s", names[i], err_msg());
        /* generate and txt2img: past -scheduler, they stop at the missing plan / model */
        snprintf(cmd, sizeof cmd, "$G generate " DIR "/no-plan.csv -labels data/fmnist/labels.list -scheduler %s",
                 names[i]);
        CHECK(check_sh(cmd, out, sizeof out) == 1 && strstr(out, "no-plan.csv") && !strstr(out, "-scheduler"),
              "generate -scheduler %s: %s", names[i], out);
        snprintf(cmd, sizeof cmd, "$G txt2img -model " DIR "/no-model -p x -o " DIR "/x.png -scheduler %s", names[i]);
        CHECK(check_sh(cmd, out, sizeof out) == 1 && strstr(out, "no-model") && !strstr(out, "-scheduler"),
              "txt2img -scheduler %s: %s", names[i], out);
    }
    genie_cfg c;
    check_write_text(DIR "/s.cfg", "[genie]\nscheduler=euler\n");
    CHECK(genie_cfg_read(DIR "/s.cfg", &c) < 0 && strstr(err_msg(), SCHEDULER_NAMES), "%s", err_msg());
    CHECK(check_sh("$G generate " DIR "/no-plan.csv -labels data/fmnist/labels.list -scheduler euler", out, sizeof out) ==
              1 && strstr(out, SCHEDULER_NAMES), "%s", out);
    CHECK(check_sh("$G txt2img -p x -o " DIR "/x.png -scheduler euler", out, sizeof out) == 1 &&
              strstr(out, SCHEDULER_NAMES), "%s", out);
}

/* Z_T's images of a big class: the first ADA_MEAN_IMAGES of an even spread, as the module always chose them */
static void test_mean_images(const dataset *ds, int k)
{
    int n = ds->count[k], want = n < 64 ? n : 64, *counts = calloc(ds->classes, sizeof *counts);
    img_u8 **imgs = calloc(ds->classes, sizeof *imgs);
    unsigned char *need = calloc(ds->classes, 1);
    need[k] = 1;
    CHECK(ADA_MEAN_IMAGES == 64 && n > 64, "class %s has %d images", ds->labels[k], n);
    CHECK(ada_mean_images(ds->paths, ds->members, ds->count, need, ds->classes, imgs, counts) == 0, "%s", err_msg());
    int same = counts[k] == want;
    for (int i = 0; same && i < want; i++) {
        img_u8 im = {0};
        same = imgio_load(ds->paths[ds->members[k][(long)i * n / want]], 0, 0, &im) == 0 && im.w == imgs[k][i].w &&
               !memcmp(im.rgb, imgs[k][i].rgb, (size_t)im.w * im.h * 3);
        imgio_free(&im);
    }
    int others = 0;
    for (int c = 0; c < ds->classes; c++) others += c != k && counts[c];
    CHECK(same && !others, "Z_T images of %s: %d chosen (want %d), the spread rule %s, %d other classes", ds->labels[k],
          counts[k], want, same ? "kept" : "broken", others);
    ada_mean_images_free(imgs, counts, ds->classes);
    free(imgs), free(counts), free(need);
}

/* generate's Ada on a target with more than 64 images gives the gaps of Z_T made of the module's 64 */
static void test_offline_zt(const dataset *ds, int k)
{
    char out[16384], cmd[2048];
    snprintf(cmd, sizeof cmd, "source,target,r,seed,output\n" SRC ",%s,ada,7," DIR "/ada/a.png\n", ds->labels[k]);
    check_write_text(DIR "/ada.csv", cmd);
    CHECK(check_sh("$G generate " DIR "/ada.csv -data " DIR "/lt.data -steps 3 -rset 0.5,0.7,0.9 -threads 2 " BACKBONE,
                   out, sizeof out) == 0, "%s", out);
    genindex_reader rd;
    genindex_row row;
    char gaps[256] = "";
    if (genindex_open(&rd, DIR "/ada.csv.index.csv") == 0) {
        while (genindex_read(&rd, &row) > 0)
            if (strstr(row.f[GX_OUTPUT], "a.png")) snprintf(gaps, sizeof gaps, "%s", row.f[GX_GAPS]);
        genindex_close(&rd);
    }

    char *words[10];
    for (int c = 0; c < ds->classes; c++) words[c] = ds->labels[c];
    genie_opts go;
    genie_opts_default(&go);
    go.eo.steps = 3;
    go.eo.threads = 2;
    go.n_r = ada_parse_rset("0.5,0.7,0.9", go.r_set, ADA_MAX_R);
    go.backbone_cfg = "cfg/fmnist.cfg";
    go.backbone_weights = "data/models/fmnist-judge.weights";
    genie *g = genie_load(&go, words, ds->classes);
    CHECK(g != NULL, "%s", err_msg());
    if (!g) return;
    int n = ds->count[k], counts[10] = {0};
    img_u8 *imgs[10] = {0}, mine[64] = {{0}};
    for (int i = 0; i < 64; i++) imgio_load(ds->paths[ds->members[k][(long)i * n / 64]], 0, 0, &mine[i]);
    imgs[k] = mine, counts[k] = 64;
    CHECK(genie_set_class_means(g, imgs, counts) == 0, "%s", err_msg());
    img_u8 src = {0};
    imgio_load(SRC, 0, 0, &src);
    float *img = malloc(sizeof(float) * genie_image_floats(g));
    genie_request rq = {.source = &src, .target = k, .r = GENIE_R_ADA, .seed = 7};
    genie_result res = {.image = img};
    CHECK(genie_run(g, &rq, 1, &res) == 0 && res.n_gaps == 2, "%s", err_msg());
    char want[256];
    snprintf(want, sizeof want, "%.5f;%.5f", res.gaps[0], res.gaps[1]);
    CHECK(!strcmp(gaps, want), "generate's gaps %s, with the module's Z_T images %s", gaps, want);
    free(img);
    imgio_free(&src);
    for (int i = 0; i < 64; i++) imgio_free(&mine[i]);
    genie_free(g);
}

static void test_resume_names(void)
{
    char out[16384];
    check_write_text(DIR "/names.txt", "tee\ntrouser\npullover\ndress\ncoat\nsandal\nshirt\nsneaker\nbag\nboot\n");
    check_write_text(DIR "/t.csv", "source,target,r,seed,output\n,tee,1,1," DIR "/t/1.png\n,tee,1,2," DIR "/t/2.png\n");
    const char *run = "$G generate " DIR "/t.csv -labels data/fmnist/labels.list -names " DIR "/names.txt -steps 2";
    CHECK(check_sh(run, out, sizeof out) == 0 && strstr(out, "made 2 images"), "%s", out);
    /* tee becomes giraffe inside the same file: one image made under each would share one index */
    check_write_text(DIR "/names.txt", "giraffe\ntrouser\npullover\ndress\ncoat\nsandal\nshirt\nsneaker\nbag\nboot\n");
    CHECK(system("rm " DIR "/t/2.png") == 0, "rm");
    CHECK(check_sh(run, out, sizeof out) == 1 && strstr(out, "t.csv.index.csv.settings") && strstr(out, "other settings"),
          "a resume after renaming a class: %s", out);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s -remake", run);
    CHECK(check_sh(cmd, out, sizeof out) == 0 && strstr(out, "made 2 images"), "-remake: %s", out);
    CHECK(check_sh(run, out, sizeof out) == 0 && strstr(out, "2 already made, 0 to make"), "%s", out);
    /* the words are the fingerprint, not the file: the same names elsewhere are the same settings */
    CHECK(system("cp " DIR "/names.txt " DIR "/names2.txt") == 0, "cp");
    CHECK(check_sh("$G generate " DIR "/t.csv -labels data/fmnist/labels.list -names " DIR "/names2.txt -steps 2", out,
                   sizeof out) == 0 && strstr(out, "2 already made"), "the same words from another file: %s", out);
    /* a template without {} gives every class one prompt: refused by generate as by genie.cfg */
    check_write_text(DIR "/t2.csv", "source,target,r,seed,output\n,tee,1,1," DIR "/t2/1.png\n");
    CHECK(check_sh("$G generate " DIR "/t2.csv -labels data/fmnist/labels.list -template 'A photo' -steps 2", out,
                   sizeof out) == 1 && strstr(out, "-template \"A photo\"") && strstr(out, "{}"),
          "-template without {}: %s", out);
    struct stat st;
    CHECK(stat(DIR "/t2/1.png", &st) != 0, "an image was made with the template without {}");
    genie_cfg c;
    check_write_text(DIR "/p.cfg", "[genie]\nprompt=A photo\n");
    CHECK(genie_cfg_read(DIR "/p.cfg", &c) < 0 && strstr(err_msg(), "p.cfg:2"), "%s", err_msg());
}

/* a list with 19 tees (Few), 20 trousers (Medium: the boundary) and 101 of every other class (Many) */
static void test_few(void)
{
    char out[16384];
    CHECK(check_sh("rm -f " DIR "/few.list; for l in $(cat data/fmnist/labels.list); do n=101; [ $l = tee ] && n=19; "
                   "[ $l = trouser ] && n=20; grep \"_$l.jpg\" data/fmnist/train.list | head -n $n >> " DIR "/few.list; "
                   "done; head -n 300 data/fmnist/test.list > " DIR "/few-test.list",
                   out, sizeof out) == 0, "%s", out);
    check_write_text(DIR "/few.data", "classes=10\ntrain=" DIR "/few.list\nvalid=" DIR "/few-test.list\n"
                                "labels=data/fmnist/labels.list\n");
    dataset ds = {0};
    CHECK(dataset_load(DIR "/few.list", "data/fmnist/labels.list", 10, &ds) == 0, "%s", err_msg());
    int tee = 0, trouser = 1, tees = 0;
    CHECK(!strcmp(ds.labels[tee], "tee") && ds.count[tee] == 19 && ds.count[trouser] == 20, "list");
    /* the report: its Few group is the tees of the test list */
    CHECK(check_sh("grep -c _tee.jpg " DIR "/few-test.list", out, sizeof out) == 0, "%s", out);
    tees = atoi(out);
    CHECK(check_sh("$G classifier valid " DIR "/few.data cfg/fmnist.cfg data/models/fmnist-judge.weights", out,
                   sizeof out) == 0, "%s", out);
    const char *few = strstr(out, "Few (<20)");
    CHECK(few && atoi(few + 9) == tees && strstr(out, "Medium (20-100)"), "report's Few group (%d tees): %s", tees, out);
    /* the module's few targets: the tees alone */
    genie_cfg c;
    genie_cfg_default(&c);
    c.mode = GENIE_MODE_GENIE;
    c.warmup = 1000000;
    module_opts o = {.cfg = &c, .cfg_path = "few.cfg", .classes = ds.classes, .labels = ds.labels,
                     .n_real = ds.n_real, .paths = ds.paths, .cls = ds.cls, .net_cfg = "cfg/fmnist.cfg"};
    module *m = module_start(&o);
    CHECK(m != NULL, "%s", err_msg());
    if (m) {
        module_stats st;
        module_get_stats(m, &st);
        CHECK(st.n_targets == 1 && st.targets[0] == tee, "module's Few targets: %d, first %d", st.n_targets,
              st.targets[0]);
        module_stop(m);
    }
    for (int k = 0; k < ds.classes; k++)
        CHECK((recipe_shot_group(ds.count[k]) == SHOT_FEW) == (k == tee), "class %s", ds.labels[k]);
    dataset_free(&ds);
}

static void test_recipe_cmd(void)
{
    char out[8192];
    CHECK(check_sh("$G recipe cfg/fmnist-genie.cfg", out, sizeof out) == 0 && strstr(out, "\nr=0.9\n") &&
              strstr(out, "\nr_set=0.7,0.8,0.9\n") && strstr(out, "\nguidance=3\n") && strstr(out, "\ntop_k=9\n") &&
              strstr(out, "model=data/models/fmnist-ldm\n"), "%s", out);
    /* what it prints reads back as the same settings */
    genie_cfg a, b;
    CHECK(check_sh("{ echo '[genie]'; $G recipe cfg/fmnist-genie.cfg; } > " DIR "/round.cfg", out, sizeof out) == 0,
          "%s", out);
    CHECK(genie_cfg_read("cfg/fmnist-genie.cfg", &a) == 0 && genie_cfg_read(DIR "/round.cfg", &b) == 0 &&
              !memcmp(&a, &b, sizeof a), "genie recipe's output reads back differently: %s", err_msg());
    CHECK(check_sh("sh -c '. scripts/recipe.sh; echo $MODEL $GUIDANCE $STEPS $TOP_K $GENIE_R $ADA_RSET'", out,
                   sizeof out) == 0 && !strcmp(out, "data/models/fmnist-ldm 3 25 9 0.9 0.7,0.8,0.9\n"), "%s", out);
}

int main(void)
{
    system("rm -rf " DIR);
    mkdir("build/tests", 0755);
    mkdir(DIR, 0755);
    setenv("GENIE", getenv("GENIE") ? getenv("GENIE") : "./genie", 1);
    test_scheduler_names();
    test_resume_names();
    test_recipe_cmd();
    test_few();
    dataset ds = {0};
    check_write_text(DIR "/lt.data", "classes=10\ntrain=data/fmnist/lt/train.list\nlabels=data/fmnist/labels.list\n");
    CHECK(dataset_load("data/fmnist/lt/train.list", "data/fmnist/labels.list", 10, &ds) == 0, "%s", err_msg());
    int big = 0;
    for (int c = 0; c < ds.classes; c++) big = ds.count[c] > ds.count[big] ? c : big;
    test_mean_images(&ds, big);
    test_offline_zt(&ds, big);
    dataset_free(&ds);
    return check_done("test_genie_recipe");
}

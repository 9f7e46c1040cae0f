/* The bundled models load through the engine and make what the bundled Fashion-MNIST judge
 * (data/models/fmnist-judge.weights, cfg/fmnist.cfg) classifies as prompted: data/models/fmnist-ldm (made by
 * scripts/train_fmnist_ldm.py) with 10 DDIM steps, its consistency-distilled student data/models/fmnist-lcm
 * (scripts/distill_lcm.py) with 4 TCD steps, one UNet call each, and that student distilled on GeNIe's own img2img,
 * data/models/fmnist-genie-student (scripts/distill_genie.py), with 2 TCD steps at eta 0 (cfg/fmnist-genie-fast.cfg).
 * For each, txt2img gives the prompted garments, and
 * a source image at low strength stays its own class while at high strength it becomes the prompted one (GeNIe's
 * premise). Generated PNGs are judged through `genie classifier valid`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "tests/check.h"
#include "src/train/classifier.h"
#include "augment/engine/engine.h"
#include "common/err.h"
#include "common/imgio.h"

#define DIR "build/tests/bundled_model"
#define NCLS 10

static const char *const CLASSES[NCLS] = {"tee",  "trouser", "pullover", "dress", "coat",
                                          "sandal", "shirt",  "sneaker", "bag",   "boot"};

static int class_index(const char *name)
{
    for (int c = 0; c < NCLS; c++)
        if (!strcmp(CLASSES[c], name)) return c;
    return -1;
}

/* planar [0,1] -> interleaved u8 PNG */
static int write_png(const char *path, const float *img, int w, int h)
{
    unsigned char *rgb = malloc((size_t)w * h * 3);
    if (!rgb) return -1;
    for (int i = 0; i < w * h; i++)
        for (int c = 0; c < 3; c++) {
            float v = img[(size_t)c * w * h + i] * 255.0f + 0.5f;
            rgb[(size_t)i * 3 + c] = (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
    int rc = imgio_write(path, rgb, w, h, 95);
    free(rgb);
    return rc;
}

/* Judges the n images (planar, w x h) meant as class want[k]; conf[t][p] counts intended t judged p. */
static int judge(const char *tag, const float *imgs, const int *want, int n, int w, int h, int conf[NCLS][NCLS])
{
    char list[256], data[256], csv[256], path[256];
    snprintf(list, sizeof list, DIR "/%s.list", tag);
    snprintf(data, sizeof data, DIR "/%s.data", tag);
    snprintf(csv, sizeof csv, DIR "/%s.csv", tag);
    FILE *f = fopen(list, "w");
    if (!f) return -1;
    for (int k = 0; k < n; k++) {
        snprintf(path, sizeof path, DIR "/%s_%02d_%s.png", tag, k, CLASSES[want[k]]);
        if (write_png(path, imgs + (size_t)k * 3 * w * h, w, h)) {
            fclose(f);
            return -1;
        }
        fprintf(f, "%s\n", path);
    }
    fclose(f);
    f = fopen(data, "w");
    if (!f) return -1;
    fprintf(f, "classes=%d\ntrain=%s\nvalid=%s\nlabels=data/fmnist/labels.list\nbackup=" DIR "\n", NCLS, list, list);
    fclose(f);
    char *argv[] = {"valid", data, "cfg/fmnist.cfg", "data/models/fmnist-judge.weights", "-csv", csv};
    if (classifier_main(6, argv)) return -1;
    f = fopen(csv, "r");
    if (!f) return -1;
    char line[1024];
    int rows = 0;
    memset(conf, 0, sizeof(int) * NCLS * NCLS);
    if (!fgets(line, sizeof line, f)) rows = -1;
    while (rows >= 0 && rows < NCLS && fgets(line, sizeof line, f)) {
        char *s = strchr(line, ',');
        for (int p = 0; s && p < NCLS; p++) {
            conf[rows][p] = atoi(s + 1);
            s = strchr(s + 1, ',');
        }
        rows++;
    }
    fclose(f);
    return rows == NCLS ? 0 : -1;
}

/* tag names the model's files under DIR; the engine runs o's model, scheduler, steps and guidance */
static void check_model(const char *tag, engine_opts o)
{
    o.max_batch = 6;
    o.threads = 2;
    engine *e = engine_load(&o);
    CHECK(e != NULL, "%s: %s", o.model, err_msg());
    if (!e) return;
    char jt[64];
    engine_info info;
    engine_get_info(e, &info);
    CHECK(info.width == 32 && info.height == 32, "image size %dx%d", info.width, info.height);
    CHECK(info.latent_channels == 8 && info.latent_h == 8 && info.latent_w == 8, "latents %dx%dx%d",
          info.latent_channels, info.latent_h, info.latent_w);
    const size_t ni = (size_t)3 * info.width * info.height;
    float *outs = malloc(sizeof(float) * ni * 6);

    /* txt2img: three classes, two seeds each, one batch */
    const char *names[3] = {"trouser", "bag", "sneaker"};
    int want[6];
    engine_item it[6];
    memset(it, 0, sizeof it);
    for (int k = 0; k < 6; k++) {
        char prompt[64];
        snprintf(prompt, sizeof prompt, "A photo of a %s", names[k / 2]);
        want[k] = class_index(names[k / 2]);
        it[k].prompt = engine_prompt(e, prompt);
        it[k].seed = 1 + k % 2;
        it[k].out = outs + k * ni;
    }
    CHECK(engine_img2img(e, it, 6) == 0, "%s txt2img: %s", tag, err_msg());
    int conf[NCLS][NCLS];
    snprintf(jt, sizeof jt, "%s_t2i", tag);
    CHECK(judge(jt, outs, want, 6, info.width, info.height, conf) == 0, "judge: %s", err_msg());
    for (int k = 0; k < 3; k++) {
        int c = want[2 * k];
        CHECK(conf[c][c] == 2, "%s txt2img \"%s\": judged as prompted %d of 2", tag, names[k], conf[c][c]);
    }

    /* img2img of a bag towards "boot": r = 0.2 keeps the bag, r = 1.0 gives a boot */
    img_u8 src = {0};
    CHECK(imgio_load("data/fmnist/images/test/00018_bag.jpg", 1, 1, &src) == 0, "%s", err_msg());
    if (src.rgb) {
        /* bilinear resize with half-pixel centres to the model size (how the model's training images and the
         * CLI's sources are made from 28x28 Fashion-MNIST), planar [0,1] */
        float *img = malloc(sizeof(float) * ni);
        for (int y = 0; y < info.height; y++)
            for (int x = 0; x < info.width; x++) {
                float fy = (y + 0.5f) * src.h / info.height - 0.5f, fx = (x + 0.5f) * src.w / info.width - 0.5f;
                fy = fy < 0 ? 0 : fy;
                fx = fx < 0 ? 0 : fx;
                int y0 = (int)fy, x0 = (int)fx, y1 = y0 + 1 < src.h ? y0 + 1 : y0, x1 = x0 + 1 < src.w ? x0 + 1 : x0;
                float ty = fy - y0, tx = fx - x0;
                for (int c = 0; c < 3; c++) {
#define PX(yy, xx) (src.rgb[((size_t)(yy) * src.w + (xx)) * 3 + c] / 255.0f)
                    float v = (1 - ty) * ((1 - tx) * PX(y0, x0) + tx * PX(y0, x1)) +
                              ty * ((1 - tx) * PX(y1, x0) + tx * PX(y1, x1));
#undef PX
                    img[(size_t)c * info.width * info.height + (size_t)y * info.width + x] = v;
                }
            }
        int boot = engine_prompt(e, "A photo of a boot");
        const double rs[4] = {0.2, 0.2, 1.0, 1.0};
        memset(it, 0, sizeof it);
        for (int k = 0; k < 4; k++) {
            it[k].image = img;
            it[k].prompt = boot;
            it[k].r = rs[k];
            it[k].seed = 1 + k % 2;
            it[k].out = outs + k * ni;
            want[k] = class_index(k < 2 ? "bag" : "boot");
        }
        CHECK(engine_img2img(e, it, 4) == 0, "%s img2img: %s", tag, err_msg());
        snprintf(jt, sizeof jt, "%s_i2i", tag);
        CHECK(judge(jt, outs, want, 4, info.width, info.height, conf) == 0, "judge: %s", err_msg());
        int s = class_index("bag"), b = class_index("boot");
        CHECK(conf[s][s] == 2, "%s: bag at r=0.2 towards boot: judged bag %d of 2", tag, conf[s][s]);
        CHECK(conf[b][b] == 2, "%s: bag at r=1.0 towards boot: judged boot %d of 2", tag, conf[b][b]);
        free(img);
    }
    imgio_free(&src);
    free(outs);
    engine_free(e);
}

int main(void)
{
    mkdir("build", 0755);
    mkdir("build/tests", 0755);
    mkdir(DIR, 0755);
    engine_opts o;
    engine_opts_default(&o);
    o.model = "data/models/fmnist-ldm";
    o.steps = 10;
    check_model("ldm", o);
    /* the student takes the guidance as its embedding: one UNet row per item */
    o.model = "data/models/fmnist-lcm";
    o.scheduler = SD_SCHED_TCD;
    o.steps = 4;
    o.guidance = 3;
    o.eta = 0.75;
    check_model("lcm", o);
    /* the GeNIe-distilled student as cfg/fmnist-genie-fast.cfg samples it: distilled at r 0.7 to 0.9 alone, it must
     * still make the prompted garment from pure noise and keep the source at low r */
    o.model = "data/models/fmnist-genie-student";
    o.steps = 2;
    o.eta = 0;
    check_model("genie-student", o);
    return check_done("bundled_model");
}

/* The loader pool: determinism across thread counts, epoch shuffling, bad images, soft labels, sampling modes,
 * and the augmentation geometry. */
#include "tests/check.h"
#include "common/err.h"
#include "src/train/loader.h"

#include <darknet.h>
/* Exported by libdarknet but not declared in darknet.h. */
void distort_image(image im, float hue, float sat, float val);

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define W 28
#define NGOOD 24

static char dir[] = "build/test_loader_XXXXXX";
static char *labels[] = {"rain", "snow", "sun"};

static void write_bytes(const char *path, const void *buf, size_t n)
{
    FILE *f = fopen(path, "wb");
    fwrite(buf, 1, n, f);
    fclose(f);
}

/* Image i: a distinct pattern, so rows can be told apart. */
static void pattern(int i, unsigned char *px)
{
    for (int y = 0; y < W; y++)
        for (int x = 0; x < W; x++) {
            unsigned char *p = px + (y * W + x) * 3;
            p[0] = (unsigned char)(x * 9 + i * 10), p[1] = (unsigned char)(y * 9 + i * 3), p[2] = (unsigned char)(i * 10 + 5);
        }
}

/* Writes NGOOD good images (class i % 3; one path with spaces, one very long) plus the bad ones; returns the
 * dataset paths' count. */
static int make_files(char **paths, int with_bad)
{
    unsigned char px[W * W * 3];
    int n = 0;
    char sub[512];
    snprintf(sub, sizeof sub, "%s/dir with spaces", dir);
    mkdir(sub, 0755);
    char longdir[1024];
    snprintf(longdir, sizeof longdir, "%s/%0200d", dir, 7);
    mkdir(longdir, 0755);
    for (int i = 0; i < NGOOD; i++) {
        char p[1400];
        const char *d = i == 1 ? sub : i == 2 ? longdir : dir;
        snprintf(p, sizeof p, "%s/%02d_%s.%s", d, i, labels[i % 3], i % 4 == 3 ? "png" : "jpg");
        pattern(i, px);
        imgio_write(p, px, W, W, 98);
        paths[n++] = strdup(p);
    }
    if (!with_bad) return n;
    static const char *bad[] = {"missing", "empty", "truncated", "text", "corrupt"};
    for (int b = 0; b < 5; b++) {
        char p[512];
        snprintf(p, sizeof p, "%s/bad_%s_%s.jpg", dir, bad[b], labels[b % 3]);
        size_t len;
        FILE *f;
        unsigned char buf[8192];
        switch (b) {
        case 1: write_bytes(p, "", 0); break;
        case 2:
        case 4:
            f = fopen(paths[0], "rb");
            len = fread(buf, 1, sizeof buf, f);
            fclose(f);
            if (b == 4)
                for (size_t k = len / 3; k < len - 2; k++) buf[k] = (unsigned char)(k * 13);
            write_bytes(p, buf, b == 2 ? len / 2 : len);
            break;
        case 3: write_bytes(p, "not an image", 12); break;
        }
        paths[n++] = strdup(p);
    }
    return n;
}

static dataset make_dataset(char **paths, int n)
{
    dataset ds = {0};
    ds.n = n;
    ds.classes = 3;
    ds.paths = paths;
    ds.labels = labels;
    ds.cls = malloc(n * sizeof(int));
    ds.count = calloc(3, sizeof(int));
    ds.members = malloc(3 * sizeof(int *));
    for (int c = 0; c < 3; c++) ds.members[c] = malloc(n * sizeof(int));
    for (int i = 0; i < n; i++) {
        ds.cls[i] = labels_match(paths[i], labels, 3);
        ds.members[ds.cls[i]][ds.count[ds.cls[i]]++] = i;
    }
    return ds;
}

static aug_params darknet_aug(void)
{
    aug_params a = {.preset = AUG_DARKNET, .w = W, .h = W, .c = 3, .min_crop = 28, .max_crop = 36, .angle = 10,
                    .aspect = 1.2f, .hue = .1f, .saturation = 1.5f, .exposure = 1.5f, .flip = 1};
    return a;
}

/* Runs nb batches and copies them out. */
static void run(loader_opts o, int nb, float *x, float *y, int *idx)
{
    loader *l = loader_start(&o);
    int row = o.aug.w * o.aug.h * o.aug.c;
    for (int b = 0; b < nb; b++) {
        const loader_batch *lb = loader_next(l);
        if (!lb) break;
        memcpy(x + (size_t)b * o.batch * row, lb->x, (size_t)o.batch * row * sizeof(float));
        memcpy(y + (size_t)b * o.batch * 3, lb->y, (size_t)o.batch * 3 * sizeof(float));
        memcpy(idx + b * o.batch, lb->index, o.batch * sizeof(int));
        loader_release(l, lb);
    }
    loader_stop(l);
}

int main(void)
{
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    char *paths[64];
    int n = make_files(paths, 1);
    dataset ds = make_dataset(paths, n);
    const int B = 8, NB = 6, row = W * W * 3;
    float *x1 = malloc(sizeof(float) * NB * B * row), *x2 = malloc(sizeof(float) * NB * B * row);
    float *y1 = malloc(sizeof(float) * NB * B * 3), *y2 = malloc(sizeof(float) * NB * B * 3);
    int *i1 = malloc(sizeof(int) * NB * B), *i2 = malloc(sizeof(int) * NB * B);

    /* Same seed: identical batches with 1 and 2 threads (and any slot count). */
    loader_opts o = {.ds = &ds, .aug = darknet_aug(), .batch = B, .threads = 1, .seed = 42};
    run(o, NB, x1, y1, i1);
    o.threads = 2;
    o.slots = 5;
    run(o, NB, x2, y2, i2);
    CHECK(memcmp(x1, x2, sizeof(float) * NB * B * row) == 0 && memcmp(i1, i2, sizeof(int) * NB * B) == 0,
          "1 and 2 threads differ");
    o.seed = 43;
    run(o, NB, x2, y2, i2);
    CHECK(check_max_abs(x1, x2, (size_t)NB * B * row) > 0.1, "seed does not change the batches");

    /* More workers than slots, one-image batches, a consumer that takes them as fast as it can: the ring must
     * hand out every batch in order and never deadlock (the alarm turns a hang into a failure). */
    alarm(120);
    {
        loader_opts f = {.ds = &ds, .aug = darknet_aug(), .batch = 1, .threads = 4, .slots = 2, .seed = 1};
        loader *l = loader_start(&f);
        int in_order = 1;
        for (uint64_t b = 0; b < 3000; b++) {
            const loader_batch *lb = loader_next(l);
            in_order &= lb && lb->number == b;
            if (lb) loader_release(l, lb);
        }
        loader_stop(l);
        CHECK(in_order, "batches out of order under contention");
    }
    alarm(0);

    /* Bad images never reach a batch: every row is a good image, none is black. */
    int bad_rows = 0, black = 0;
    for (int r = 0; r < NB * B; r++) {
        bad_rows += i1[r] < 0 || i1[r] >= NGOOD;
        float s = 0;
        for (int k = 0; k < row; k++) s += x1[(size_t)r * row + k];
        black += s == 0;
        float ys = y1[r * 3] + y1[r * 3 + 1] + y1[r * 3 + 2];
        CHECK(fabsf(ys - 1) < 1e-6 && y1[r * 3 + ds.cls[i1[r] < 0 ? 0 : i1[r]]] == 1, "row %d label", r);
    }
    CHECK(bad_rows == 0 && black == 0, "%d rows from bad images, %d black rows", bad_rows, black);
    loader *l = loader_start(&o);
    for (int b = 0; b < 8; b++) loader_release(l, loader_next(l));
    loader_stats st;
    loader_get_stats(l, &st);
    loader_stop(l);
    CHECK(st.bad_images == 5 && st.replaced >= 5, "bad images %llu, replaced %llu (want 5 and >= 5)",
          (unsigned long long)st.bad_images, (unsigned long long)st.replaced);

    /* Epoch-wise shuffling: each epoch is a permutation, and epochs differ. */
    int seen[64] = {0}, same = 0;
    for (int k = 0; k < n; k++) seen[loader_sample_index(&o, k)]++;
    for (int k = 0; k < n; k++) same += loader_sample_index(&o, k) == loader_sample_index(&o, n + k);
    int perm = 1;
    for (int k = 0; k < n; k++) perm &= seen[k] == 1;
    CHECK(perm, "epoch 0 is not a permutation");
    CHECK(same < n / 2, "epoch 1 repeats epoch 0 (%d of %d equal)", same, n);

    /* Class-balanced sampling on 8/8/8 good + 2/2/1 bad: each class about a third. */
    o.sampling = SAMPLE_BALANCED;
    int cls_count[3] = {0};
    for (int k = 0; k < 3000; k++) cls_count[ds.cls[loader_sample_index(&o, k)]]++;
    CHECK(abs(cls_count[0] - 1000) < 120 && abs(cls_count[2] - 1000) < 120, "balanced: %d %d %d", cls_count[0],
          cls_count[1], cls_count[2]);

    /* Sequential (validation): every image once, bad ones marked -1 instead of replaced. */
    o.sampling = SAMPLE_SEQUENTIAL;
    o.aug.preset = AUG_EVAL;
    l = loader_start(&o);
    int rows = 0, marked = 0, inorder = 1;
    const loader_batch *lb;
    while ((lb = loader_next(l))) {
        for (int r = 0; r < lb->n; r++, rows++) {
            marked += lb->index[r] < 0;
            inorder &= lb->index[r] < 0 || lb->index[r] == rows;
        }
        /* AUG_EVAL of a 28x28 image into 28x28 is the image itself. */
        if (lb->number == 0) {
            unsigned char px[W * W * 3];
            pattern(0, px);
            float err = 0;
            for (int c = 0; c < 3; c++)
                for (int p = 0; p < W * W; p++) err = fmaxf(err, fabsf(lb->x[c * W * W + p] - px[p * 3 + c] / 255.f));
            CHECK(err < 0.02f, "eval transform is not the identity (max error %g)", err);
        }
        loader_release(l, lb);
    }
    loader_stop(l);
    CHECK(rows == n && marked == 5 && inorder, "sequential: %d rows of %d, %d marked, in order %d", rows, n, marked, inorder);

    /* darknet geometry with min_crop = max_crop = size, no rotation/aspect/colour: the image or its mirror. */
    unsigned char px[W * W * 3];
    pattern(3, px);
    img_u8 im = {.w = W, .h = W, .rgb = px, .cap = sizeof px};
    aug_params a = {.preset = AUG_DARKNET, .w = W, .h = W, .c = 3, .min_crop = W, .max_crop = W, .aspect = 1,
                    .saturation = 1, .exposure = 1, .flip = 1};
    float out[W * W * 3], tmp[4 * W * W];
    int flips = 0, exact = 1;
    for (int s = 0; s < 20; s++) {
        philox_t g;
        philox_init(&g, 5, s);
        transform_sample(&a, &im, &g, out, tmp);
        int flipped = fabsf(out[0] - px[(W - 1) * 3] / 255.f) < 1e-5f && fabsf(out[0] - px[0] / 255.f) > 1e-3f;
        flips += flipped;
        for (int y = 0; y < W; y++)
            for (int x = 0; x < W; x++) {
                int sx = flipped ? W - 1 - x : x;
                exact &= fabsf(out[y * W + x] - px[(y * W + sx) * 3] / 255.f) < 1e-5f;
            }
    }
    CHECK(exact && flips > 3 && flips < 17, "identity/mirror geometry (exact %d, %d flips of 20)", exact, flips);

    /* The HSV distortion equals libdarknet's own distort_image (random colours incl. grays and saturation/value
     * pushed past 1). */
    {
        enum { NPX = 4096 };
        image ref = make_image(64, 64, 3);
        float *mine = malloc(sizeof(float) * NPX * 3);
        philox_t g;
        philox_init(&g, 11, 0);
        for (int k = 0; k < NPX * 3; k++) ref.data[k] = philox_uniform(&g);
        for (int k = 0; k < 64; k++) ref.data[k] = ref.data[NPX + k] = ref.data[2 * NPX + k] = k / 63.f;
        memcpy(mine, ref.data, sizeof(float) * NPX * 3);
        distort_image(ref, 0.13f, 1.7f, 1.4f);
        transform_distort_hsv(mine, NPX, 0.13f, 1.7f, 1.4f);
        double d = check_max_abs(mine, ref.data, NPX * 3);
        CHECK(d < 2e-5, "HSV distortion differs from darknet's distort_image by %g", d);
        free(mine);
        free_image(ref);
    }

    /* Presets stay in [0,1]; a 1-channel net gets luma. */
    enum aug_preset presets[] = {AUG_WEAK, AUG_STRONG};
    for (int p = 0; p < 2; p++) {
        a.preset = presets[p];
        float lo = 1, hi = 0;
        for (int s = 0; s < 20; s++) {
            philox_t g;
            philox_init(&g, 9, s);
            transform_sample(&a, &im, &g, out, tmp);
            for (int k = 0; k < W * W * 3; k++) lo = fminf(lo, out[k]), hi = fmaxf(hi, out[k]);
        }
        CHECK(lo >= 0 && hi <= 1 && hi > 0.5f, "preset %d range [%g, %g]", p, lo, hi);
    }
    /* crop_scale 1: a resized crop keeps the whole (square) image, so weak without flip is the evaluation
     * transform; at the default 0.2 it crops */
    {
        aug_params e = a, w = a;
        e.preset = AUG_EVAL;
        w.preset = AUG_WEAK;
        w.flip = 0;
        float *ev = malloc(sizeof(float) * W * W * 3);
        transform_sample(&e, &im, NULL, ev, tmp);
        double d1 = 0, d02 = 0;
        for (int s = 0; s < 10; s++) {
            philox_t g;
            philox_init(&g, 9, s);
            w.crop_scale = 1;
            transform_sample(&w, &im, &g, out, tmp);
            d1 = fmax(d1, check_max_abs(out, ev, W * W * 3));
            philox_init(&g, 9, s);
            w.crop_scale = 0;
            transform_sample(&w, &im, &g, out, tmp);
            d02 = fmax(d02, check_max_abs(out, ev, W * W * 3));
        }
        CHECK(d1 < 1e-6 && d02 > 0.05, "crop_scale 1: weak = eval (%g); default scale crops (%g)", d1, d02);
        free(ev);
    }
    a.preset = AUG_EVAL;
    a.c = 1;
    transform_sample(&a, &im, NULL, out, tmp);
    CHECK(fabsf(out[5] - (0.299f * px[15] + 0.587f * px[16] + 0.114f * px[17]) / 255.f) < 1e-4f, "luma");

    /* mixup and cutmix: soft labels summing to 1, some rows mixed. */
    o = (loader_opts){.ds = &ds, .aug = darknet_aug(), .batch = B, .threads = 2, .seed = 7, .mixup = 1, .cutmix = 1,
                      .label_smooth = 0.1f};
    run(o, NB, x1, y1, i1);
    int mixed = 0, sums_ok = 1;
    for (int r = 0; r < NB * B; r++) {
        float s = y1[r * 3] + y1[r * 3 + 1] + y1[r * 3 + 2], mx = fmaxf(y1[r * 3], fmaxf(y1[r * 3 + 1], y1[r * 3 + 2]));
        sums_ok &= fabsf(s - 1) < 1e-5f;
        mixed += mx < 0.9f;
    }
    CHECK(sums_ok && mixed > 5 && mixed < NB * B - 5, "soft labels: sums ok %d, %d mixed of %d", sums_ok, mixed, NB * B);

    free(x1), free(x2), free(y1), free(y2), free(i1), free(i2);
    for (int i = 0; i < n; i++) free(paths[i]);
    free(ds.cls), free(ds.count);
    for (int c = 0; c < 3; c++) free(ds.members[c]);
    free(ds.members);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0, "cleanup");
    return check_done("loader");
}

#define _GNU_SOURCE
/* `genie prepare fmnist OUTDIR`: Fashion-MNIST (Debian's dataset-fashion-mnist IDX files) as JPEG files in
 * darknet layout, plus Fashion-MNIST-LT, an exponentially long-tailed cut of the training set (ImageNet-LT's
 * profile: 1280 images for the largest class down to 5 for the smallest, ratio 256). The test set stays balanced.
 *
 * Files: OUTDIR/images/{train,test}/NNNNN_<class>.jpg, OUTDIR/{train,test,labels}.list,
 * OUTDIR/lt/train.list (cfg/fmnist.data and cfg/fmnist-lt.data point at OUTDIR=data/fmnist). */
#include "src/cmd/prepare.h"
#include "common/args.h"
#include "common/err.h"
#include "common/imgio.h"
#include "common/image.h"
#include "common/util.h"
#include "common/philox.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <turbojpeg.h>
#include <unistd.h>
#include <zlib.h>

#define FMNIST_CLASSES 10

/* Class names as labels: none is a substring of another ("tee", not "t-shirt", which contains "shirt"). */
static const char *const fmnist_classes[FMNIST_CLASSES] = {"tee",    "trouser", "pullover", "dress", "coat",
                                                           "sandal", "shirt",   "sneaker",  "bag",   "boot"};

#define FMNIST_DIR "/usr/share/datasets/fashion-mnist"

static unsigned be32(const unsigned char *p) { return (unsigned)p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3]; }

/* Reads a gzipped IDX file whole; checks its magic and that the payload matches the header's dimensions. */
static unsigned char *idx_read(const char *path, int want_dims, unsigned *count, size_t *item_size)
{
    gzFile gz = gzopen(path, "rb");
    if (!gz) {
        err_set("%s: cannot open (install the dataset-fashion-mnist package)", path);
        return NULL;
    }
    size_t cap = 1 << 20, len = 0;
    unsigned char *buf = malloc(cap);
    int n;
    while (buf && (n = gzread(gz, buf + len, (unsigned)(cap - len))) > 0) {
        len += (size_t)n;
        if (len == cap) buf = realloc(buf, cap *= 2);
    }
    gzclose(gz);
    if (!buf) {
        err_set("%s: out of memory", path);
        return NULL;
    }
    size_t hdr = 4 + 4 * (size_t)want_dims, items = 1;
    if (len < hdr || be32(buf) != (0x800u | (unsigned)want_dims)) {
        free(buf);
        err_set("%s: not an IDX file with %d dimensions", path, want_dims);
        return NULL;
    }
    *count = be32(buf + 4);
    for (int d = 1; d < want_dims; d++) items *= be32(buf + 4 + 4 * d);
    if (len != hdr + (size_t)*count * items) {
        free(buf);
        err_set("%s: size %zu does not match its header", path, len);
        return NULL;
    }
    *item_size = items;
    memmove(buf, buf + hdr, len - hdr);
    return buf;
}

static int write_split(const char *out, const char *split, const char *images, const char *labels)
{
    char path[4096], tmp[4200], dir[4096];
    unsigned n, nl;
    size_t isz, lsz;
    snprintf(path, sizeof path, FMNIST_DIR "/%s-images-idx3-ubyte.gz", images);
    unsigned char *px = idx_read(path, 3, &n, &isz);
    if (!px) return -1;
    snprintf(path, sizeof path, FMNIST_DIR "/%s-labels-idx1-ubyte.gz", labels);
    unsigned char *lab = idx_read(path, 1, &nl, &lsz);
    if (!lab || nl != n || isz != 28 * 28) {
        free(px);
        free(lab);
        return lab ? err_set("%s: %u labels for %u images of %zu pixels", path, nl, n, isz) : -1;
    }
    snprintf(dir, sizeof dir, "%s/images/%s", out, split);
    if (util_mkdirs(dir)) goto fail;
    snprintf(path, sizeof path, "%s/%s.list", out, split);
    FILE *list = util_open_tmp(path, tmp, sizeof tmp);
    if (!list) goto fail;
    tjhandle tj = tjInitCompress();
    unsigned done = 0;
    for (unsigned i = 0; i < n; i++, done++) {
        if (lab[i] >= FMNIST_CLASSES) {
            err_set("%s: label %u of image %u is out of range", path, lab[i], i);
            break;
        }
        char img[4200];
        snprintf(img, sizeof img, "%s/%05u_%s.jpg", dir, i, fmnist_classes[lab[i]]);
        unsigned char *jpg = NULL;
        unsigned long jlen = 0;
        char tmpimg[4300];
        FILE *f = NULL;
        if (tjCompress2(tj, px + (size_t)i * isz, 28, 0, 28, TJPF_GRAY, &jpg, &jlen, TJSAMP_GRAY, 95, 0) != 0) {
            err_set("%s: cannot encode", img);
            tjFree(jpg);
            break;
        }
        if (!(f = util_open_tmp(img, tmpimg, sizeof tmpimg))) {
            tjFree(jpg);
            break;
        }
        int wrote = fwrite(jpg, 1, jlen, f) == jlen;
        tjFree(jpg);
        if (!wrote) {
            fclose(f);
            unlink(tmpimg);
            err_set("%s: cannot write", img);
            break;
        }
        if (util_commit_nosync(f, tmpimg, img)) break;
        fprintf(list, "%s\n", img);
    }
    tjDestroy(tj);
    if (done != n) {
        fclose(list);
        goto fail;
    }
    /* the images reach the disk before the list that names them does */
    if (syncfs(fileno(list)) != 0) {
        err_set("%s: cannot sync: %s", dir, strerror(errno));
        fclose(list);
        goto fail;
    }
    if (util_commit(list, tmp, path)) goto fail;
    free(px);
    free(lab);
    return 0;
fail:
    free(px);
    free(lab);
    return -1;
}

/* Images per class of the LT profile, largest first (1280 ... 5). */
static void lt_counts(int *counts)
{
    /* n_i = 1280 * 256^(-i/9): 1280, 692, 374, 202, 109, 59, 32, 17, 9, 5. */
    for (int i = 0; i < FMNIST_CLASSES; i++) counts[i] = (int)(1280.0 * pow(1.0 / 256.0, i / 9.0) + 0.5);
}

static int lt_cmp(const void *a, const void *b, void *keys)
{
    const uint64_t *k = keys;
    uint64_t x = k[*(const int *)a], y = k[*(const int *)b];
    return x < y ? -1 : x > y;
}

/* The LT list: the seed shuffles which class gets which count, then keeps a seeded choice of each class's
 * images (in their original order, so the list reads naturally). */
static int write_lt(const char *in_list, const char *out_list, uint64_t seed)
{
    char path[4096], tmp[4200], line[4096];
    FILE *in = fopen(in_list, "r");
    if (!in) return err_set("%s: %s", in_list, strerror(errno));
    int counts[FMNIST_CLASSES], order[FMNIST_CLASSES];
    lt_counts(counts);
    philox_t g;
    philox_init(&g, seed, PHILOX_SPLIT_ORDER);
    for (int i = 0; i < FMNIST_CLASSES; i++) order[i] = i;
    for (int i = FMNIST_CLASSES - 1; i > 0; i--) {
        int j = philox_int(&g, i + 1), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    int want[FMNIST_CLASSES];
    for (int i = 0; i < FMNIST_CLASSES; i++) want[order[i]] = counts[i];

    /* Per class, a seeded random key per image; keep the `want` smallest keys. */
    char **lines = NULL;
    int *cls = NULL, n = 0, cap = 0;
    while (fgets(line, sizeof line, in)) {
        line[strcspn(line, "\n")] = 0;
        int c = -1;
        for (int k = 0; k < FMNIST_CLASSES; k++) {
            char tok[64];
            snprintf(tok, sizeof tok, "_%s.jpg", fmnist_classes[k]);
            size_t l = strlen(line), t = strlen(tok);
            if (l >= t && strcmp(line + l - t, tok) == 0) c = k;
        }
        if (c < 0) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 1024;
            lines = realloc(lines, cap * sizeof *lines);
            cls = realloc(cls, cap * sizeof *cls);
        }
        lines[n] = strdup(line);
        cls[n++] = c;
    }
    fclose(in);
    /* Each image gets a seeded random key; per class, the `want` smallest keys are kept. */
    uint64_t *lt_key = malloc(n * sizeof *lt_key);
    int *idx = malloc(n * sizeof *idx);
    for (int i = 0; i < n; i++) {
        uint32_t w[4];
        philox_block(seed, PHILOX_SPLIT_KEYS + (uint64_t)cls[i], (uint64_t)i, w);
        lt_key[i] = (uint64_t)cls[i] << 32 | w[0];
        idx[i] = i;
    }
    qsort_r(idx, n, sizeof *idx, lt_cmp, lt_key);
    char *keep = calloc(n, 1);
    for (int i = 0, run = 0; i < n; i++) {
        run = (i > 0 && cls[idx[i]] == cls[idx[i - 1]]) ? run + 1 : 0;
        keep[idx[i]] = run < want[cls[idx[i]]];
    }
    free(idx);
    snprintf(path, sizeof path, "%s", out_list);
    char *slash = strrchr(path, '/');
    if (slash) *slash = 0;
    int rc = slash ? util_mkdirs(path) : 0;
    FILE *f = rc ? NULL : util_open_tmp(out_list, tmp, sizeof tmp);
    if (f) {
        for (int i = 0; i < n; i++)
            if (keep[i]) fprintf(f, "%s\n", lines[i]);
        rc = util_commit(f, tmp, out_list);
    } else {
        rc = -1;
    }
    for (int i = 0; i < n; i++) free(lines[i]);
    free(lines);
    free(cls);
    free(lt_key);
    free(keep);
    return rc;
}

/* Writes OUT/images, the train/test/labels lists and lt/train.list. */
static int prepare_fmnist(const char *out, uint64_t seed)
{
    char path[4096], text[1024];
    if (util_mkdirs(out)) return -1;
    if (write_split(out, "train", "train", "train") || write_split(out, "test", "t10k", "t10k")) return -1;
    char in_list[4096], lt_list[4200];
    snprintf(in_list, sizeof in_list, "%s/train.list", out);
    snprintf(lt_list, sizeof lt_list, "%s/lt/train.list", out);
    if (write_lt(in_list, lt_list, seed)) return -1;
    text[0] = 0;
    for (int i = 0; i < FMNIST_CLASSES; i++) strcat(strcat(text, fmnist_classes[i]), "\n");
    snprintf(path, sizeof path, "%s/labels.list", out);
    if (util_write_text(path, text)) return -1;
    return 0;
}

/* Another Fashion-MNIST-LT split: OUT/train.list cut from FROM/train.list (a prepared fmnist folder) with the
 * LT profile; the seed decides which class gets which count (seed 1 is FROM/lt/train.list's split). */
static int prepare_fmnist_lt(const char *from, const char *out, uint64_t seed)
{
    char in_list[4096], path[4200];
    snprintf(in_list, sizeof in_list, "%s/train.list", from);
    snprintf(path, sizeof path, "%s/train.list", out);
    return write_lt(in_list, path, seed);
}

/* n photo-sized JPEGs (w x h, quality) made from FROM's training images (upscaled, tinted, noisy), with
 * OUT/train.list: the bench's stand-in for ImageNet-like files, nothing downloaded. */
static int prepare_big_jpegs(const char *from, const char *out, int n, int w, int h, int quality, uint64_t seed)
{
    char in_list[4096], list_path[4200], path[4200], tmp[4300], line[4096];
    snprintf(in_list, sizeof in_list, "%s/train.list", from);
    FILE *in = fopen(in_list, "r");
    if (!in) return err_set("%s: %s (run genie prepare fmnist first)", in_list, strerror(errno));
    snprintf(path, sizeof path, "%s/images", out);
    if (util_mkdirs(path)) {
        fclose(in);
        return -1;
    }
    snprintf(list_path, sizeof list_path, "%s/train.list", out);
    FILE *list = util_open_tmp(list_path, tmp, sizeof tmp);
    unsigned char *rgb = malloc((size_t)w * h * 3);
    float *up = malloc(sizeof(float) * 3 * w * h);
    img_u8 src = {0};
    int done = 0, rc = list && rgb && up ? 0 : -1;
    if (list && (!rgb || !up)) err_set("%s: out of memory", out);
    while (rc == 0 && done < n && fgets(line, sizeof line, in)) {
        line[strcspn(line, "\n")] = 0;
        const char *base = strrchr(line, '/');
        base = base ? base + 1 : line;
        if (imgio_load(line, 0, 0, &src)) {
            rc = -1;
            break;
        }
        /* the garment upscaled (the engine's resampler), a per-image tint and pixel noise: photo-sized,
         * photo-like JPEG work (chroma, texture), the class still in the name */
        if (image_to_planar(&src, w, h, up)) {
            rc = -1;
            break;
        }
        philox_t g;
        philox_init(&g, seed, philox_mix((uint64_t)done, PHILOX_BIG_JPEG));
        float tint[3] = {philox_range(&g, 0.6f, 1.2f), philox_range(&g, 0.6f, 1.2f), philox_range(&g, 0.6f, 1.2f)};
        for (size_t p = 0; p < (size_t)w * h; p++)
            for (int c = 0; c < 3; c++) {
                float v = up[(size_t)c * w * h + p] * 255 * tint[c] + philox_range(&g, -12.0f, 12.0f) + 20;
                rgb[3 * p + c] = (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
        snprintf(path, sizeof path, "%s/images/%s", out, base);
        if (imgio_write(path, rgb, w, h, quality)) {
            rc = -1;
            break;
        }
        fprintf(list, "%s\n", path);
        done++;
    }
    fclose(in);
    if (rc == 0 && done < n) rc = err_set("%s: only %d images, %d asked", in_list, done, n);
    free(rgb);
    free(up);
    imgio_free(&src);
    if (list && rc == 0) return util_commit(list, tmp, list_path);
    if (list) {
        fclose(list);
        unlink(tmp);
    }
    return rc;
}

/* genie prepare fmnist | fmnist-lt | big-jpegs <outdir> [options] */
static int prepare_fmnist_main(int argc, char **argv)
{
    uint64_t seed = 1;
    const char *from = "data/fmnist";
    int lt = strcmp(argv[0], "fmnist-lt") == 0;
    /* -from only for fmnist-lt: for fmnist the table ends before it */
    const arg_opt opts[] = {ARG_OPT("-seed", ARG_U64, &seed), ARG_OPT(lt ? "-from" : NULL, ARG_STR, &from), ARG_END};
    char *pos[1];
    int np = args_parse(lt ? "prepare fmnist-lt" : "prepare fmnist", argc - 1, argv + 1, opts, pos, 1);
    if (np == 0) err_set("usage: genie prepare %s <outdir>%s [-seed S]", argv[0], lt ? " [-from data/fmnist]" : "");
    if (np < 1 || (lt ? prepare_fmnist_lt(from, pos[0], seed) : prepare_fmnist(pos[0], seed))) return -1;
    fprintf(stderr, lt ? "prepared a Fashion-MNIST-LT split in %s/train.list\n"
                       : "prepared Fashion-MNIST and Fashion-MNIST-LT in %s\n", pos[0]);
    return 0;
}

static int prepare_big_jpegs_main(int argc, char **argv)
{
    int n = 1024, quality = 90;
    const char *from = "data/fmnist", *size = "500x375";
    uint64_t seed = 1;
    const arg_opt opts[] = {ARG_RANGE("-n", ARG_INT, &n, 1, 10000000), ARG_RANGE("-quality", ARG_INT, &quality, 1, 100),
                            ARG_OPT("-size", ARG_STR, &size), ARG_OPT("-from", ARG_STR, &from),
                            ARG_OPT("-seed", ARG_U64, &seed), ARG_END};
    char *pos[1];
    int w = 0, h = 0, k = 0, np = args_parse("prepare big-jpegs", argc - 1, argv + 1, opts, pos, 1);
    if (np == 0) err_set("usage: genie prepare big-jpegs <outdir> [-n 1024] [-size 500x375] [-quality 90] [-from data/fmnist]");
    else if (np > 0 && (sscanf(size, "%dx%d%n", &w, &h, &k) != 2 || size[k] || w < 8 || h < 8 || w > 8192 || h > 8192))
        np = err_set("prepare big-jpegs: -size \"%s\" is not WxH (8..8192)", size);
    if (np < 1 || prepare_big_jpegs(from, pos[0], n, w, h, quality, seed)) return -1;
    fprintf(stderr, "prepared %d %dx%d JPEGs in %s/train.list\n", n, w, h, pos[0]);
    return 0;
}

int prepare_main(int argc, char **argv)
{
    if (argc >= 1 && (strcmp(argv[0], "fmnist") == 0 || strcmp(argv[0], "fmnist-lt") == 0))
        return prepare_fmnist_main(argc, argv);
    if (argc >= 1 && strcmp(argv[0], "big-jpegs") == 0) return prepare_big_jpegs_main(argc, argv);
    return err_set("prepare: expected fmnist, fmnist-lt or big-jpegs");
}

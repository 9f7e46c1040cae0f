#include "src/net/netio.h"
#include "src/net/cfgcheck.h"
#include "common/err.h"
#include "common/kv.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* libdarknet's structs change layout with GPU and CUDNN: this file and every other one that includes darknet.h
 * must be compiled with the defines of the library they link (the Makefile gives them to every file of a build).
 * Sizes as measured on the header of Debian's darknet 0.0.0+git20180914.61c9d02e. */
#if defined(GPU) && defined(CUDNN)
_Static_assert(sizeof(layer) == 1752 && sizeof(network) == 304, "darknet.h's layout is not GPU+CUDNN's");
#elif defined(GPU)
_Static_assert(sizeof(layer) == 1672 && sizeof(network) == 304, "darknet.h's layout is not GPU's");
#elif defined(CUDNN)
#error "CUDNN without GPU: libdarknet has no such build"
#else
_Static_assert(sizeof(layer) == 1184 && sizeof(network) == 272, "darknet.h's layout is not the CPU build's");
#endif

int netio_device(int want)
{
#ifdef GPU
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) n = 0;
    cudaGetLastError(); /* no device or driver: darknet's check_error would take this for its own call's error */
    if (want == NETIO_DEVICE_DEFAULT) {
        want = n > 0 ? 0 : -1;
        if (n == 0) fprintf(stderr, "no CUDA device: darknet runs on the CPU (-gpu -1)\n");
    }
    if (want >= n) return err_set("-gpu %d: %d CUDA device%s found", want, n, n == 1 ? "" : "s"), -2;
    if (want >= 0 && cudaSetDevice(want) != cudaSuccess)
        return err_set("-gpu %d: %s", want, cudaGetErrorString(cudaGetLastError())), -2;
    gpu_index = want; /* parse_network_cfg builds networks there from now on */
    return want;
#else
    if (want >= 0) return err_set("-gpu %d: this genie is built without CUDA (make GPU=1)", want), -2;
    return -1;
#endif
}

static int preset_set(char *val, void *out)
{
    /* named, not by position: AUG_EVAL comes first in the enum and has no augment= name */
    static const struct { const char *name; enum aug_preset p; } presets[] = {
        {"darknet", AUG_DARKNET}, {"weak", AUG_WEAK}, {"strong", AUG_STRONG}};
    for (size_t i = 0; i < sizeof presets / sizeof *presets; i++)
        if (!strcasecmp(val, presets[i].name)) return *(enum aug_preset *)out = presets[i].p, 0;
    return -1;
}

/* gen_augment= and tail_augment=: "same" keeps augment='s preset; "none" is the evaluation transform (resize and centre crop) */
static int row_preset_set(char *val, void *out)
{
    if (!strcasecmp(val, "same")) return *(int *)out = -1, 0;
    if (!strcasecmp(val, "none")) return *(int *)out = AUG_EVAL, 0;
    enum aug_preset p;
    if (preset_set(val, &p)) return -1;
    return *(int *)out = (int)p, 0;
}

/* The [net] keys darknet's parser drops (cfgcheck_file has checked the whole file already), through the one
 * key=value reader. */
static int read_extras(const char *cfg, net_extras *ex)
{
    ex->flip = 1;
    ex->mixup = ex->cutmix = 0;
    ex->preset = AUG_DARKNET;
    ex->gen_preset = ex->tail_preset = -1;
    double smooth = 0, crop = AUG_CROP_SCALE;
    kv_key keys[] = {
        {.name = "flip", .type = KV_BOOL, .out = &ex->flip},
        {.name = "mixup", .type = KV_BOOL, .out = &ex->mixup},
        {.name = "cutmix", .type = KV_BOOL, .out = &ex->cutmix},
        {.name = "label_smooth_eps", .type = KV_DOUBLE, .out = &smooth, .lo = 0, .hi = 1, .flags = KV_OPEN_HI},
        {.name = "augment", .type = KV_FUNC, .out = &ex->preset, .set = preset_set, .want = "darknet, weak or strong"},
        {.name = "crop_scale", .type = KV_DOUBLE, .out = &crop, .lo = 0, .hi = 1, .flags = KV_OPEN_LO},
        {.name = "gen_augment", .type = KV_FUNC, .out = &ex->gen_preset, .set = row_preset_set,
         .want = "same, none, darknet, weak or strong"},
        {.name = "tail_augment", .type = KV_FUNC, .out = &ex->tail_preset, .set = row_preset_set,
         .want = "same, none, darknet, weak or strong"},
    };
    const kv_spec spec = {.section = "net", .first_section = 1};
    if (kv_read(cfg, keys, sizeof keys / sizeof *keys, &spec)) return -1;
    ex->label_smooth = (float)smooth;
    ex->crop_scale = (float)crop;
    return 0;
}

/* Bytes a .weights file holds for this network, as save_weights writes it (after the header). */
static long long weights_payload(const network *net, int *checkable)
{
    long long floats = 0;
    *checkable = 1;
    for (int i = 0; i < net->n; i++) {
        const layer *l = &net->layers[i];
        if (l->dontsave) continue;
        switch (l->type) {
        case CONVOLUTIONAL:
        case DECONVOLUTIONAL:
            floats += l->n + l->nweights + (l->batch_normalize ? 3LL * l->n : 0);
            break;
        case CONNECTED:
            floats += l->outputs + (long long)l->outputs * l->inputs + (l->batch_normalize ? 3LL * l->outputs : 0);
            break;
        case BATCHNORM: floats += 3LL * l->c; break;
        case MAXPOOL: case SOFTMAX: case DROPOUT: case AVGPOOL: case SHORTCUT: case ROUTE: case COST:
        case ACTIVE: case UPSAMPLE: case REORG: case NORMALIZATION: case CROP: case L2NORM: case LOGXENT:
            break;
        default: *checkable = 0; break;
        }
    }
    return floats * (long long)sizeof(float);
}

/* The header as libdarknet's load_weights reads it: major, minor, revision, then `seen` as a size_t from version 0.2
 * on (an int before). Nothing there is checked by libdarknet: a corrupt `seen` resumes "from image 2^63" with a
 * negative learning rate. */
static int check_weights(const network *net, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return err_set("%s: %s", path, strerror(errno));
    int hdr[3];
    struct stat st;
    if (fread(hdr, sizeof(int), 3, f) != 3 || fstat(fileno(f), &st) != 0) {
        fclose(f);
        return err_set("%s: truncated weights header", path);
    }
    static const char *field[3] = {"major version", "minor version", "revision"};
    for (int i = 0; i < 3; i++)
        if (hdr[i] < 0 || hdr[i] > 1000) {
            fclose(f);
            return err_set("%s: weights header: %s %d is not in 0..1000 (not a darknet weights file?)", path,
                           field[i], hdr[i]);
        }
    int wide = hdr[0] * 10 + hdr[1] >= 2 && hdr[0] < 1000 && hdr[1] < 1000;
    uint64_t seen = 0;
    int32_t seen32 = 0;
    size_t got = wide ? fread(&seen, sizeof seen, 1, f) : fread(&seen32, sizeof seen32, 1, f);
    fclose(f);
    if (got != 1) return err_set("%s: truncated weights header", path);
    if (!wide && seen32 < 0)
        return err_set("%s: weights header: seen %d is negative (version %d.%d keeps it in an int): a corrupt header",
                       path, seen32, hdr[0], hdr[1]);
    if (!wide) seen = (uint64_t)seen32;
    /* 2^48 images is years of training at any speed; more is a corrupt or foreign header */
    if (seen > (uint64_t)1 << 48)
        return err_set("%s: weights header: seen %llu is more than 2^48 images: a corrupt header", path,
                       (unsigned long long)seen);
    long long header = 3 * sizeof(int) + (wide ? sizeof(uint64_t) : sizeof(int32_t));
    int checkable;
    long long want = header + weights_payload(net, &checkable);
    if (!checkable) return 0;
    if (st.st_size < want)
        return err_set("%s: truncated: the network needs %lld bytes, the file has %lld", path, want,
                       (long long)st.st_size);
    if (st.st_size > want)
        return err_set("%s: %lld bytes, but this cfg needs %lld: the weights belong to another network", path,
                       (long long)st.st_size, want);
    return 0;
}

/* Finite weights after loading: a NaN in a file would otherwise surface as a NaN loss much later. */
static int check_finite(const network *net, const char *path)
{
    for (int i = 0; i < net->n; i++) {
        const layer *l = &net->layers[i];
        const float *arrs[2] = {l->weights, l->biases};
        const int lens[2] = {l->nweights, l->type == CONNECTED ? l->outputs : l->n};
        if (l->type != CONVOLUTIONAL && l->type != CONNECTED) continue;
        for (int a = 0; a < 2; a++)
            for (int j = 0; arrs[a] && j < lens[a]; j++)
                if (!(arrs[a][j] == arrs[a][j]) || arrs[a][j] > 3e38f || arrs[a][j] < -3e38f)
                    return err_set("%s: layer %d has a non-finite %s value", path, i, a ? "bias" : "weight");
    }
    return 0;
}

network *netio_load(const char *cfg, const char *weights, int clear, net_extras *extras)
{
    net_extras ex;
    /* before parse_network_cfg, which crashes or allocates without bound on bad values */
    if (cfgcheck_file(cfg) || read_extras(cfg, &ex)) return NULL;
    if (weights && access(weights, R_OK) != 0) {
        err_set("%s: %s", weights, strerror(errno));
        return NULL;
    }
    network *net = parse_network_cfg((char *)cfg);
    if (!net || net->n == 0) {
        err_set("%s: no layers", cfg);
        return NULL;
    }
    /* the library's own sums read through this file's layout: another define set would read other bytes */
    if (net->layers[net->n - 1].outputs != net->outputs) {
        err_set("%s: libdarknet's network layout differs from darknet.h as compiled here (GPU/CUDNN defines)", cfg);
        free_network(net);
        return NULL;
    }
    if (weights) {
        if (check_weights(net, weights)) {
            free_network(net);
            return NULL;
        }
        load_weights(net, (char *)weights);
        if (check_finite(net, weights)) {
            free_network(net);
            return NULL;
        }
    }
    if (clear) *net->seen = 0;
    if (extras) *extras = ex;
    return net;
}

int netio_save(network *net, const char *path)
{
    char tmp[4200];
    /* save_weights exit()s when it cannot open the file and ignores every write error (a full disk left a
     * truncated file behind a "saved" line): it writes to a temporary file opened here first, whose size is then
     * checked against what the network holds and synced before it replaces path. */
    FILE *f = util_open_tmp(path, tmp, sizeof tmp);
    if (!f) return -1;
    fclose(f);
    save_weights(net, tmp);
    int checkable, fd = open(tmp, O_RDONLY);
    long long want = 3 * sizeof(int) + sizeof(size_t) + weights_payload(net, &checkable);
    struct stat st = {.st_size = -1};
    const char *why = NULL;
    if (fd < 0 || fstat(fd, &st) != 0 || fsync(fd) != 0) why = strerror(errno);
    else if (checkable && st.st_size != want) why = "short write (is the disk full?)";
    if (fd >= 0) close(fd);
    if (!why) return util_replace(tmp, path);
    long long got = st.st_size;
    unlink(tmp);
    if (checkable && got >= 0 && got != want)
        return err_set("%s: not saved: %s, %lld of %lld bytes written; the previous file is kept", path, why, got,
                       want);
    return err_set("%s: not saved: %s; the previous file is kept", path, why);
}

aug_params netio_aug_params(const network *net, const net_extras *ex)
{
    aug_params p = {0};
    p.preset = ex->preset;
    p.w = net->w;
    p.h = net->h;
    p.c = net->c;
    p.min_crop = net->min_crop;
    p.max_crop = net->max_crop;
    p.angle = net->angle;
    p.aspect = net->aspect;
    p.hue = net->hue;
    p.saturation = net->saturation;
    p.exposure = net->exposure;
    p.flip = ex->flip;
    p.crop_scale = ex->crop_scale;
    return p;
}

static aug_params with_preset(const network *net, const net_extras *ex, int preset)
{
    aug_params p = netio_aug_params(net, ex);
    if (preset >= 0) p.preset = (enum aug_preset)preset;
    return p;
}

aug_params netio_gen_aug_params(const network *net, const net_extras *ex) { return with_preset(net, ex, ex->gen_preset); }
aug_params netio_tail_aug_params(const network *net, const net_extras *ex) { return with_preset(net, ex, ex->tail_preset); }

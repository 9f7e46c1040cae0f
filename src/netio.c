#include "netio.h"
#include "err.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* Reads the [net] section for the keys darknet's parser drops, checking the first section is [net]. */
static int read_extras(const char *cfg, net_extras *ex)
{
    ex->flip = 1;
    ex->mixup = ex->cutmix = 0;
    ex->label_smooth = 0;
    ex->preset = AUG_DARKNET;
    FILE *f = fopen(cfg, "r");
    if (!f) return err_set("%s: %s", cfg, strerror(errno));
    char line[1024];
    int section = 0, lineno = 0, rc = 0;
    while (rc == 0 && fgets(line, sizeof line, f)) {
        lineno++;
        char *s = util_trim(line);
        if (!*s || *s == '#' || *s == ';') continue;
        if (*s == '[') {
            if (section == 0 && strcmp(s, "[net]") && strcmp(s, "[network]"))
                rc = err_set("%s:%d: the first section must be [net], got %s", cfg, lineno, s);
            if (++section > 1) break;
            continue;
        }
        if (section == 0) {
            rc = err_set("%s:%d: '%s' outside any section", cfg, lineno, s);
            break;
        }
        char *eq = strchr(s, '=');
        if (!eq) continue;
        *eq = 0;
        char *key = util_trim(s), *val = util_trim(eq + 1), *end;
        double v = strtod(val, &end);
        int numeric = end != val && *end == 0;
        if (!strcmp(key, "augment")) {
            if (!strcasecmp(val, "darknet")) ex->preset = AUG_DARKNET;
            else if (!strcasecmp(val, "weak")) ex->preset = AUG_WEAK;
            else if (!strcasecmp(val, "strong")) ex->preset = AUG_STRONG;
            else rc = err_set("%s:%d: augment must be darknet, weak or strong, got '%s'", cfg, lineno, val);
        } else if (!strcmp(key, "flip") || !strcmp(key, "mixup") || !strcmp(key, "cutmix")) {
            if (!numeric || (v != 0 && v != 1))
                rc = err_set("%s:%d: %s must be 0 or 1, got '%s'", cfg, lineno, key, val);
            *(!strcmp(key, "flip") ? &ex->flip : !strcmp(key, "mixup") ? &ex->mixup : &ex->cutmix) = (int)v;
        } else if (!strcmp(key, "label_smooth_eps")) {
            if (!numeric || !(v >= 0 && v < 1)) rc = err_set("%s:%d: label_smooth_eps must be in [0,1), got '%s'", cfg, lineno, val);
            ex->label_smooth = (float)v;
        } else if (!strcmp(key, "batch") || !strcmp(key, "subdivisions") || !strcmp(key, "width") ||
                   !strcmp(key, "height") || !strcmp(key, "channels")) {
            /* darknet accepts 0 or garbage here and fails later with a division by zero or a huge malloc. */
            if (!numeric || v < 1 || v > 65536 || v != (int)v)
                rc = err_set("%s:%d: %s must be a positive integer, got '%s'", cfg, lineno, key, val);
        } else if (!strcmp(key, "learning_rate") || !strcmp(key, "momentum") || !strcmp(key, "decay")) {
            if (!numeric || !(v >= 0) || v != v) rc = err_set("%s:%d: %s must be a non-negative number, got '%s'", cfg, lineno, key, val);
        }
    }
    fclose(f);
    if (rc == 0 && section == 0) rc = err_set("%s: no [net] section", cfg);
    return rc;
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
    fclose(f);
    if (hdr[0] < 0 || hdr[0] > 1000 || hdr[1] < 0 || hdr[1] > 1000)
        return err_set("%s: not a darknet weights file (version %d.%d.%d)", path, hdr[0], hdr[1], hdr[2]);
    long long header = 3 * sizeof(int) + ((hdr[0] * 10 + hdr[1]) >= 2 ? sizeof(size_t) : sizeof(int));
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
    if (read_extras(cfg, &ex)) return NULL;
    if (weights && access(weights, R_OK) != 0) {
        err_set("%s: %s", weights, strerror(errno));
        return NULL;
    }
    network *net = parse_network_cfg((char *)cfg);
    if (!net || net->n == 0) {
        err_set("%s: no layers", cfg);
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
    if (!why && rename(tmp, path) != 0) why = strerror(errno);
    if (why) {
        long long got = st.st_size;
        unlink(tmp);
        if (checkable && got >= 0 && got != want)
            return err_set("%s: not saved: %s, %lld of %lld bytes written; the previous file is kept", path, why,
                           got, want);
        return err_set("%s: not saved: %s; the previous file is kept", path, why);
    }
    return 0;
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
    return p;
}

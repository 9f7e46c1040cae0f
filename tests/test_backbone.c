/* f_theta's live snapshot: a backbone made from the cfg alone and given the trainer's parameters embeds exactly as
 * one loaded from the same weights, the trainer's network is left as it was, and a network of another shape is
 * refused. */
#include "augment/genie/backbone.h"
#include "tests/check.h"
#include "common/err.h"
#include "src/net/netio.h"

#include <stdlib.h>
#include <string.h>

#define CFG "cfg/fmnist.cfg"
#define W "data/models/fmnist-judge.weights"

static size_t checksum_bytes(const network *net, unsigned char **copy)
{
    size_t total = 0;
    for (int i = 0; i < net->n; i++) {
        const layer *l = &net->layers[i];
        if (l->type == CONVOLUTIONAL || l->type == CONNECTED) total += (size_t)l->nweights * sizeof(float);
    }
    *copy = malloc(total);
    size_t off = 0;
    for (int i = 0; i < net->n; i++) {
        const layer *l = &net->layers[i];
        if (l->type != CONVOLUTIONAL && l->type != CONNECTED) continue;
        memcpy(*copy + off, l->weights, (size_t)l->nweights * sizeof(float));
        off += (size_t)l->nweights * sizeof(float);
    }
    return total;
}

int main(void)
{
    net_extras ex;
    network *trainer = netio_load(CFG, W, 0, &ex);
    CHECK(trainer != NULL, "%s", err_msg());
    if (!trainer) return check_done("backbone");
    backbone *fresh = backbone_load(CFG, NULL, -1, 4), *loaded = backbone_load(CFG, W, -1, 4);
    CHECK(fresh && loaded, "%s", err_msg());
    if (!fresh || !loaded) return check_done("backbone");

    img_u8 imgs[4] = {{0}};
    const char *files[4] = {"data/fmnist/images/test/00000_boot.jpg", "data/fmnist/images/test/00001_pullover.jpg",
                            "data/fmnist/images/test/00002_trouser.jpg", "data/fmnist/images/test/00010_coat.jpg"};
    for (int i = 0; i < 4; i++) CHECK(imgio_load(files[i], 0, 0, &imgs[i]) == 0, "%s", err_msg());
    int d = backbone_dim(loaded);
    float *a = malloc(sizeof(float) * 4 * d), *b = malloc(sizeof(float) * 4 * d);
    CHECK(backbone_embed(fresh, imgs, 4, a) == 0 && backbone_embed(loaded, imgs, 4, b) == 0, "%s", err_msg());
    CHECK(memcmp(a, b, sizeof(float) * 4 * d) != 0, "random init and trained weights embed alike: the test is void");

    unsigned char *before, *after;
    size_t n = checksum_bytes(trainer, &before);
    CHECK(backbone_copy_params(fresh, trainer) == 0, "%s", err_msg());
    checksum_bytes(trainer, &after);
    CHECK(memcmp(before, after, n) == 0, "the copy changed the trainer's weights");
    CHECK(backbone_embed(fresh, imgs, 4, a) == 0, "%s", err_msg());
    CHECK(memcmp(a, b, sizeof(float) * 4 * d) == 0, "the snapshot embeds differently from the weights it copied");

    /* a network of another shape: named, nothing half copied matters since it is refused before use */
    CHECK(system("sed -e 's/filters=128/filters=96/' " CFG " > build/test_backbone_other.cfg") == 0, "cfg");
    network *other = netio_load("build/test_backbone_other.cfg", NULL, 0, &ex);
    CHECK(other && backbone_copy_params(fresh, other) == -1 && strstr(err_msg(), "parameters"),
          "another network's parameters accepted: %s", err_msg());
    if (other) free_network(other);
    remove("build/test_backbone_other.cfg");

    for (int i = 0; i < 4; i++) imgio_free(&imgs[i]);
    free(a), free(b), free(before), free(after);
    backbone_free(fresh);
    backbone_free(loaded);
    free_network(trainer);
    return check_done("backbone");
}

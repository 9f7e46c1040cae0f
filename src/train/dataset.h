/* The .data file, the labels and the image list: everything about a data set that is known before training. */
#ifndef GENIE_DATASET_H
#define GENIE_DATASET_H

typedef struct {
    int classes, top;
    char *train, *valid, *labels, *names, *backup;
    /* genie's training recipe for generated samples (all optional; see README "Generated samples"):
     * generated=index.csv     samples made by `genie generate`, labelled with their target class
     * tail_share=S            share of each batch's rows drawn class-balanced from the Few classes (< 20 real
     *                         images): their real images plus their generated samples; with S > 0 generated
     *                         samples enter only there
     * gen_share=G             a tail row of a Few class with generated samples takes one of them with probability
     *                         G, else one of its real images (unset: uniformly over the class's real and
     *                         generated samples together)
     * gen_soft=E              a generated sample's label: 1-E on its target, E on its source's class
     * roundtrip=index.csv     VAE round trips of real images (`genie generate` rows with r 0)
     * roundtrip_p=P           each real image is replaced by its round trip with probability P
     * pair_source=P           with probability P, a generated sample's real source image (when the list holds
     *                         it) takes the other row of its row pair, with the source's label */
    char *generated, *roundtrip;
    char *genie;               /* genie=genie.cfg: online GeNIe during training (augment/genie/genie_cfg.h) */
    double tail_share, gen_share, gen_soft, roundtrip_p, pair_source;
    long long max_pixels;      /* max_pixels=N: larger images are bad images (0: imgio's default, 4096 x 4096) */
} datacfg;

/* Reads a darknet .data file (common/kv.h). Unlike darknet's reader, values keep inner spaces (paths with spaces
 * work) and numbers are range-checked (errors name file:line and the key). An unknown key is one warning on stderr
 * naming file:line and the nearest key, as darknet's option_unused; darknet's keys genie does not use (eval=,
 * results=, map=, ...) are silent. */
int datacfg_read(const char *path, datacfg *d);
void datacfg_free(datacfg *d);

typedef struct {
    int n, classes;
    char **paths;
    int *cls;                  /* class of each path */
    char **labels;             /* classes label strings */
    int *count;                /* images per class */
    int **members;             /* members[c][0..count[c]) = indices of class c, for class-balanced sampling */
    int n_real;                /* paths[0..n_real): the list's real images; then generated samples */
    int *real_count;           /* real images per class (what Many/Medium/Few and the tail go by) */
    int *src_cls;              /* [n] class of a generated sample's source image, -1 when none or real */
    int *src_idx;              /* [n] index of a generated sample's source among the real images, -1 when none,
                                * real, or not in the list */
    char **alt;                /* [n_real] a real image's VAE round trip, or NULL (whole array NULL if none) */
} dataset;

/* Loads labels and the list and gives every path its class. Stops at the first path whose label is missing,
 * unknown or ambiguous, with a message naming the path (and line) and the candidate labels. */
int dataset_load(const char *list_path, const char *labels_path, int classes, dataset *ds);
void dataset_free(dataset *ds);
/* Appends the samples of a `genie generate` index (output,source,target,r,seed,gaps); each output's class is its
 * target label. -1 + err_msg() naming the index and line. */
int dataset_add_generated(dataset *ds, const char *index_path);
/* Attaches round trips from an index of r-0 rows: the output becomes alt[] of the real image named as source. */
int dataset_add_roundtrips(dataset *ds, const char *index_path);

/* The class of one path: the label whose tokens appear as consecutive tokens of the file name (split at
 * non-alphanumerics, case-insensitive), else of the nearest directory name. A label contained in a longer
 * matching label ("boot" inside "ankle_boot") yields to it. Returns the class, or -1 with err_msg(). */
int labels_match(const char *path, char *const *labels, int n);

#endif

/* The .data file, the labels and the image list: everything about a data set that is known before training. */
#ifndef GENIE_DATASET_H
#define GENIE_DATASET_H

typedef struct {
    int classes, top;
    char *train, *valid, *labels, *names, *backup;
} datacfg;

/* Reads a darknet .data file. Unlike darknet's reader, values keep inner spaces (paths with spaces work). */
int datacfg_read(const char *path, datacfg *d);
void datacfg_free(datacfg *d);

typedef struct {
    int n, classes;
    char **paths;
    int *cls;                  /* class of each path */
    char **labels;             /* classes label strings */
    int *count;                /* images per class */
    int **members;             /* members[c][0..count[c]) = indices of class c, for class-balanced sampling */
} dataset;

/* Loads labels and the list and gives every path its class. Stops at the first path whose label is missing,
 * unknown or ambiguous, with a message naming the path (and line) and the candidate labels. */
int dataset_load(const char *list_path, const char *labels_path, int classes, dataset *ds);
void dataset_free(dataset *ds);

/* The class of one path: the label whose tokens appear as consecutive tokens of the file name (split at
 * non-alphanumerics, case-insensitive), else of the nearest directory name. A label contained in a longer
 * matching label ("boot" inside "ankle_boot") yields to it. Returns the class, or -1 with err_msg(). */
int labels_match(const char *path, char *const *labels, int n);

/* Many/Medium/Few groups as ImageNet-LT: > 100 training images, 20..100, < 20. */
enum shot_group { SHOT_MANY, SHOT_MEDIUM, SHOT_FEW };
enum shot_group dataset_shot_group(int count);

#endif

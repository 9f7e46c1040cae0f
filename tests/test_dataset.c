/* Label matching on file-name tokens, .data parsing, and the start-up check of a whole list. */
#include "tests/check.h"
#include "src/train/dataset.h"
#include "augment/genie/recipe.h"
#include "common/err.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void expect_class(char *const *labels, int n, const char *path, int want)
{
    int got = labels_match(path, labels, n);
    CHECK(got == want, "%s: class %d, want %d (%s)", path, got, want, got < 0 ? err_msg() : "");
}

static void expect_error(char *const *labels, int n, const char *path, const char *msg)
{
    int got = labels_match(path, labels, n);
    CHECK(got == -1 && strstr(err_msg(), path) && strstr(err_msg(), msg), "%s: got %d, message '%s' lacks '%s'", path,
          got, got < 0 ? err_msg() : "", msg);
}

/* datacfg_read with stderr going to a file: its rc, and what it warned into warn. */
static int read_warned(const char *path, datacfg *d, char *warn, size_t n)
{
    char wpath[300];
    snprintf(wpath, sizeof wpath, "%s.warn", path);
    fflush(stderr);
    int saved = dup(2), fd = open(wpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 2);
    close(fd);
    int rc = datacfg_read(path, d);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    FILE *f = fopen(wpath, "r");
    size_t got = f ? fread(warn, 1, n - 1, f) : 0;
    if (f) fclose(f);
    warn[got] = 0;
    remove(wpath);
    return rc;
}

int main(void)
{
    /* darknet's strstr matching finds "rain" in "train" and "cat" in "classification". */
    char *weather[] = {"rain", "snow", "sun"};
    expect_class(weather, 3, "data/train/00012_rain.jpg", 0);
    expect_class(weather, 3, "data/train/snow/00012.jpg", 1);
    expect_class(weather, 3, "/data/training sets/sun 003.png", 2);
    expect_error(weather, 3, "data/train/00012.jpg", "no label");
    expect_error(weather, 3, "data/train/rain_or_snow.jpg", "ambiguous");
    char *pets[] = {"cat", "dog"};
    expect_class(pets, 2, "classification/concatenate/dog_17.jpg", 1);
    expect_class(pets, 2, "images/CAT/IMG_0001.JPG", 0);
    /* The file name decides before its directories. */
    expect_class(pets, 2, "cats/dog/cat.1.jpg", 0);
    /* A label nested in a longer matching label yields to it. */
    char *shoes[] = {"boot", "ankle_boot", "sandal"};
    expect_class(shoes, 3, "x/1_ankle_boot.jpg", 1);
    expect_class(shoes, 3, "x/1_boot.jpg", 0);
    expect_class(shoes, 3, "x/ankle-boot-7.png", 1);
    expect_error(shoes, 3, "x/boot_sandal.jpg", "ambiguous");
    /* Substrings inside a token never match: "tee" is not in "steel". */
    char *fm[] = {"tee", "shirt", "bag"};
    expect_error(fm, 3, "data/steel/shirtless.jpg", "no label");
    expect_class(fm, 3, "data/00001_shirt.jpg", 1);

    /* .data files: values keep inner spaces, bad numbers are reported with the line. */
    char dir[] = "build/test_dataset_XXXXXX";
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    char path[256], list[256], labels[256], img[256];
    snprintf(path, sizeof path, "%s/a.data", dir);
    check_write_text(path, "# comment\nclasses = 3\ntrain = my data/train list.txt\nbackup=out dir/\ntop=2\n");
    datacfg d;
    CHECK(datacfg_read(path, &d) == 0 && d.classes == 3 && d.top == 2 && !strcmp(d.train, "my data/train list.txt") &&
              !strcmp(d.backup, "out dir/"),
          "datacfg: %s", err_msg());
    datacfg_free(&d);
    check_write_text(path, "classes=zero\n");
    CHECK(datacfg_read(path, &d) == -1 && strstr(err_msg(), ":1:") && strstr(err_msg(), "classes"), "bad classes: %s",
          err_msg());
    check_write_text(path, "train=x\n");
    CHECK(datacfg_read(path, &d) == -1 && strstr(err_msg(), "classes"), "missing classes: %s", err_msg());
    CHECK(datacfg_read("build/no/such.data", &d) == -1 && strstr(err_msg(), "no/such.data"), "missing .data");
    check_write_text(path, "classes=3\nmax_pixels=1000000\n");
    CHECK(datacfg_read(path, &d) == 0 && d.max_pixels == 1000000, "max_pixels: %s", err_msg());
    datacfg_free(&d);
    check_write_text(path, "classes=3\nmax_pixels=10e6\n");
    CHECK(datacfg_read(path, &d) == -1 && strstr(err_msg(), ":2:") && strstr(err_msg(), "max_pixels"),
          "bad max_pixels: %s", err_msg());
    /* darknet's option_unused: an unknown key is one warning naming file:line and the nearest key, not an error;
     * the keys of darknet's own .data files genie does not use are silent */
    char warn[2048];
    check_write_text(path, "classes=3\nnames=data/x.names\neval=coco\nresults=res\ntail_shar=0.25\nmap=m.list\n"
                     "frobnicate=1\n");
    char want[400];
    snprintf(want, sizeof want, "%s:5: warning: unknown key 'tail_shar' (did you mean 'tail_share'?)", path);
    CHECK(read_warned(path, &d, warn, sizeof warn) == 0 && d.classes == 3 && d.tail_share == 0 &&
              !strcmp(d.names, "data/x.names"),
          "unknown keys: %s", err_msg());
    datacfg_free(&d);
    CHECK(strstr(warn, want) != NULL, "warning '%s' lacks '%s'", warn, want);
    snprintf(want, sizeof want, "%s:7: warning: unknown key 'frobnicate'", path);
    CHECK(strstr(warn, want) != NULL && !strstr(warn, "eval") && !strstr(warn, "results") && !strstr(warn, "map"),
          "warnings: '%s'", warn);
    check_write_text(path, "classes=3\ntop=0\n");
    CHECK(datacfg_read(path, &d) == -1 && strstr(err_msg(), ":2: key 'top' must be an integer in 1..1000000, got '0'"),
          "top=0: %s", err_msg());
    check_write_text(path, "classes=3\ntail_share=1.5\n");
    CHECK(datacfg_read(path, &d) == -1 && strstr(err_msg(), ":2: key 'tail_share' must be a number in [0, 1]"),
          "tail_share=1.5: %s", err_msg());
    CHECK(datacfg_read(dir, &d) == -1 && strstr(err_msg(), "is a directory"), "a directory: %s", err_msg());

    /* A whole list: every path is checked at start-up, the first bad one stops with path and line. */
    snprintf(labels, sizeof labels, "%s/labels.txt", dir);
    check_write_text(labels, "rain\nsnow\nsun\n");
    snprintf(list, sizeof list, "%s/train.txt", dir);
    snprintf(img, sizeof img, "%s/a b/0_rain.jpg\n%s/1_snow.jpg\n\n%s/2_sun.jpg\n%s/3_rain.jpg\n", dir, dir, dir, dir);
    check_write_text(list, img);
    dataset ds;
    CHECK(dataset_load(list, labels, 3, &ds) == 0, "load: %s", err_msg());
    if (ds.paths) {
        CHECK(ds.n == 4 && ds.count[0] == 2 && ds.count[1] == 1 && ds.count[2] == 1, "counts %d %d %d of %d",
              ds.count[0], ds.count[1], ds.count[2], ds.n);
        CHECK(ds.members[0][0] == 0 && ds.members[0][1] == 3, "members of class 0");
        dataset_free(&ds);
    }
    check_write_text(list, "x/0_rain.jpg\nx/1_cloud.jpg\n");
    CHECK(dataset_load(list, labels, 3, &ds) == -1 && strstr(err_msg(), ":2:") && strstr(err_msg(), "1_cloud.jpg"),
          "unknown label: %s", err_msg());
    check_write_text(list, "x/0_rain_snow.jpg\n");
    CHECK(dataset_load(list, labels, 3, &ds) == -1 && strstr(err_msg(), "ambiguous"), "ambiguous: %s", err_msg());
    CHECK(dataset_load(list, labels, 4, &ds) == -1 && strstr(err_msg(), "classes=4"), "class count: %s", err_msg());
    check_write_text(list, "");
    CHECK(dataset_load(list, labels, 3, &ds) == -1 && strstr(err_msg(), "empty"), "empty list: %s", err_msg());

    CHECK(recipe_shot_group(101) == SHOT_MANY && recipe_shot_group(100) == SHOT_MEDIUM &&
              recipe_shot_group(20) == SHOT_MEDIUM && recipe_shot_group(19) == SHOT_FEW,
          "shot groups");
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0, "cleanup");
    return check_done("dataset");
}

/* The CSV files between the commands, through common/csv: `genie plan` writes RFC 4180 rows (a source path with a
 * comma comes back whole through csv_read), reads a confusion CSV only when its labels are the data set's and its
 * counts finite and non-negative (errors by file:line), and `classifier valid` writes its confusion matrix and
 * -predictions so that a path with a comma is one field. */
#include "tests/check.h"
#include "common/csv.h"
#include "common/err.h"
#include "src/cmd/plan.h"
#include "src/net/netio.h"
#include "src/train/classifier.h"
#include "src/train/confusion.h"

#include <stdio.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#define T "build/test_plan"
#define COMMA T "/a,b \"q\""
#define LABELS "tee,trouser,pullover,dress,coat,sandal,shirt,sneaker,bag,boot"

/* libdarknet prints every layer it makes and valid its summary: kept out of the test's output */
static int quiet_begin(void)
{
    fflush(stdout);
    fflush(stderr);
    int saved[2] = {dup(1), dup(2)}, null = open("/dev/null", O_WRONLY);
    dup2(null, 1);
    dup2(null, 2);
    close(null);
    return saved[0] | saved[1] << 16;
}

static void quiet_end(int saved)
{
    fflush(stdout);
    fflush(stderr);
    dup2(saved & 0xffff, 1);
    dup2(saved >> 16, 2);
    close(saved & 0xffff);
    close(saved >> 16);
}

static int run_plan(const char *mode, const char *confusion)
{
    char *argv[] = {T "/lt.data", "-mode", (char *)mode, "-dir", T "/g", "-o", T "/p.csv", "-per-class", "1",
                    "-confusion", (char *)confusion};
    return plan_main(confusion ? 11 : 9, argv);
}

/* A confusion CSV: the header, then 10 rows of counts (diagonal 5), with row `row` replaced when given. */
static void write_confusion(const char *header, int row, const char *replace)
{
    static const char *lab[] = {"tee", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                                "boot"};
    FILE *f = fopen(T "/conf.csv", "w");
    fprintf(f, "%s\n", header);
    for (int t = 0; t < 10; t++) {
        if (t == row) {
            fprintf(f, "%s\n", replace);
            continue;
        }
        fprintf(f, "%s", lab[t]);
        for (int j = 0; j < 10; j++) fprintf(f, ",%d", j == t ? 5 : t == 6 && j == 2 ? 3 : 0);
        fputc('\n', f);
    }
    fclose(f);
}

static void bad_confusion(const char *what, const char *expect)
{
    int rc = run_plan("genie", T "/conf.csv");
    CHECK(rc == -1 && strstr(err_msg(), expect), "%s: rc %d, '%s' lacks '%s'", what, rc, rc ? err_msg() : "", expect);
}

int main(void)
{
    CHECK(system("rm -rf " T " && mkdir -p '" COMMA "'") == 0, "workdir");
    /* a training list with a source whose path holds a comma and quotes */
    CHECK(system("cp data/fmnist/images/train/00047_dress.jpg '" COMMA "/00047_dress.jpg' && "
                 "(cat data/fmnist/lt/train.list; echo '" COMMA "/00047_dress.jpg') > " T "/train.list && "
                 "head -n 20 data/fmnist/test.list > " T "/valid.list && "
                 "cp data/fmnist/images/test/$(basename $(head -n 1 data/fmnist/test.list)) '" COMMA "/' && "
                 "echo '" COMMA "/'$(basename $(head -n 1 data/fmnist/test.list)) >> " T "/valid.list") == 0,
          "fixtures");
    check_write_text(T "/lt.data", "classes=10\ntrain=" T "/train.list\nvalid=" T "/valid.list\n"
                             "labels=data/fmnist/labels.list\nbackup=" T "/backup\n");

    /* roundtrip rows name every training image as a source: the comma path among them, whole */
    CHECK(run_plan("roundtrip", NULL) == 0, "plan roundtrip: %s", err_msg());
    csv_reader r;
    int rows = 0, found = 0, fields_ok = 1, n;
    CHECK(csv_open(&r, T "/p.csv") == 0, "%s", err_msg());
    while ((n = csv_read(&r)) > 0) {
        if (rows++ == 0) {
            CHECK(n == 5 && !strcmp(r.field[0], "source") && !strcmp(r.field[4], "output"), "header");
            continue;
        }
        fields_ok &= n == 5;
        if (n == 5 && !strcmp(r.field[0], COMMA "/00047_dress.jpg")) {
            found++;
            CHECK(!strcmp(r.field[1], "dress") && !strcmp(r.field[2], "0") && !strcmp(r.field[4], T "/g/00047_dress.png"),
                  "row: %s,%s,%s,%s", r.field[1], r.field[2], r.field[3], r.field[4]);
        }
    }
    CHECK(n == 0, "plan CSV: %s", err_msg());
    csv_close(&r);
    CHECK(fields_ok && rows == 2779 && found == 1, "plan: %d rows, all 5 fields %d, the comma path %d times", rows,
          fields_ok, found);

    /* a confusion CSV as classifier valid writes it is read; what is not this data set's is refused by line */
    write_confusion("truth\\predicted," LABELS, -1, NULL);
    CHECK(run_plan("genie", T "/conf.csv") == 0, "good confusion: %s", err_msg());
    write_confusion("truth\\predicted,tee,trouser,pullover,dress,coat,sandal,shirt,sneaker,boot,bag", -1, NULL);
    bad_confusion("columns swapped", T "/conf.csv:1: column 10 is 'boot', but label 8 of the data set is 'bag'");
    write_confusion("truth\\predicted," LABELS, 3, "coat,0,0,0,5,0,0,0,0,0,0");
    bad_confusion("row label", T "/conf.csv:5: row 4 is 'coat', but label 3 of the data set is 'dress'");
    write_confusion("truth\\predicted," LABELS, 6, "shirt,0,0,-3,0,0,0,5,0,0,0");
    bad_confusion("negative count", T "/conf.csv:8: column 4: '-3' is not a count");
    write_confusion("truth\\predicted," LABELS, 6, "shirt,0,0,nan,0,0,0,5,0,0,0");
    bad_confusion("NaN count", T "/conf.csv:8: column 4: 'nan' is not a count");
    write_confusion("truth\\predicted," LABELS, 6, "shirt,0,0,1e999,0,0,0,5,0,0,0");
    bad_confusion("infinite count", T "/conf.csv:8: column 4: '1e999' is not a count");
    write_confusion("truth\\predicted," LABELS, 6, "shirt,0,0,3,0,0,0,5,0,0");
    bad_confusion("short row", T "/conf.csv:8: 10 fields, expected 11");
    write_confusion("truth\\predicted,tee,trouser", -1, NULL);
    bad_confusion("header of another data set", T "/conf.csv:1: 3 fields, expected 11");
    check_write_text(T "/conf.csv", "truth\\predicted," LABELS "\ntee,5,0,0,0,0,0,0,0,0,0\n");
    bad_confusion("too few rows", T "/conf.csv: 1 rows of counts, expected 10");

    /* classifier valid: -predictions and the confusion CSV through csv_put; its confusion CSV feeds plan */
    int q = quiet_begin();
    network *net = netio_load("cfg/fmnist.cfg", NULL, 0, NULL);
    CHECK(net && netio_save(net, T "/w.weights") == 0, "weights: %s", err_msg());
    if (net) free_network(net);
    char *valid[] = {"valid", T "/lt.data", "cfg/fmnist.cfg", T "/w.weights", "-predictions", T "/pred.csv",
                     "-csv", T "/conf.csv", "-threads", "1"};
    int vrc = classifier_main(10, valid);
    quiet_end(q);
    CHECK(vrc == 0, "valid: %s", err_msg());
    rows = found = 0;
    fields_ok = 1;
    CHECK(csv_open(&r, T "/pred.csv") == 0, "%s", err_msg());
    while ((n = csv_read(&r)) > 0) {
        rows++;
        fields_ok &= n == 4;
        if (n == 4 && !strncmp(r.field[0], COMMA "/", strlen(COMMA) + 1)) found++;
    }
    csv_close(&r);
    CHECK(fields_ok && rows == 22 && found == 1, "predictions: %d rows, all 4 fields %d, the comma path %d", rows,
          fields_ok, found);
    CHECK(run_plan("genie", T "/conf.csv") == 0, "valid's confusion CSV read by plan: %s",
          err_msg());

    /* a label with a comma round-trips through the confusion writer */
    confusion c;
    confusion_init(&c, 2, 1);
    char *lab[] = {"t-shirt, top", "say \"x\""};
    CHECK(confusion_write_csv(&c, lab, T "/two.csv") == 0, "%s", err_msg());
    confusion_free(&c);
    CHECK(csv_open(&r, T "/two.csv") == 0 && csv_read(&r) == 3 && !strcmp(r.field[1], lab[0]) &&
              !strcmp(r.field[2], lab[1]) && csv_read(&r) == 3 && !strcmp(r.field[0], lab[0]),
          "labels with a comma and quotes: %s", err_msg());
    csv_close(&r);
    return check_done("plan");
}

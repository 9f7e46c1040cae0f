/* End to end through the real binary on real Fashion-MNIST: a short run reaches a stated accuracy, a seed
 * reproduces a run, resuming continues `seen`, valid reports Many/Medium/Few on Fashion-MNIST-LT, and bad
 * inputs stop with a message naming the file. */
#include "tests/check.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define T "build/test_trainer"

static void head_lines(const char *src, const char *dst, int n)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "head -n %d %s > %s", n, src, dst);
    if (system(cmd) != 0) fprintf(stderr, "cannot write %s\n", dst);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

static uint64_t weights_seen(const char *path)
{
    FILE *f = fopen(path, "rb");
    int hdr[3];
    uint64_t seen = 0;
    if (f && fread(hdr, sizeof hdr, 1, f) == 1 && fread(&seen, sizeof seen, 1, f) == 1) {
    }
    if (f) fclose(f);
    return seen;
}

static int same_file(const char *a, const char *b)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "cmp -s %s %s", a, b);
    return system(cmd) == 0;
}

int main(void)
{
    static char out[1 << 16];
    if (access("data/fmnist/train.list", R_OK) != 0)
        CHECK(check_sh("$G prepare fmnist data/fmnist", out, sizeof out) == 0, "prepare: %s", out);
    mkdir("build", 0755);
    CHECK(system("rm -rf " T " && mkdir -p " T) == 0, "workdir");
    /* 6000 training images (the list is in data set order, so classes are mixed), 1000 test images. */
    head_lines("data/fmnist/train.list", T "/train.list", 6000);
    head_lines("data/fmnist/test.list", T "/test.list", 1000);
    write_file(T "/fm.data", "classes=10\ntrain=" T "/train.list\nvalid=" T "/test.list\n"
                             "labels=data/fmnist/labels.list\nbackup=" T "/backup\ntop=2\n");
    write_file(T "/lt.data", "classes=10\ntrain=data/fmnist/lt/train.list\nvalid=" T "/test.list\n"
                             "labels=data/fmnist/labels.list\nbackup=" T "/backup\n");
    /* cfg/fmnist.cfg with a schedule for 150 iterations. */
    CHECK(system("sed -e 's/^max_batches=.*/max_batches=150/' -e 's/^burn_in=.*/burn_in=20/' cfg/fmnist.cfg > " T
                 "/fm.cfg") == 0, "cfg");

    int rc = check_sh("$G classifier train " T "/fm.data " T "/fm.cfg -seed 3", out, sizeof out);
    CHECK(rc == 0 && strstr(out, "img/s") && strstr(out, "data wait"), "train exit %d: %s", rc, out);
    CHECK(weights_seen(T "/backup/fm.weights") == 150 * 128, "seen %llu after 150 iterations",
          (unsigned long long)weights_seen(T "/backup/fm.weights"));
    CHECK(access(T "/backup/fm_1.weights", R_OK) == 0 && access(T "/backup/fm_3.weights", R_OK) == 0,
          "per-epoch weights missing");
    rc = check_sh("$G classifier valid " T "/fm.data " T "/fm.cfg " T "/backup/fm.weights", out, sizeof out);
    float top1 = 0;
    char *p = strstr(out, "top-1: ");
    if (p) top1 = strtof(p + 7, NULL);
    printf("short run (150 iterations on 6000 images): top-1 %.4f on 1000 test images\n", top1);
    CHECK(rc == 0 && top1 >= 0.80f, "top-1 %.4f < 0.80 after 150 iterations: %s", top1, out);
    CHECK(access(T "/backup/fm_confusion.csv", R_OK) == 0, "confusion CSV missing");

    /* -predictions: a row per test image whose top-1 agrees with the summary's and with `classifier predict`
     * (one image through a batch-1 network, not the loader's batches) */
    rc = check_sh("$G classifier valid " T "/fm.data " T "/fm.cfg " T "/backup/fm.weights -predictions " T "/pred.csv",
                  out, sizeof out);
    CHECK(rc == 0 && strstr(out, "predictions: "), "-predictions: %d %s", rc, out);
    FILE *pf = fopen(T "/pred.csv", "r");
    char line[4096], first[4096] = "", first_pred[64] = "";
    int rows = 0, hits = 0, header = pf && fgets(line, sizeof line, pf) && !strcmp(line, "image,truth,predicted,p\n");
    while (pf && fgets(line, sizeof line, pf)) {
        char img[4096], truth[64], pred[64];
        float prob;
        if (sscanf(line, "%4095[^,],%63[^,],%63[^,],%f", img, truth, pred, &prob) != 4 || !(prob > 0 && prob <= 1)) break;
        if (!rows++) snprintf(first, sizeof first, "%s", img), snprintf(first_pred, sizeof first_pred, "%s", pred);
        hits += !strcmp(truth, pred);
    }
    if (pf) fclose(pf);
    CHECK(header && rows == 1000 && hits == (int)(top1 * 1000 + 0.5), "predictions: header %d, %d rows, %d hits, top-1 %.4f",
          header, rows, hits, top1);
    snprintf(line, sizeof line, "$G classifier predict " T "/fm.data " T "/fm.cfg " T "/backup/fm.weights %s", first);
    rc = check_sh(line, out, sizeof out);
    char *top = strstr(out, "%: "), want[80];
    snprintf(want, sizeof want, "%%: %s\n", first_pred);
    CHECK(rc == 0 && top && !strncmp(top, want, strlen(want)),
          "predict %s says other than valid's %s: %s", first, first_pred, out);
    rc = check_sh("$G classifier valid " T "/fm.data " T "/fm.cfg " T "/backup/fm.weights -predictions " T
                  "/no/such/dir/pred.csv", out, sizeof out);
    CHECK(rc == 1 && strstr(out, "no/such/dir/pred.csv"), "-predictions into a missing folder: %d %s", rc, out);

    /* A seed reproduces a run bit for bit; another seed does not. */
    CHECK(check_sh("$G classifier train " T "/fm.data " T "/fm.cfg -seed 5 -iters 4 && cp " T "/backup/fm.weights " T
             "/a.weights && $G classifier train " T "/fm.data " T "/fm.cfg -seed 5 -iters 4 -threads 1 && cp " T
             "/backup/fm.weights " T "/b.weights && $G classifier train " T "/fm.data " T
             "/fm.cfg -seed 6 -iters 4 && cp " T "/backup/fm.weights " T "/c.weights",
             out, sizeof out) == 0,
          "seed runs: %s", out);
    CHECK(same_file(T "/a.weights", T "/b.weights"), "same seed, 2 vs 1 loader threads: different weights");
    CHECK(!same_file(T "/a.weights", T "/c.weights"), "different seeds gave the same weights");

    /* ... and on any machine: compute pools of 1 to 4 threads give the same weights. */
    CHECK(check_sh("for b in 1 3 4; do $G classifier train " T "/fm.data " T "/fm.cfg -seed 5 -iters 4 -blas-threads $b && "
             "cmp " T "/backup/fm.weights " T "/a.weights || exit 1; done",
             out, sizeof out) == 0,
          "same seed, compute pools of 1, 3, 4 threads vs the default: different weights: %s", out);

    /* Resume: 4 iterations with a backup every 2, then 3 more from the backup: seen continues. */
    rc = check_sh("$G classifier train " T "/fm.data " T "/fm.cfg -iters 4 -backup 2 && $G classifier train " T
            "/fm.data " T "/fm.cfg " T "/backup/fm.backup -iters 3",
            out, sizeof out);
    CHECK(rc == 0 && weights_seen(T "/backup/fm.weights") == 7 * 128, "resume: seen %llu, want %d: %s",
          (unsigned long long)weights_seen(T "/backup/fm.weights"), 7 * 128, out);
    CHECK(strstr(out, "from image 512"), "resume did not start at image 512: %s", out);

    /* A save that cannot be completed (here a file-size limit below the weights' size, as a full disk) fails
     * the run, names the file and leaves the previous weights as they were. */
    CHECK(system("cp " T "/backup/fm.weights " T "/before.weights") == 0, "cp");
    rc = check_sh("ulimit -f 600; $G classifier train " T "/fm.data " T "/fm.cfg " T "/backup/fm.weights -iters 1",
            out, sizeof out);
    CHECK(rc == 1 && strstr(out, "fm.weights: not saved") && strstr(out, "previous file is kept") &&
              !strstr(out, "saved " T),
          "save past a file-size limit: %d %s", rc, out);
    CHECK(same_file(T "/backup/fm.weights", T "/before.weights"), "a failed save changed the previous weights");
    CHECK(system("ls " T "/backup | grep -q tmp") != 0, "a failed save left a temporary file");

    /* predict: the top classes of one test image, by name. */
    rc = check_sh("$G classifier predict " T "/fm.data " T "/fm.cfg " T "/backup/fm_3.weights data/fmnist/images/test/00001_pullover.jpg",
            out, sizeof out);
    CHECK(rc == 0 && strstr(out, "00001_pullover.jpg:") && strstr(out, "%: pullover"), "predict: %d %s", rc, out);

    /* Ctrl-C: the run stops and leaves a loadable backup; -topk validates during training. */
    CHECK(system("rm -f " T "/backup/fm.backup") == 0, "rm");
    /* The signal goes after the first iteration line: before the handler is installed a background job of a
     * non-interactive shell ignores SIGINT. */
    rc = check_sh("$G classifier train " T "/fm.data " T "/fm.cfg -backup 0 > " T "/int.log 2>&1 & pid=$!; n=0; "
            "until grep -q img/s " T "/int.log || [ $n -gt 600 ]; do sleep 0.1; n=$((n+1)); done; "
            "kill -INT $pid; wait $pid; s=$?; cat " T "/int.log; exit $s",
            out, sizeof out);
    CHECK(rc == 130 && strstr(out, "interrupted: saving") && access(T "/backup/fm.backup", R_OK) == 0 &&
              weights_seen(T "/backup/fm.backup") > 0,
          "SIGINT: %d %s", rc, out);
    /* SIGTERM the same way, with the shell's 128 + 15 */
    CHECK(system("rm -f " T "/backup/fm.backup") == 0, "rm");
    rc = check_sh("$G classifier train " T "/fm.data " T "/fm.cfg -backup 0 > " T "/term.log 2>&1 & pid=$!; n=0; "
            "until grep -q img/s " T "/term.log || [ $n -gt 600 ]; do sleep 0.1; n=$((n+1)); done; "
            "kill -TERM $pid; wait $pid; s=$?; cat " T "/term.log; exit $s",
            out, sizeof out);
    CHECK(rc == 143 && strstr(out, "interrupted: saving") && weights_seen(T "/backup/fm.backup") > 0,
          "SIGTERM: %d %s", rc, out);
    rc = check_sh("sed -e 's/^max_batches=.*/max_batches=200/' " T "/fm.cfg > " T "/k.cfg && $G classifier train " T
            "/fm.data " T "/k.cfg -topk -iters 200",
            out, sizeof out);
    CHECK(rc == 0 && strstr(out, "valid after 200: top-1"), "-topk: %d %s", rc, out);

    /* valid on Fashion-MNIST-LT: the training list's counts give Many/Medium/Few. */
    rc = check_sh("$G classifier valid " T "/lt.data " T "/fm.cfg " T "/backup/fm_1.weights", out, sizeof out);
    CHECK(rc == 0 && strstr(out, "Many (>100)") && strstr(out, "Medium (20-100)") && strstr(out, "Few (<20)"),
          "no Many/Medium/Few: %s", out);

    /* Bad inputs: clear messages naming the file, non-zero exit, no crash. */
    CHECK(system("head -c 1000 " T "/backup/fm.weights > " T "/trunc.weights") == 0, "truncate");
    rc = check_sh("$G classifier valid " T "/fm.data " T "/fm.cfg " T "/trunc.weights", out, sizeof out);
    CHECK(rc == 1 && strstr(out, "trunc.weights") && strstr(out, "truncated"), "truncated weights: %d %s", rc, out);
    CHECK(system("sed -e 's/filters=128/filters=96/' " T "/fm.cfg > " T "/other.cfg") == 0, "cfg");
    rc = check_sh("$G classifier valid " T "/fm.data " T "/other.cfg " T "/backup/fm.weights", out, sizeof out);
    CHECK(rc == 1 && strstr(out, "another network"), "mismatched weights: %d %s", rc, out);
    rc = check_sh("$G classifier train " T "/fm.data " T "/missing.cfg", out, sizeof out);
    CHECK(rc == 1 && strstr(out, "missing.cfg"), "missing cfg: %d %s", rc, out);
    /* A misspelled flag or a bad number stops the command before it starts; it is never skipped or read as 0. */
    rc = check_sh("$G classifier train " T "/fm.data " T "/fm.cfg -iter 1 -thread 1", out, sizeof out);
    CHECK(rc == 1 && strstr(out, "unknown option -iter") && !strstr(out, "img/s"), "misspelled flag: %d %s", rc, out);
    rc = check_sh("$G classifier train " T "/fm.data " T "/fm.cfg -seed abc -iters 1", out, sizeof out);
    CHECK(rc == 1 && strstr(out, "-seed \"abc\""), "-seed abc: %d %s", rc, out);
    rc = check_sh("$G txt2img -p x -o " T "/x.png -seed -1", out, sizeof out);
    CHECK(rc == 1 && strstr(out, "-seed \"-1\" is not an unsigned integer"), "-seed -1: %d %s", rc, out);
    CHECK(system("sed -e 's/^batch=.*/batch=0/' cfg/fmnist.cfg > " T "/zero.cfg") == 0, "cfg");
    rc = check_sh("$G classifier train " T "/fm.data " T "/zero.cfg", out, sizeof out);
    CHECK(rc == 1 && strstr(out, "zero.cfg") && strstr(out, "batch"), "batch=0: %d %s", rc, out);
    write_file(T "/bad.data", "classes=10\ntrain=" T "/bad.list\nlabels=data/fmnist/labels.list\n");
    write_file(T "/bad.list", "data/fmnist/images/train/00000_boot.jpg\nimages/123_shirt_tee.jpg\n");
    rc = check_sh("$G classifier train " T "/bad.data cfg/fmnist.cfg", out, sizeof out);
    CHECK(rc == 1 && strstr(out, "bad.list:2") && strstr(out, "ambiguous"), "ambiguous label: %d %s", rc, out);
    write_file(T "/five.data", "classes=5\ntrain=" T "/train.list\nlabels=data/fmnist/labels.list\n");
    rc = check_sh("$G classifier train " T "/five.data cfg/fmnist.cfg", out, sizeof out);
    CHECK(rc == 1 && strstr(out, "labels.list"), "classes mismatch: %d %s", rc, out);
    /* bench-loader never hands a list entry to libdarknet's load_data, which runs a shell on an unreadable one. */
    CHECK(system("rm -f PWNED bad.list") == 0, "rm");
    write_file(T "/evil.list", T "/evil/00001_sneaker;touch PWNED;.jpg\n");
    write_file(T "/evil.data", "classes=10\ntrain=" T "/evil.list\nlabels=data/fmnist/labels.list\n");
    rc = check_sh("$G bench-loader " T "/evil.data " T "/fm.cfg -batches 1", out, sizeof out);
    CHECK(rc == 1 && strstr(out, "evil.list") && strstr(out, "shell") && access("PWNED", F_OK) != 0 &&
              access("bad.list", F_OK) != 0,
          "bench-loader on a list entry with shell characters: %d %s", rc, out);
    CHECK(system("rm -f PWNED bad.list") == 0, "rm");
    return check_done("trainer");
}

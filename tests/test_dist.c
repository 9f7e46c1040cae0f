/* genie generate split over MPI ranks (common/dist.h, src/cmd/generate.c): under `mpirun -np 2` every image is
 * byte for byte the one a single process makes for its row and the index is the same file; a rank killed mid-run
 * leaves a plan that a rerun completes to that same result; a start that fails at rank 0 (the index locked by
 * another run) ends every rank.
 * Online GeNIe with generator ranks (augment/genie/remote.h): a sync=1 GeNIe-Ada fine-tuning under `mpirun -np 3`
 * (rank 0 trains, ranks 1 and 2 generate) gives the weights of the same run in one process, byte for byte; so does
 * one whose rank 2 is killed mid-run (--enable-recovery), which reports the rank and ends.
 * Needs mpirun and a genie built with MPI: skipped with a line saying so otherwise. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tests/check.h"

#define DIR "build/tests/dist"
/* LeakSanitizer off in the ranks (make asan): Open MPI leaves its own allocations behind in components it unloads,
 * which no suppression can name; the single-process run checks genie's generate path for leaks */
#define MPIRUN "env LSAN_OPTIONS=detect_leaks=0 timeout 300 mpirun --oversubscribe --allow-run-as-root -np 2"
/* a dozen rows of img2img and txt2img in engine batches of 2 (a row's bytes depend on its place in its batch): a few
 * seconds on one core */
#define GEN " generate " DIR "/p.csv -labels data/fmnist/labels.list -steps 8 -batch 2 -threads 1"

static char out[16384];

/* sync=1 GeNIe-Ada fine-tuning, 10 iterations: a learning rate hot enough that f_theta's snapshots (every 2
 * iterations) change which r Ada keeps, so a generator rank that used a stale snapshot trains other weights */
#define ONLINE_DIR DIR "/online"
#define TRAIN " classifier train " ONLINE_DIR "/t.data " ONLINE_DIR "/hot.cfg data/models/fmnist-judge.weights -clear " \
              "-seed 2 -iters 10 -threads 1 -genie " ONLINE_DIR "/g.cfg"
#define MPIRUN3 "env LSAN_OPTIONS=detect_leaks=0 timeout 300 mpirun --oversubscribe --allow-run-as-root -np 3"

static void online(void)
{
    system("rm -rf " ONLINE_DIR " && mkdir -p " ONLINE_DIR);
    FILE *f = fopen(ONLINE_DIR "/t.data", "w");
    CHECK(f != NULL, "cannot write the .data");
    if (!f) return;
    fprintf(f, "classes=10\ntrain=data/fmnist/lt/train.list\nlabels=data/fmnist/labels.list\nbackup=" ONLINE_DIR
               "/bk\ntail_share=0.25\n");
    fclose(f);
    f = fopen(ONLINE_DIR "/g.cfg", "w");
    fprintf(f, "[genie]\nmode=genie-ada\nr_set=0.3,0.6,0.9\nsteps=8\nwarmup=0\nshare=0.5\nreuse=2\nring=16\n"
               "snapshot_every=2\nquota=20\nbatch=4\nsync=1\nworker_timeout=10\n");
    fclose(f);
    CHECK(check_sh("sed 's/^learning_rate=.*/learning_rate=0.1/' cfg/fmnist-ft.cfg > " ONLINE_DIR "/hot.cfg", out,
                   sizeof out) == 0, "%s", out);
    const char *w = ONLINE_DIR "/bk/hot.weights";

    /* one process: the reference */
    int rc = check_sh("$G" TRAIN " && cp " ONLINE_DIR "/bk/hot.weights " ONLINE_DIR "/ref.weights", out, sizeof out);
    CHECK(rc == 0 && strstr(out, "rows served, 0 short"), "one process: %s", out);

    /* ranks 1 and 2 make rank 0's requests: the same weights */
    system("rm -rf " ONLINE_DIR "/bk");
    rc = check_sh(MPIRUN3 " $G" TRAIN, out, sizeof out);
    CHECK(rc == 0 && strstr(out, "2 generator ranks make the requests") && strstr(out, "rows served, 0 short"),
          "three ranks: %s", out);
    char cmp[256];
    snprintf(cmp, sizeof cmp, "cmp %s " ONLINE_DIR "/ref.weights", w);
    CHECK(check_sh(cmp, out, sizeof out) == 0, "three ranks trained other weights: %s", out);

    /* rank 2 killed once 4 iterations are trained: given up after worker_timeout, its request made by rank 1,
     * and still the same weights; mpirun ends (the bound: timeout) with status 0 */
    system("rm -rf " ONLINE_DIR "/bk");
    rc = check_sh("{ env LSAN_OPTIONS=detect_leaks=0 timeout 120 mpirun --oversubscribe --allow-run-as-root "
                  "--enable-recovery -np 3 $G" TRAIN " > " ONLINE_DIR "/killed.log 2>&1 & m=$!; n=0; "
                  "until [ \"$(cat " ONLINE_DIR "/bk/hot_log.csv 2>/dev/null | wc -l)\" -ge 5 ] || [ $n -gt 2400 ]; do "
                  "sleep 0.05; n=$((n + 1)); done; "
                  "k=no; for p in $(pgrep -P $(pgrep -P $m)); do "
                  "grep -qz '^OMPI_COMM_WORLD_RANK=2$' /proc/$p/environ && kill -9 $p && k=yes; done; wait $m; s=$?; "
                  "grep -v '^[0-9]*, \\|^ *[0-9]* [a-z]\\|^layer' " ONLINE_DIR "/killed.log; "
                  "echo \"killed rank 2: $k; mpirun: $s\"; }",
                  out, sizeof out);
    CHECK(strstr(out, "killed rank 2: yes; mpirun: 0") && strstr(out, "generator rank 2 given up with sample") &&
              strstr(out, "rows served, 0 short"), "rank 2 killed: %s", out);
    CHECK(check_sh(cmp, out, sizeof out) == 0, "with rank 2 killed, other weights: %s", out);
}

/* The md5 of each output and of the index, one line (what a rerun must give again). */
static void sums(char *s, size_t n)
{
    check_sh("cd " DIR " && md5sum g/*.png p.csv.index.csv", s, n);
}

int main(void)
{
    if (check_sh("command -v mpirun", out, sizeof out) != 0) {
        printf("skipped: no mpirun (apt-get install openmpi-bin libopenmpi-dev, then make)\n");
        return check_done("test_dist");
    }
    system("rm -rf " DIR " && mkdir -p " DIR);
    FILE *f = fopen(DIR "/p.csv", "w");
    CHECK(f != NULL, "cannot write the plan");
    if (!f) return check_done("test_dist");
    fprintf(f, "source,target,r,seed,output\n");
    const char *src[] = {"00000_boot", "00001_pullover", "00002_trouser", "00003_trouser", "00004_shirt",
                         "00005_trouser", "00006_coat", "00007_shirt", "00008_sandal", "00009_sneaker"};
    for (int i = 0; i < 12; i++) {
        if (i % 6 == 5) fprintf(f, ",shirt,1,%d," DIR "/g/%02d.png\n", 100 + i, i);   /* txt2img */
        else fprintf(f, "data/fmnist/images/test/%s.jpg,%s,0.7,%d," DIR "/g/%02d.png\n", src[i % 10],
                     i % 2 ? "shirt" : "coat", 100 + i, i);
    }
    fclose(f);

    /* a single process: the reference */
    int rc = check_sh("$G" GEN, out, sizeof out);
    CHECK(rc == 0 && strstr(out, "made 12 images"), "one process: %s", out);
    char ref[4096], got[4096];
    sums(ref, sizeof ref);
    CHECK(strstr(ref, "p.csv.index.csv") && strstr(ref, "g/11.png"), "%s", ref);

    /* two ranks, from nothing */
    system("rm -rf " DIR "/g " DIR "/p.csv.index.csv*");
    rc = check_sh(MPIRUN " $G" GEN, out, sizeof out);
    if (rc != 0 && strstr(out, "built without MPI")) {
        printf("skipped: this genie is built without MPI (make MPI=1 with libopenmpi-dev installed)\n");
        return check_done("test_dist");
    }
    CHECK(rc == 0 && strstr(out, "split over the ranks") && strstr(out, "rank 0 of 2: made 6 images") &&
              strstr(out, "rank 1 of 2: made 6 images"), "two ranks: %s", out);
    sums(got, sizeof got);
    CHECK(!strcmp(ref, got), "two ranks made other files:\n%s\none process:\n%s", got, ref);
    CHECK(check_sh("test ! -e " DIR "/p.csv.index.csv.parts", out, sizeof out) == 0, "the parts are left");

    /* rank 1 killed once both ranks have made an image; the job ends, and a rerun completes the plan */
    system("rm -rf " DIR "/g " DIR "/p.csv.index.csv*");
    rc = check_sh("{ " MPIRUN " $G" GEN " > " DIR "/killed.log 2>&1 & m=$!; n=0; "
                  "until [ $(ls " DIR "/g 2>/dev/null | grep -c 'png$') -ge 3 ] || [ $n -gt 1200 ]; do sleep 0.05; "
                  "n=$((n + 1)); done; r0=$(cat " DIR "/p.csv.index.csv.lock); "
                  "for p in $(pgrep -P $m); do [ \"$p\" = \"$r0\" ] || kill -9 $p; done; wait $m; echo \"mpirun: $?\"; }",
                  out, sizeof out);
    CHECK(strstr(out, "mpirun: ") && !strstr(out, "mpirun: 0"), "the job goes on without rank 1: %s", out);
    rc = check_sh("ls " DIR "/g | grep -c 'png$'", out, sizeof out);
    int left = 12 - atoi(out);
    CHECK(left > 0, "the kill came after the whole plan was made (%d left): the check is void", left);
    rc = check_sh(MPIRUN " $G" GEN, out, sizeof out);
    CHECK(rc == 0 && strstr(out, "already made") && !strstr(out, " 0 already made"), "the rerun: %s", out);
    sums(got, sizeof got);
    CHECK(!strcmp(ref, got), "the rerun made other files:\n%s\none process:\n%s", got, ref);
    CHECK(check_sh("test ! -e " DIR "/p.csv.index.csv.parts", out, sizeof out) == 0, "the parts are left");

    /* the index locked by another run: rank 0 stops at the start, and so does rank 1 (no hang) */
    system("rm -rf " DIR "/g " DIR "/p.csv.index.csv*");
    rc = check_sh("flock " DIR "/p.csv.index.csv.lock " MPIRUN " $G" GEN, out, sizeof out);
    CHECK(rc != 0 && rc != 124 && strstr(out, "in use by another run") && strstr(out, "another rank stopped"),
          "locked: %d %s", rc, out);

    online();
    return check_done("test_dist");
}

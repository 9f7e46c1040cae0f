/* genie generate split over MPI ranks (common/dist.h, src/cmd/generate.c): under `mpirun -np 2` every image is
 * byte for byte the one a single process makes for its row and the index is the same file; a rank killed mid-run
 * leaves a plan that a rerun completes to that same result; a start that fails at rank 0 (the index locked by
 * another run) ends every rank. Needs mpirun and a genie built with MPI: skipped with a line saying so otherwise. */
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
    return check_done("test_dist");
}

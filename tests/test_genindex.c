/* The index of generated images (augment/genie/genindex.h): rows written and read back through RFC 4180 (paths with
 * commas, quotes, newlines), genie generate's former format read by its header, an unknown header refused naming
 * the file, a last line cut short reported and not returned, a FIFO refused without waiting, the run lock naming
 * its holder's pid, whole and damaged PNGs, path normalisation, the gaps field. */
#include "tests/check.h"
#include "augment/genie/genindex.h"
#include "common/err.h"
#include "common/imgio.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DIR "build/tests/genindex"

int main(void)
{
    system("rm -rf " DIR);
    mkdir("build/tests", 0755);
    mkdir(DIR, 0755);
    const char *ix = DIR "/index.csv";

    /* written by genindex_append / genindex_put, read back field for field */
    FILE *f = genindex_append(ix);
    CHECK(f != NULL, "%s", err_msg());
    genindex_row a = {{"o/a,\"b\".png", "s/x_coat.jpg", "shirt", "coat", "0.8", "12", "0.10000;0.20000", "0badf00d"}};
    genindex_row b = {{"o/b\nc.png", NULL, "tee", "", "1", "3", "", "0badf00d"}};
    if (f) {
        genindex_put(f, &a);
        char *line = genindex_line(&b);
        CHECK(line && line[strlen(line) - 1] == '\n', "genindex_line");
        if (line) fputs(line, f);
        free(line);
        CHECK(genindex_sync(f, ix) == 0, "%s", err_msg());
        fclose(f);
    }
    genindex_reader rd;
    genindex_row row;
    CHECK(genindex_open(&rd, ix) == 0 && !rd.former, "%s", err_msg());
    int n = 0, same = 1;
    while (genindex_read(&rd, &row) > 0) {
        const genindex_row *w = n == 0 ? &a : &b;
        for (int k = 0; k < GX_N; k++) same &= !strcmp(row.f[k], w->f[k] ? w->f[k] : "");
        n++;
    }
    CHECK(n == 2 && same && rd.torn_line == 0 && rd.line == 3, "round trip: %d rows, same %d, last line %d", n, same,
          rd.line);
    genindex_close(&rd);

    /* a last line cut short: not returned, its line and the end of the whole lines reported */
    check_write_text(ix, GENINDEX_HEADER "\na.png,,tee,,1,1,,00000000\nb.png,,te");
    CHECK(genindex_open(&rd, ix) == 0, "%s", err_msg());
    n = 0;
    while (genindex_read(&rd, &row) > 0) n++;
    CHECK(n == 1 && rd.torn_line == 3 && rd.good_end == (long)strlen(GENINDEX_HEADER "\na.png,,tee,,1,1,,00000000\n"),
          "torn: %d rows, torn line %d, good end %ld", n, rd.torn_line, rd.good_end);
    genindex_close(&rd);

    /* genie generate's former index: read by its header's names, the missing columns empty */
    check_write_text(ix, "output,source,target,r,seed,gaps\ng/1.png,s/1_coat.jpg,shirt,0.7,5,0.1;0.2\n");
    CHECK(genindex_open(&rd, ix) == 0 && rd.former, "%s", err_msg());
    CHECK(genindex_read(&rd, &row) == 1 && !strcmp(row.f[GX_OUTPUT], "g/1.png") && !strcmp(row.f[GX_TARGET], "shirt") &&
              !strcmp(row.f[GX_R], "0.7") && !strcmp(row.f[GX_GAPS], "0.1;0.2") && !*row.f[GX_SOURCE_CLASS] &&
              !*row.f[GX_SETTINGS], "former format: %s %s", row.f[GX_OUTPUT], row.f[GX_R]);
    genindex_close(&rd);

    /* an unknown header (the module cache's former headerless lines too), a short row: named with their line */
    check_write_text(ix, "00000001_1234abcd_coat.png,coat,shirt,0.8,1234abcd\n");
    CHECK(genindex_open(&rd, ix) < 0 && strstr(err_msg(), DIR "/index.csv:1") && strstr(err_msg(), "header"), "%s",
          err_msg());
    check_write_text(ix, GENINDEX_HEADER "\nonly.png\n");
    CHECK(genindex_open(&rd, ix) == 0, "%s", err_msg());
    CHECK(genindex_read(&rd, &row) < 0 && strstr(err_msg(), "index.csv:2"), "%s", err_msg());
    genindex_close(&rd);
    CHECK(genindex_open(&rd, DIR "/none.csv") == 1, "a missing index is empty");

    /* a FIFO (or any non-regular file) is refused at once, naming it */
    unlink(ix);
    CHECK(mkfifo(ix, 0644) == 0, "mkfifo");
    alarm(20);   /* a reader that waited for a writer would hang here */
    CHECK(genindex_open(&rd, ix) < 0 && strstr(err_msg(), ix) && strstr(err_msg(), "not a regular file"), "%s",
          err_msg());
    CHECK(genindex_append(ix) == NULL && strstr(err_msg(), "not a regular file"), "%s", err_msg());
    alarm(0);
    unlink(ix);

    /* the run lock: a second holder is refused, told the first one's pid; released on unlock */
    int l1 = genindex_lock(ix);
    CHECK(l1 >= 0, "%s", err_msg());
    char pid[32];
    snprintf(pid, sizeof pid, "pid %ld", (long)getpid());
    CHECK(genindex_lock(ix) < 0 && strstr(err_msg(), pid) && strstr(err_msg(), "index.csv"), "%s", err_msg());
    genindex_unlock(l1);
    int l2 = genindex_lock(ix);
    CHECK(l2 >= 0, "lock after unlock: %s", err_msg());
    genindex_unlock(l2);

    /* whole PNGs: one imgio_write makes is; cut short, garbage, empty, missing are not */
    unsigned char rgb[8 * 8 * 3];
    for (int i = 0; i < (int)sizeof rgb; i++) rgb[i] = (unsigned char)(i * 7);
    CHECK(imgio_write(DIR "/w.png", rgb, 8, 8, 0) == 0, "%s", err_msg());
    CHECK(genindex_png_whole(DIR "/w.png"), "a whole PNG");
    CHECK(system("head -c 60 " DIR "/w.png > " DIR "/t.png && echo garbage > " DIR "/g.png && : > " DIR "/e.png") == 0,
          "sh");
    CHECK(!genindex_png_whole(DIR "/t.png") && !genindex_png_whole(DIR "/g.png") && !genindex_png_whole(DIR "/e.png") &&
              !genindex_png_whole(DIR "/none.png") && !genindex_png_whole(DIR),
          "damaged PNGs count as whole");

    /* paths: one output, however the plan spells it */
    const char *cases[][2] = {{"o//e.png", "o/e.png"}, {"./o/./e.png", "o/e.png"}, {"/a///b/./c.png", "/a/b/c.png"},
                              {"o/../e.png", "o/../e.png"}, {".//o/e.png", "o/e.png"}, {"o/.e.png", "o/.e.png"}};
    for (int i = 0; i < 6; i++) {
        char s[64];
        snprintf(s, sizeof s, "%s", cases[i][0]);
        genindex_path_norm(s);
        CHECK(!strcmp(s, cases[i][1]), "%s -> %s, want %s", cases[i][0], s, cases[i][1]);
    }

    /* gaps as the former index had them */
    char gaps[64];
    float g[2] = {0.125f, 0.5f};
    genindex_gaps(gaps, sizeof gaps, g, 2, 1);
    CHECK(!strcmp(gaps, "0.12500;0.50000fallback"), "%s", gaps);
    genindex_gaps(gaps, sizeof gaps, g, 0, 0);
    CHECK(!strcmp(gaps, ""), "%s", gaps);

    system("rm -rf " DIR);
    return check_done("test_genindex");
}

/* common/csv against Python's csv module (tests/fixtures/csv/python.csv, written by csv.writer): the reader gives
 * Python's fields back, the writer gives Python's bytes back; then round trips of every awkward byte, CRLF, a
 * byte order mark, skipped empty lines, line numbers of multi-line records, a torn last line and malformed input
 * named by file and line. */
#include "tests/check.h"
#include "common/csv.h"
#include "common/err.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *want[][5] = {
    {"data/a,b.jpg", "tee", "0.9", "12", "out/x.png"},
    {"say \"hi\".jpg", "coat", "", "0", ""},
    {"multi\nline.png", "shirt, long", "0.75", "18446744073709551615", "o/p.png"},
    {"plain", "", "", "", ""},
    {"\xc3\xbcn\xc3\xaf" "code \xe2\x9c\x93" ".png", "a\"b,c\nd", "x", "y", "z"},
};
#define NROWS 5
static const char *fixture = "tests/fixtures/csv/python.csv";

static void against_python(void)
{
    csv_reader r;
    CHECK(csv_open(&r, fixture) == 0, "%s", err_msg());
    int lines[NROWS] = {1, 2, 3, 5, 6};
    for (int i = 0; i < NROWS; i++) {
        int n = csv_read(&r);
        CHECK(n == 5, "row %d: %d fields (%s)", i, n, n < 0 ? err_msg() : "");
        if (n != 5) break;
        for (int j = 0; j < 5; j++) CHECK(strcmp(r.field[j], want[i][j]) == 0, "row %d field %d: '%s'", i, j, r.field[j]);
        CHECK(r.line == lines[i], "row %d starts on line %d, not %d", i, r.line, lines[i]);
    }
    CHECK(csv_read(&r) == 0, "end of file");
    CHECK(!r.torn, "the fixture ends with a newline");
    csv_close(&r);

    /* the writer: Python's bytes exactly */
    char *mine = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&mine, &len);
    for (int i = 0; i < NROWS; i++)
        for (int j = 0; j < 5; j++) csv_put(m, want[i][j], j == 4 ? '\n' : ',');
    fclose(m);
    FILE *f = fopen(fixture, "rb");
    char theirs[1024];
    size_t tl = f ? fread(theirs, 1, sizeof theirs, f) : 0;
    if (f) fclose(f);
    CHECK(tl == len && memcmp(theirs, mine, len) == 0, "writer: %zu bytes, Python's %zu", len, tl);
    /* csv_escape gives the same field bytes, and says the length a short buffer needed */
    char one[64];
    CHECK(csv_escape(one, sizeof one, "a\"b,c") == 8 && strcmp(one, "\"a\"\"b,c\"") == 0, "escape: %s", one);
    CHECK(csv_escape(one, 4, "a,b") == 5 && strcmp(one, "\"a,") == 0, "short escape: %s", one);
    free(mine);
}

static int read_text(const char *text, size_t n, char out[][64], int maxf, int *nrec, int *torn)
{
    FILE *f = fmemopen((void *)text, n, "rb");
    csv_reader r;
    csv_from(&r, f, "mem.csv");
    int rc, k = 0;
    *nrec = 0;
    while ((rc = csv_read(&r)) > 0) {
        for (int j = 0; j < rc && k < maxf; j++) snprintf(out[k++], 64, "%s", r.field[j]);
        (*nrec)++;
    }
    *torn = r.torn;
    csv_close(&r);
    fclose(f);
    return rc < 0 ? -1 : k;
}

static void round_trip_bytes(void)
{
    /* every byte but NUL, in fields of every position */
    char field[256];
    for (int i = 1; i < 256; i++) field[i - 1] = (char)i;
    field[255] = 0;
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    csv_put(m, field, ',');
    csv_put(m, "", ',');
    csv_put(m, "\r\n", '\n');
    fclose(m);
    FILE *f = fmemopen(buf, len, "rb");
    csv_reader r;
    csv_from(&r, f, "mem.csv");
    int n = csv_read(&r);
    CHECK(n == 3, "%d fields: %s", n, n < 0 ? err_msg() : "");
    if (n == 3) {
        CHECK(strcmp(r.field[0], field) == 0, "bytes 1..255 round trip");
        CHECK(r.field[1][0] == 0, "empty field");
        CHECK(strcmp(r.field[2], "\r\n") == 0, "CRLF inside a field");
    }
    CHECK(csv_read(&r) == 0, "one record");
    csv_close(&r);
    fclose(f);
    free(buf);
}

static void dialect(void)
{
    char out[16][64];
    int nrec, torn;
    /* a BOM, CRLF records, an empty line, a torn last line */
    const char t[] = "\xef\xbb\xbf" "a,b\r\n\r\n\nc,\"d\"\r\ne,f";
    int k = read_text(t, sizeof t - 1, out, 16, &nrec, &torn);
    CHECK(k == 6 && nrec == 3, "%d fields in %d records", k, nrec);
    CHECK(k == 6 && !strcmp(out[0], "a") && !strcmp(out[3], "d") && !strcmp(out[5], "f"), "fields");
    CHECK(torn, "the last record has no newline: torn");
    const char u[] = "x\n";
    read_text(u, sizeof u - 1, out, 16, &nrec, &torn);
    CHECK(nrec == 1 && !torn, "a whole last line is not torn");
    /* a file that is only part of a BOM is data, not a BOM */
    const char v[] = "\xef\xbb,x\n";
    k = read_text(v, sizeof v - 1, out, 16, &nrec, &torn);
    CHECK(k == 2 && !strcmp(out[0], "\xef\xbb"), "half a BOM kept as data");
}

static void malformed(void)
{
    char out[16][64];
    int nrec, torn;
    struct { const char *text; const char *msg; } bad[] = {
        {"a,b\n\"open,c\nd\n", "mem.csv:2: a quoted field is never closed"},
        {"a,b\nc,\"d\"e\n", "mem.csv:2: field 2: 'e' after a closing quote"},
        {"a\nb\nc,d\"e\n", "mem.csv:3: field 2: a quote inside an unquoted field"},
        {"a\rb\n", "mem.csv:1: a carriage return outside quotes"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int k = read_text(bad[i].text, strlen(bad[i].text), out, 16, &nrec, &torn);
        CHECK(k == -1 && strstr(err_msg(), bad[i].msg), "'%s': %s", bad[i].text, err_msg());
    }
    const char nul[] = "a,b\nc\0d\n";
    int k = read_text(nul, sizeof nul - 1, out, 16, &nrec, &torn);
    CHECK(k == -1 && strstr(err_msg(), "mem.csv:2: a NUL byte"), "NUL: %s", err_msg());
    csv_reader r;
    CHECK(csv_open(&r, "tests/fixtures/csv/missing.csv") == -1 && strstr(err_msg(), "missing.csv: No such file"),
          "%s", err_msg());
}

int main(void)
{
    against_python();
    round_trip_bytes();
    dialect();
    malformed();
    return check_done("test_csv");
}

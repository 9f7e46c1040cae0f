/* The index of generated images: one CSV format (common/csv.h, RFC 4180) for `genie generate`'s index and the
 * online module's cache (augment/genie/cache.h), one reader and one writer; the trainer reads generated and
 * round-trip indexes through it. A header line names the columns:
 *
 *   output,source,target,source_class,r,seed,gaps,settings
 *
 *   output        the image (generate: the path as the plan gives it, normalised; the cache: a file name in the
 *                 cache directory)
 *   source        the source image's path, empty for txt2img
 *   target        the label the image is made for (and trains as)
 *   source_class  the source's label, empty when none or not known
 *   r             the strength it was made at (Ada: the r it chose; txt2img: 1)
 *   seed          the request's seed
 *   gaps          Ada's gaps d_1;d_2;... (and "fallback" when it fell back to the fixed r), else empty
 *   settings      the fingerprint (8 hex digits) of the settings that made it: rows of other settings are not
 *                 the same kind of image
 *
 * output, source and target come first, so `cut -d, -f1` and awk's $1..$3 of the scripts keep working. The reader
 * maps columns by the header's names, so genie generate's former index (output,source,target,r,seed,gaps) still
 * reads (the columns it lacks read as empty); a file without a known header is refused, naming it.
 *
 * Writers append whole lines; a line cut short by a run stopped mid-write (the file's last, without its newline)
 * is not returned as a row: the reader reports its line (torn_line) and where the whole lines end (good_end) so
 * that a writer can drop it. */
#ifndef GENIE_GENINDEX_H
#define GENIE_GENINDEX_H
#include <stdio.h>

#include "common/csv.h"

#define GENINDEX_HEADER "output,source,target,source_class,r,seed,gaps,settings"

enum { GX_OUTPUT, GX_SOURCE, GX_TARGET, GX_SOURCE_CLASS, GX_R, GX_SEED, GX_GAPS, GX_SETTINGS, GX_N };

/* One row: every field a string, "" when empty or when the file's format has no such column. */
typedef struct {
    const char *f[GX_N];
} genindex_row;

typedef struct {
    csv_reader csv;
    int col[GX_N];       /* the file's column of each field, -1 when its format has none */
    int former;          /* 1: genie generate's former format (no source_class, settings) */
    int line;            /* the file line of the last row returned */
    int torn_line;       /* > 0: this last line was cut short (not returned) */
    long good_end;       /* the byte offset just after the last whole line */
} genindex_reader;

/* Opens an index and reads its header. A missing file: 1 (nothing to read, *r unusable). A file that is not a
 * regular one (a FIFO, a directory), an unknown header or a read error: -1 with err_msg() naming it. */
int genindex_open(genindex_reader *r, const char *path);
/* The next row: 1, 0 at the end (torn_line set when the last line was cut short), -1 with err_msg()
 * "path:line: ..." (a row with too few fields, no output or target, a CSV error). */
int genindex_read(genindex_reader *r, genindex_row *row);
void genindex_close(genindex_reader *r);

/* One row as one line (quoted as RFC 4180 needs; NULL fields as empty). */
void genindex_put(FILE *f, const genindex_row *row);
/* One row as a malloc'ed line with its newline (NULL when out of memory). */
char *genindex_line(const genindex_row *row);
/* Writes a new index atomically (util_open_tmp/util_commit): the header and then n lines as genindex_line makes
 * them (NULL entries skipped). */
int genindex_rewrite(const char *path, char *const *lines, int n);
/* Opens an index for appending (a new or empty file gets its header first, written atomically). -1/NULL with
 * err_msg() naming it. genindex_sync: what was appended, flushed and synced to disk. */
FILE *genindex_append(const char *path);
int genindex_sync(FILE *f, const char *path);

/* An exclusive lock for this process's run over the index at path (flock on path.lock, which holds the holder's
 * pid): the file descriptor, or -1 with err_msg() naming the file and the pid of the run that holds it. Closing
 * the descriptor (genindex_unlock) or the process ending releases it. */
int genindex_lock(const char *path);
void genindex_unlock(int fd);

/* Whether path is a whole PNG: a regular file with the PNG signature, an IHDR chunk first and the IEND chunk at
 * its end (a file cut short or overwritten with something else is not). 1 or 0. */
int genindex_png_whole(const char *path);
/* The gaps field: Ada's gaps as "%.5f;%.5f;...", then "fallback" when Ada fell back to the fixed r. */
void genindex_gaps(char *s, size_t n, const float *gaps, int n_gaps, int fallback);
/* Normalises a path in place: "//" to "/", "/./" to "/", a leading "./" removed (so o//e.png and o/./e.png are
 * one output). ".." is left alone (it may cross a symlink). */
void genindex_path_norm(char *s);

#endif

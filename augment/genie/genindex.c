#include "augment/genie/genindex.h"
#include "common/err.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const names[GX_N] = {"output", "source", "target", "source_class", "r", "seed", "gaps", "settings"};

int genindex_open(genindex_reader *r, const char *path)
{
    memset(r, 0, sizeof *r);
    /* O_NONBLOCK: a FIFO opens at once (and is then refused) instead of waiting for a writer */
    int fd = open(path, O_RDONLY | O_NONBLOCK);
    if (fd < 0) return errno == ENOENT ? 1 : err_set("%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        close(fd);
        return err_set("%s: not a regular file (an index of generated images must be one)", path);
    }
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        close(fd);
        return err_set("%s: %s", path, strerror(errno));
    }
    csv_from(&r->csv, f, path);
    r->csv.own = 1;
    int n = csv_read(&r->csv);
    if (n < 0) goto fail;
    for (int k = 0; k < GX_N; k++) r->col[k] = -1;
    for (int i = 0; i < n; i++)
        for (int k = 0; k < GX_N; k++)
            if (!strcmp(r->csv.field[i], names[k]) && r->col[k] < 0) r->col[k] = i;
    if (n == 0 || r->csv.torn || r->col[GX_OUTPUT] != 0 || r->col[GX_TARGET] < 0) {
        err_set("%s:1: not an index of generated images: the header must be \"" GENINDEX_HEADER "\" (or genie "
                "generate's former \"output,source,target,r,seed,gaps\")", path);
        goto fail;
    }
    r->former = r->col[GX_SETTINGS] < 0;
    r->good_end = ftell(f);
    return 0;
fail:
    csv_close(&r->csv);
    return -1;
}

int genindex_read(genindex_reader *r, genindex_row *row)
{
    int n = csv_read(&r->csv);
    if (n <= 0) return n;
    if (r->csv.torn) {   /* a run stopped in the middle of writing this line */
        r->torn_line = r->csv.line;
        return 0;
    }
    r->line = r->csv.line;
    int need = r->col[GX_TARGET] + 1;
    if (n < need) return err_set("%s:%d: %d fields, the header names at least %d", r->csv.path, r->line, n, need);
    for (int k = 0; k < GX_N; k++) row->f[k] = r->col[k] >= 0 && r->col[k] < n ? r->csv.field[r->col[k]] : "";
    if (!*row->f[GX_OUTPUT]) return err_set("%s:%d: no output", r->csv.path, r->line);
    if (!*row->f[GX_TARGET]) return err_set("%s:%d: no target", r->csv.path, r->line);
    r->good_end = ftell(r->csv.f);
    return 1;
}

void genindex_close(genindex_reader *r) { csv_close(&r->csv); }

static void genindex_put_header(FILE *f) { fputs(GENINDEX_HEADER "\n", f); }

void genindex_put(FILE *f, const genindex_row *row)
{
    for (int k = 0; k < GX_N; k++) csv_put(f, row->f[k] ? row->f[k] : "", k + 1 < GX_N ? ',' : '\n');
}

char *genindex_line(const genindex_row *row)
{
    char *s = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&s, &n);
    if (!f) return NULL;
    genindex_put(f, row);
    if (fclose(f)) {
        free(s);
        return NULL;
    }
    return s;
}

int genindex_rewrite(const char *path, char *const *lines, int n)
{
    char tmp[4400];
    FILE *f = util_open_tmp(path, tmp, sizeof tmp);
    if (!f) return -1;
    genindex_put_header(f);
    for (int i = 0; i < n; i++)
        if (lines[i]) fputs(lines[i], f);
    return util_commit(f, tmp, path);
}

FILE *genindex_append(const char *path)
{
    struct stat st;
    if (util_check_dest(path)) return NULL;   /* not a FIFO or device to append to, in a directory that takes it */
    if ((stat(path, &st) != 0 || st.st_size == 0) && genindex_rewrite(path, NULL, 0)) return NULL;
    FILE *f = fopen(path, "a");
    if (!f) err_set("%s: %s", path, strerror(errno));
    return f;
}

int genindex_sync(FILE *f, const char *path)
{
    if (fflush(f) || ferror(f) || fsync(fileno(f))) return err_set("%s: cannot write (%s)", path, strerror(errno));
    return 0;
}

int genindex_lock(const char *path)
{
    char lp[4200];
    if (snprintf(lp, sizeof lp, "%s.lock", path) >= (int)sizeof lp) return err_set("%s: path too long", path);
    int fd = open(lp, O_RDWR | O_CREAT | O_NONBLOCK | O_CLOEXEC, 0644);
    if (fd < 0) return err_set("%s: %s", lp, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        close(fd);
        return err_set("%s: not a regular file", lp);
    }
    if (flock(fd, LOCK_EX | LOCK_NB)) {
        int e = errno;
        char pid[32] = "";
        ssize_t k = pread(fd, pid, sizeof pid - 1, 0);
        pid[k > 0 ? k : 0] = 0;
        close(fd);
        if (e != EWOULDBLOCK) return err_set("%s: cannot lock (%s)", lp, strerror(e));
        return err_set("%s is in use by another run (pid %s, holding %s): wait for it to finish or stop it", path,
                       *util_trim(pid) ? util_trim(pid) : "not known yet", lp);
    }
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) || pwrite(fd, pid, n, 0) != n) {
        close(fd);
        return err_set("%s: cannot write (%s)", lp, strerror(errno));
    }
    return fd;
}

void genindex_unlock(int fd)
{
    if (fd >= 0) close(fd);
}

int genindex_png_whole(const char *path)
{
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    static const unsigned char iend[12] = {0, 0, 0, 0, 'I', 'E', 'N', 'D', 0xae, 0x42, 0x60, 0x82};
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return 0;
    struct stat st;
    unsigned char head[16], tail[12];
    int ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size >= 8 + 25 + 12 &&
             pread(fd, head, sizeof head, 0) == (ssize_t)sizeof head && !memcmp(head, sig, 8) &&
             !memcmp(head + 12, "IHDR", 4) && pread(fd, tail, sizeof tail, st.st_size - 12) == (ssize_t)sizeof tail &&
             !memcmp(tail, iend, 12);
    close(fd);
    return ok;
}

void genindex_gaps(char *s, size_t n, const float *gaps, int n_gaps, int fallback)
{
    size_t o = 0;
    s[0] = 0;
    for (int k = 0; k < n_gaps && o < n; k++) o += snprintf(s + o, n - o, "%s%.5f", k ? ";" : "", gaps[k]);
    if (fallback && o < n) snprintf(s + o, n - o, "fallback");
}

void genindex_path_norm(char *s)
{
    char *w = s;
    const char *p = s;
    while (p[0] == '.' && p[1] == '/') {   /* leading ./ */
        p += 2;
        while (*p == '/') p++;
    }
    while (*p) {
        if (*p == '/') {
            *w++ = *p++;
            for (;;) {
                if (*p == '/') p++;
                else if (p[0] == '.' && p[1] == '/') p += 2;
                else break;
            }
            continue;
        }
        *w++ = *p++;
    }
    *w = 0;
}

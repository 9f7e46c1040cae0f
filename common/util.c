#include "common/util.h"
#include "common/err.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int util_read_file(const char *path, size_t max, const char *what, unsigned char **buf, size_t *cap, size_t *len)
{
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return err_set("%s: %s", path, strerror(errno));
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        rc = err_set("%s: not a regular file", path);
    else if ((unsigned long long)st.st_size > max)
        rc = err_set("%s: %lld bytes, more than the %zu %s", path, (long long)st.st_size, max, what);
    size_t n = rc ? 0 : (size_t)st.st_size;
    if (rc == 0 && *cap < n + 1) {
        unsigned char *p = realloc(*buf, n + 1);
        if (!p)
            rc = err_set("%s: out of memory for %zu bytes", path, n);
        else
            *buf = p, *cap = n + 1;
    }
    size_t got = 0;
    while (rc == 0 && got < n) {
        ssize_t r = read(fd, *buf + got, n - got);
        if (r <= 0) rc = err_set("%s: read error after %zu of %zu bytes", path, got, n);
        got += r > 0 ? (size_t)r : 0;
    }
    close(fd);
    if (rc == 0) (*buf)[got] = 0;
    *len = got;
    return rc;
}

int util_cores(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

double util_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

void util_sleep(double seconds)
{
    struct timespec ts = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
    nanosleep(&ts, NULL);
}

int util_mkdirs(const char *path)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s", path) >= (int)sizeof tmp) return err_set("%s: path too long", path);
    for (char *p = tmp + 1;; p++) {
        if (*p != '/' && *p) continue;
        char c = *p;
        *p = 0;
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST) return err_set("%s: %s", tmp, strerror(errno));
        if (!c) break;
        *p = c;
    }
    return 0;
}

char *util_trim(char *s)
{
    while (isspace((unsigned char)*s)) s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) *--e = 0;
    return s;
}

/* Where a write to path lands: path itself, or the regular file a symlink leads to (so a link stays a link and its
 * target is replaced). An existing target that is not a regular file (a device, FIFO, socket or directory) is
 * refused: renaming over it would replace, say, /dev/null with a file. */
static int write_target(const char *path, char *target, size_t n)
{
    struct stat st;
    if (snprintf(target, n, "%s", path) >= (int)n) return err_set("%s: path too long", path);
    if (lstat(path, &st) != 0) return errno == ENOENT ? 0 : err_set("%s: %s", path, strerror(errno));
    if (S_ISLNK(st.st_mode)) {
        char *real = realpath(path, NULL);
        if (!real) return err_set("%s: a symbolic link to nothing (%s)", path, strerror(errno));
        int len = snprintf(target, n, "%s", real);
        free(real);
        if (len >= (int)n) return err_set("%s: path too long", path);
        if (stat(target, &st) != 0) return err_set("%s: %s", path, strerror(errno));
    }
    if (!S_ISREG(st.st_mode))
        return err_set("%s: not a regular file (%s); refusing to replace it", path,
                       S_ISDIR(st.st_mode) ? "a directory" : S_ISFIFO(st.st_mode) ? "a FIFO"
                       : S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) ? "a device" : "a socket or special file");
    return 0;
}

/* The directory a file is made in must exist and take new files: said before any work is done. */
static int dir_writable(const char *path, const char *target)
{
    char dir[4096];
    if (snprintf(dir, sizeof dir, "%s", target) >= (int)sizeof dir) return err_set("%s: path too long", path);
    char *slash = strrchr(dir, '/');
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == dir) dir[1] = 0;
    else *slash = 0;
    struct stat st;
    if (stat(dir, &st) != 0) return err_set("%s: directory %s: %s", path, dir, strerror(errno));
    if (!S_ISDIR(st.st_mode)) return err_set("%s: %s is not a directory", path, dir);
    if (access(dir, W_OK | X_OK) != 0) return err_set("%s: directory %s: %s", path, dir, strerror(errno));
    return 0;
}

int util_check_dest(const char *path)
{
    char target[4096];
    if (!*path) return err_set("an empty output path");
    return write_target(path, target, sizeof target) || dir_writable(path, target) ? -1 : 0;
}

FILE *util_open_tmp(const char *path, char *tmp, size_t n)
{
    static unsigned long counter;
    char target[4096];
    if (util_check_dest(path) || write_target(path, target, sizeof target)) return NULL;
    unsigned long k = __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED);
    if (snprintf(tmp, n, "%s.%ld.%lu.tmp", target, (long)getpid(), k) >= (int)n) {
        err_set("%s: path too long", path);
        return NULL;
    }
    FILE *f = fopen(tmp, "w");
    if (!f) err_set("%s: cannot create %s (%s)", path, tmp, strerror(errno));
    return f;
}

int util_replace(const char *tmp, const char *path)
{
    /* the temporary name is the target's plus ".<pid>.<k>.tmp": rename onto the target (a symlink's file) */
    char target[4096];
    snprintf(target, sizeof target, "%s", tmp);
    for (int dots = 0; dots < 3; dots++) {
        char *d = strrchr(target, '.');
        if (d) *d = 0;
    }
    /* what was a regular file at util_open_tmp may have been replaced meanwhile */
    struct stat st;
    if (lstat(target, &st) == 0 && !S_ISREG(st.st_mode)) {
        unlink(tmp);
        return err_set("%s: not a regular file any more; refusing to replace it", path);
    }
    if (rename(tmp, target) != 0) {
        int err = errno;
        unlink(tmp);
        return err_set("%s: cannot write (%s); left as it was", path, strerror(err));
    }
    return 0;
}

static int finish(FILE *f, const char *tmp, const char *path, int durable)
{
    int bad = fflush(f) != 0 || ferror(f) || (durable && fsync(fileno(f)) != 0);
    int err = errno;
    if (fclose(f) != 0 && !bad) {
        bad = 1;
        err = errno;
    }
    if (bad) {
        unlink(tmp);
        return err_set("%s: cannot write (%s); left as it was", path, strerror(err));
    }
    return util_replace(tmp, path);
}

int util_commit(FILE *f, const char *tmp, const char *path) { return finish(f, tmp, path, 1); }

int util_write_text(const char *path, const char *text)
{
    char tmp[4200];
    FILE *f = util_open_tmp(path, tmp, sizeof tmp);
    if (!f) return -1;
    fputs(text, f);
    return util_commit(f, tmp, path);
}
int util_commit_nosync(FILE *f, const char *tmp, const char *path) { return finish(f, tmp, path, 0); }

unsigned util_fnv(unsigned h, const char *s)
{
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static unsigned files_stamp(unsigned h, const char *path, int depth)
{
    struct stat st;
    if (stat(path, &st)) return h;
    char buf[64];
    snprintf(buf, sizeof buf, "|%lld|%lld.%09ld", (long long)st.st_size, (long long)st.st_mtim.tv_sec,
             (long)st.st_mtim.tv_nsec);
    if (!S_ISDIR(st.st_mode)) return util_fnv(util_fnv(h, path), buf);
    DIR *d = depth < 2 ? opendir(path) : NULL;
    if (!d) return h;
    /* readdir's order is the file system's: the entries' hashes are combined order-free */
    unsigned sum = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        char sub[4096];
        snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
        /* a diffusers folder's own files other than model_index.json are its card (notes, plots): not the model */
        struct stat es;
        if (depth == 0 && strcmp(e->d_name, "model_index.json") && stat(sub, &es) == 0 && !S_ISDIR(es.st_mode))
            continue;
        sum += files_stamp(UTIL_FNV_INIT, sub, depth + 1);
    }
    closedir(d);
    snprintf(buf, sizeof buf, "|%x", sum);
    return util_fnv(h, buf);
}

unsigned util_files_stamp(unsigned h, const char *path) { return files_stamp(h, path, 0); }

#include "common/util.h"
#include "common/err.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

double util_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
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

FILE *util_open_tmp(const char *path, char *tmp, size_t n)
{
    static unsigned long counter;
    unsigned long k = __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED);
    if (snprintf(tmp, n, "%s.%ld.%lu.tmp", path, (long)getpid(), k) >= (int)n) {
        err_set("%s: path too long", path);
        return NULL;
    }
    FILE *f = fopen(tmp, "w");
    if (!f) err_set("%s: %s", tmp, strerror(errno));
    return f;
}

static int finish(FILE *f, const char *tmp, const char *path, int durable)
{
    int bad = fflush(f) != 0 || ferror(f) || (durable && fsync(fileno(f)) != 0);
    int err = errno;
    if (fclose(f) != 0 && !bad) {
        bad = 1;
        err = errno;
    }
    if (bad || rename(tmp, path) != 0) {
        if (!bad) err = errno;
        unlink(tmp);
        return err_set("%s: cannot write (%s); left as it was", path, strerror(err));
    }
    return 0;
}

int util_commit(FILE *f, const char *tmp, const char *path) { return finish(f, tmp, path, 1); }
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

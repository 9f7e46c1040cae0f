#include "common/jsonfile.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "common/err.h"

cJSON *jsonfile_read(const char *path, size_t max_bytes, int *absent)
{
    if (absent) *absent = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (absent && errno == ENOENT) *absent = 1;
        else err_set("%s: cannot read: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    char *buf = NULL;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        err_set("%s: cannot read: not a regular file", path);
    } else if ((unsigned long long)st.st_size > max_bytes) {
        err_set("%s: %lld bytes, more than the %zu a JSON file may have here", path, (long long)st.st_size,
                max_bytes);
    } else if (!(buf = malloc((size_t)st.st_size + 1))) {
        err_set("%s: out of memory for %lld bytes", path, (long long)st.st_size);
    }
    size_t got = buf ? fread(buf, 1, (size_t)st.st_size, f) : 0;
    if (buf && ferror(f)) {
        err_set("%s: cannot read: %s", path, strerror(errno));
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (!buf) return NULL;
    buf[got] = 0;
    cJSON *j = cJSON_ParseWithLength(buf, got);
    if (!j) {
        const char *at = cJSON_GetErrorPtr();
        long off = at && at >= buf && at <= buf + got ? (long)(at - buf) : -1;
        err_set("%s: not valid JSON (parsing stopped at byte %ld)", path, off);
    } else if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        j = NULL;
        err_set("%s: not a JSON object", path);
    }
    free(buf);
    return j;
}

#include "common/jsonfile.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "common/err.h"
#include "common/util.h"

cJSON *jsonfile_read(const char *path, size_t max_bytes, int *absent)
{
    if (absent) *absent = 0;
    if (absent && access(path, F_OK) != 0 && errno == ENOENT) {
        *absent = 1;
        return NULL;
    }
    unsigned char *buf = NULL;
    size_t cap = 0, got = 0;
    if (util_read_file(path, max_bytes, "a JSON file may have here", &buf, &cap, &got)) {
        free(buf);
        err_wrap("cannot read: ");
        return NULL;
    }
    cJSON *j = cJSON_ParseWithLength((const char *)buf, got);
    if (!j) {
        const char *at = cJSON_GetErrorPtr();
        long off = at && at >= (const char *)buf && at <= (const char *)buf + got ? (long)(at - (const char *)buf) : -1;
        err_set("%s: not valid JSON (parsing stopped at byte %ld)", path, off);
    } else if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        j = NULL;
        err_set("%s: not a JSON object", path);
    }
    free(buf);
    return j;
}

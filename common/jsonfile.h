/* Whole JSON files: read with a size cap and parsed with cJSON. */
#ifndef GENIE_JSONFILE_H
#define GENIE_JSONFILE_H
#include <cjson/cJSON.h>
#include <stddef.h>

/* The JSON object in the file path (free it with cJSON_Delete). NULL + err_msg() naming the file when it cannot be
 * read, is not a regular file, is larger than max_bytes, is not valid JSON (with the byte where parsing stopped)
 * or is not an object. With absent non-NULL, a file that does not exist is no error: NULL and *absent = 1. */
cJSON *jsonfile_read(const char *path, size_t max_bytes, int *absent);

#endif

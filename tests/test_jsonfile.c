/* common/jsonfile: a whole JSON file, its size cap, and an error naming the file for each way it can fail. */
#include "tests/check.h"
#include "common/err.h"
#include "common/jsonfile.h"

#include <sys/stat.h>
#include <unistd.h>

#define P "build/test_jsonfile.json"

static void put(const char *text)
{
    FILE *f = fopen(P, "w");
    fputs(text, f);
    fclose(f);
}

static void expect_error(size_t cap, const char *needle)
{
    cJSON *j = jsonfile_read(P, cap, NULL);
    CHECK(!j && strstr(err_msg(), P) && strstr(err_msg(), needle), "'%s' lacks the file or '%s'", err_msg(), needle);
    cJSON_Delete(j);
}

int main(void)
{
    put("{\"a\": [1, 2], \"b\": \"x\"}");
    int absent = 7;
    cJSON *j = jsonfile_read(P, 1 << 20, &absent);
    const cJSON *a = j ? cJSON_GetObjectItemCaseSensitive(j, "a") : NULL;
    CHECK(j && absent == 0 && cJSON_GetArraySize(a) == 2 && cJSON_GetArrayItem(a, 1)->valueint == 2, "read: %s",
          j ? "" : err_msg());
    cJSON_Delete(j);
    j = jsonfile_read(P, 23, NULL);   /* exactly its size */
    CHECK(j != NULL, "a file of exactly the cap: %s", err_msg());
    cJSON_Delete(j);
    expect_error(22, "more than the 22");
    put("{\"a\": [1, 2,");
    expect_error(1 << 20, "not valid JSON");
    put("[1, 2]");
    expect_error(1 << 20, "not a JSON object");
    put("");
    expect_error(1 << 20, "not valid JSON");
    remove(P);
    err_set("untouched");
    absent = 0;
    CHECK(jsonfile_read(P, 1 << 20, &absent) == NULL && absent == 1 && !strcmp(err_msg(), "untouched"),
          "a missing file with absent: %d, %s", absent, err_msg());
    expect_error(1 << 20, "cannot read");
    CHECK(jsonfile_read("build", 1 << 20, NULL) == NULL && strstr(err_msg(), "build") &&
              strstr(err_msg(), "not a regular file"), "a folder: %s", err_msg());
    /* a FIFO is refused at once, not read waiting for a writer (alarm: a hang fails the test instead) */
    remove(P);
    CHECK(mkfifo(P, 0644) == 0, "mkfifo");
    alarm(20);
    CHECK(jsonfile_read(P, 1 << 20, NULL) == NULL && strstr(err_msg(), "not a regular file"), "a FIFO: %s", err_msg());
    alarm(0);
    remove(P);
    return check_done("jsonfile");
}

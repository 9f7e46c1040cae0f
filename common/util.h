/* Small system helpers both sides use. */
#ifndef GENIE_UTIL_H
#define GENIE_UTIL_H

/* Monotonic clock in seconds. */
double util_now(void);
/* Creates a directory and its parents (mkdir -p); -1 with err_msg() naming the part that failed. */
int util_mkdirs(const char *path);
/* Strips leading and trailing white space in place; returns the start of what is left. */
char *util_trim(char *s);

#endif

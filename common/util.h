/* Small system helpers both sides use. */
#ifndef GENIE_UTIL_H
#define GENIE_UTIL_H

/* The cores online (at least 1): the most threads a compute pool can use. */
int util_cores(void);
/* Monotonic clock in seconds. */
double util_now(void);
/* Sleeps about `seconds` (the pause of a poll loop). */
void util_sleep(double seconds);
/* Creates a directory and its parents (mkdir -p); -1 with err_msg() naming the part that failed. */
int util_mkdirs(const char *path);
/* Strips leading and trailing white space in place; returns the start of what is left. */
char *util_trim(char *s);
/* FNV-1a of the string s folded into h (start from UTIL_FNV_INIT): a cheap, stable fingerprint of settings. */
#define UTIL_FNV_INIT 2166136261u
unsigned util_fnv(unsigned h, const char *s);
/* A hash of the name, size and modification time (to the nanosecond) of a file, or of a diffusers folder's
 * model_index.json and its subfolders' files (the components; the model card, plots and notes beside them do not
 * count), folded into h: what was made from a model or weights is stale once this changes (a model retrained or
 * replaced in place, also within the same second). Not the contents: reading gigabytes of weights at every start
 * would cost more than the load itself (the engine maps them and reads only what it uses); only a copy that keeps
 * both the size and the nanosecond time of another file fools it. A path that does not exist adds nothing. */
unsigned util_files_stamp(unsigned h, const char *path);

/* Reads the whole of path into *buf (grown as needed, kept across calls: *cap is its size) with a NUL after it;
 * *len bytes. A path that is not a regular file (a FIFO is opened without waiting for a writer) or has more than
 * max bytes is refused: -1 with err_msg() naming path ("N bytes, more than the max <what>"). */
#include <stddef.h>
int util_read_file(const char *path, size_t max, const char *what, unsigned char **buf, size_t *cap, size_t *len);

/* Whole-file writes: util_open_tmp opens a temporary file beside path (a name unique to this process and call,
 * so concurrent writers never share one); util_commit checks every write, syncs and renames it over path, or
 * removes it and leaves path as it was. Both -1/NULL with err_msg() naming the file. A path that is a symbolic
 * link is followed: the regular file it leads to is replaced and the link stays. An existing path that is not a
 * regular file (a device such as /dev/null, a FIFO, a directory) is refused, never replaced. */
#include <stdio.h>
/* The checks util_open_tmp makes, for a command to make before its work: path is not an existing non-regular file
 * and its directory exists and is writable; -1 with err_msg() naming path and what is wrong. */
int util_check_dest(const char *path);
FILE *util_open_tmp(const char *path, char *tmp, size_t n);
int util_commit(FILE *f, const char *tmp, const char *path);
/* The last step of util_commit alone, for a temporary file written by other means (libdarknet's save_weights):
 * renames tmp over the file util_open_tmp chose for path; -1 (tmp removed) with err_msg() naming path. */
int util_replace(const char *tmp, const char *path);
/* text as the whole of path, through util_open_tmp/util_commit; -1 with err_msg() naming path. */
int util_write_text(const char *path, const char *text);
/* The same without the fsync, for many small files made durable together afterwards (one syncfs). */
int util_commit_nosync(FILE *f, const char *tmp, const char *path);

#endif

/* CSV as RFC 4180 has it, the one reader and writer of every CSV file genie reads or writes (plans, generated and
 * cache indexes, confusion matrices, predictions): fields separated by commas, records by LF or CRLF; a field
 * that holds a comma, a double quote, CR or LF is enclosed in double quotes and its quotes are doubled. So a path
 * with a comma, a quote or a newline round-trips. Empty lines are skipped; a UTF-8 byte order mark at the start
 * of the file is skipped. */
#ifndef GENIE_CSV_H
#define GENIE_CSV_H
#include <stddef.h>
#include <stdio.h>

typedef struct {
    FILE *f;
    int own;            /* csv_open opened f: csv_close closes it */
    const char *path;   /* for messages */
    int line;           /* the file line the last record started on (1-based) */
    int next_line;      /* the file line the next record starts on */
    int torn;           /* the last record read ended at the end of the file without a newline */
    int n;              /* fields of the last record */
    char **field;       /* field[0..n-1], NUL-terminated, valid until the next csv_read */
    char *buf;
    size_t cap;
    int fcap;
} csv_reader;

/* Opens path for reading; -1 with err_msg() naming it. */
int csv_open(csv_reader *r, const char *path);
/* Reads from a FILE the caller owns (named path in messages). */
void csv_from(csv_reader *r, FILE *f, const char *path);
/* The next record: its field count (>= 1), 0 at the end of the file, -1 with err_msg() naming path:line (a quote
 * that is never closed, a character after a closing quote, a NUL byte, a read error). */
int csv_read(csv_reader *r);
void csv_close(csv_reader *r);

/* Writes s as one field (quoted when it must be) and then the character end (',' or '\n'). */
void csv_put(FILE *f, const char *s, char end);
/* s as one field into dst (n bytes, NUL-terminated); returns the length the field needs, as snprintf does. */
size_t csv_escape(char *dst, size_t n, const char *s);

#endif

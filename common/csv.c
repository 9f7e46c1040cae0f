#include "common/csv.h"
#include "common/err.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int csv_open(csv_reader *r, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return err_set("%s: %s", path, strerror(errno));
    csv_from(r, f, path);
    r->own = 1;
    return 0;
}

void csv_from(csv_reader *r, FILE *f, const char *path)
{
    memset(r, 0, sizeof *r);
    r->f = f;
    r->path = path;
    r->next_line = 1;
    int c0 = getc(f), c1 = c0 == 0xEF ? getc(f) : EOF, c2 = c1 == 0xBB ? getc(f) : EOF;
    if (!(c0 == 0xEF && c1 == 0xBB && c2 == 0xBF)) {   /* not a BOM: put back what was read (at most one byte) */
        if (c2 != EOF || c1 != EOF) fseek(f, 0, SEEK_SET);
        else if (c0 != EOF) ungetc(c0, f);
    }
}

static int grow(csv_reader *r, size_t need)
{
    if (need <= r->cap) return 0;
    size_t cap = r->cap ? r->cap : 256;
    while (cap < need) cap *= 2;
    char *b = realloc(r->buf, cap);
    if (!b) return err_set("%s:%d: out of memory", r->path, r->line);
    r->buf = b;
    r->cap = cap;
    return 0;
}

/* Reads one record into buf as NUL-separated fields; the field pointers are set once it is whole (buf moves). */
int csv_read(csv_reader *r)
{
    size_t len = 0;
    int nf, c;
    for (;;) {   /* skip empty lines */
        c = getc(r->f);
        if (c == '\n') { r->next_line++; continue; }
        if (c == '\r') {
            int d = getc(r->f);
            if (d == '\n') { r->next_line++; continue; }
            if (d != EOF) ungetc(d, r->f);
        }
        break;
    }
    if (c == EOF) {
        if (ferror(r->f)) return err_set("%s:%d: %s", r->path, r->next_line, strerror(errno));
        r->n = 0;
        return 0;
    }
    r->line = r->next_line;
    r->torn = 0;
    nf = 1;
    int quoted = 0, after_quote = 0, field_start = 1;
    for (;; c = getc(r->f)) {
        if (c == EOF) {
            if (ferror(r->f)) return err_set("%s:%d: %s", r->path, r->line, strerror(errno));
            if (quoted) return err_set("%s:%d: a quoted field is never closed", r->path, r->line);
            r->torn = 1;
            break;
        }
        if (c == 0) return err_set("%s:%d: a NUL byte", r->path, r->next_line);
        if (quoted) {
            if (c == '"') {
                int d = getc(r->f);
                if (d == '"') goto put;          /* a doubled quote stands for one */
                if (d != EOF) ungetc(d, r->f);
                quoted = 0;
                after_quote = 1;
                continue;
            }
            if (c == '\n') r->next_line++;
            goto put;
        }
        if (c == '\r') {
            int d = getc(r->f);
            if (d == '\n') c = '\n';
            else {
                if (d != EOF) ungetc(d, r->f);
                return err_set("%s:%d: a carriage return outside quotes", r->path, r->next_line);
            }
        }
        if (c == '\n') { r->next_line++; break; }
        if (c == ',') {
            if (grow(r, len + 1)) return -1;
            r->buf[len++] = 0;
            nf++;
            field_start = 1;
            after_quote = 0;
            continue;
        }
        if (after_quote)
            return err_set("%s:%d: field %d: '%c' after a closing quote (quote the whole field, double quotes "
                           "inside it)", r->path, r->next_line, nf, c);
        if (c == '"') {
            if (!field_start)
                return err_set("%s:%d: field %d: a quote inside an unquoted field (quote the whole field, double "
                               "quotes inside it)", r->path, r->next_line, nf);
            quoted = 1;
            field_start = 0;
            continue;
        }
    put:
        field_start = 0;
        if (grow(r, len + 1)) return -1;
        r->buf[len++] = (char)c;
    }
    if (grow(r, len + 1)) return -1;
    r->buf[len] = 0;
    if (nf > r->fcap) {
        char **fl = realloc(r->field, (size_t)nf * sizeof *fl);
        if (!fl) return err_set("%s:%d: out of memory", r->path, r->line);
        r->field = fl;
        r->fcap = nf;
    }
    char *s = r->buf;
    for (int i = 0; i < nf; i++) {
        r->field[i] = s;
        s += strlen(s) + 1;
    }
    r->n = nf;
    return nf;
}

void csv_close(csv_reader *r)
{
    if (r->own && r->f) fclose(r->f);
    free(r->buf);
    free(r->field);
    memset(r, 0, sizeof *r);
}

static int needs_quotes(const char *s)
{
    return s[strcspn(s, ",\"\r\n")] != 0;
}

size_t csv_escape(char *dst, size_t n, const char *s)
{
    size_t k = 0;
#define PUT(ch) do { if (k + 1 < n) dst[k] = (ch); k++; } while (0)
    if (!needs_quotes(s)) {
        for (; *s; s++) PUT(*s);
    } else {
        PUT('"');
        for (; *s; s++) {
            if (*s == '"') PUT('"');
            PUT(*s);
        }
        PUT('"');
    }
#undef PUT
    if (n) dst[k < n ? k : n - 1] = 0;
    return k;
}

void csv_put(FILE *f, const char *s, char end)
{
    if (!needs_quotes(s)) {
        fputs(s, f);
    } else {
        putc('"', f);
        for (; *s; s++) {
            if (*s == '"') putc('"', f);
            putc(*s, f);
        }
        putc('"', f);
    }
    putc(end, f);
}

#include "common/kv.h"
#include "common/err.h"
#include "common/num.h"
#include "common/util.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Edit distance; keys are short, anything longer is simply not close. */
static int distance(const char *a, const char *b)
{
    int la = strlen(a), lb = strlen(b), d[33][33];
    if (la > 32 || lb > 32) return 99;
    for (int i = 0; i <= la; i++) d[i][0] = i;
    for (int j = 0; j <= lb; j++) d[0][j] = j;
    for (int i = 1; i <= la; i++)
        for (int j = 1; j <= lb; j++) {
            int m = d[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (d[i - 1][j] + 1 < m) m = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < m) m = d[i][j - 1] + 1;
            d[i][j] = m;
        }
    return d[la][lb];
}

const char *kv_nearest(const char *word, const char *const *cands, int n)
{
    const char *best = NULL;
    int bd = 3;
    for (int i = 0; i < n; i++) {
        int d = distance(word, cands[i]);
        if (d < bd && d < (int)strlen(cands[i])) bd = d, best = cands[i];
    }
    return best;
}

/* What a key's values may be, when its table entry does not say. */
static const char *want_text(const kv_key *k, char *buf, size_t n)
{
    if (k->want) return k->want;
    char lo = k->flags & KV_OPEN_LO ? '(' : '[', hi = k->flags & KV_OPEN_HI ? ')' : ']';
    switch (k->type) {
    case KV_INT:
    case KV_INT64: snprintf(buf, n, "an integer in %.0f..%.0f", k->lo, k->hi); break;
    case KV_DOUBLE: snprintf(buf, n, "a number in %c%g, %g%c", lo, k->lo, k->hi, hi); break;
    case KV_LIST:
        snprintf(buf, n, "a comma-separated list of at most %zu numbers in %c%g, %g%c", k->size, lo, k->lo, k->hi, hi);
        break;
    case KV_BOOL: snprintf(buf, n, "0 or 1"); break;
    case KV_WORD: {
        /* "a|b|c" as "a, b or c" */
        size_t m = 0;
        const char *last = strrchr(k->words, '|');
        for (const char *w = k->words; *w && m + 4 < n; w++) {
            if (*w != '|') buf[m++] = *w;
            else if (w == last) m += snprintf(buf + m, n - m, " or ");
            else m += snprintf(buf + m, n - m, ", ");
            if (m >= n) m = n - 1;
        }
        buf[m] = 0;
        break;
    }
    default: snprintf(buf, n, "a text"); break;
    }
    return buf;
}

static int in_range(const kv_key *k, double x)
{
    if (x < k->lo || (x == k->lo && (k->flags & KV_OPEN_LO))) return 0;
    if (x > k->hi || (x == k->hi && (k->flags & KV_OPEN_HI))) return 0;
    return 1;
}

/* index of val in the '|'-separated words, or -1 */
static int word_index(const char *val, const char *words)
{
    int i = 0;
    for (const char *w = words; *w; i++) {
        size_t n = strcspn(w, "|");
        if (strlen(val) == n && !strncmp(val, w, n)) return i;
        w += n + (w[n] == '|');
    }
    return -1;
}

/* Stores val: 0, 1 when it is not a value the key allows (the caller says which are), -1 with err_msg() set. */
static int store(const char *path, int line, kv_key *k, char *val)
{
    double d;
    switch (k->type) {
    case KV_INT: {
        int v;
        if (num_int(val, k->lo < INT_MIN ? INT_MIN : k->lo, k->hi > INT_MAX ? INT_MAX : k->hi, &v)) return 1;
        *(int *)k->out = v;
        return 0;
    }
    case KV_INT64: {
        int64_t v;
        int64_t lo = k->lo <= -0x1p63 ? INT64_MIN : (int64_t)k->lo, hi = k->hi >= 0x1p63 ? INT64_MAX : (int64_t)k->hi;
        if (num_int64(val, lo, hi, &v)) return 1;
        *(long long *)k->out = v;
        return 0;
    }
    case KV_DOUBLE:
        if (num_double(val, k->lo, k->hi, &d) || !in_range(k, d)) return 1;
        *(double *)k->out = d;
        return 0;
    case KV_BOOL:
        if (strcmp(val, "0") && strcmp(val, "1")) return 1;
        *(int *)k->out = val[0] == '1';
        return 0;
    case KV_WORD: {
        int i = word_index(val, k->words);
        if (i < 0) return 1;
        *(int *)k->out = i;
        return 0;
    }
    case KV_STRING: {
        size_t len = strlen(val);
        if (k->size == 0) {
            char *s = strdup(val), **out = k->out;
            if (!s) return err_set("%s:%d: out of memory", path, line);
            free(*out);
            *out = s;
            return 0;
        }
        if (len >= k->size)
            return err_set("%s:%d: key '%s' is %zu bytes long, at most %zu", path, line, k->name, len, k->size - 1);
        memcpy(k->out, val, len + 1);
        return 0;
    }
    case KV_LIST: {
        size_t n = 0, entries = 1;
        for (const char *p = val; *p; p++) entries += *p == ',';
        if (entries > k->size)
            return err_set("%s:%d: key '%s' takes at most %zu values, got %zu", path, line, k->name, k->size, entries);
        for (char *save = NULL, *t = strtok_r(val, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            t = util_trim(t);
            if (num_double(t, k->lo, k->hi, &d) || !in_range(k, d)) return 1;
            ((double *)k->out)[n++] = d;
        }
        if (n != entries) return 1; /* an empty entry */
        *k->count = (int)n;
        return 0;
    }
    case KV_FUNC: return k->set(val, k->out) ? 1 : 0;
    }
    return 1;
}

static int unknown(const char *path, int line, const char *key, const kv_key *keys, int n, const kv_spec *spec)
{
    int ni = 0;
    while (spec->ignored && spec->ignored[ni]) ni++;
    const char **cands = malloc((size_t)(n + ni + 1) * sizeof *cands);
    if (!cands) return err_set("%s:%d: out of memory", path, line);
    for (int i = 0; i < n; i++) cands[i] = keys[i].name;
    for (int i = 0; i < ni; i++) cands[n + i] = spec->ignored[i];
    const char *best = kv_nearest(key, cands, n + ni);
    char hint[128] = "", where[96] = "";
    if (best) snprintf(hint, sizeof hint, " (did you mean '%s'?)", best);
    if (spec->section) snprintf(where, sizeof where, " in [%s]", spec->section);
    free(cands);
    if (!spec->warn_unknown) return err_set("%s:%d: unknown key '%s'%s%s", path, line, key, where, hint);
    fprintf(stderr, "%s:%d: warning: unknown key '%s'%s%s, ignored\n", path, line, key, where, hint);
    return 0;
}

/* One line, white space trimmed, not a comment: 0, or -1 with err_msg(). */
static int read_line(const char *path, int line, char *s, kv_key *keys, int n, const kv_spec *spec, int *section)
{
    if (spec->first_section && *s == '[') {
        if (*section) return 2;   /* the first section is over */
        *section = 1;
        return 0;
    }
    if (spec->section && *s == '[') {
        char head[128];
        snprintf(head, sizeof head, "[%s]", spec->section);
        if (strcmp(s, head)) return err_set("%s:%d: %s: the only section is %s", path, line, s, head);
        if (*section) return err_set("%s:%d: a second %s section", path, line, head);
        *section = 1;
        return 0;
    }
    if (spec->section && !*section)
        return err_set("%s:%d: '%s' before the [%s] section", path, line, s, spec->section);
    char *eq = strchr(s, '=');
    if (!eq) return err_set("%s:%d: expected key=value, got '%s'", path, line, s);
    *eq = 0;
    char *key = util_trim(s), *val = util_trim(eq + 1);
    kv_key *k = keys;
    while (k < keys + n && strcmp(k->name, key)) k++;
    if (k == keys + n) {
        for (int i = 0; spec->ignored && spec->ignored[i]; i++)
            if (!strcmp(spec->ignored[i], key)) return 0;
        return spec->first_section ? 0 : unknown(path, line, key, keys, n, spec);
    }
    char *copy = strdup(val);   /* a list is split in place; the message shows the value as written */
    if (!copy) return err_set("%s:%d: out of memory", path, line);
    int rc = store(path, line, k, copy);
    if (rc == 0 && k->check && k->check(k)) rc = 1;
    if (rc == 1) {
        char buf[256];
        rc = err_set("%s:%d: key '%s' must be %s, got '%s'", path, line, key, want_text(k, buf, sizeof buf), val);
    }
    free(copy);
    if (rc == 0) k->line = line;
    return rc;
}

int kv_read(const char *path, kv_key *keys, int n, const kv_spec *spec)
{
    static const kv_spec plain = {0};
    if (!spec) spec = &plain;
    for (int i = 0; i < n; i++) keys[i].line = 0;
    FILE *f = fopen(path, "r");
    if (!f) return err_set("%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        fclose(f);
        return err_set("%s: is a directory, not a key=value file", path);
    }
    char *buf = NULL;
    size_t cap = 0;
    ssize_t len;
    int line = 0, section = 0, rc = 0;
    while (rc == 0 && (len = getline(&buf, &cap, f)) >= 0) {
        line++;
        if (memchr(buf, 0, (size_t)len)) {
            rc = err_set("%s:%d: a NUL byte: a binary file, not key=value text", path, line);
            break;
        }
        if (len > KV_MAX_LINE) {
            rc = err_set("%s:%d: a line of %zd bytes, more than %d: not a key=value file", path, line, len,
                         KV_MAX_LINE);
            break;
        }
        char *s = buf;
        if (line == 1 && !strncmp(s, "\xEF\xBB\xBF", 3)) s += 3;
        s = util_trim(s);
        if (!*s || *s == '#' || *s == ';') continue;
        if ((rc = read_line(path, line, s, keys, n, spec, &section)) == 2) {
            rc = 0;
            break;
        }
    }
    if (rc == 0 && ferror(f)) rc = err_set("%s: %s", path, strerror(errno));
    free(buf);
    fclose(f);
    if (rc == 0 && spec->section && !section) rc = err_set("%s: no [%s] section", path, spec->section);
    return rc;
}

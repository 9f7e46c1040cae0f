#include "common/err.h"
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char err_buf[1024];

int err_set(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err_buf, sizeof err_buf, fmt, ap);
    va_end(ap);
    return -1;
}

int err_wrap(const char *fmt, ...)
{
    char inner[sizeof err_buf];
    memcpy(inner, err_buf, sizeof inner);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err_buf, sizeof err_buf, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < sizeof err_buf)
        snprintf(err_buf + n, sizeof err_buf - n, "%s", inner);
    return -1;
}

const char *err_msg(void)
{
    return err_buf[0] ? err_buf : "unknown error";
}

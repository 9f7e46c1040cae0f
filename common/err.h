/* Error reporting without exit(): a failing function records a message naming the file/tensor/value and
 * returns -1 (or NULL); the caller that can act on it (the CLI, the trainer loop) prints err_msg().
 * The message is thread-local so loader threads and the GeNIe thread never see each other's errors. */
#ifndef GENIE_ERR_H
#define GENIE_ERR_H

/* Records a printf-style message and returns -1, so a failure path reads `return err_set(...)`. */
int err_set(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prefixes the current message with more context ("loading unet: " + inner message); returns -1. */
int err_wrap(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *err_msg(void);

#endif

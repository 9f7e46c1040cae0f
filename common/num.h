/* The one parser of numbers a user writes (command-line values, .data, genie.cfg and darknet cfg keys, CSV
 * fields): the whole string is the number, in decimal, with no white space, no trailing characters, no hex
 * ("0x10"), no inf or nan; an unsigned number is digits only (no sign: strtoull would take "-1" as 2^64-1). A
 * value that overflows its type ("1e999", "99999999999999999999") is out of range, not clamped. A double too small
 * to represent rounds to 0 (or a subnormal), as strtod does. */
#ifndef GENIE_NUM_H
#define GENIE_NUM_H
#include <stdint.h>

enum { NUM_OK = 0, NUM_SYNTAX = -1, NUM_RANGE = -2 };

/* Each returns NUM_OK and stores *out, NUM_SYNTAX when s is not a number of that kind, or NUM_RANGE when it is one
 * outside lo..hi (or outside its type); *out is untouched on failure. */
int num_int(const char *s, int lo, int hi, int *out);
int num_int64(const char *s, int64_t lo, int64_t hi, int64_t *out);
int num_uint64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out);
/* Finite, within [lo, hi]. */
int num_double(const char *s, double lo, double hi, double *out);

#endif

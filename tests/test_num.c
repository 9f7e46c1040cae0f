/* common/num: the one parser of user numbers. Values are compared with what C's own strtoll/strtod give for the
 * strings accepted; what is refused is refused as a syntax error or as out of range. */
#include "tests/check.h"
#include "common/num.h"

#include <float.h>
#include <stdint.h>

int main(void)
{
    int i = 7;
    int64_t l = 7;
    uint64_t u = 7;
    double d = 7;

    /* int */
    CHECK(num_int("42", 0, 100, &i) == NUM_OK && i == 42, "42: %d", i);
    CHECK(num_int("-5", -10, 10, &i) == NUM_OK && i == -5, "-5: %d", i);
    CHECK(num_int("+5", -10, 10, &i) == NUM_OK && i == 5, "+5: %d", i);
    CHECK(num_int("007", 0, 10, &i) == NUM_OK && i == 7, "007: %d", i);
    i = 3;
    CHECK(num_int("101", 0, 100, &i) == NUM_RANGE && i == 3, "101 out of 0..100, untouched");
    CHECK(num_int("-1", 0, 100, &i) == NUM_RANGE, "-1 out of 0..100");
    CHECK(num_int("2147483648", INT32_MIN, INT32_MAX, &i) == NUM_RANGE, "int overflow");
    CHECK(num_int("2147483647", INT32_MIN, INT32_MAX, &i) == NUM_OK && i == INT32_MAX, "INT_MAX");
    CHECK(num_int("99999999999999999999", INT32_MIN, INT32_MAX, &i) == NUM_RANGE, "long long overflow");
    static const char *not_int[] = {"", " 1", "1 ", "12x", "x12", "0x10", "1.5", "1e3", "--1", "+", "-", "١", "inf",
                                    "nan", "1,2"};
    for (size_t k = 0; k < sizeof not_int / sizeof *not_int; k++)
        CHECK(num_int(not_int[k], INT32_MIN, INT32_MAX, &i) == NUM_SYNTAX, "'%s' is not an integer", not_int[k]);

    /* int64 */
    CHECK(num_int64("9223372036854775807", INT64_MIN, INT64_MAX, &l) == NUM_OK && l == INT64_MAX, "INT64_MAX");
    CHECK(num_int64("-9223372036854775808", INT64_MIN, INT64_MAX, &l) == NUM_OK && l == INT64_MIN, "INT64_MIN");
    CHECK(num_int64("9223372036854775808", INT64_MIN, INT64_MAX, &l) == NUM_RANGE, "int64 overflow");
    CHECK(num_int64("-9223372036854775809", INT64_MIN, INT64_MAX, &l) == NUM_RANGE, "int64 underflow");
    CHECK(num_int64("1073741825", 1, 1 << 30, &l) == NUM_RANGE, "range");
    CHECK(num_int64("0x10", INT64_MIN, INT64_MAX, &l) == NUM_SYNTAX, "hex");

    /* uint64: digits only */
    CHECK(num_uint64("18446744073709551615", 0, UINT64_MAX, &u) == NUM_OK && u == UINT64_MAX, "UINT64_MAX");
    CHECK(num_uint64("18446744073709551616", 0, UINT64_MAX, &u) == NUM_RANGE, "uint64 overflow");
    u = 5;
    CHECK(num_uint64("-1", 0, UINT64_MAX, &u) == NUM_SYNTAX && u == 5, "-1 is not unsigned (strtoull gives 2^64-1)");
    CHECK(num_uint64("+1", 0, UINT64_MAX, &u) == NUM_SYNTAX, "+1 has a sign");
    CHECK(num_uint64("0x10", 0, UINT64_MAX, &u) == NUM_SYNTAX, "hex");
    CHECK(num_uint64(" 1", 0, UINT64_MAX, &u) == NUM_SYNTAX, "leading space");
    CHECK(num_uint64("12x", 0, UINT64_MAX, &u) == NUM_SYNTAX, "trailing junk");
    CHECK(num_uint64("11", 0, 10, &u) == NUM_RANGE, "range");

    /* double: the value is strtod's */
    static const char *good[] = {"0", "-0", "0.5", ".5", "5.", "+1.25", "1e3", "1E-3", "-2.5e+10", "3.14159265358979",
                                 "1e-400" /* underflows to 0: finite */, "1.7976931348623157e308"};
    for (size_t k = 0; k < sizeof good / sizeof *good; k++)
        CHECK(num_double(good[k], -DBL_MAX, DBL_MAX, &d) == NUM_OK && d == strtod(good[k], NULL), "'%s': %g",
              good[k], d);
    CHECK(num_double("1e999", -DBL_MAX, DBL_MAX, &d) == NUM_RANGE, "1e999 overflows");
    CHECK(num_double("-1e999", -DBL_MAX, DBL_MAX, &d) == NUM_RANGE, "-1e999 overflows");
    CHECK(num_double("1.5", 0, 1, &d) == NUM_RANGE, "range");
    CHECK(num_double("1", 0, 1, &d) == NUM_OK && d == 1, "closed range end");
    static const char *not_num[] = {"", " 1", "1 ", "0.5x", "x", "0x10", "0x1p3", "inf", "-inf", "nan", "NAN",
                                    "infinity", "1e", "1e+", "e5", ".", "-", "1..2", "1,5", "1.2.3"};
    for (size_t k = 0; k < sizeof not_num / sizeof *not_num; k++)
        CHECK(num_double(not_num[k], -DBL_MAX, DBL_MAX, &d) == NUM_SYNTAX, "'%s' is not a number", not_num[k]);
    return check_done("num");
}

/* Philox4x32-10 against the Random123 known-answer vectors, and the properties genie relies on. */
#include "tests/check.h"
#include "common/philox.h"
#include <stdlib.h>

int main(void)
{
    static const struct { uint32_t ctr[4], key[2], out[4]; } kat[] = {
        {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
        {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, {0xffffffff, 0xffffffff},
         {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
        {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0},
         {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
    };
    for (int i = 0; i < 3; i++) {
        uint32_t out[4];
        philox4x32_10(kat[i].ctr, kat[i].key, out);
        for (int k = 0; k < 4; k++)
            CHECK(out[k] == kat[i].out[k], "vector %d word %d: %08x != %08x", i, k, out[k], kat[i].out[k]);
    }

    /* Index addressing: a slice taken at an offset equals the same elements of the full fill. */
    enum { N = 4099 };
    float *a = malloc(N * sizeof *a), *b = malloc(N * sizeof *b);
    philox_fill_normal(7, 3, a, N);
    philox_fill_normal(7, 3, b, 10);
    CHECK(check_max_abs(a, b, 10) == 0, "prefix differs");
    double s = 0, s2 = 0;
    for (int i = 0; i < N; i++) s += a[i], s2 += (double)a[i] * a[i];
    CHECK(fabs(s / N) < 0.06 && fabs(s2 / N - 1) < 0.08, "normal moments mean %g var %g", s / N, s2 / N);
    philox_fill_normal(7, 4, b, N);
    CHECK(check_max_abs(a, b, N) > 0.5, "streams 3 and 4 agree");

    philox_t g;
    philox_init(&g, 1, 2);
    int hist[10] = {0};
    int out_of_range = 0;
    for (int i = 0; i < 100000; i++) {
        float u = philox_uniform(&g);
        out_of_range += !(u >= 0 && u < 1);
        hist[philox_int(&g, 10)]++;
    }
    CHECK(out_of_range == 0, "%d uniforms outside [0,1)", out_of_range);
    for (int k = 0; k < 10; k++) CHECK(abs(hist[k] - 10000) < 500, "int bucket %d has %d", k, hist[k]);
    free(a);
    free(b);
    return check_done("philox");
}

#include "common/philox.h"

void philox_init(philox_t *g, uint64_t seed, uint64_t stream)
{
    g->seed = seed;
    g->stream = stream;
    g->block = 0;
    g->pos = 4;
}

uint32_t philox_next(philox_t *g)
{
    if (g->pos == 4) {
        philox_block(g->seed, g->stream, g->block++, g->buf);
        g->pos = 0;
    }
    return g->buf[g->pos++];
}

float philox_uniform(philox_t *g)
{
    return (philox_next(g) >> 8) * (1.0f / 16777216.0f);
}

float philox_range(philox_t *g, float lo, float hi)
{
    return lo + (hi - lo) * philox_uniform(g);
}

int philox_int(philox_t *g, int n)
{
    return (int)(((uint64_t)philox_next(g) * (uint64_t)n) >> 32);
}

void philox_fill_normal(uint64_t seed, uint64_t stream, float *out, size_t n)
{
    for (size_t j = 0; j * 4 < n; j++) {
        uint32_t w[4];
        float v[4];
        philox_block(seed, stream, j, w);
        philox_box_muller(w[0], w[1], &v[0], &v[1]);
        philox_box_muller(w[2], w[3], &v[2], &v[3]);
        for (int k = 0; k < 4 && j * 4 + k < n; k++)
            out[j * 4 + k] = v[k];
    }
}

uint64_t philox_mix(uint64_t a, uint64_t b)
{
    uint64_t z = a * 0x9E3779B97F4A7C15ull + b + 0x632BE59BD9B4E019ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

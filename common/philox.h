/* Philox4x32-10, the counter-based generator cuRAND uses (Salmon et al., SC'11).
 *
 * Every random number in genie comes from here, addressed by (seed, stream, index) rather than drawn from a
 * shared state: a sample's augmentation or an item's diffusion noise depends only on who it is, never on which
 * thread made it or what else was in the batch, and a CUDA kernel computing the same address gets the same bits.
 *
 * Layout: key = seed (64 bits), counter = (block index lo, hi, stream lo, hi). Block j gives four uint32 words;
 * normals come from Box-Muller on word pairs exactly as cuRAND's curand_normal4 does, so element 4j+k of a
 * normal stream is a pure function of (seed, stream, j, k). */
#ifndef GENIE_PHILOX_H
#define GENIE_PHILOX_H
#include <stddef.h>
#include <stdint.h>
#include <math.h>

#ifdef __CUDACC__
#define PHILOX_FN static __host__ __device__ inline
#else
#define PHILOX_FN static inline
#endif

PHILOX_FN void philox4x32_10(const uint32_t ctr_in[4], const uint32_t key_in[2], uint32_t out[4])
{
    uint32_t c0 = ctr_in[0], c1 = ctr_in[1], c2 = ctr_in[2], c3 = ctr_in[3];
    uint32_t k0 = key_in[0], k1 = key_in[1];
    for (int r = 0; r < 10; r++) {
        uint64_t p0 = (uint64_t)0xD2511F53u * c0, p1 = (uint64_t)0xCD9E8D57u * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0, n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        c1 = (uint32_t)p1;
        c3 = (uint32_t)p0;
        c0 = n0;
        c2 = n2;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

PHILOX_FN void philox_block(uint64_t seed, uint64_t stream, uint64_t block, uint32_t out[4])
{
    uint32_t ctr[4] = {(uint32_t)block, (uint32_t)(block >> 32), (uint32_t)stream, (uint32_t)(stream >> 32)};
    uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    philox4x32_10(ctr, key, out);
}

/* Uniform in (0,1], never 0, as cuRAND's _curand_uniform. */
PHILOX_FN float philox_u01(uint32_t x) { return x * 2.3283064e-10f + 2.3283064e-10f / 2.0f; }

/* cuRAND's _curand_box_muller: one pair of words -> two standard normals. */
PHILOX_FN void philox_box_muller(uint32_t x, uint32_t y, float *n0, float *n1)
{
    const float inv2pi = 2.3283064e-10f * 6.2831855f;
    float u = philox_u01(x);
    float v = y * inv2pi + inv2pi / 2.0f;
    float s = sqrtf(-2.0f * logf(u));
    *n0 = s * sinf(v);
    *n1 = s * cosf(v);
}

/* A sequential view on one stream, for code that just wants "the next number" (augmentation). */
typedef struct {
    uint64_t seed, stream, block;
    uint32_t buf[4];
    int pos;
} philox_t;

void philox_init(philox_t *g, uint64_t seed, uint64_t stream);
uint32_t philox_next(philox_t *g);
float philox_uniform(philox_t *g);             /* [0,1) */
float philox_range(philox_t *g, float lo, float hi);
int philox_int(philox_t *g, int n);            /* [0,n) */

/* out[i] = normal element i of stream (seed, stream): index-addressed, the reference for the CUDA twin. */
void philox_fill_normal(uint64_t seed, uint64_t stream, float *out, size_t n);

/* Mixes identities (run seed, sample id, epoch, ...) into one 64-bit stream id (splitmix64 finaliser). */
uint64_t philox_mix(uint64_t a, uint64_t b);

/* Every purpose a stream is drawn for, in one place: two users that key streams the same way (the loader and the
 * generation module both key by sample number) must never share a purpose, or their numbers would correlate.
 * The values are part of every result: changing one changes what a seed makes. */
enum philox_purpose {
    PHILOX_SAMPLE = 1,             /* loader: sample k's round-trip draw, augmentation, mixup/cutmix choices */
    PHILOX_PARTNER = 2,            /* loader: the augmentation of sample k's mixup/cutmix partner */
    PHILOX_SPLIT_ORDER = 0x17,     /* prepare: a long-tail split's class order */
    PHILOX_SPLIT_KEYS = 0x1700,    /* prepare: + class: the keys that pick a split's images */
    PHILOX_REPLACE = 0x5A,         /* loader: sampling with replacement */
    PHILOX_BALANCED = 0xBA,        /* loader: class-balanced sampling */
    PHILOX_PLAN = 0x91A,           /* plan: a planned item's seed */
    PHILOX_BAD_IMAGE = 0xBAD0,     /* loader: + 0 (sample) or 1 (partner): a bad image's replacement */
    PHILOX_SHUFFLE = 0xFE15,       /* loader: the rounds of an epoch's permutation */
    PHILOX_TAIL = 0x7A11,          /* loader: tail rows */
    PHILOX_PAIR = 0x7A12,          /* loader: whether row pair j shows a generated sample's source beside it */
    PHILOX_ENGINE_VAE = 0xE7A1,    /* engine: an item's VAE posterior noise */
    PHILOX_ENGINE_LATENT = 0xE7A2, /* engine: an item's initial latent noise */
    PHILOX_ENGINE_STEP = 0xE7A3,   /* engine: mixed with schedule index i, the noise LCM injects after step i */
    PHILOX_MODULE_REQUEST = 0x6E1, /* online module: request q's target, source and seed */
    PHILOX_GENERATED_ROW = 0x6E2,  /* loader: whether sample k's row takes a generated sample */
    PHILOX_BIG_JPEG = 0xB16,       /* prepare big-jpegs: an image's tint and noise */
};

#endif

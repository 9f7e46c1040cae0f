/* The generated-sample ring: order of takes, reuse, eviction, shortfall, and stress with one producer and many
 * consumers (every image intact, no sample served more than `reuse` times, counts that add up) in the default and
 * the sync mode. Run it under `make tsan` too. */
#include "tests/check.h"
#include "common/err.h"
#include "augment/genie/ring.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define FLOATS 777

static void fill(float *img, uint64_t v)
{
    for (int i = 0; i < FLOATS; i++) img[i] = (float)v + i * 1e-3f;
}

static int intact(const float *img, uint64_t v)
{
    for (int i = 0; i < FLOATS; i++)
        if (img[i] != (float)v + i * 1e-3f) return 0;
    return 1;
}

static void basics(void)
{
    float img[FLOATS], out[FLOATS];
    ring_meta m = {.target = 3, .source_class = 1, .source_index = 42, .r = 0.7f, .snapshot_iter = -1}, got;
    ring *r = ring_create(3, FLOATS * sizeof(float), 2, 0);
    CHECK(r != NULL, "%s", err_msg());
    CHECK(ring_take(r, out, &got) == -1, "took from an empty ring");
    for (uint64_t q = 0; q < 3; q++) {
        fill(img, q);
        m.target = (int)q;
        CHECK(ring_put(r, img, &m) == q, "sequence numbers start at 0");
    }
    /* the least used first, then the oldest: 0 1 2 0 1 2, each twice, then nothing */
    for (int k = 0; k < 6; k++) {
        CHECK(ring_take(r, out, &got) == 0 && got.seq == (uint64_t)(k % 3) && intact(out, got.seq) &&
                  got.uses == 1 + k / 3 && got.target == k % 3 && got.source_index == 42 && got.r == 0.7f,
              "take %d: seq %llu uses %d", k, (unsigned long long)got.seq, got.uses);
    }
    CHECK(ring_take(r, out, &got) == -1, "a sample was served more than reuse times");
    ring_stats st;
    ring_get_stats(r, &st);
    CHECK(st.produced == 3 && st.taken == 6 && st.shortfall == 2 && st.evicted == 0 && st.ready == 0,
          "stats %llu %llu %llu %llu %d", (unsigned long long)st.produced, (unsigned long long)st.taken,
          (unsigned long long)st.shortfall, (unsigned long long)st.evicted, st.ready);

    /* a full ring evicts the most used, then the oldest; the producer never waits */
    for (uint64_t q = 3; q < 6; q++) {
        fill(img, q);
        ring_put(r, img, &m);
    }
    CHECK(ring_take(r, out, &got) == 0 && got.seq == 3, "oldest first");
    fill(img, 6);
    ring_put(r, img, &m); /* evicts 3 (used once) */
    ring_get_stats(r, &st);
    CHECK(st.evicted == 1 && st.ready == 3, "evicted %llu ready %d", (unsigned long long)st.evicted, st.ready);
    uint64_t seen[3];
    for (int k = 0; k < 3; k++) {
        CHECK(ring_take(r, out, &got) == 0 && intact(out, got.seq), "take after eviction");
        seen[k] = got.seq;
    }
    CHECK(seen[0] == 4 && seen[1] == 5 && seen[2] == 6, "after eviction: %llu %llu %llu", (unsigned long long)seen[0],
          (unsigned long long)seen[1], (unsigned long long)seen[2]);
    ring_free(r);
    CHECK(ring_create(0, FLOATS * sizeof(float), 1, 0) == NULL && strstr(err_msg(), "ring"), "0 slots accepted");
    CHECK(ring_create(4, FLOATS * sizeof(float), 0, 0) == NULL && strstr(err_msg(), "reuse"), "reuse 0 accepted");
}

/* ---- stress ---- */
#define PRODUCE 20000
#define CONSUMERS 6
#define REUSE 2

typedef struct {
    ring *r;
    int id, sync;
    int *served;           /* per sample: takes (atomic) */
    volatile int *done;    /* the producer has finished */
    long takes, bad;
} worker;

static void *consume(void *arg)
{
    worker *w = arg;
    float *out = malloc(FLOATS * sizeof(float));
    ring_meta m;
    if (w->sync) {
        /* rows c, c + CONSUMERS, ...: row k is served sample k / REUSE, whatever the timing */
        for (long k = w->id; k < (long)PRODUCE * REUSE; k += CONSUMERS) {
            uint64_t q = (uint64_t)k / REUSE;
            if (ring_take_seq(w->r, q, out, &m) != 0 || m.seq != q || !intact(out, q) || m.target != (int)(q % 10)) {
                w->bad++;
                continue;
            }
            __atomic_fetch_add(&w->served[q], 1, __ATOMIC_RELAXED);
            w->takes++;
        }
    } else {
        for (;;) {
            int finished = __atomic_load_n(w->done, __ATOMIC_ACQUIRE);
            if (ring_take(w->r, out, &m) == 0) {
                if (m.seq >= PRODUCE || !intact(out, m.seq) || m.target != (int)(m.seq % 10)) w->bad++;
                else __atomic_fetch_add(&w->served[m.seq], 1, __ATOMIC_RELAXED);
                w->takes++;
            } else if (finished) {
                break;
            }
        }
    }
    free(out);
    return NULL;
}

static void stress(int sync)
{
    ring *r = ring_create(8, FLOATS * sizeof(float), REUSE, sync);
    int *served = calloc(PRODUCE, sizeof *served);
    volatile int done = 0;
    worker w[CONSUMERS];
    pthread_t th[CONSUMERS];
    for (int c = 0; c < CONSUMERS; c++) {
        w[c] = (worker){.r = r, .id = c, .sync = sync, .served = served, .done = &done};
        pthread_create(&th[c], NULL, consume, &w[c]);
    }
    float *img = malloc(FLOATS * sizeof(float));
    int put_ok = 1;
    for (uint64_t q = 0; q < PRODUCE; q++) {
        ring_meta m = {.target = (int)(q % 10), .source_class = -1, .source_index = -1, .r = 1, .snapshot_iter = -1};
        fill(img, q);
        put_ok &= ring_put(r, img, &m) == q;
    }
    __atomic_store_n(&done, 1, __ATOMIC_RELEASE);
    for (int c = 0; c < CONSUMERS; c++) pthread_join(th[c], NULL);
    long takes = 0, bad = 0, over = 0, never = 0;
    for (int c = 0; c < CONSUMERS; c++) takes += w[c].takes, bad += w[c].bad;
    for (int q = 0; q < PRODUCE; q++) {
        over += served[q] > REUSE;
        never += served[q] == 0;
    }
    ring_stats st;
    ring_get_stats(r, &st);
    const char *mode = sync ? "sync" : "default";
    CHECK(put_ok && st.produced == PRODUCE, "%s: produced %llu", mode, (unsigned long long)st.produced);
    CHECK(bad == 0, "%s: %ld torn or wrong samples", mode, bad);
    CHECK(over == 0, "%s: %ld samples served more than %d times", mode, over, REUSE);
    CHECK((long)st.taken == takes, "%s: ring counted %llu takes, consumers %ld", mode, (unsigned long long)st.taken,
          takes);
    if (sync)
        CHECK(takes == (long)PRODUCE * REUSE && never == 0, "sync: %ld takes, %ld samples never served", takes, never);
    else
        /* every sample is either used up, evicted early, or still in the ring at the end */
        CHECK(takes <= (long)PRODUCE * REUSE && st.ready <= 8 && takes > 0, "default: %ld takes, %d left", takes,
              st.ready);
    ring_free(r);
    free(served);
    free(img);
}

/* A sync consumer waiting on a sample that will never come is released by ring_close. */
static void *wait_forever(void *arg)
{
    float out[FLOATS];
    ring_meta m;
    return (void *)(long)ring_take_seq(arg, 5, out, &m);
}

static void closing(void)
{
    ring *r = ring_create(2, FLOATS * sizeof(float), 1, 1);
    pthread_t th;
    pthread_create(&th, NULL, wait_forever, r);
    ring_close(r);
    void *rc;
    pthread_join(th, &rc);
    CHECK((long)rc == -1, "a closed ring still served a take");
    float img[FLOATS];
    ring_meta m = {0};
    CHECK(ring_put(r, img, &m) == UINT64_MAX, "a closed sync ring took a sample");
    ring_free(r);
}

int main(void)
{
    basics();
    stress(0);
    stress(1);
    closing();
    return check_done("ring");
}

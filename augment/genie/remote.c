#include "augment/genie/remote.h"
#include "common/dist.h"
#include "common/err.h"
#include "common/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The wire: both ends are the same genie binary, so the structs below go as bytes. */
enum { TAG_READY = 1, TAG_SNAP, TAG_JOB, TAG_RESULT, TAG_STOP, TAG_PING, TAG_PONG, TAG_BYE, TAG_FINAL };

typedef struct {
    int32_t status;             /* 0 ready, -1 failed to load (msg) */
    char msg[512];
} ready_wire;

typedef struct {
    uint64_t job;
    int32_t snap, oldest, n, pad;
} job_wire;

typedef struct {
    double r;
    uint64_t seed, stream;
    int32_t target, w, h, pad;  /* w = 0: no source */
} req_wire;

typedef struct {
    uint64_t job;
    int32_t n, rc;
    double seconds;
    char msg[512];
} result_wire;

typedef struct {
    double r;
    float gaps[ADA_MAX_R - 1];
    int32_t n_gaps, ada_fallback, nonfinite, pad;
} res_wire;

enum { W_LOADING, W_IDLE, W_BUSY, W_LOST };

typedef struct {
    int state, *snaps, n_snaps, cap_snaps;
    uint64_t job;
    double since, used, pinged, heard;   /* the state's start; the last job's end; the last ping; the last word */
    dist_msg *snap_msg, *job_msg, *ping_msg;
    int snap_sending;               /* the snapshot id snap_msg sends */
    unsigned char *buf;             /* the job's bytes, kept while job_msg is in flight */
    size_t cap;
} worker;

typedef struct {
    int id, sending;                /* sends in flight from p */
    float *p;
    size_t n;
} snapshot;

struct remote {
    int size, max_req;
    size_t nimg;
    double timeout;
    worker *w;
    snapshot *snap;
    int n_snap, cap_snap;
    unsigned char *rbuf;            /* the latest result's bytes */
    size_t rcap;
    genie_result *res;
    remote_result out;
};

static char ping_byte, pong_byte;

remote *remote_open(int max_req, size_t nimg, double timeout)
{
    remote *r = calloc(1, sizeof *r);
    if (!r || !(r->w = calloc(dist_size(), sizeof *r->w)) ||
        !(r->res = calloc(max_req, sizeof *r->res))) {
        if (r) free(r->w);
        free(r);
        err_set("genie module: out of memory");
        return NULL;
    }
    r->size = dist_size();
    r->max_req = max_req;
    r->nimg = nimg;
    r->timeout = timeout;
    double now = util_now();
    for (int i = 1; i < r->size; i++) r->w[i].since = r->w[i].pinged = now;
    r->w[0].state = W_LOST;   /* rank 0 is not a worker */
    return r;
}

int remote_ranks(const remote *r)
{
    int n = 0;
    for (int i = 1; i < r->size; i++) n += r->w[i].state != W_LOST;
    return n;
}

int remote_idle(remote *r)
{
    int best = -1;
    for (int i = 1; i < r->size; i++)
        if (r->w[i].state == W_IDLE && (best < 0 || r->w[i].used < r->w[best].used)) best = i;
    return best;
}

static snapshot *find_snapshot(const remote *r, int id)
{
    for (int i = 0; i < r->n_snap; i++)
        if (r->snap[i].id == id) return &r->snap[i];
    return NULL;
}

int remote_has_snapshot(const remote *r, int id) { return find_snapshot(r, id) != NULL; }

int remote_add_snapshot(remote *r, int id, const float *p, size_t n)
{
    if (r->n_snap == r->cap_snap) {
        int cap = r->cap_snap ? 2 * r->cap_snap : 4;
        snapshot *s = realloc(r->snap, cap * sizeof *s);
        if (!s) return err_set("genie module: out of memory for a snapshot");
        r->snap = s;
        r->cap_snap = cap;
    }
    /* the id first, so the worker reads it before the floats */
    float *c = malloc(sizeof(float) * (n + 1));
    if (!c) return err_set("genie module: out of memory for a snapshot");
    memcpy(c, &id, sizeof id);
    memcpy(c + 1, p, sizeof(float) * n);
    r->snap[r->n_snap++] = (snapshot){.id = id, .p = c, .n = n + 1};
    return 0;
}

static void lose(remote *r, int i)
{
    worker *w = &r->w[i];
    if (w->job_msg) {   /* MPI may still read its buffer: left to the process's exit */
        dist_cancel(w->job_msg);
        w->buf = NULL, w->cap = 0, w->job_msg = NULL;
    }
    if (w->snap_msg) {
        dist_cancel(w->snap_msg);   /* the snapshot stays counted as sending: never freed before remote_close */
        w->snap_msg = NULL;
    }
    if (w->ping_msg) dist_cancel(w->ping_msg);
    w->ping_msg = NULL;
    w->state = W_LOST;
}

/* drops snapshots below oldest (on our side, as the worker does on its side) */
static void prune(remote *r, worker *w, int oldest)
{
    int k = 0;
    for (int i = 0; i < w->n_snaps; i++)
        if (w->snaps[i] >= oldest) w->snaps[k++] = w->snaps[i];
    w->n_snaps = k;
    k = 0;
    for (int i = 0; i < r->n_snap; i++) {
        if (r->snap[i].id < oldest && !r->snap[i].sending) free(r->snap[i].p);
        else r->snap[k++] = r->snap[i];
    }
    r->n_snap = k;
}

/* completes what was sent to worker i; -1 when a send failed */
static int progress(remote *r, int i)
{
    worker *w = &r->w[i];
    int rc = 0, t;
    if (w->snap_msg && (t = dist_test(w->snap_msg)) != 0) {
        snapshot *s = find_snapshot(r, w->snap_sending);
        if (s) s->sending--;
        w->snap_msg = NULL;
        rc |= t < 0;
    }
    if (w->job_msg && (t = dist_test(w->job_msg)) != 0) w->job_msg = NULL, rc |= t < 0;
    if (w->ping_msg && (t = dist_test(w->ping_msg)) != 0) w->ping_msg = NULL, rc |= t < 0;
    return rc ? -1 : 0;
}

int remote_send(remote *r, int rank, uint64_t job, int snap, int oldest, const genie_request *rq, int n)
{
    worker *w = &r->w[rank];
    progress(r, rank);
    prune(r, w, oldest);
    int have = snap < 0;
    for (int i = 0; i < w->n_snaps && !have; i++) have = w->snaps[i] == snap;
    if (!have) {
        snapshot *s = find_snapshot(r, snap);
        if (!s) return err_set("genie module: snapshot %d was never kept", snap);
        if (w->snap_msg) {   /* the previous snapshot is still on its way: this one waits behind it */
            if (dist_wait(w->snap_msg, r->timeout, NULL)) {
                w->snap_msg = NULL;
                lose(r, rank);
                return -1;
            }
            snapshot *p = find_snapshot(r, w->snap_sending);
            if (p) p->sending--;
        }
        if (w->n_snaps == w->cap_snaps) {
            int cap = w->cap_snaps ? 2 * w->cap_snaps : 4, *p = realloc(w->snaps, cap * sizeof *p);
            if (!p) return err_set("genie module: out of memory");
            w->snaps = p, w->cap_snaps = cap;
        }
        if (!(w->snap_msg = dist_isend(rank, TAG_SNAP, s->p, s->n * sizeof(float)))) {
            lose(r, rank);
            return -1;
        }
        s->sending++;
        w->snap_sending = snap;
        w->snaps[w->n_snaps++] = snap;
    }
    size_t bytes = sizeof(job_wire) + n * sizeof(req_wire);
    for (int i = 0; i < n; i++) bytes += rq[i].source ? (size_t)rq[i].source->w * rq[i].source->h * 3 : 0;
    if (w->job_msg) {   /* done in fact (the worker answered the last job); a new buffer if MPI still says not */
        dist_cancel(w->job_msg);
        w->job_msg = NULL, w->buf = NULL, w->cap = 0;
    }
    if (bytes > w->cap) {
        unsigned char *b = realloc(w->buf, bytes);
        if (!b) return err_set("genie module: out of memory for a request");
        w->buf = b, w->cap = bytes;
    }
    job_wire h = {.job = job, .snap = snap, .oldest = oldest, .n = n};
    unsigned char *p = w->buf;
    memcpy(p, &h, sizeof h);
    p += sizeof h;
    for (int i = 0; i < n; i++, p += sizeof(req_wire)) {
        const img_u8 *s = rq[i].source;
        req_wire q = {.r = rq[i].r, .seed = rq[i].seed, .stream = rq[i].stream, .target = rq[i].target,
                      .w = s ? s->w : 0, .h = s ? s->h : 0};
        memcpy(p, &q, sizeof q);
    }
    for (int i = 0; i < n; i++)
        if (rq[i].source) {
            size_t k = (size_t)rq[i].source->w * rq[i].source->h * 3;
            memcpy(p, rq[i].source->rgb, k);
            p += k;
        }
    if (!(w->job_msg = dist_isend(rank, TAG_JOB, w->buf, bytes))) {
        lose(r, rank);
        return -1;
    }
    w->state = W_BUSY;
    w->job = job;
    w->since = util_now();
    return 0;
}

/* the result message of `bytes` bytes from rank i into r->out; -1 when it does not parse */
static int parse_result(remote *r, int i, size_t bytes)
{
    result_wire h;
    if (bytes < sizeof h) return -1;
    memcpy(&h, r->rbuf, sizeof h);
    if (h.n < 0 || h.n > r->max_req ||
        bytes != sizeof h + (size_t)h.n * (sizeof(res_wire) + sizeof(float) * r->nimg))
        return -1;
    const unsigned char *p = r->rbuf + sizeof h;
    float *img = (float *)(r->rbuf + sizeof h + (size_t)h.n * sizeof(res_wire));
    for (int k = 0; k < h.n; k++, p += sizeof(res_wire)) {
        res_wire q;
        memcpy(&q, p, sizeof q);
        genie_result *g = &r->res[k];
        g->image = img + (size_t)k * r->nimg;
        g->r = q.r;
        memcpy(g->gaps, q.gaps, sizeof g->gaps);
        g->n_gaps = q.n_gaps, g->ada_fallback = q.ada_fallback, g->nonfinite = q.nonfinite;
    }
    r->out = (remote_result){.job = h.job, .rank = i, .n = h.n, .rc = h.rc, .seconds = h.seconds, .res = r->res};
    memcpy(r->out.msg, h.msg, sizeof h.msg);
    r->out.msg[sizeof h.msg - 1] = 0;
    return 0;
}

/* A message from a worker into r->rbuf: 1 (its source, tag, size), 0 none, 2 its receipt failed (*src), -1 +
 * err_msg() when MPI fails. */
static int take_message(remote *r, int *src, int *tag, size_t *bytes)
{
    int got = dist_probe(-1, -1, src, tag, bytes);
    if (got <= 0 || *src < 1 || *src >= r->size) return got < 0 ? -1 : 0;
    if (*bytes > r->rcap) {
        unsigned char *b = realloc(r->rbuf, *bytes);
        if (!b) return err_set("genie module: out of memory for a result");
        r->rbuf = b, r->rcap = *bytes;
    }
    dist_msg *m = dist_irecv(*src, *tag, r->rbuf, *bytes);
    return m && dist_wait(m, r->timeout, NULL) == 0 ? 1 : 2;
}

/* Silent for too long: loading or making a request since `since`, or idle (answering pings) since `heard`. */
static int silent(const remote *r, const worker *w, double now)
{
    return ((w->state == W_LOADING || w->state == W_BUSY) && now - w->since > r->timeout) ||
           (w->state == W_IDLE && now - w->heard > r->timeout);
}

int remote_poll(remote *r, const remote_result **res, int *lost_rank, uint64_t *lost_job, int *lost_busy)
{
    double now = util_now();
    for (int i = 1; i < r->size; i++) {
        worker *w = &r->w[i];
        if (w->state == W_LOST) continue;
        progress(r, i);
        if (w->state == W_IDLE && !w->ping_msg && now - w->pinged >= (r->timeout < 4 ? r->timeout / 4 : 1)) {
            w->ping_msg = dist_isend(i, TAG_PING, &ping_byte, 1);
            w->pinged = now;
        }
    }
    int src, tag;
    size_t bytes;
    int got = take_message(r, &src, &tag, &bytes);
    if (got < 0) return -1;
    if (got == 2) {
        *lost_rank = src, *lost_job = r->w[src].job, *lost_busy = r->w[src].state == W_BUSY;
        lose(r, src);
        return 2;
    }
    if (got) {
        worker *w = &r->w[src];
        if (w->state == W_LOST) return 0;   /* given up already: what it says now is not waited for */
        w->heard = now;
        if (tag == TAG_PONG) return 0;
        if (tag == TAG_READY && w->state == W_LOADING) {
            ready_wire h = {0};
            memcpy(&h, r->rbuf, bytes < sizeof h ? bytes : sizeof h);
            h.msg[sizeof h.msg - 1] = 0;
            if (h.status) {
                fprintf(stderr, "genie module: generator rank %d failed to load: %s\n", src, h.msg);
                *lost_rank = src, *lost_busy = 0;
                lose(r, src);
                return 2;
            }
            w->state = W_IDLE;
            w->used = w->pinged = now;
            return 0;
        }
        if (tag == TAG_RESULT && w->state == W_BUSY && parse_result(r, src, bytes) == 0 && r->out.job == w->job) {
            w->state = W_IDLE;
            w->used = w->pinged = now;
            *res = &r->out;
            return 1;
        }
        fprintf(stderr, "genie module: generator rank %d sent a message out of turn (tag %d, %zu bytes): given up\n",
                src, tag, bytes);
        *lost_rank = src, *lost_job = w->job, *lost_busy = w->state == W_BUSY;
        lose(r, src);
        return 2;
    }
    for (int i = 1; i < r->size; i++) {
        worker *w = &r->w[i];
        if (silent(r, w, now)) {
            *lost_rank = i, *lost_job = w->job, *lost_busy = w->state == W_BUSY;
            lose(r, i);
            return 2;
        }
    }
    return 0;
}

static int g_stopped;   /* the workers were told to stop (once is enough) */

/* The end. Every worker is told to stop and says bye (a busy one once its request is made; what it sends before
 * is dropped); one silent for worker_timeout, as remote_poll judges, is given up. Then each hears whether a rank
 * was given up: if so no rank calls MPI_Finalize, which would wait for ever for the dead one (dist_peer_lost). r
 * NULL (no module): nothing to wait for. */
static void stop_all(remote *r)
{
    static char stop_byte, lost;
    if (g_stopped) return;
    g_stopped = 1;
    int n = dist_size();
    dist_msg **m = calloc(n, sizeof *m);
    char *bye = calloc(n, 1);
    if (!m || !bye) lost = 1;   /* then no rank can be waited for */
    for (int i = 1; m && i < n; i++) m[i] = dist_isend(i, TAG_STOP, &stop_byte, 1);
    while (r && bye) {
        double now = util_now();
        int waiting = 0, src, tag;
        size_t bytes;
        for (int i = 1; i < n; i++) {
            if (r->w[i].state == W_LOST || bye[i]) continue;
            if (silent(r, &r->w[i], now)) {
                fprintf(stderr, "genie module: generator rank %d did not answer the stop in %g s (worker_timeout): "
                        "given up\n", i, r->timeout);
                lose(r, i);
            } else
                waiting = 1;
        }
        if (!waiting) break;
        int got = take_message(r, &src, &tag, &bytes);
        if (got < 0) {
            lost = 1;
            break;
        }
        if (got == 2) lose(r, src);
        if (got == 1 && r->w[src].state != W_LOST) {
            worker *w = &r->w[src];
            w->heard = now;
            if (tag == TAG_BYE) bye[src] = 1;
            else if (w->state != W_IDLE) w->state = W_IDLE;   /* its last result or its ready: idle now */
        }
        if (!got) util_sleep(500e-6);
    }
    for (int i = 1; r && i < n; i++) lost |= r->w[i].state == W_LOST;
    if (lost) dist_peer_lost();
    /* a stop and the final word are one byte (sent eagerly): a second is plenty, and a dead rank never takes them */
    for (int i = 1; m && i < n; i++)
        if (m[i]) dist_wait(m[i], 1.0, NULL);
    for (int i = 1; m && i < n; i++)
        if ((m[i] = dist_isend(i, TAG_FINAL, &lost, 1))) dist_wait(m[i], 1.0, NULL);
    free(m);
    free(bye);
}

void remote_close(remote *r)
{
    if (!r) return;
    stop_all(r);
    /* what is still on its way is given up; MPI may hold its buffer until the process ends, so it is left there */
    for (int i = 1; i < r->size; i++) {
        worker *w = &r->w[i];
        progress(r, i);
        if (w->job_msg) dist_cancel(w->job_msg);
        else free(w->buf);
        if (w->snap_msg) dist_cancel(w->snap_msg);
        if (w->ping_msg) dist_cancel(w->ping_msg);
        free(w->snaps);
    }
    for (int i = 0; i < r->n_snap; i++)
        if (!r->snap[i].sending) free(r->snap[i].p);
    free(r->snap);
    free(r->w);
    free(r->rbuf);
    free(r->res);
    free(r);
}

void remote_dismiss(void)
{
    if (dist_rank() == 0 && dist_size() > 1) stop_all(NULL);
}

/* ---- a worker ---- */

static int send_wait(int tag, const void *p, size_t n, double timeout)
{
    dist_msg *m = dist_isend(0, tag, p, n);
    return m ? dist_wait(m, timeout, NULL) : -1;
}

void remote_refuse(const char *why)
{
    ready_wire h = {.status = -1};
    snprintf(h.msg, sizeof h.msg, "%s", why);
    send_wait(TAG_READY, &h, sizeof h, 10);
    dist_peer_lost();   /* rank 0 gives this rank up: no rank finalizes */
}

typedef struct {
    int id;
    float *p;
    size_t n;
} held;

int remote_serve(genie *g, int max_req, double timeout, int (*snapshot)(void *ctx, const float *p, size_t n),
                 void *ctx)
{
    size_t nimg = genie_image_floats(g);
    genie_request *rq = calloc(max_req, sizeof *rq);
    img_u8 *src = calloc(max_req, sizeof *src);
    held *snaps = NULL;
    int n_snaps = 0, loaded = -1, rc = 0;
    unsigned char *in = NULL, *out = malloc(sizeof(result_wire) + max_req * (sizeof(res_wire) + sizeof(float) * nimg));
    size_t in_cap = 0;
    genie_result *res = calloc(max_req, sizeof *res);
    if (!rq || !src || !out || !res) rc = err_set("generator rank: out of memory");
    ready_wire hello = {.status = rc};
    if (rc) snprintf(hello.msg, sizeof hello.msg, "%s", err_msg());
    if (send_wait(TAG_READY, &hello, sizeof hello, timeout)) rc = -1;
    double heard = util_now();
    double nap = 100e-6;
    dist_msg *sent = NULL;   /* the last result, on its way while this rank listens (rank 0 may stop first) */
    dist_msg *pong = NULL, *bye = NULL;
    while (rc == 0) {
        int tag;
        size_t bytes;
        if (sent) {
            int t = dist_test(sent);
            if (t) sent = NULL;
            if (t < 0) rc = -1;
        }
        if (pong) {
            int t = dist_test(pong);
            if (t) pong = NULL;
            if (t < 0) rc = -1;
        }
        int got = rc ? -1 : dist_probe(0, -1, NULL, &tag, &bytes);
        if (got < 0) {
            rc = -1;
            break;
        }
        if (!got) {
            if (util_now() - heard > timeout) {
                dist_peer_lost();
                rc = err_set("nothing from rank 0 in %g s (worker_timeout): stopping", timeout);
                break;
            }
            util_sleep(nap);
            if (nap < 2e-3) nap *= 2;   /* idle: at most 500 probes a second */
            continue;
        }
        nap = 100e-6;
        heard = util_now();
        if (bytes > in_cap) {
            unsigned char *b = realloc(in, bytes);
            if (!b) {
                rc = err_set("generator rank: out of memory for a message of %zu bytes", bytes);
                break;
            }
            in = b, in_cap = bytes;
        }
        dist_msg *m = dist_irecv(0, tag, in, bytes);
        if (!m || dist_wait(m, timeout, NULL)) {
            rc = -1;
            break;
        }
        if (tag == TAG_STOP) {   /* bye, then rank 0's final word */
            if (!bye && !(bye = dist_isend(0, TAG_BYE, &pong_byte, 1))) rc = -1;
            continue;
        }
        if (tag == TAG_FINAL) {
            if (bytes == 1 && in[0]) dist_peer_lost();   /* a rank was given up: rank 0 leaves without MPI_Finalize */
            break;
        }
        if (tag == TAG_PING) {   /* alive and idle: said unless the last one is still on its way */
            if (!pong && !(pong = dist_isend(0, TAG_PONG, &pong_byte, 1))) rc = -1;
            continue;
        }
        if (sent && dist_wait(sent, timeout, NULL)) {   /* rank 0 took it before sending more: done in fact */
            sent = NULL;
            rc = -1;
            break;
        }
        sent = NULL;
        if (tag == TAG_SNAP) {
            held h = {.n = bytes / sizeof(float) - 1, .p = malloc(bytes)};
            held *s = realloc(snaps, (n_snaps + 1) * sizeof *s);
            if (s) snaps = s;
            if (!h.p || !s || bytes < sizeof(float)) {
                free(h.p);
                rc = err_set("generator rank: out of memory for a snapshot");
                break;
            }
            memcpy(&h.id, in, sizeof h.id);
            memcpy(h.p, in + sizeof(float), bytes - sizeof(float));
            snaps[n_snaps++] = h;
            continue;
        }
        job_wire j;
        if (tag != TAG_JOB || bytes < sizeof j) {
            rc = err_set("generator rank: a message of tag %d, %zu bytes, out of turn", tag, bytes);
            break;
        }
        memcpy(&j, in, sizeof j);
        int k = 0;
        for (int i = 0; i < n_snaps; i++) {
            if (snaps[i].id < j.oldest && snaps[i].id != j.snap) free(snaps[i].p);
            else snaps[k++] = snaps[i];
        }
        n_snaps = k;
        result_wire h = {.job = j.job, .n = j.n};
        const unsigned char *p = in + sizeof j, *pix = p + (size_t)j.n * sizeof(req_wire);
        if (j.n < 1 || j.n > max_req) h.rc = -1, snprintf(h.msg, sizeof h.msg, "a job of %d requests", (int)j.n);
        for (int i = 0; h.rc == 0 && i < j.n; i++, p += sizeof(req_wire)) {
            req_wire q;
            memcpy(&q, p, sizeof q);
            rq[i] = (genie_request){.target = q.target, .r = q.r, .seed = q.seed, .stream = q.stream};
            if (!q.w) continue;
            size_t n = (size_t)q.w * q.h * 3;
            if (n > src[i].cap) {
                unsigned char *b = realloc(src[i].rgb, n);
                if (!b) {
                    h.rc = -1;
                    snprintf(h.msg, sizeof h.msg, "out of memory for a source image");
                    break;
                }
                src[i].rgb = b, src[i].cap = n;
            }
            src[i].w = q.w, src[i].h = q.h;
            memcpy(src[i].rgb, pix, n);
            pix += n;
            rq[i].source = &src[i];
        }
        if (h.rc == 0 && j.snap >= 0 && j.snap != loaded) {
            held *s = NULL;
            for (int i = 0; i < n_snaps && !s; i++)
                if (snaps[i].id == j.snap) s = &snaps[i];
            if (!s || snapshot(ctx, s->p, s->n)) {
                h.rc = -1;
                snprintf(h.msg, sizeof h.msg, "snapshot %d: %s", (int)j.snap, s ? err_msg() : "never received");
                loaded = -1;
            } else loaded = j.snap;
        }
        unsigned char *o = out + sizeof h;
        float *img = (float *)(out + sizeof h + (size_t)j.n * sizeof(res_wire));
        for (int i = 0; h.rc == 0 && i < j.n; i++) res[i].image = img + (size_t)i * nimg;
        double t0 = util_now();
        if (h.rc == 0 && genie_run(g, rq, j.n, res)) {
            h.rc = -1;
            snprintf(h.msg, sizeof h.msg, "%s", err_msg());
        }
        h.seconds = util_now() - t0;
        if (h.rc) h.n = 0;
        for (int i = 0; i < h.n; i++, o += sizeof(res_wire)) {
            res_wire q = {.r = res[i].r, .n_gaps = res[i].n_gaps, .ada_fallback = res[i].ada_fallback,
                          .nonfinite = res[i].nonfinite};
            memcpy(q.gaps, res[i].gaps, sizeof q.gaps);
            memcpy(o, &q, sizeof q);
        }
        memcpy(out, &h, sizeof h);   /* the images already lie after the results: genie_run wrote them there */
        if (!(sent = dist_isend(0, TAG_RESULT, out, sizeof h + (size_t)h.n * (sizeof(res_wire) + sizeof(float) * nimg))))
            rc = -1;
    }
    dist_cancel(pong);
    if (bye && dist_wait(bye, 1.0, NULL)) dist_peer_lost();
    if (sent) {   /* rank 0 stopped first: MPI may still hold the buffer, left to the process's exit */
        dist_cancel(sent);
        out = NULL;
    }
    for (int i = 0; i < n_snaps; i++) free(snaps[i].p);
    free(snaps);
    for (int i = 0; src && i < max_req; i++) imgio_free(&src[i]);
    free(src), free(rq), free(res), free(in), free(out);
    return rc;
}

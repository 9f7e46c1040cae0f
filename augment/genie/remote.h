/* Generator ranks of an MPI job (`mpirun -np 1+K genie classifier train ...`): ranks >= 1 run the online module's
 * requests for rank 0, which trains. Each rank loads the same generator from the same arguments; only f_theta's
 * snapshots (flat parameters, backbone_net_pack), requests (target, r, seed, stream, the source's pixels) and
 * results (genie_result and the planar image, bit for bit) cross the wire. A worker runs each request exactly as
 * the module would in-process (the same genie_run call, the same snapshot loaded the same way), so where a request
 * runs never changes its result.
 *
 * Rank 0 never blocks on a worker: every call below returns at once, and a worker silent for worker_timeout
 * seconds is given up (remote_poll reports it; its request is the caller's to place again): one loading or making
 * a request since it started, one idle since it last answered rank 0's pings (every second). A worker that hears
 * nothing from rank 0 for worker_timeout seconds stops. Once a rank was given up no rank calls MPI_Finalize (it
 * would wait for the dead one): the stop tells the workers. Only rank 0's module thread calls these
 * (MPI_THREAD_SERIALIZED, common/dist.h), and its caller's thread after that thread ended. */
#ifndef GENIE_REMOTE_H
#define GENIE_REMOTE_H
#include <stddef.h>
#include <stdint.h>
#include "augment/genie/genie.h"

typedef struct remote remote;

/* One finished request batch of a worker: valid until the next remote_poll. */
typedef struct {
    uint64_t job;
    int rank, n, rc;            /* rc -1: the worker's genie_run failed (msg) */
    double seconds;             /* the worker's time in genie_run */
    genie_result *res;          /* n results, each image in the poll's buffer */
    char msg[512];
} remote_result;

/* Rank 0 of a job of more than one rank: the workers (ranks 1..size-1), each loading until it says it is ready.
 * max_req: requests per job at most; nimg: floats of one image. NULL + err_msg(). */
remote *remote_open(int max_req, size_t nimg, double timeout);
/* Workers not given up (loading or ready), and an idle one's rank (-1: none), the least recently used first. */
int remote_ranks(const remote *r);
int remote_idle(remote *r);
/* Snapshot `id` (f_theta's flat parameters): kept (copied) to send to each worker before its first job that uses
 * it. Snapshots below a job's `oldest` are dropped on both sides. */
int remote_has_snapshot(const remote *r, int id);
int remote_add_snapshot(remote *r, int id, const float *p, size_t n);
/* n requests (each with its source's pixels) to idle worker `rank` as job `job`, run at snapshot `snap` (-1: no
 * f_theta). 0, or -1 + err_msg() (the worker is then given up: remote_poll reports it). */
int remote_send(remote *r, int rank, uint64_t job, int snap, int oldest, const genie_request *rq, int n);
/* What happened since the last call: 1 a job finished (*res), 2 a worker was given up (*lost_rank; *lost_job is its
 * job when *lost_busy, else it was loading or idle), 0 nothing. -1 + err_msg() when MPI fails. */
int remote_poll(remote *r, const remote_result **res, int *lost_rank, uint64_t *lost_job, int *lost_busy);
/* Tells every worker to stop and frees r. */
void remote_close(remote *r);
/* Rank 0 of a job whose run has no module (no genie.cfg, or it failed before starting): every worker stops. */
void remote_dismiss(void);

/* A worker (rank >= 1): says it is ready, then runs the jobs rank 0 sends with g until told to stop (or rank 0
 * is silent for timeout seconds). snapshot(ctx, p, n) makes snapshot p f_theta's (and its class means). 0, or
 * -1 + err_msg(). */
int remote_serve(genie *g, int max_req, double timeout, int (*snapshot)(void *ctx, const float *p, size_t n),
                 void *ctx);
/* A worker that failed to load: rank 0 hears why (and gives it up at once). */
void remote_refuse(const char *why);

#endif

/* The processes of one job started by mpirun or srun (Open MPI): the one module that includes mpi.h, so the rest
 * of genie builds and runs without it (make MPI=0, or no libopenmpi-dev). A process that was not started by such a
 * launcher, or a build without MPI, is rank 0 of 1: every call below returns at once and MPI is never initialised.
 *
 * The collectives (dist_all_ok, dist_bcast) are entered by every rank in the same order from the thread that
 * called dist_init; a rank that fails still enters them with its status, so no rank waits for ever on one that
 * gave up. A rank that dies ends the job (mpirun's default), which is why what the ranks make must be resumable.
 *
 * MPI is joined at MPI_THREAD_SERIALIZED: any one thread at a time may call in (the online module's thread while the
 * trainer's thread stays out of MPI, dist_finalize after it has stopped). The point-to-point calls never block:
 * a send or receive is started, then tested, so every wait on a peer is a poll loop with a deadline; a peer that
 * went silent (killed: the job survives it only under `mpirun --enable-recovery`; Open MPI 4.1 has no ULFM) is
 * given up by cancelling what is in flight to it. */
#ifndef GENIE_DIST_H
#define GENIE_DIST_H
#include <stddef.h>

/* Joins the job when launched by mpirun/srun (once; later calls return 0). -1 + err_msg() when MPI fails to start. */
int dist_init(void);
/* This process's rank and the job's size; the rank among the job's processes on this machine, and their count
 * (a device per local rank: cuda:<local rank>). Before dist_init, or alone: 0, 1, 0, 1. */
int dist_rank(void);
int dist_size(void);
int dist_local_rank(void);
int dist_local_size(void);
/* 1 when every rank passed a non-zero ok, else 0 (and 0 when the collective itself fails). */
int dist_all_ok(int ok);
/* n bytes from rank 0 to every rank. -1 + err_msg() when it fails. */
int dist_bcast(void *buf, size_t n);
/* A message in flight (dist_isend, dist_irecv). */
typedef struct dist_msg dist_msg;
/* Starts sending n bytes of buf (kept unchanged until done) to rank `to` with tag `tag` (0..32767). NULL +
 * err_msg(). */
dist_msg *dist_isend(int to, int tag, const void *buf, size_t n);
/* Whether a message from `from` (-1: any rank) with tag `tag` (-1: any) has arrived: 1 with its source, tag and
 * size (each may be NULL), else 0; -1 + err_msg() when MPI fails. */
int dist_probe(int from, int tag, int *src, int *got_tag, size_t *n);
/* Starts receiving n bytes from `from` with tag `tag` into buf. NULL + err_msg(). */
dist_msg *dist_irecv(int from, int tag, void *buf, size_t n);
/* 1 when done (m is freed), 0 while in flight, -1 + err_msg() when it failed (m is freed). */
int dist_test(dist_msg *m);
/* Waits for m at most `timeout` seconds, polling, and gives up early once *stop (may be NULL) is set: 0 when
 * done, -1 + err_msg() otherwise; m is freed either way (cancelled when not done). */
int dist_wait(dist_msg *m, double timeout, const int *stop);
/* Gives up on a message in flight to or from a silent peer, and frees m. The buffer of a send given up this way
 * must stay allocated (MPI may still hold it) until dist_finalize. */
void dist_cancel(dist_msg *m);
/* A rank of this job died (or left without MPI_Finalize): Open MPI 4.1's MPI_Finalize then waits for ever for it,
 * so dist_finalize leaves without it. Every surviving rank must call this alike (a rank in MPI_Finalize waits for
 * the ones that skip it); mpirun --enable-recovery then ends the job normally. */
void dist_peer_lost(void);
/* Leaves the job (every rank, once, after its last collective). */
void dist_finalize(void);

#endif

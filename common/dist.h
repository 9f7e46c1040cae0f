/* The processes of one job started by mpirun or srun (Open MPI): the one module that includes mpi.h, so the rest
 * of genie builds and runs without it (make MPI=0, or no libopenmpi-dev). A process that was not started by such a
 * launcher, or a build without MPI, is rank 0 of 1: every call below returns at once and MPI is never initialised.
 *
 * The collectives (dist_all_ok, dist_bcast) are entered by every rank in the same order from the thread that
 * called dist_init; a rank that fails still enters them with its status, so no rank waits for ever on one that
 * gave up. A rank that dies ends the job (mpirun's default), which is why what the ranks make must be resumable. */
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
/* Leaves the job (every rank, once, after its last collective). */
void dist_finalize(void);

#endif

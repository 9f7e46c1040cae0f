#include "common/dist.h"
#include "common/err.h"
#include "common/util.h"

#include <stdlib.h>

static int g_rank, g_size = 1, g_local_rank, g_local_size = 1;

#ifdef GENIE_MPI
#include <limits.h>
#include <mpi.h>

static int g_joined, g_lost;

static int mpi_err(const char *what, int rc)
{
    char s[MPI_MAX_ERROR_STRING];
    int n = 0;
    if (MPI_Error_string(rc, s, &n) != MPI_SUCCESS) n = 0;
    s[n] = 0;
    return err_set("MPI: %s failed (%s)", what, s);
}

/* Started by a launcher: Open MPI's mpirun, or a PMIx/PMI launcher such as srun --mpi=pmix. Anything else runs
 * alone without starting MPI (a singleton MPI_Init would start a daemon for nothing). */
static int launched(void)
{
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_RANK");
}

int dist_init(void)
{
    if (g_joined || !launched()) return 0;
    int provided, rc;
    /* serialized: the online module's thread talks to the generator ranks while the trainer's thread, which
     * joined, stays out of MPI until it finalizes after the module stopped */
    if ((rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_SERIALIZED, &provided)) != MPI_SUCCESS)
        return mpi_err("MPI_Init_thread", rc);
    g_joined = 1;
    if (provided < MPI_THREAD_SERIALIZED)
        return err_set("MPI: this MPI library gives thread level %d, genie needs MPI_THREAD_SERIALIZED (%d)", provided,
                       MPI_THREAD_SERIALIZED);
    /* errors come back as codes (and become err_msg), instead of MPI aborting the job from inside a call */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm local;
    if ((rc = MPI_Comm_rank(MPI_COMM_WORLD, &g_rank)) != MPI_SUCCESS ||
        (rc = MPI_Comm_size(MPI_COMM_WORLD, &g_size)) != MPI_SUCCESS)
        return mpi_err("MPI_Comm_rank/size", rc);
    if ((rc = MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, g_rank, MPI_INFO_NULL, &local)) !=
        MPI_SUCCESS)
        return mpi_err("MPI_Comm_split_type", rc);
    MPI_Comm_rank(local, &g_local_rank);
    MPI_Comm_size(local, &g_local_size);
    MPI_Comm_free(&local);
    return 0;
}

int dist_all_ok(int ok)
{
    if (!g_joined) return ok != 0;
    int mine = ok != 0, all = 0;
    if (MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD) != MPI_SUCCESS) return 0;
    return all;
}

int dist_bcast(void *buf, size_t n)
{
    if (!g_joined) return 0;
    for (size_t o = 0; o < n;) {   /* MPI counts are ints */
        int k = n - o > INT_MAX ? INT_MAX : (int)(n - o), rc;
        if ((rc = MPI_Bcast((char *)buf + o, k, MPI_BYTE, 0, MPI_COMM_WORLD)) != MPI_SUCCESS)
            return mpi_err("MPI_Bcast", rc);
        o += k;
    }
    return 0;
}

struct dist_msg {
    MPI_Request rq;
};

static dist_msg *start(int send, int peer, int tag, void *buf, size_t n)
{
    if (n > INT_MAX) {
        err_set("MPI: a message of %zu bytes (at most %d)", n, INT_MAX);
        return NULL;
    }
    dist_msg *m = malloc(sizeof *m);
    if (!m) {
        err_set("MPI: out of memory");
        return NULL;
    }
    int rc = send ? MPI_Isend(buf, (int)n, MPI_BYTE, peer, tag, MPI_COMM_WORLD, &m->rq)
                  : MPI_Irecv(buf, (int)n, MPI_BYTE, peer, tag, MPI_COMM_WORLD, &m->rq);
    if (rc != MPI_SUCCESS) {
        free(m);
        mpi_err(send ? "MPI_Isend" : "MPI_Irecv", rc);
        return NULL;
    }
    return m;
}

dist_msg *dist_isend(int to, int tag, const void *buf, size_t n) { return start(1, to, tag, (void *)buf, n); }

dist_msg *dist_irecv(int from, int tag, void *buf, size_t n)
{
    return start(0, from < 0 ? MPI_ANY_SOURCE : from, tag < 0 ? MPI_ANY_TAG : tag, buf, n);
}

int dist_probe(int from, int tag, int *src, int *got_tag, size_t *n)
{
    int flag = 0, count = 0, rc;
    MPI_Status st;
    if ((rc = MPI_Iprobe(from < 0 ? MPI_ANY_SOURCE : from, tag < 0 ? MPI_ANY_TAG : tag, MPI_COMM_WORLD, &flag, &st)) !=
        MPI_SUCCESS)
        return mpi_err("MPI_Iprobe", rc);
    if (!flag) return 0;
    MPI_Get_count(&st, MPI_BYTE, &count);
    if (src) *src = st.MPI_SOURCE;
    if (got_tag) *got_tag = st.MPI_TAG;
    if (n) *n = (size_t)count;
    return 1;
}

int dist_test(dist_msg *m)
{
    int done = 0, rc = MPI_Test(&m->rq, &done, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS) {
        free(m);
        return mpi_err("MPI_Test", rc);
    }
    if (done) free(m);
    return done;
}

void dist_cancel(dist_msg *m)
{
    if (!m) return;
    /* a send the peer never matched stays pending in Open MPI even once cancelled: freeing the request leaves it
     * to MPI, never waited on */
    MPI_Cancel(&m->rq);
    MPI_Request_free(&m->rq);
    free(m);
}

void dist_peer_lost(void) { g_lost = 1; }

void dist_finalize(void)
{
    if (!g_joined) return;
    if (!g_lost) MPI_Finalize();
    g_joined = 0;
}
#else
/* a build without MPI started as one of several ranks would make every row in every rank, racing on each file */
int dist_init(void)
{
    const char *n = getenv("OMPI_COMM_WORLD_SIZE");
    if (n && atoi(n) > 1)
        return err_set("started as one of %s ranks, but this genie is built without MPI (make MPI=1 with "
                       "libopenmpi-dev installed)", n);
    return 0;
}
int dist_all_ok(int ok) { return ok != 0; }
int dist_bcast(void *buf, size_t n) { return 0; }
void dist_finalize(void) {}
void dist_peer_lost(void) {}
/* alone, no rank to talk to: never called (callers check dist_size() first) */
dist_msg *dist_isend(int to, int tag, const void *buf, size_t n)
{
    err_set("MPI: this genie is built without MPI");
    return NULL;
}
dist_msg *dist_irecv(int from, int tag, void *buf, size_t n) { return dist_isend(from, tag, buf, n); }
int dist_probe(int from, int tag, int *src, int *got_tag, size_t *n) { return 0; }
int dist_test(dist_msg *m) { return err_set("MPI: this genie is built without MPI"); }
void dist_cancel(dist_msg *m) {}
#endif

int dist_wait(dist_msg *m, double timeout, const int *stop)
{
    double t0 = util_now();
    for (;;) {
        int rc = dist_test(m);
        if (rc) return rc > 0 ? 0 : -1;
        int stopped = stop && __atomic_load_n(stop, __ATOMIC_ACQUIRE);
        if (util_now() - t0 > timeout || stopped) {
            dist_cancel(m);
            return stopped ? err_set("MPI: stopped while waiting for a peer")
                           : err_set("MPI: no answer from a peer in %g s", timeout);
        }
        util_sleep(200e-6);   /* 0.2 ms between tests */
    }
}

int dist_rank(void) { return g_rank; }
int dist_size(void) { return g_size; }
int dist_local_rank(void) { return g_local_rank; }
int dist_local_size(void) { return g_local_size; }

#include "common/dist.h"
#include "common/err.h"

#include <stdlib.h>

static int g_rank, g_size = 1, g_local_rank, g_local_size = 1;

#ifdef GENIE_MPI
#include <limits.h>
#include <mpi.h>

static int g_joined;

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
    if ((rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided)) != MPI_SUCCESS)
        return mpi_err("MPI_Init_thread", rc);
    g_joined = 1;
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

void dist_finalize(void)
{
    if (!g_joined) return;
    MPI_Finalize();
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
#endif

int dist_rank(void) { return g_rank; }
int dist_size(void) { return g_size; }
int dist_local_rank(void) { return g_local_rank; }
int dist_local_size(void) { return g_local_size; }

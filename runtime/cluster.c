/*
** The MPI job: joining and leaving it, this rank and the number of ranks,
** the output of ranks other than 0, and the two collectives par needs.
*/
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <mpi.h>

#include "cluster.h"
#include "parlua.h"
#include "mpiwait.h"
#include "rankout.h"

static int rank = 0, size = 1, local_size = 1, started = 0;
static int ended_rank = -1; /* a rank seen to have ended its script while this one went on */
static int leaving = 0;     /* the job is ending: see cluster_leave */
static uint64_t agreements = 0; /* cluster_agree calls so far, the same count on every rank */

static char ended_message[96];

/*
** The launcher ends every rank with SIGTERM when one dies. par's waits
** turn it into an error naming the ranks with unfinished items; between
** waits, this at least says why the rank ends.
*/
static void ended_by_launcher(int sig) {
  ssize_t unused = write(2, ended_message, strlen(ended_message));
  (void)unused;
  _exit(128 + sig);
}

static void catch_launcher_end(void) {
  struct sigaction sa;
  snprintf(ended_message, sizeof ended_message,
           "parlua-mpi: rank %d ended by SIGTERM (most likely another rank died)\n", rank);
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = ended_by_launcher;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, NULL);
}

static void count_local_ranks(void) {
  MPI_Comm local;
  if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &local) != MPI_SUCCESS) return;
  MPI_Comm_size(local, &local_size);
  MPI_Comm_free(&local);
}

void cluster_start(int *argc, char ***argv) {
  const char *output = getenv("PARLUA_MPI_OUTPUT");
  /*
  ** Open MPI warns when a process that called MPI_Init forks. par's
  ** workers are forked only to run Lua and never call MPI: they talk to
  ** their rank over pipes and leave with _exit, so the warning is noise.
  */
  setenv("OMPI_MCA_mpi_warn_on_fork", "0", 0);
  if (MPI_Init(argc, argv) != MPI_SUCCESS) return;
  started = 1;
  atexit(cluster_end); /* os.exit too leaves the job properly */
  /* a rank that dies ends the job through the launcher; the others see errors, not an abort */
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  count_local_ranks();
  /* MPI's own threads hold no lock a worker could need: it never calls MPI */
  parlua_allow_threads(1);
  catch_launcher_end();
  if (rank == 0) return;
  if (output != NULL && strcmp(output, "all") == 0 && rankout_prefix(rank) == 0) return;
  rankout_silence();
}

void cluster_end(void) {
  if (!started) return;
  if (ended_rank < 0 && !leaving) {
    uint64_t *all = malloc(2 * sizeof(uint64_t) * (size_t)size);
    if (all != NULL) cluster_agree(CLUSTER_ENDED, all);
    free(all);
  }
  rankout_end();
  if (!leaving) MPI_Finalize();
  started = 0;
}

int cluster_rank(void) {
  return rank;
}

int cluster_size(void) {
  return size;
}

int cluster_local_size(void) {
  return local_size;
}

/* Where each rank's bytes start in the gathered block; returns the total. */
static size_t place(const int *lens, int *offsets) {
  size_t total = 0;
  int r;
  for (r = 0; r < size; r++) {
    offsets[r] = (int)total;
    total += (size_t)lens[r];
  }
  return total;
}

/* Waits for the request that 'status' says was started; one that was not leaves the job. */
static int wait_started(int status, MPI_Request *req) {
  if (status == MPI_SUCCESS) return mpiwait(req);
  leaving = 1;
  return SIGTERM;
}

int cluster_allgather(const void *mine, size_t bytes, void *all) {
  MPI_Request req;
  if (leaving) return SIGTERM;
  return wait_started(MPI_Iallgather(mine, (int)bytes, MPI_BYTE, all, (int)bytes, MPI_BYTE,
                                      MPI_COMM_WORLD, &req), &req);
}

void cluster_leave(void) {
  leaving = 1;
}

int cluster_is_leaving(void) {
  return leaving;
}

int cluster_agree(uint64_t hash, uint64_t *all) {
  uint64_t mine[2] = {++agreements, hash};
  int r, sig;
  if (leaving) return SIGTERM;
  if (ended_rank >= 0) { /* it will take part in nothing more: say so again, without waiting */
    for (r = 0; r < size; r++) {
      all[2 * r] = mine[0];
      all[2 * r + 1] = r == ended_rank ? CLUSTER_ENDED : hash;
    }
    return 0;
  }
  sig = cluster_allgather(mine, sizeof mine, all);
  for (r = 0; sig == 0 && r < size; r++)
    if (all[2 * r + 1] == CLUSTER_ENDED && hash != CLUSTER_ENDED) ended_rank = r;
  return sig;
}

/* Whether any rank asked for the block on every rank; the pairs are (length, to_all). */
static int any_to_all(const int *pairs) {
  int r;
  for (r = 0; r < size; r++)
    if (pairs[2 * r + 1]) return 1;
  return 0;
}

int cluster_gather(const char *mine, size_t len, int to_all, Buffer *all, int *sig) {
  int mine_pair[2] = {(int)len, to_all}, my_len = (int)len, r, got = 0;
  int *pairs, *lens;
  MPI_Request req;
  *sig = leaving ? SIGTERM : 0;
  if (leaving) return 0;
  pairs = calloc((size_t)size * 4, sizeof(int));
  if (pairs == NULL) {
    leaving = 1;
    return -1;
  }
  lens = pairs + 2 * size;
  *sig = wait_started(MPI_Iallgather(mine_pair, 2, MPI_INT, pairs, 2, MPI_INT, MPI_COMM_WORLD, &req), &req);
  if (*sig != 0) {
    free(pairs);
    return 0;
  }
  to_all = any_to_all(pairs);
  for (r = 0; r < size; r++) lens[r] = pairs[2 * r];
  if (to_all || rank == 0) {
    size_t total = place(lens, lens + size);
    if (buffer_reserve(all, total + 1) != 0) {
      leaving = 1;
      free(pairs);
      return -1;
    }
    all->len = total;
    got = 1;
  }
  if (to_all)
    *sig = wait_started(MPI_Iallgatherv(mine, my_len, MPI_BYTE, all->data, lens, lens + size, MPI_BYTE,
                                         MPI_COMM_WORLD, &req), &req);
  else
    *sig = wait_started(MPI_Igatherv(mine, my_len, MPI_BYTE, got ? all->data : NULL, lens, lens + size,
                                      MPI_BYTE, 0, MPI_COMM_WORLD, &req), &req);
  free(pairs);
  return *sig == 0 ? got : 0;
}

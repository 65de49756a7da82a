/*
** The MPI job: joining and leaving it, this rank and the number of ranks,
** the output of ranks other than 0, and the two collectives par needs.
*/
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "cluster.h"
#include "parlua.h"
#include "rankout.h"

static int rank = 0, size = 1, started = 0;

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
  /* MPI's own threads hold no lock a worker could need: it never calls MPI */
  parlua_allow_threads(1);
  if (rank == 0) return;
  if (output != NULL && strcmp(output, "all") == 0 && rankout_prefix(rank) == 0) return;
  rankout_silence();
}

void cluster_end(void) {
  if (!started) return;
  rankout_end();
  MPI_Finalize();
  started = 0;
}

int cluster_rank(void) {
  return rank;
}

int cluster_size(void) {
  return size;
}

void cluster_allgather(const void *mine, size_t bytes, void *all) {
  MPI_Allgather(mine, (int)bytes, MPI_BYTE, all, (int)bytes, MPI_BYTE, MPI_COMM_WORLD);
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

char *cluster_gather(const char *mine, size_t len, int to_all, size_t *total) {
  int my_len = (int)len, *lens = calloc((size_t)size * 2, sizeof(int));
  char *all = NULL;
  *total = 0;
  if (lens == NULL) return NULL;
  if (to_all)
    MPI_Allgather(&my_len, 1, MPI_INT, lens, 1, MPI_INT, MPI_COMM_WORLD);
  else
    MPI_Gather(&my_len, 1, MPI_INT, lens, 1, MPI_INT, 0, MPI_COMM_WORLD);
  if (to_all || rank == 0) {
    *total = place(lens, lens + size);
    all = malloc(*total + 1);
  }
  if (to_all)
    MPI_Allgatherv(mine, my_len, MPI_BYTE, all, lens, lens + size, MPI_BYTE, MPI_COMM_WORLD);
  else
    MPI_Gatherv(mine, my_len, MPI_BYTE, all, lens, lens + size, MPI_BYTE, 0, MPI_COMM_WORLD);
  free(lens);
  return all;
}

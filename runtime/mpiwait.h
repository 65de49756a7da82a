/* The one way cluster.c and handout.c wait for MPI: in slices, seeing signals. */
#ifndef PARLUA_MPIWAIT_H
#define PARLUA_MPIWAIT_H

#include <mpi.h>

/*
** Waits for the request to complete, looking less and less often (from
** at once to every 250 us): never a busy wait, which would take a core
** from this rank's workers, and a SIGINT or SIGTERM from the launcher
** while a rank is gone ends the wait. Returns 0, or the signal; a
** request that failed (a rank gone) counts as SIGTERM, the job ending.
** A wait that does not return 0 leaves the job (cluster_leave).
*/
int mpiwait(MPI_Request *req);

#endif

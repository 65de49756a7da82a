/* Waiting for an MPI request without spinning (mpiwait.h). */
#include <signal.h>

#include "cluster.h"
#include "mpiwait.h"
#include "proc.h"

#define FIRST_SLICE_NS 2000
#define LAST_SLICE_NS 250000 /* a late rank is seen within this, at little cost */

int mpiwait(MPI_Request *req) {
  int64_t slice = FIRST_SLICE_NS;
  int flag = 0, sig = 0;
  while (sig == 0) {
    if (MPI_Test(req, &flag, MPI_STATUS_IGNORE) != MPI_SUCCESS) sig = SIGTERM; /* a rank is gone */
    else if (flag) return 0;
    else sig = proc_sleep_until(par_now_ns() + slice);
    if (slice < LAST_SLICE_NS) slice *= 2;
  }
  cluster_leave(); /* the request stays unfinished: no MPI call may follow */
  return sig;
}

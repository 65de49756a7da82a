/* Waiting for an MPI request without spinning (mpiwait.h). */
#include <signal.h>

#include "mpiwait.h"
#include "proc.h"

#define FIRST_SLICE_NS 2000
#define LAST_SLICE_NS 250000 /* a late rank is seen within this, at little cost */

int mpiwait(MPI_Request *req) {
  int64_t slice = FIRST_SLICE_NS;
  int flag = 0, sig;
  for (;;) {
    if (MPI_Test(req, &flag, MPI_STATUS_IGNORE) != MPI_SUCCESS) return SIGTERM; /* a rank is gone */
    if (flag) return 0;
    sig = proc_sleep_until(par_now_ns() + slice);
    if (sig != 0) return sig;
    if (slice < LAST_SLICE_NS) slice *= 2;
  }
}

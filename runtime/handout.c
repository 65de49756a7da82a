/*
** The hand-out of ranges of items across ranks: the root keeps the next
** item not yet handed out, takes its own ranges from it, and answers the
** asks of the other ranks from its wait loop. A range goes to whichever
** rank asks first, so a rank with slow items simply asks less often.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mpi.h>

#include "cluster.h"
#include "mpiwait.h"
#include "proc.h"

#define TAG_ASK 0x5061   /* want, lowest unfinished, stop */
#define TAG_GRANT 0x5062 /* lo, hi; 0, 0 for none left */
#define SERVE_ALL_SLICE_NS 50000 /* how often the root, its own part done, looks for asks */

typedef struct Grants {
  int64_t *lohi; /* pairs, in the order they were handed out */
  int count, cap;
  int64_t lowest; /* the first item the rank said it had not finished */
  int told_none;  /* it heard that nothing is left, and asks no more */
} Grants;

struct Handout {
  int64_t n, next;
  int stopped;
  int asking; /* ranks that may still ask */
  Grants *ranks;
};

static void note_grant(Grants *g, int64_t lo, int64_t hi) {
  if (g->count == g->cap) {
    int cap = g->cap * 2 + 4;
    int64_t *bigger = realloc(g->lohi, (size_t)cap * 2 * sizeof *bigger);
    if (bigger == NULL) return; /* only the message if it dies is the poorer */
    g->lohi = bigger;
    g->cap = cap;
  }
  g->lohi[2 * g->count] = lo;
  g->lohi[2 * g->count + 1] = hi;
  g->count++;
}

Handout *handout_new(lua_Integer n, lua_Integer first) {
  Handout *h = calloc(1, sizeof *h);
  int size = cluster_size(), r;
  if (h == NULL) return NULL;
  h->n = n;
  h->next = size * first + 1;
  h->asking = h->next <= n ? size - 1 : 0; /* else the first ranges hold every item */
  h->ranks = calloc((size_t)size, sizeof *h->ranks);
  if (h->ranks == NULL) {
    free(h);
    return NULL;
  }
  for (r = 1; r < size && r * first < n; r++)
    note_grant(&h->ranks[r], r * first + 1, (r + 1) * first < n ? (r + 1) * first : n);
  return h;
}

void handout_free(Handout *h) {
  int r;
  if (h == NULL) return;
  for (r = 0; r < cluster_size(); r++) free(h->ranks[r].lohi);
  free(h->ranks);
  free(h);
}

void handout_stop(Handout *h) {
  h->stopped = 1;
}

/* Cuts the next range of about 'want' items, fewer near the end so the tail stays balanced. */
static int cut(Handout *h, int64_t want, int64_t *lo, int64_t *hi) {
  int64_t left = h->n - h->next + 1, fair = left / (2 * cluster_size());
  if (h->stopped || left <= 0) return 0;
  if (want > fair) want = fair;
  if (want < 1) want = 1;
  *lo = h->next;
  *hi = *lo + want - 1 < h->n ? *lo + want - 1 : h->n;
  h->next = *hi + 1;
  return 1;
}

int handout_take(Handout *h, lua_Integer want, lua_Integer lowest, lua_Integer *lo, lua_Integer *hi) {
  int64_t ask[3] = {want, lowest, h->stopped}, grant[2] = {0, 0};
  MPI_Request req;
  if (cluster_rank() == 0) {
    int64_t l, r;
    if (!cut(h, want, &l, &r)) return 0;
    *lo = l;
    *hi = r;
    return 1;
  }
  if (cluster_is_leaving()) return 0;
  if (MPI_Send(ask, 3, MPI_INT64_T, 0, TAG_ASK, MPI_COMM_WORLD) != MPI_SUCCESS ||
      MPI_Irecv(grant, 2, MPI_INT64_T, 0, TAG_GRANT, MPI_COMM_WORLD, &req) != MPI_SUCCESS ||
      mpiwait(&req) != 0) { /* the job is ending: the launcher's SIGKILL follows */
    cluster_leave(); /* mpiwait did, a failed call did not */
    return 0;
  }
  if (grant[0] == 0) return 0;
  *lo = grant[0];
  *hi = grant[1];
  return 1;
}

static void answer(Handout *h, int rank, const int64_t ask[3]) {
  Grants *g = &h->ranks[rank];
  int64_t grant[2] = {0, 0};
  if (ask[2]) h->stopped = 1; /* it failed: the others stop too */
  g->lowest = ask[1];
  if (cut(h, ask[0], &grant[0], &grant[1])) {
    note_grant(g, grant[0], grant[1]);
  } else if (!g->told_none) {
    g->told_none = 1;
    h->asking--;
  }
  MPI_Send(grant, 2, MPI_INT64_T, rank, TAG_GRANT, MPI_COMM_WORLD);
}

static void serve_one(Handout *h, int source) {
  int64_t ask[3];
  MPI_Status st;
  if (MPI_Recv(ask, 3, MPI_INT64_T, source, TAG_ASK, MPI_COMM_WORLD, &st) != MPI_SUCCESS) {
    h->asking = 0; /* the job is ending */
    cluster_leave();
    return;
  }
  answer(h, st.MPI_SOURCE, ask);
}

int handout_serve(Handout *h) {
  int flag = 1;
  MPI_Status st;
  if (cluster_is_leaving()) h->asking = 0;
  while (h->asking > 0) {
    if (MPI_Iprobe(MPI_ANY_SOURCE, TAG_ASK, MPI_COMM_WORLD, &flag, &st) != MPI_SUCCESS) {
      h->asking = 0;
      cluster_leave();
    }
    if (!flag) break;
    serve_one(h, st.MPI_SOURCE);
  }
  return h->asking;
}

/* Not a blocking receive: a SIGTERM from the launcher, when a rank died, must be seen. */
int handout_serve_all(Handout *h) {
  while (handout_serve(h) > 0) {
    int sig = proc_sleep_until(par_now_ns() + SERVE_ALL_SLICE_NS);
    if (sig != 0) return sig;
  }
  return 0;
}

void handout_describe(Handout *h, char *out, size_t size) {
  size_t len = strlen(out);
  int r, i;
  for (r = 1; r < cluster_size() && len < size; r++) {
    Grants *g = &h->ranks[r];
    if (g->told_none) continue;
    len += (size_t)snprintf(out + len, size - len, "%srank %d", len > 0 ? "; " : "", r);
    for (i = 0; i < g->count && len < size; i++)
      if (g->lohi[2 * i + 1] >= g->lowest)
        len += (size_t)snprintf(out + len, size - len, " %lld-%lld", (long long)g->lohi[2 * i],
                                (long long)g->lohi[2 * i + 1]);
  }
}

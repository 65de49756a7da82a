/*
** The ranks of an MPI job, as par sees them. Only cluster.c and handout.c
** call MPI; cluster_stub.c gives the same functions for one rank, so a
** build without MPI (build/parlua, par.so) links the same callers.
** Only the rank's own process calls these, never a forked worker.
*/
#ifndef PARLUA_CLUSTER_H
#define PARLUA_CLUSTER_H

#include <stddef.h>
#include <stdint.h>

#include <lua.h>

#include "buffer.h"

/* Joins the job (MPI_Init) and silences the output of ranks but 0 unless PARLUA_MPI_OUTPUT=all. */
void cluster_start(int *argc, char ***argv);

/*
** Leaves the job (MPI_Finalize), at exit too; nothing if cluster_start
** was not called, and no MPI call once the rank is leaving (below).
*/
void cluster_end(void);

int cluster_rank(void); /* 0-based, 0 without MPI */
int cluster_size(void); /* 1 without MPI */
int cluster_local_size(void); /* the ranks on this machine, this one included */

/*
** Every rank's 'mine' (same size on every rank) into 'all' (cluster_size()
** times that). Returns 0, or a SIGINT or SIGTERM that ended the wait.
*/
int cluster_allgather(const void *mine, size_t size, void *all);

/*
** Each rank's pair (its count of calls to this, 'hash') into all[2 * r],
** all[2 * r + 1] for every rank r. Returns 0, or a SIGINT or SIGTERM that
** ended the wait. A rank whose script ends takes part once more with
** CLUSTER_ENDED, so that ranks waiting in a call it never made see that
** rank differ instead of waiting for ever. After that, this rank's later
** calls see it so again without waiting, and its own end takes no part.
*/
int cluster_agree(uint64_t hash, uint64_t *all);

#define CLUSTER_ENDED UINT64_MAX

/*
** The launcher is ending the job (a SIGTERM or SIGINT ended a wait, or a
** request failed): this rank makes no MPI call any more, no collective
** and no MPI_Finalize. The rank that died never will, and a request
** left unfinished is moved on only by later MPI calls, which would
** write into the buffers freed since. The collectives then return
** SIGTERM at once. mpiwait leaves so when a wait is cut short, and so
** does a call that fails.
*/
void cluster_leave(void);
int cluster_is_leaving(void);

/*
** Gathers every rank's 'len' bytes at 'mine', in rank order, into 'all'
** (which must be empty) on the root, or on every rank when any rank asks
** it with 'to_all'. Returns 1 when 'all' holds them, 0 where nothing
** comes, -1 when 'all' could not be made big enough (the rank then
** leaves the job: the others wait until it ends). A SIGINT or SIGTERM
** meanwhile ends the wait: *sig is the signal, else 0.
*/
int cluster_gather(const char *mine, size_t len, int to_all, Buffer *all, int *sig);

/*
** The hand-out of ranges of items 1..n (handout.c). The root hands out,
** others ask it. One Handout per distributed call, made on every rank.
*/
typedef struct Handout Handout;

/*
** Starts handing out n items after the fixed first ranges: rank r's
** first range is items r*first+1 .. (r+1)*first, taken without asking.
*/
Handout *handout_new(lua_Integer n, lua_Integer first);
void handout_free(Handout *h);

/*
** The next range for this rank, of about 'want' items: 1 and *lo..*hi,
** or 0 when everything is handed out. 'lowest' is the first item this rank
** has not finished (for the message if it dies). Not on the root: it waits for the root's answer.
*/
int handout_take(Handout *h, lua_Integer want, lua_Integer lowest, lua_Integer *lo, lua_Integer *hi);

/* Hands out no more: every later take gets 0. */
void handout_stop(Handout *h);

/* On the root: answers the asks that have come; returns how many ranks may still ask. */
int handout_serve(Handout *h);

/* On the root: answers asks until no rank may ask again; returns 0, or a SIGINT or SIGTERM that came. */
int handout_serve_all(Handout *h);

/*
** On the root: appends to 'out' (up to 'size' bytes, NUL-ended) which
** ranks may still hold unfinished items, and which.
*/
void handout_describe(Handout *h, char *out, size_t size);

#endif

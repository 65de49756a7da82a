/*
** Synchronisation between processes in shared memory made before they
** were forked: shared anonymous mappings, robust mutexes, and semaphores,
** events and barriers on futexes. No Lua here.
**
** Every wait takes a deadline on the par_now_ns clock (-1: none) and, like
** proc_poll's, ends early on SIGINT or SIGTERM: EINTR, the signal in *sig.
*/
#ifndef PARLUA_SHM_H
#define PARLUA_SHM_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/*
** A zeroed mapping of size bytes that every process forked later shares.
** The kernel frees it when the last process unmaps it or ends. NULL with
** errno set.
*/
void *shm_map(size_t size);
void shm_unmap(void *mem, size_t size);

/*
** shm_map's twin for a mapping that may stay mostly unused: no memory is
** set aside for it, a page is taken when it is first written.
*/
void *shm_reserve(size_t size);

/* Makes a robust, process-shared mutex; 0 or an errno. */
int shm_mutex_init(pthread_mutex_t *m, int recursive);

/*
** Returns 0 once this process holds m; EOWNERDEAD when it holds it and
** the owner before died holding it (m is made consistent, so usable
** again); ETIMEDOUT; EDEADLK when this process holds it already and it is
** not recursive; EINTR with *sig.
*/
int shm_mutex_lock(pthread_mutex_t *m, int64_t deadline, int *sig);

/* 0, or EPERM when this process does not hold m. */
int shm_mutex_unlock(pthread_mutex_t *m);

/*
** A counting semaphore. It has no owner: a process that dies holding a
** count does not give it back.
*/
typedef struct ShmSemaphore {
  uint32_t count;   /* futex word */
  uint32_t waiters; /* processes in a wait, maybe too many if one died there */
} ShmSemaphore;

/* 0 with a count taken, ETIMEDOUT or EINTR with *sig. */
int shm_semaphore_acquire(ShmSemaphore *s, int64_t deadline, int *sig);

/* 0, or EOVERFLOW when the count is at its limit (and is left so). */
int shm_semaphore_release(ShmSemaphore *s);

typedef struct ShmEvent {
  uint32_t set;     /* futex word: 0 or 1 */
  uint32_t waiters; /* as a semaphore's */
} ShmEvent;

void shm_event_set(ShmEvent *e);
void shm_event_clear(ShmEvent *e);
int shm_event_is_set(ShmEvent *e);

/* 0 once e is set, ETIMEDOUT or EINTR with *sig. */
int shm_event_wait(ShmEvent *e, int64_t deadline, int *sig);

/* Why a barrier broke. */
enum ShmBroken { SHM_NOT_BROKEN, SHM_BROKEN_TIMEOUT, SHM_BROKEN_DIED, SHM_BROKEN_ABORTED };

typedef struct ShmBarrier {
  pthread_mutex_t lock; /* guards all below but phase's reads */
  uint32_t phase;       /* futex word: +2 each time the parties pass, | 1 once broken */
  uint32_t parties;
  uint32_t arrived;     /* parties waiting in this phase */
  int32_t broken;       /* an enum ShmBroken */
  pid_t died;           /* the party that died, for SHM_BROKEN_DIED */
  pid_t pids[];         /* the waiting parties, pids[0 .. arrived) */
} ShmBarrier;

size_t shm_barrier_size(uint32_t parties);

/* Makes a barrier for 'parties' processes in b (shm_barrier_size bytes); 0 or an errno. */
int shm_barrier_init(ShmBarrier *b, uint32_t parties);

/*
** Waits until 'parties' processes wait, then all return 0 with *index
** their distinct place of arrival, 1 .. parties. ECANCELED when the
** barrier is broken, now or before (b->broken says why): every party
** waiting returns so when one times out, dies while it waits or breaks it
** with shm_barrier_abort. EINTR with *sig.
*/
int shm_barrier_wait(ShmBarrier *b, int64_t deadline, uint32_t *index, int *sig);

/* Breaks b for good; 0 or EINTR with *sig. */
int shm_barrier_abort(ShmBarrier *b, int *sig);

/* Parties waiting now. */
uint32_t shm_barrier_waiting(ShmBarrier *b);

#endif

/*
** Semaphores, events and barriers wait on futexes, not glibc's condition
** variables, which a waiter that dies can leave stuck. A futex word is
** read and written with __atomic builtins only; waits sleep in slices
** (proc_wait) so that a signal or a dead party is seen.
*/
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "proc.h"
#include "shm.h"

void *shm_map(size_t size) {
  void *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  return mem == MAP_FAILED ? NULL : mem;
}

void *shm_reserve(size_t size) {
  void *mem = mmap(NULL, size, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  return mem == MAP_FAILED ? NULL : mem;
}

void shm_unmap(void *mem, size_t size) {
  munmap(mem, size);
}

/* ---- mutexes -------------------------------------------------------------- */

int shm_mutex_init(pthread_mutex_t *m, int recursive) {
  pthread_mutexattr_t attr;
  int err = pthread_mutexattr_init(&attr);
  if (err != 0) return err;
  pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
  /* an error-checking mutex reports a second lock instead of deadlocking */
  pthread_mutexattr_settype(&attr, recursive ? PTHREAD_MUTEX_RECURSIVE : PTHREAD_MUTEX_ERRORCHECK);
  err = pthread_mutex_init(m, &attr);
  pthread_mutexattr_destroy(&attr);
  return err;
}

typedef struct MutexWait {
  pthread_mutex_t *m;
  int result;
} MutexWait;

static int mutex_step(void *arg, int64_t until) {
  MutexWait *w = arg;
  struct timespec ts = {(time_t)(until / 1000000000), (long)(until % 1000000000)};
  w->result = pthread_mutex_clocklock(w->m, CLOCK_MONOTONIC, &ts);
  return w->result != ETIMEDOUT;
}

/* Makes m usable again after its owner died holding it, which we now do. */
static int mutex_owned(pthread_mutex_t *m, int result) {
  if (result == EOWNERDEAD) pthread_mutex_consistent(m);
  return result;
}

int shm_mutex_lock(pthread_mutex_t *m, int64_t deadline, int *sig) {
  MutexWait w = {m, pthread_mutex_trylock(m)};
  *sig = 0;
  if (w.result != EBUSY) return mutex_owned(m, w.result);
  if (proc_wait(mutex_step, &w, deadline, sig) == 0) return ETIMEDOUT;
  if (w.result == 0 || w.result == EOWNERDEAD) {
    mutex_owned(m, w.result);
    if (*sig != 0) pthread_mutex_unlock(m); /* the signal wins: the caller raises */
  }
  return *sig != 0 ? EINTR : w.result;
}

int shm_mutex_unlock(pthread_mutex_t *m) {
  return pthread_mutex_unlock(m);
}

/* ---- semaphores ----------------------------------------------------------- */

static int semaphore_try(ShmSemaphore *s) {
  uint32_t count = __atomic_load_n(&s->count, __ATOMIC_RELAXED);
  while (count > 0)
    if (__atomic_compare_exchange_n(&s->count, &count, count - 1, 1, __ATOMIC_ACQUIRE,
                                    __ATOMIC_RELAXED))
      return 1;
  return 0;
}

/*
** A waiter counts itself before it looks at the word, a releaser changes
** the word before it looks at the count (both sequentially consistent):
** either the waiter sees the new word, or the releaser sees the waiter and
** wakes it. The same holds for events.
*/
static int semaphore_step(void *arg, int64_t until) {
  ShmSemaphore *s = arg;
  int got;
  __atomic_add_fetch(&s->waiters, 1, __ATOMIC_SEQ_CST);
  got = semaphore_try(s);
  if (!got) proc_futex_wait(&s->count, 0, until);
  __atomic_sub_fetch(&s->waiters, 1, __ATOMIC_SEQ_CST);
  return got || semaphore_try(s);
}

int shm_semaphore_acquire(ShmSemaphore *s, int64_t deadline, int *sig) {
  int got;
  *sig = 0;
  if (semaphore_try(s)) return 0;
  got = proc_wait(semaphore_step, s, deadline, sig);
  if (got == 1 && *sig != 0) shm_semaphore_release(s);
  if (*sig != 0) return EINTR;
  return got ? 0 : ETIMEDOUT;
}

int shm_semaphore_release(ShmSemaphore *s) {
  uint32_t count = __atomic_load_n(&s->count, __ATOMIC_RELAXED);
  do {
    if (count >= INT32_MAX) return EOVERFLOW;
  } while (!__atomic_compare_exchange_n(&s->count, &count, count + 1, 1, __ATOMIC_SEQ_CST,
                                        __ATOMIC_RELAXED));
  if (__atomic_load_n(&s->waiters, __ATOMIC_SEQ_CST) > 0) proc_futex_wake(&s->count, 1);
  return 0;
}

/* ---- events --------------------------------------------------------------- */

void shm_event_set(ShmEvent *e) {
  __atomic_store_n(&e->set, 1, __ATOMIC_SEQ_CST);
  if (__atomic_load_n(&e->waiters, __ATOMIC_SEQ_CST) > 0) proc_futex_wake(&e->set, INT32_MAX);
}

void shm_event_clear(ShmEvent *e) {
  __atomic_store_n(&e->set, 0, __ATOMIC_SEQ_CST);
}

int shm_event_is_set(ShmEvent *e) {
  return __atomic_load_n(&e->set, __ATOMIC_ACQUIRE) != 0;
}

static int event_step(void *arg, int64_t until) {
  ShmEvent *e = arg;
  int set;
  __atomic_add_fetch(&e->waiters, 1, __ATOMIC_SEQ_CST);
  set = __atomic_load_n(&e->set, __ATOMIC_SEQ_CST);
  if (!set) proc_futex_wait(&e->set, 0, until);
  __atomic_sub_fetch(&e->waiters, 1, __ATOMIC_SEQ_CST);
  return set || shm_event_is_set(e);
}

int shm_event_wait(ShmEvent *e, int64_t deadline, int *sig) {
  int set;
  *sig = 0;
  if (shm_event_is_set(e)) return 0;
  set = proc_wait(event_step, e, deadline, sig);
  if (*sig != 0) return EINTR;
  return set ? 0 : ETIMEDOUT;
}

/* ---- barriers ------------------------------------------------------------- */

size_t shm_barrier_size(uint32_t parties) {
  return sizeof(ShmBarrier) + parties * sizeof(pid_t);
}

int shm_barrier_init(ShmBarrier *b, uint32_t parties) {
  b->parties = parties;
  return shm_mutex_init(&b->lock, 0);
}

/* With b->lock held: breaks b and wakes every waiting party. */
static void barrier_break(ShmBarrier *b, enum ShmBroken why, pid_t died) {
  if (b->broken == SHM_NOT_BROKEN) {
    b->broken = why;
    b->died = died;
  }
  __atomic_or_fetch(&b->phase, 1, __ATOMIC_SEQ_CST);
  proc_futex_wake(&b->phase, INT32_MAX);
}

/* Takes b->lock, breaking b if a party died holding it; 0 or EINTR with *sig. */
static int barrier_lock(ShmBarrier *b, int *sig) {
  int r = shm_mutex_lock(&b->lock, -1, sig);
  if (r == EOWNERDEAD) barrier_break(b, SHM_BROKEN_DIED, 0);
  return r == EINTR ? EINTR : 0;
}

/* False once pid has ended, as a zombie too (its parent may not have reaped it yet). */
static int process_alive(pid_t pid) {
  char path[64], stat[512];
  const char *state;
  ssize_t n;
  int fd;
  if (kill(pid, 0) != 0 && errno == ESRCH) return 0;
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno != ENOENT;
  n = proc_read(fd, stat, sizeof stat - 1);
  close(fd);
  if (n <= 0) return 1;
  stat[n] = '\0';
  state = strrchr(stat, ')'); /* the name in parentheses may hold anything */
  return state == NULL || state[1] != ' ' || (state[2] != 'Z' && state[2] != 'X');
}

/* With b->lock held: breaks b if a waiting party other than this one has ended. */
static void barrier_check_parties(ShmBarrier *b) {
  pid_t self = proc_self();
  uint32_t i;
  for (i = 0; i < b->arrived; i++)
    if (b->pids[i] != self && !process_alive(b->pids[i])) {
      barrier_break(b, SHM_BROKEN_DIED, b->pids[i]);
      return;
    }
}

typedef struct BarrierWait {
  ShmBarrier *b;
  uint32_t phase; /* the phase this party arrived in */
} BarrierWait;

/* 1 once the parties passed, 2 once the barrier broke, else 0. */
static int barrier_outcome(ShmBarrier *b, uint32_t phase) {
  uint32_t now = __atomic_load_n(&b->phase, __ATOMIC_ACQUIRE);
  if ((now & ~1u) != phase) return 1; /* passed, whatever came after */
  return (now & 1) ? 2 : 0;
}

static int barrier_step(void *arg, int64_t until) {
  BarrierWait *w = arg;
  int outcome = barrier_outcome(w->b, w->phase);
  if (outcome != 0) return outcome;
  proc_futex_wait(&w->b->phase, w->phase, until);
  outcome = barrier_outcome(w->b, w->phase);
  if (outcome != 0) return outcome;
  /* no blocking lock inside proc_wait, which would catch signals again */
  switch (pthread_mutex_trylock(&w->b->lock)) {
    case EOWNERDEAD:
      pthread_mutex_consistent(&w->b->lock);
      barrier_break(w->b, SHM_BROKEN_DIED, 0);
      break;
    case 0:
      barrier_check_parties(w->b);
      break;
    default: /* busy: look again in the next slice */
      return 0;
  }
  shm_mutex_unlock(&w->b->lock);
  return barrier_outcome(w->b, w->phase);
}

/* Breaks b once this party has left it, or the others would wait for it in vain. */
static void barrier_leave(ShmBarrier *b) {
  MutexWait w = {&b->lock, 0};
  while (!mutex_step(&w, par_now_ns() + 1000000000)) continue; /* a signal came already */
  mutex_owned(&b->lock, w.result);
  barrier_break(b, SHM_BROKEN_ABORTED, 0);
  shm_mutex_unlock(&b->lock);
}

int shm_barrier_wait(ShmBarrier *b, int64_t deadline, uint32_t *index, int *sig) {
  BarrierWait w = {b, 0};
  int outcome;
  if (barrier_lock(b, sig) != 0) return EINTR;
  if (b->broken != SHM_NOT_BROKEN) {
    shm_mutex_unlock(&b->lock);
    return ECANCELED;
  }
  w.phase = b->phase;
  b->pids[b->arrived] = proc_self();
  *index = ++b->arrived;
  if (b->arrived == b->parties) {
    b->arrived = 0;
    __atomic_add_fetch(&b->phase, 2, __ATOMIC_SEQ_CST);
    proc_futex_wake(&b->phase, INT32_MAX);
    shm_mutex_unlock(&b->lock);
    return 0;
  }
  shm_mutex_unlock(&b->lock);
  outcome = proc_wait(barrier_step, &w, deadline, sig);
  if (outcome == 0 && *sig == 0) { /* timed out, unless they passed just now */
    if (barrier_lock(b, sig) != 0) return EINTR;
    if (barrier_outcome(b, w.phase) == 0) barrier_break(b, SHM_BROKEN_TIMEOUT, 0);
    shm_mutex_unlock(&b->lock);
    outcome = barrier_outcome(b, w.phase);
  }
  if (*sig != 0) {
    if (outcome != 1) barrier_leave(b);
    return EINTR;
  }
  return outcome == 1 ? 0 : ECANCELED;
}

int shm_barrier_abort(ShmBarrier *b, int *sig) {
  if (barrier_lock(b, sig) != 0) return EINTR;
  barrier_break(b, SHM_BROKEN_ABORTED, 0);
  shm_mutex_unlock(&b->lock);
  return 0;
}

uint32_t shm_barrier_waiting(ShmBarrier *b) {
  return __atomic_load_n(&b->arrived, __ATOMIC_RELAXED);
}

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <lauxlib.h>

#include "cpus.h"
#include "lutil.h"
#include "pool.h"
#include "proc.h"

#define POOL_METATABLE "par.Pool"

/*
** Progress slots come from one shared page per process, taken by pools as
** they start and given back as they end: mapping a shared page for each
** map cost as much as the rest of a short map's set-up. A forked worker
** that starts pools of its own maps its own page; the one it inherited
** is its parent's.
*/
#define ARENA_SLOTS (4096 / sizeof(Progress))

static Progress *arena;
static pid_t arena_owner;
static unsigned char arena_taken[ARENA_SLOTS];

static int in_arena(const Progress *slots) {
  return arena != NULL && slots >= arena && slots < arena + ARENA_SLOTS;
}

static Progress *map_progress(size_t slots) {
  void *p = mmap(NULL, slots * sizeof(Progress), PROT_READ | PROT_WRITE,
                 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? NULL : p;
}

/* 'size' free slots in a row from this process's page, or NULL. */
static Progress *take_from_arena(int size) {
  size_t first, run = 0, i;
  if (arena_owner != proc_self()) {
    arena = map_progress(ARENA_SLOTS);
    arena_owner = proc_self();
    memset(arena_taken, 0, sizeof arena_taken);
  }
  if (arena == NULL) return NULL;
  for (i = 0; i < ARENA_SLOTS; i++) {
    run = arena_taken[i] ? 0 : run + 1;
    if (run < (size_t)size) continue;
    first = i + 1 - run;
    memset(arena_taken + first, 1, run);
    return arena + first;
  }
  return NULL;
}

/* Slots for a pool of 'size' workers: from the shared page, else a mapping of their own. */
static Progress *take_progress(int size) {
  Progress *slots = take_from_arena(size);
  return slots != NULL ? slots : map_progress((size_t)size);
}

static void give_back_progress(Pool *p) {
  if (p->owner != proc_self()) return; /* a parent's pool, garbage in a worker: not its slots */
  if (in_arena(p->progress))
    memset(arena_taken + (p->progress - arena), 0, (size_t)p->size);
  else
    munmap(p->progress, (size_t)p->size * sizeof(Progress));
}

static int pool_gc(lua_State *L) {
  Pool *p = luaL_checkudata(L, 1, POOL_METATABLE);
  int k;
  pool_close(p, 1);
  for (k = 0; k < p->size; k++) reader_free(&p->workers[k].in);
  if (p->progress != NULL) {
    give_back_progress(p);
    p->progress = NULL;
  }
  return 0;
}

Pool *pool_new(lua_State *L, const char *fn, int size) {
  size_t n = (size_t)size;
  size_t bytes = sizeof(Pool) + n * (sizeof(Worker) + sizeof(struct pollfd) + sizeof(int));
  Pool *p = lua_newuserdatauv(L, bytes, 0);
  memset(p, 0, bytes);
  p->fn = fn;
  p->size = size;
  p->owner = proc_self();
  p->spare_cpus = proc_is_forked() ? 0 : cpus_usable(); /* a worker's siblings use the others */
  p->workers = (Worker *)(p + 1);
  p->fds = (struct pollfd *)(p->workers + n);
  p->polled = (int *)(p->fds + n);
  par_set_class(L, POOL_METATABLE, NULL, pool_gc, 1);
  p->progress = take_progress(size);
  if (p->progress == NULL) {
    par_push_syscall_error(L, fn, "system", "mmap");
    lua_error(L);
  }
  return p;
}

const char *pool_start(lua_State *L, Pool *p, int k, int commands, WorkerMain main, void *arg) {
  Worker *w = &p->workers[k];
  ProcLink cmd = PROC_LINK_CLOSED, res;
  const char *failed = proc_link_open(&res, PROC_RESULTS);
  pid_t pid;
  if (failed == NULL && commands) failed = proc_link_open(&cmd, PROC_COMMANDS);
  if (failed != NULL) {
    proc_link_close(&res);
    return failed;
  }
  /* cleared before the fork: cleared after, it could wipe out the first
     item the worker already marked, which a time-out would then never see */
  p->progress[k].item = 0;
  pid = par_fork(L);
  if (pid == 0) {
    main(L, cmd.child, res.child, &p->progress[k], arg);
    proc_exit(0); /* not reached: main ends the process */
  }
  proc_link_close_child(&cmd);
  proc_link_close_child(&res);
  if (pid < 0) {
    proc_link_close(&cmd);
    proc_link_close(&res);
    return "fork";
  }
  w->pid = w->last_pid = pid;
  w->cmd = cmd.parent;
  w->res = res.parent;
  w->status = 0;
  w->ready = 0;
  w->killed_for = 0;
  w->in.buf.len = w->in.pos = 0;
  return NULL;
}

int pool_live(const Pool *p) {
  int k, n = 0;
  for (k = 0; k < p->size; k++) n += p->workers[k].pid != 0;
  return n;
}

int pool_sendv(Pool *p, int k, struct iovec *frames, int count) {
  if (p->workers[k].pid == 0 || p->workers[k].cmd < 0) return -1;
  return proc_sendv(p->workers[k].cmd, frames, count);
}

/* The item worker k runs and has not been killed for, or 0. */
static int64_t running_item(Pool *p, int k) {
  if (p->workers[k].pid == 0 || p->workers[k].killed_for != 0) return 0;
  return p->progress[k].item;
}

int pool_is_running(Pool *p, int k) {
  return running_item(p, k) != 0;
}

int pool_until_overdue(Pool *p) {
  int64_t now = par_now_ns(), first = -1, timeout_ns = p->timeout_ns;
  int k;
  if (timeout_ns == 0) return -1;
  for (k = 0; k < p->size; k++) {
    int64_t due;
    if (running_item(p, k) == 0) continue;
    due = p->progress[k].started_ns + timeout_ns;
    if (first < 0 || due < first) first = due;
  }
  if (first < 0) return (int)(timeout_ns / 1000000) + 1; /* nothing runs: look again later */
  return first <= now ? 0 : (int)((first - now + 999999) / 1000000);
}

void pool_kill_overdue(Pool *p) {
  int64_t now = par_now_ns(), timeout_ns = p->timeout_ns;
  int k;
  if (timeout_ns == 0) return;
  for (k = 0; k < p->size; k++) {
    int64_t item = running_item(p, k);
    if (item == 0 || now - p->progress[k].started_ns < timeout_ns) continue;
    p->workers[k].killed_for = item;
    proc_kill(p->workers[k].pid); /* its end of file comes through pool_wait */
  }
}

void pool_end_commands(Pool *p, int k) {
  Worker *w = &p->workers[k];
  if (w->cmd < 0) return;
  proc_close(w->cmd);
  w->cmd = -1;
}

void pool_stop(Pool *p, int k, int kill) {
  Worker *w = &p->workers[k];
  if (w->pid == 0) return;
  if (kill) proc_kill(w->pid);
  pool_end_commands(p, k); /* a worker waiting for work sees end of file and exits */
  proc_close(w->res);
  w->status = proc_reap(w->pid);
  w->pid = 0;
}

void pool_close(Pool *p, int kill) {
  int k;
  if (p->owner != proc_self()) return; /* a parent's pool, collected in a worker: not its workers */
  for (k = 0; k < p->size; k++) { /* tell them all first: they exit in parallel */
    Worker *w = &p->workers[k];
    if (w->pid == 0) continue;
    if (kill) proc_kill(w->pid);
    pool_end_commands(p, k);
  }
  for (k = 0; k < p->size; k++) pool_stop(p, k, 0);
}

/* Takes the next whole frame buffered for worker k, if there is one. */
static int take_frame(lua_State *L, Pool *p, int k, PoolEvent *ev) {
  Worker *w = &p->workers[k];
  char err[128];
  for (;;) {
    int took = reader_take(&w->in, &ev->type, &ev->payload, &ev->len, err, sizeof err);
    if (took < 0) luaL_error(L, "%s: bad frame from worker %d: %s", p->fn, (int)w->pid, err);
    if (took == 0) return 0;
    if (ev->type != FRAME_READY) break;
    w->ready = 1;
  }
  ev->kind = POOL_FRAME;
  ev->worker = k;
  return 1;
}

/* Reads what worker k sent; a frame once begun is read to its end. */
static void read_worker(lua_State *L, Pool *p, int k, PoolEvent *ev) {
  Worker *w = &p->workers[k];
  for (;;) {
    if (reader_fill(&w->in, w->res) <= 0) break;
    if (take_frame(L, p, k, ev)) return;
    if (!reader_partial(&w->in)) return; /* it only said it is ready */
  }
  /* end of file: the worker is gone, whatever it sent before */
  pool_stop(p, k, 0);
  ev->kind = POOL_EXIT;
  ev->worker = k;
}

/* Lays out the live workers' result pipes for poll; returns how many. */
static int poll_list(Pool *p) {
  int k, n = 0;
  for (k = 0; k < p->size; k++) {
    if (p->workers[k].pid == 0) continue;
    p->fds[n].fd = p->workers[k].res;
    p->fds[n].events = POLLIN;
    p->polled[n++] = k;
  }
  return n;
}

/* Takes a frame some worker already sent, if there is one. */
static int take_buffered(lua_State *L, Pool *p, PoolEvent *ev) {
  int k;
  for (k = 0; k < p->size; k++)
    if (p->workers[k].pid != 0 && take_frame(L, p, k, ev)) return 1;
  return 0;
}

void pool_wait(lua_State *L, Pool *p, int timeout_ms, PoolEvent *ev) {
  int64_t deadline = timeout_ms < 0 ? -1 : par_now_ns() + (int64_t)timeout_ms * 1000000;
  pool_wait_until(L, p, deadline, ev);
}

/* How many workers are running an item now. */
static int running_count(Pool *p) {
  int k, n = 0;
  for (k = 0; k < p->size; k++)
    if (running_item(p, k) != 0) n++;
  return n;
}

/*
** While fewer workers run items than there are CPUs, the parent looks
** again for PROC_SPIN_NS before it sleeps: it takes a core no worker
** needs, and an answer due soon comes as it is sent, not a wake-up later
** (tens of microseconds on a virtual machine). Idle workers count as not
** running: they look again too (worker.c), and both yield their cores.
*/
static int wait_for_workers(Pool *p, int n, int64_t deadline, int *sig) {
  if (running_count(p) >= p->spare_cpus) return proc_poll(p->fds, n, deadline, sig);
  return proc_poll_spinning(p->fds, n, par_now_ns() + PROC_SPIN_NS, deadline, sig);
}

void pool_wait_until(lua_State *L, Pool *p, int64_t deadline, PoolEvent *ev) {
  for (;;) {
    int k, n, ready, sig;
    ev->kind = POOL_TIMEOUT;
    if (take_buffered(L, p, ev)) return;
    n = poll_list(p);
    if (n == 0) return;
    ready = wait_for_workers(p, n, deadline, &sig);
    if (sig != 0) {
      ev->kind = POOL_INTERRUPT;
      ev->worker = sig;
      return;
    }
    if (ready < 0) {
      par_push_syscall_error(L, p->fn, "system", "poll");
      lua_error(L);
    }
    if (ready == 0) return;
    for (k = 0; k < n; k++) {
      if (p->fds[k].revents == 0) continue;
      read_worker(L, p, p->polled[k], ev);
      if (ev->kind != POOL_TIMEOUT) return;
    }
  }
}

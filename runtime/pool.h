/*
** Worker lifecycle: a pool of forked workers, each with a command socket
** (parent to worker) and a result pipe (worker to parent), a shared slot
** that says which item it is running, and one wait for whatever any of
** them says next. The pool is a Lua userdata, so an error anywhere still
** kills and reaps every worker.
*/
#ifndef PARLUA_POOL_H
#define PARLUA_POOL_H

#include <poll.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <lua.h>

#include "frame.h"
#include "proc.h"

/*
** Written by a worker, read by its parent: the item it runs now (0 when
** idle) and, only when the parent enforces a time-out, when it started.
*/
typedef struct Progress {
  volatile int64_t started_ns;
  volatile int64_t item;
} Progress;

/* Progress.item of a worker that ended on purpose between items: nothing it held failed. */
#define PROGRESS_RETIRED (-1)

typedef struct Worker {
  pid_t pid; /* 0 once it is gone */
  pid_t last_pid; /* stays after it is gone, for messages */
  int cmd;   /* parent's end of the command socket, or -1 */
  int res;   /* parent's end of the result pipe */
  FrameReader in;
  int status; /* wait status once reaped */
  int ready;  /* it said its init ran */
  int64_t killed_for; /* the item it was killed for overstaying, or 0 */
} Worker;

/* What runs in a new worker; it must end with proc_exit. */
typedef void (*WorkerMain)(lua_State *L, int cmd, int res, Progress *progress,
                           void *arg);

typedef struct Pool {
  const char *fn;     /* the function whose workers these are, for errors */
  int size;
  pid_t owner;        /* the process that made it */
  int spare_cpus;     /* CPUs its parent may spin on while fewer workers run */
  int64_t timeout_ns; /* an item running longer gets its worker killed; 0: none */
  Progress *progress; /* shared with the workers, one slot each */
  Worker *workers;    /* these three arrays have 'size' entries */
  struct pollfd *fds;
  int *polled;        /* which worker each fds entry belongs to */
} Pool;

enum PoolEventKind { POOL_FRAME, POOL_EXIT, POOL_TIMEOUT, POOL_INTERRUPT };

typedef struct PoolEvent {
  enum PoolEventKind kind;
  int worker;          /* POOL_INTERRUPT: the signal */
  char type;           /* POOL_FRAME: the frame */
  const char *payload; /* valid until the next pool_wait */
  size_t len;
} PoolEvent;

/*
** Pushes a new pool userdata with room for 'size' workers, none started,
** for the function 'fn' (a string that outlives the pool).
*/
Pool *pool_new(lua_State *L, const char *fn, int size);

/*
** Forks worker k to run main(L, ..., arg); with 'commands' 0 it gets no
** command socket (main sees cmd -1): all it will do came through the
** fork. Returns NULL, or the name of the system call that failed with
** errno set.
*/
const char *pool_start(lua_State *L, Pool *p, int k, int commands, WorkerMain main, void *arg);

/* How many workers are running. */
int pool_live(const Pool *p);

/* Sends whole frames to worker k in one write; returns 0, or -1 when it is gone. */
int pool_sendv(Pool *p, int k, struct iovec *frames, int count);

/*
** Waits up to timeout_ms (-1: no limit) for the next frame or worker exit.
** A SIGINT or SIGTERM meanwhile ends the wait with POOL_INTERRUPT. Raises
** a Lua error for a corrupt frame.
*/
void pool_wait(lua_State *L, Pool *p, int timeout_ms, PoolEvent *ev);

/* The same, until 'deadline' (par_now_ns() time; -1: no limit). */
void pool_wait_until(lua_State *L, Pool *p, int64_t deadline, PoolEvent *ev);

/* Milliseconds until the first running item overstays the time-out; -1 without one. */
int pool_until_overdue(Pool *p);

/* Whether worker k is running an item now (its progress shows one). */
int pool_is_running(Pool *p, int k);

/* SIGKILLs every worker whose item has overstayed the time-out, noting it in killed_for. */
void pool_kill_overdue(Pool *p);

/*
** Closes the parent's end of worker k's command socket: a worker that has
** done its work sees end of file there and exits.
*/
void pool_end_commands(Pool *p, int k);

/* Ends worker k: closes its pipes, SIGKILLs it if 'kill', reaps it. */
void pool_stop(Pool *p, int k, int kill);

/* Ends every worker still running; nothing in a process that did not make the pool. */
void pool_close(Pool *p, int kill);

#endif

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

#include <lua.h>

#include "frame.h"

/* Written by a worker, read by its parent: the item it runs now, 0 when idle. */
typedef struct Progress {
  volatile int64_t item;
} Progress;

typedef struct Worker {
  pid_t pid; /* 0 once it is gone */
  int cmd;   /* parent's end of the command socket */
  int res;   /* parent's end of the result pipe */
  FrameReader in;
  int status; /* wait status once reaped */
} Worker;

/* What runs in a new worker; it must end with proc_exit. */
typedef void (*WorkerMain)(lua_State *L, int cmd, int res, Progress *progress,
                           void *arg);

typedef struct Pool {
  int size;
  Progress *progress; /* shared with the workers, one slot each */
  Worker *workers;    /* these three arrays have 'size' entries */
  struct pollfd *fds;
  int *polled;        /* which worker each fds entry belongs to */
} Pool;

enum PoolEventKind { POOL_FRAME, POOL_EXIT, POOL_TIMEOUT };

typedef struct PoolEvent {
  enum PoolEventKind kind;
  int worker;
  char type;           /* POOL_FRAME: the frame */
  const char *payload; /* valid until the next pool_wait */
  size_t len;
} PoolEvent;

/* Pushes a new pool userdata with room for 'size' workers, none started. */
Pool *pool_new(lua_State *L, int size);

/* Forks worker k to run main(L, ..., arg). Returns 0, or -1 with errno. */
int pool_start(lua_State *L, Pool *p, int k, WorkerMain main, void *arg);

/* Sends one frame to worker k; returns 0, or -1 when it is gone. */
int pool_send(Pool *p, int k, char type, const void *payload, size_t len);

/*
** Waits up to timeout_ms (-1: no limit) for the next frame or worker exit.
** Raises a Lua error for a corrupt frame.
*/
void pool_wait(lua_State *L, Pool *p, int timeout_ms, PoolEvent *ev);

/* Ends worker k: closes its pipes, SIGKILLs it if 'kill', reaps it. */
void pool_stop(Pool *p, int k, int kill);

/* Ends every worker still running. */
void pool_close(Pool *p, int kill);

int64_t par_now_ns(void);

#endif

/*
** par.spawn: one forked process running fn(...), like Python's
** multiprocessing.Process. The arguments reach it through the fork; what
** fn returns (or raises) comes back as one frame on a pipe, and join keeps
** it. The handle is a userdata whose __gc and __close kill and reap a
** process nobody joined, so none outlives the script.
*/
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>

#include "codec.h"
#include "dispatch.h"
#include "frame.h"
#include "lpar.h"
#include "lutil.h"
#include "proc.h"
#include "worker.h"

#define PROCESS_METATABLE "par.Process"

enum Outcome { RUNNING, RETURNED, FAILED }; /* the values or the error are its user value */

typedef struct Process {
  pid_t pid;
  pid_t owner;   /* the process that spawned it: the only one that may wait for it */
  int fd;        /* read end of the result pipe; -1 once closed */
  int reaped;
  int status;    /* wait status once reaped */
  enum Outcome outcome;
  int nresults;  /* RETURNED: how many values fn returned */
  FrameReader in;
} Process;

/* ---- the child ---------------------------------------------------------- */

/*
** Sends the values at stack indices first..top; returns the exit status:
** 1 when one of them can't travel, which is then sent as the error.
*/
static int send_results(lua_State *L, int first, int out) {
  Buffer b = {NULL, 0, 0};
  int top = lua_gettop(L), i;
  char err[256], root[32];
  if (frame_begin(&b, FRAME_RETURNED) != 0 || buffer_reserve(&b, RETURNED_LIST + 1) != 0) return 1;
  frame_put64(b.data + b.len + RETURNED_COUNT, (uint64_t)(top - first + 1));
  b.len += RETURNED_LIST;
  b.data[b.len++] = '[';
  for (i = first; i <= top; i++) {
    snprintf(root, sizeof root, "result[%d]", i - first + 1);
    if (i > first && buffer_append(&b, ",", 1) != 0) return 1;
    if (codec_encode(L, i, &b, root, err, sizeof err) != 0) {
      worker_send_encode_error(L, out, 0, err);
      return 1;
    }
  }
  if (buffer_append(&b, "]", 1) != 0) return 1;
  frame_finish(&b, 0);
  return proc_write2(out, b.data, b.len, NULL, 0) == 0 ? 0 : 1;
}

/* Runs fn with its arguments (stack 1 .. nargs + 1); ends the process. */
static void run_child(lua_State *L, int nargs, int out) {
  int status;
  lua_settop(L, nargs + 1);
  lua_pushcfunction(L, worker_capture_error);
  lua_insert(L, 1);
  status = lua_pcall(L, nargs, LUA_MULTRET, 1);
  fflush(NULL); /* what fn printed comes out before join returns */
  if (status != LUA_OK) {
    worker_send_error(L, out, FRAME_ERROR, 0);
    proc_exit(1);
  }
  proc_exit(send_results(L, 2, out));
}

/* ---- the parent --------------------------------------------------------- */

static Process *check_process(lua_State *L) {
  return luaL_checkudata(L, 1, PROCESS_METATABLE);
}

/* A forked copy of the handle sees a process it did not start: hands off. */
static Process *check_own_process(lua_State *L) {
  Process *p = check_process(L);
  if (p->owner != proc_self())
    luaL_error(L, "par.spawn: process %d belongs to process %d", (int)p->pid, (int)p->owner);
  return p;
}

/* Closes the pipe and reaps the process if that is not done yet. */
static void settle(Process *p) {
  if (p->fd >= 0) {
    proc_close(p->fd);
    p->fd = -1;
  }
  if (!p->reaped) {
    p->status = proc_reap(p->pid);
    p->reaped = 1;
  }
  reader_free(&p->in);
}

/* Makes the value on top of the stack the outcome join gives from now on (the handle is at 1). */
static void keep_outcome(lua_State *L, Process *p, enum Outcome outcome) {
  lua_setiuservalue(L, 1, 1);
  p->outcome = outcome;
  settle(p);
}

static void on_frame(lua_State *L, Process *p, char type, const char *payload, size_t len) {
  lua_Integer count;
  if (type == FRAME_ERROR) {
    dispatch_decode_error(L, "par.spawn", payload, len);
    par_make_error(L, "par.spawn", 0, "error");
    keep_outcome(L, p, FAILED);
    return;
  }
  if (type != FRAME_RETURNED || len < RETURNED_LIST)
    luaL_error(L, "par.spawn: unexpected message from process %d", (int)p->pid);
  lua_newtable(L);
  count = codec_decode_into(L, -1, 1, payload + RETURNED_LIST, len - RETURNED_LIST);
  if ((uint64_t)count != frame_get64(payload + RETURNED_COUNT))
    luaL_error(L, "par.spawn: process %d sent a wrong count of values", (int)p->pid);
  p->nresults = (int)count;
  keep_outcome(L, p, RETURNED);
}

/* End of file before a whole frame: the process died by a signal or os.exit. */
static void on_end(lua_State *L, Process *p) {
  char how[64];
  settle(p);
  proc_describe_status(p->status, how, sizeof how);
  par_push_error(L, "par.spawn", 0, "crash", "process %d %s", (int)p->pid, how);
  keep_outcome(L, p, FAILED);
}

/* Reads until the outcome is known; returns 0 if the deadline passed first. */
static int await_outcome(lua_State *L, Process *p, int64_t deadline) {
  for (;;) {
    char type, err[128];
    const char *payload;
    size_t len;
    ssize_t got;
    int took = reader_take(&p->in, &type, &payload, &len, err, sizeof err);
    if (took < 0) luaL_error(L, "par.spawn: bad frame from process %d: %s", (int)p->pid, err);
    if (took > 0) {
      on_frame(L, p, type, payload, len);
      return 1;
    }
    if (!par_wait_readable(L, p->fd, deadline, "par.spawn", "waiting for the process")) return 0;
    got = reader_fill(&p->in, p->fd);
    if (got < 0)
      luaL_error(L, "par.spawn: cannot read from process %d: %s", (int)p->pid, strerror(errno));
    if (got == 0) {
      on_end(L, p);
      return 1;
    }
  }
}

static int process_join(lua_State *L) {
  Process *p = check_own_process(L);
  int64_t deadline = par_deadline(L, 2);
  int i;
  if (p->outcome == RUNNING) {
    if (p->fd < 0)
      return luaL_error(L, "par.spawn: process %d was closed before it was joined", (int)p->pid);
    if (!await_outcome(L, p, deadline)) {
      lua_pushnil(L);
      lua_pushliteral(L, "timeout");
      return 2;
    }
  }
  lua_getiuservalue(L, 1, 1);
  if (p->outcome == FAILED) return lua_error(L);
  luaL_checkstack(L, p->nresults, "too many results");
  for (i = 1; i <= p->nresults; i++) lua_rawgeti(L, -i, i);
  return p->nresults;
}

/* A signal given as a number or a name such as "TERM" or "SIGTERM"; SIGTERM by default. */
static int check_signal(lua_State *L, int arg) {
  const char *name;
  int sig;
  switch (lua_type(L, arg)) {
    case LUA_TNONE:
    case LUA_TNIL:
      return SIGTERM;
    case LUA_TNUMBER: {
      lua_Integer n = luaL_checkinteger(L, arg);
      if (n < 1 || n >= NSIG)
        luaL_argerror(L, arg, lua_pushfstring(L, "no signal has number %I", n));
      return (int)n;
    }
    case LUA_TSTRING:
      name = lua_tostring(L, arg);
      if (strncmp(name, "SIG", 3) == 0) name += 3;
      for (sig = 1; sig < NSIG; sig++) {
        const char *abbrev = sigabbrev_np(sig);
        if (abbrev != NULL && strcmp(abbrev, name) == 0) return sig;
      }
      return luaL_argerror(L, arg, lua_pushfstring(L, "unknown signal '%s'", lua_tostring(L, arg)));
    default:
      return luaL_typeerror(L, arg, "signal number or name");
  }
}

static int process_kill(lua_State *L) {
  Process *p = check_own_process(L);
  int sig = check_signal(L, 2);
  if (!p->reaped) kill(p->pid, sig); /* not reaped: the pid is still ours, even if it exited */
  return 0;
}

/* Reaps the process if it has ended (join still reads what it sent); returns whether it has. */
static int poll_end(lua_State *L, Process *p) {
  if (!p->reaped) {
    int ended = proc_try_reap(p->pid, &p->status);
    if (ended < 0)
      return luaL_error(L, "par.spawn: cannot wait for process %d: %s", (int)p->pid, strerror(errno));
    p->reaped = ended;
  }
  return p->reaped;
}

static int process_running(lua_State *L) {
  Process *p = check_own_process(L);
  lua_pushboolean(L, !poll_end(L, p));
  return 1;
}

/* proc.exitcode: nil while it runs, then its exit status or minus the signal that killed it. */
static int push_exitcode(lua_State *L) {
  Process *p = check_own_process(L);
  int code;
  if (poll_end(L, p) && proc_exit_code(p->status, &code))
    lua_pushinteger(L, code);
  else
    lua_pushnil(L);
  return 1;
}

/* __gc and __close: a process still running is killed, then reaped. */
static int process_release(lua_State *L) {
  Process *p = check_process(L);
  if (p->owner == proc_self() && p->pid > 0) {
    if (!p->reaped) proc_kill(p->pid);
    settle(p);
  }
  reader_free(&p->in);
  return 0;
}

/* __index: the fields pid and exitcode, then the methods (the upvalue). */
static int process_index(lua_State *L) {
  Process *p = check_process(L);
  const char *key = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : "";
  if (strcmp(key, "pid") == 0) {
    lua_pushinteger(L, p->pid);
    return 1;
  }
  if (strcmp(key, "exitcode") == 0)
    return push_exitcode(L);
  lua_pushvalue(L, 2);
  lua_rawget(L, lua_upvalueindex(1));
  return 1;
}

static const luaL_Reg process_methods[] = {
  {"join", process_join},
  {"kill", process_kill},
  {"running", process_running},
  {NULL, NULL}
};

/* Pushes a handle for a process not started yet. */
static Process *new_process(lua_State *L) {
  Process *p = lua_newuserdatauv(L, sizeof *p, 1);
  memset(p, 0, sizeof *p);
  p->owner = proc_self();
  p->fd = -1;
  if (luaL_newmetatable(L, PROCESS_METATABLE)) {
    luaL_newlib(L, process_methods);
    lua_pushcclosure(L, process_index, 1);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, process_release);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, process_release);
    lua_setfield(L, -2, "__close");
  }
  lua_setmetatable(L, -2);
  return p;
}

int par_spawn(lua_State *L) {
  int nargs = lua_gettop(L) - 1;
  Process *p;
  ProcLink res;
  const char *failed;
  pid_t pid;
  par_check_callable(L, 1);
  par_check_fork_safe(L, "par.spawn");
  p = new_process(L);
  failed = proc_link_open(&res, PROC_RESULTS);
  if (failed != NULL) {
    par_push_syscall_error(L, "par.spawn", "fork", failed);
    return lua_error(L);
  }
  pid = par_fork(L);
  if (pid == 0) run_child(L, nargs, res.child);
  proc_link_close_child(&res);
  if (pid < 0) {
    proc_link_close(&res);
    par_push_syscall_error(L, "par.spawn", "fork", "fork");
    return lua_error(L);
  }
  p->pid = pid;
  p->fd = res.parent;
  return 1;
}

/*
** par.pipe: two connected ends, each sending to the other (docs/pipe.md).
**
** The ends are the two sockets of one SOCK_SEQPACKET pair, carrying one
** message per datagram as par.channel does (message.h). Every process
** forked after par.pipe() holds both; a receive sees end of file once
** every process has closed its copy of the other end.
*/
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>

#include "buffer.h"
#include "lpar.h"
#include "lutil.h"
#include "message.h"
#include "proc.h"

#define PIPE_METATABLE "par.Pipe"

typedef struct Pipe {
  int fd; /* -1 once closed in this process */
  size_t datagram_max;
} Pipe;

/* The pipe at arg, raising if this process closed its end. */
static Pipe *check_open(lua_State *L, int arg) {
  Pipe *p = luaL_checkudata(L, arg, PIPE_METATABLE);
  if (p->fd < 0) luaL_error(L, "par.pipe: this end is closed");
  return p;
}

static int pipe_send(lua_State *L) {
  Pipe *p = check_open(L, 1);
  Buffer *msg;
  int sig, sent;
  lua_settop(L, 2);
  msg = message_encode(L, 2, "par.pipe");
  sent = message_send(p->fd, msg, p->datagram_max, 1, &sig) == 0;
  if (sig != 0) { /* sent or not, the signal is the user's to act on */
    par_push_interrupted(L, "par.pipe", sig, "waiting in send");
    return lua_error(L);
  }
  if (!sent) return message_send_error(L, "par.pipe", "send", "pipe", errno);
  return 0;
}

static int pipe_recv(lua_State *L) {
  Pipe *p = check_open(L, 1);
  int64_t deadline = par_deadline(L, 2), since = par_now_ns();
  Buffer *in;
  lua_settop(L, 2);
  in = message_push_inbox(L, "par.pipe");
  for (;;) {
    int got = message_try_receive(L, p->fd, in, "par.pipe", "recv");
    if (got == 1) return 1;
    if (got < 0) return message_push_none(L, "closed");
    if (proc_look_again(since, deadline)) continue;
    if (!par_wait_readable(L, p->fd, deadline, "par.pipe", "waiting in recv"))
      return message_push_none(L, "timeout");
  }
}

/* True when recv would not wait: a message is here, or the other end is closed everywhere. */
static int pipe_poll(lua_State *L) {
  Pipe *p = check_open(L, 1);
  int64_t deadline = lua_isnoneornil(L, 2) ? par_now_ns() : par_deadline(L, 2);
  lua_pushboolean(L, par_wait_readable(L, p->fd, deadline, "par.pipe", "waiting in poll"));
  return 1;
}

/* Closes this process's copy of the end; closing again does nothing. */
static int pipe_close(lua_State *L) {
  Pipe *p = luaL_checkudata(L, 1, PIPE_METATABLE);
  if (p->fd >= 0) close(p->fd);
  p->fd = -1;
  return 0;
}

static const luaL_Reg pipe_methods[] = {
  {"send", pipe_send},
  {"recv", pipe_recv},
  {"poll", pipe_poll},
  {"close", pipe_close},
  {NULL, NULL}
};

static Pipe *new_end(lua_State *L) {
  Pipe *p = lua_newuserdatauv(L, sizeof *p, 0);
  p->fd = -1;
  par_set_class(L, PIPE_METATABLE, pipe_methods, pipe_close, 1);
  return p;
}

int par_pipe(lua_State *L) {
  Pipe *a = new_end(L), *b = new_end(L);
  int fds[2];
  if (proc_seqpacket_pair(fds) != 0) {
    par_push_syscall_error(L, "par.pipe", "system", "socketpair");
    return lua_error(L);
  }
  a->fd = fds[0];
  b->fd = fds[1];
  a->datagram_max = message_size_queue(a->fd);
  b->datagram_max = message_size_queue(b->fd);
  return 2;
}

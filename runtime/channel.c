/*
** par.channel: a queue between processes (docs/channel.md).
**
** A channel is a SOCK_SEQPACKET socket pair made by par.channel(); every
** process forked later holds both ends. A put sends one datagram and a get
** takes one, so the kernel hands each message, whole, to exactly one reader:
** many writers and readers need no lock, and a process killed at any moment
** has sent a whole message or nothing. Nothing can be left torn or locked.
**
** A datagram is a frame header (frame.h) followed by:
**   FRAME_VALUE the value's codec text, when it fits in a datagram;
**   FRAME_MEMFD   padding only: the text is in a memfd passed with SCM_RIGHTS.
**
** close() is shutdown(SHUT_WR) of the sending socket, one kernel object
** shared by every process: later sends fail with EPIPE, blocked readers and
** writers wake up, and a receive reports end of file once the queue is empty.
*/
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <lauxlib.h>

#include "buffer.h"
#include "codec.h"
#include "frame.h"
#include "lpar.h"
#include "lutil.h"
#include "proc.h"

#define CHANNEL_METATABLE "par.Channel"
#define SCRATCH_METATABLE "par.ChannelScratch"

/* Values whose text is at most this long travel inside their datagram. */
#define INLINE_MAX (64 * 1024)

/*
** The send buffer asked for, which is the queue's capacity: Linux doubles
** it and caps it by net.core.wmem_max (about 416 KiB by default).
*/
#define QUEUE_BYTES (512 * 1024)

/*
** The kernel charges the send buffer only for the datagram, not for a
** memfd it carries, so a big message's datagram is padded to 1/BIG_WEIGHT
** of its size: big messages fill the queue too, and put blocks when tens of
** MB are waiting instead of filling memory.
*/
#define BIG_WEIGHT 64

/* How long put waits before trying again when too many descriptors are in flight. */
#define FD_LIMIT_RETRY_NS 10000000

typedef struct Channel {
  int send_fd; /* -1 once collected */
  int recv_fd;
  size_t datagram_max; /* the longest datagram put sends */
} Channel;

/* ---- put ---------------------------------------------------------------- */

/* Sends msg (a FRAME_VALUE frame too long for a datagram) in a memfd; *sig as proc_send_datagram's. */
static int send_in_memfd(Channel *ch, Buffer *msg, int *sig) {
  static char padding[INLINE_MAX]; /* zeros, in .bss rather than the binary */
  size_t len = msg->len - FRAME_HEADER;
  size_t pad = len / BIG_WEIGHT;
  struct iovec iov[2];
  int fd, sent, saved;
  if (pad > ch->datagram_max - FRAME_HEADER) pad = ch->datagram_max - FRAME_HEADER;
  *sig = 0;
  fd = proc_memfd_with("par.channel", msg->data + FRAME_HEADER, len);
  if (fd < 0) return -1;
  msg->data[0] = FRAME_MEMFD; /* the header keeps the text's length */
  iov[0] = (struct iovec){msg->data, FRAME_HEADER};
  iov[1] = (struct iovec){(void *)padding, pad};
  /* the in-flight descriptors of a user are limited: wait for readers to take some */
  for (;;) {
    sent = proc_send_datagram(ch->send_fd, iov, 2, fd, sig);
    if (sent == 0 || errno != ETOOMANYREFS) break;
    if ((*sig = proc_sleep_until(par_now_ns() + FD_LIMIT_RETRY_NS)) != 0) break;
  }
  saved = errno;
  close(fd);
  errno = saved;
  return sent;
}

static int send_message(Channel *ch, Buffer *msg, int *sig) {
  struct iovec iov;
  if (msg->len > ch->datagram_max) return send_in_memfd(ch, msg, sig);
  iov = (struct iovec){msg->data, msg->len};
  return proc_send_datagram(ch->send_fd, &iov, 1, -1, sig);
}

static int channel_put(lua_State *L) {
  Channel *ch = luaL_checkudata(L, 1, CHANNEL_METATABLE);
  Buffer *msg;
  char err[256];
  int sig, sent;
  luaL_argcheck(L, !lua_isnoneornil(L, 2), 2, "cannot send nil (get returns nil for no message)");
  lua_settop(L, 2);
  msg = par_push_buffer(L);
  if (frame_begin(msg, FRAME_VALUE) != 0) return luaL_error(L, "par.channel: not enough memory");
  if (codec_encode(L, 2, msg, "value", err, sizeof err) != 0) return luaL_argerror(L, 2, err);
  frame_finish(msg, 0);
  sent = send_message(ch, msg, &sig) == 0;
  if (sig != 0) { /* sent or not, the signal is the user's to act on */
    par_push_interrupted(L, "par.channel", sig, "waiting in put");
    return lua_error(L);
  }
  if (sent) return 0;
  if (errno == EPIPE) return luaL_error(L, "par.channel: put on a closed channel");
  return luaL_error(L, "par.channel: put failed: %s", strerror(errno));
}

/* ---- get ---------------------------------------------------------------- */

/* Replaces the datagram in 'in' by the text in the memfd fd, which it closes. */
static void read_memfd(lua_State *L, Buffer *in, int fd, uint64_t len) {
  int failed, saved;
  in->len = 0;
  if (buffer_reserve(in, (size_t)len) != 0) {
    failed = 1;
    errno = ENOMEM;
  } else {
    failed = proc_pread_all(fd, in->data, (size_t)len) != 0;
  }
  saved = errno;
  close(fd);
  if (failed) luaL_error(L, "par.channel: get cannot read a message: %s", strerror(saved));
}

/* Pushes the value carried by the datagram of n bytes in 'in' (fd: its memfd or -1). */
static int push_message(lua_State *L, Buffer *in, size_t n, int fd) {
  char type = n >= FRAME_HEADER ? in->data[0] : 0;
  uint64_t len = n >= FRAME_HEADER ? frame_get64(in->data + 1) : 0;
  if (type == FRAME_VALUE && fd < 0 && len == n - FRAME_HEADER) {
    codec_decode(L, in->data + FRAME_HEADER, (size_t)len);
    return 1;
  }
  if (type == FRAME_MEMFD && fd >= 0) {
    read_memfd(L, in, fd, len);
    codec_decode(L, in->data, (size_t)len);
    return 1;
  }
  if (fd >= 0) close(fd);
  return luaL_error(L, "par.channel: get received a malformed message");
}

static int push_no_message(lua_State *L, const char *why) {
  lua_pushnil(L);
  lua_pushstring(L, why);
  return 2;
}

static int channel_get(lua_State *L) {
  Channel *ch = luaL_checkudata(L, 1, CHANNEL_METATABLE);
  int64_t deadline = par_deadline(L, 2);
  int ends = 0;
  Buffer *in;
  lua_settop(L, 2);
  in = par_push_buffer(L);
  if (buffer_reserve(in, FRAME_HEADER + INLINE_MAX) != 0)
    return luaL_error(L, "par.channel: not enough memory");
  for (;;) {
    int fd, lost;
    ssize_t n = proc_recv_datagram(ch->recv_fd, in->data, in->cap, MSG_DONTWAIT, &fd, &lost);
    if (lost) {
      if (fd >= 0) close(fd);
      return luaL_error(L, "par.channel: get lost a message: no descriptor free to receive it");
    }
    if (n > 0) return push_message(L, in, (size_t)n, fd);
    /*
    ** End of file means closed and empty. But a receive that found the
    ** queue empty may see the close only after a put that raced with it
    ** landed; once a close has been seen no put can land, so the second
    ** end of file is final.
    */
    if (n == 0 && ++ends == 2) return push_no_message(L, "closed");
    if (n < 0 && errno != EAGAIN)
      return luaL_error(L, "par.channel: get failed: %s", strerror(errno));
    if (n < 0 && !par_wait_readable(L, ch->recv_fd, deadline, "par.channel", "waiting in get"))
      return push_no_message(L, "timeout");
  }
}

/* ---- close, collection, creation ---------------------------------------- */

static int channel_close(lua_State *L) {
  Channel *ch = luaL_checkudata(L, 1, CHANNEL_METATABLE);
  if (shutdown(ch->send_fd, SHUT_WR) != 0)
    return luaL_error(L, "par.channel: close failed: %s", strerror(errno));
  return 0;
}

/* Closes this process's descriptors only; the channel stays open for the others. */
static int channel_gc(lua_State *L) {
  Channel *ch = lua_touserdata(L, 1);
  if (ch->send_fd >= 0) close(ch->send_fd);
  if (ch->recv_fd >= 0) close(ch->recv_fd);
  ch->send_fd = ch->recv_fd = -1;
  return 0;
}

static const luaL_Reg channel_methods[] = {
  {"put", channel_put},
  {"get", channel_get},
  {"close", channel_close},
  {NULL, NULL}
};

/* Sizes the queue; returns the longest datagram it takes comfortably. */
static size_t size_queue(int send_fd) {
  int bytes = QUEUE_BYTES;
  socklen_t size = sizeof bytes;
  /* best effort: on failure 'bytes' keeps the size asked for */
  setsockopt(send_fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof bytes);
  getsockopt(send_fd, SOL_SOCKET, SO_SNDBUF, &bytes, &size);
  if ((size_t)bytes / 4 < FRAME_HEADER + INLINE_MAX) return (size_t)bytes / 4;
  return FRAME_HEADER + INLINE_MAX;
}

int par_channel(lua_State *L) {
  Channel *ch = lua_newuserdatauv(L, sizeof *ch, 0);
  int fds[2];
  ch->send_fd = ch->recv_fd = -1;
  par_set_class(L, CHANNEL_METATABLE, channel_methods, channel_gc, 0);
  if (proc_seqpacket_pair(fds) != 0) {
    par_push_syscall_error(L, "par.channel", "system", "socketpair");
    return lua_error(L);
  }
  ch->recv_fd = fds[0];
  ch->send_fd = fds[1];
  ch->datagram_max = size_queue(ch->send_fd);
  return 1;
}

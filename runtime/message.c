/* Messages of par.channel and par.pipe, one per datagram (message.h). */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <sys/socket.h>
#include <sys/uio.h>

#include <lauxlib.h>

#include "codec.h"
#include "frame.h"
#include "lutil.h"
#include "message.h"
#include "proc.h"

/*
** The send buffer asked for, which is the queue's capacity: Linux doubles
** it and caps it by net.core.wmem_max (about 416 KiB by default).
*/
#define QUEUE_BYTES (512 * 1024)

/*
** The kernel charges the send buffer only for the datagram, not for a
** memfd it carries, so a big message's datagram is padded to 1/BIG_WEIGHT
** of its size: big messages fill the queue too, and a blocking send waits
** when tens of MB are waiting instead of filling memory.
*/
#define BIG_WEIGHT 64

/* How long a send waits before trying again when too many descriptors are in flight. */
#define FD_LIMIT_RETRY_NS 10000000

size_t message_size_queue(int fd) {
  int bytes = QUEUE_BYTES;
  socklen_t size = sizeof bytes;
  /* best effort: on failure 'bytes' keeps the size asked for */
  setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof bytes);
  getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, &size);
  if ((size_t)bytes / 4 < FRAME_HEADER + MESSAGE_INLINE_MAX) return (size_t)bytes / 4;
  return FRAME_HEADER + MESSAGE_INLINE_MAX;
}

Buffer *message_encode(lua_State *L, int arg, const char *fn) {
  Buffer *msg;
  char err[256];
  luaL_argcheck(L, !lua_isnoneornil(L, arg), arg,
                "cannot send nil (a receive returns nil for no message)");
  msg = par_push_buffer(L);
  if (frame_begin(msg, FRAME_VALUE) != 0) luaL_error(L, "%s: not enough memory", fn);
  if (codec_encode(L, arg, msg, "value", err, sizeof err) != 0) luaL_argerror(L, arg, err);
  frame_finish(msg, 0);
  return msg;
}

/* Sends msg (a FRAME_VALUE frame too long for a datagram) in a memfd. */
static int send_in_memfd(int fd, Buffer *msg, size_t datagram_max, int wait, int *sig) {
  static char padding[MESSAGE_INLINE_MAX]; /* zeros, in .bss rather than the binary */
  size_t len = msg->len - FRAME_HEADER;
  size_t pad = len / BIG_WEIGHT;
  struct iovec iov[2];
  int memfd, sent, saved;
  if (pad > datagram_max - FRAME_HEADER) pad = datagram_max - FRAME_HEADER;
  *sig = 0;
  memfd = proc_memfd_with("par.message", msg->data + FRAME_HEADER, len);
  if (memfd < 0) return -1;
  iov[0] = (struct iovec){msg->data, FRAME_HEADER};
  iov[1] = (struct iovec){(void *)padding, pad};
  msg->data[0] = FRAME_MEMFD; /* the header keeps the text's length */
  /* the in-flight descriptors of a user are limited: wait for readers to take some */
  for (;;) {
    sent = proc_send_datagram(fd, iov, 2, memfd, wait, sig);
    if (sent == 0 || errno != ETOOMANYREFS || !wait) break;
    if ((*sig = proc_sleep_until(par_now_ns() + FD_LIMIT_RETRY_NS)) != 0) break;
  }
  saved = errno;
  close(memfd);
  errno = saved;
  return sent;
}

int message_send(int fd, Buffer *msg, size_t datagram_max, int wait, int *sig) {
  struct iovec iov;
  if (msg->len > datagram_max) return send_in_memfd(fd, msg, datagram_max, wait, sig);
  iov = (struct iovec){msg->data, msg->len};
  return proc_send_datagram(fd, &iov, 1, -1, wait, sig);
}

int message_send_error(lua_State *L, const char *fn, const char *put, const char *what, int err) {
  if (err == EPIPE) return luaL_error(L, "%s: %s on a closed %s", fn, put, what);
  return luaL_error(L, "%s: %s failed: %s", fn, put, strerror(err));
}

Buffer *message_push_inbox(lua_State *L, const char *fn) {
  Buffer *in = par_push_buffer(L);
  if (buffer_reserve(in, FRAME_HEADER + MESSAGE_INLINE_MAX) != 0)
    luaL_error(L, "%s: not enough memory", fn);
  return in;
}

/* Replaces the datagram in 'in' by the text in the memfd fd, which it closes. */
static void read_memfd(lua_State *L, Buffer *in, int fd, uint64_t len, const char *fn,
                       const char *get) {
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
  if (failed) luaL_error(L, "%s: %s cannot read a message: %s", fn, get, strerror(saved));
}

/* Pushes the value carried by the datagram of n bytes in 'in' (fd: its memfd or -1). */
static void push_message(lua_State *L, Buffer *in, size_t n, int fd, const char *fn,
                         const char *get) {
  char type = n >= FRAME_HEADER ? in->data[0] : 0;
  uint64_t len = n >= FRAME_HEADER ? frame_get64(in->data + 1) : 0;
  if (type == FRAME_VALUE && fd < 0 && len == n - FRAME_HEADER) {
    codec_decode(L, in->data + FRAME_HEADER, (size_t)len);
    return;
  }
  if (type == FRAME_MEMFD && fd >= 0) {
    read_memfd(L, in, fd, len, fn, get);
    codec_decode(L, in->data, (size_t)len);
    return;
  }
  if (fd >= 0) close(fd);
  luaL_error(L, "%s: %s received a malformed message", fn, get);
}

int message_try_receive(lua_State *L, int fd, Buffer *in, const char *fn, const char *get) {
  int passed, lost;
  ssize_t n = proc_recv_datagram(fd, in->data, in->cap, MSG_DONTWAIT, &passed, &lost);
  if (lost) {
    if (passed >= 0) close(passed);
    return luaL_error(L, "%s: %s lost a message: no descriptor free to receive it", fn, get);
  }
  if (n > 0) {
    push_message(L, in, (size_t)n, passed, fn, get);
    return 1;
  }
  if (n == 0) return -1;
  if (errno != EAGAIN) return luaL_error(L, "%s: %s failed: %s", fn, get, strerror(errno));
  return 0;
}

int message_push_none(lua_State *L, const char *why) {
  lua_pushnil(L);
  lua_pushstring(L, why);
  return 2;
}

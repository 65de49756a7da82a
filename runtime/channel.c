/*
** par.channel: a queue between processes (docs/channel.md).
**
** A put writes its message into a ring in shared memory made by
** par.channel(), which every process forked later shares: a lock and a
** copy, where a SOCK_SEQPACKET socket pair, the other way, costs a system
** call on each side. A record is written, then committed by one store of
** 'tail' (taken by one store of 'head'), under a robust mutex: a process
** killed at any moment leaves the ring whole, and has put a whole message
** or nothing.
**
** A message bigger than the ring's room, put while the ring is empty,
** goes through the socket instead (message.h), whole, to exactly one
** reader. A writer uses the socket only while the ring is empty, so that
** its messages stay in order; a reader takes from the ring only when,
** with the ring's lock held, the socket was seen empty after the record
** was written: whatever its writer sent before it is gone by then.
**
** A reader that finds nothing looks again for a while (proc_look_again),
** then waits on the socket and on a semaphore eventfd, the bell, which a
** put rings when a reader is asleep ('sleepers'): a reader counts itself
** asleep, then looks at the ring once more, then waits.
**
** 'waiting' counts the messages put and not yet taken (#ch): put reserves
** a place first, which a channel with a capacity waits for (a futex).
**
** close() marks the shared page closed under the ring's lock, so no
** record lands after it, then shuts down the sending socket, one kernel
** object shared by every process: later sends fail with EPIPE, blocked
** readers wake up, and a receive reports end of file once the queue is
** empty.
*/
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include <linux/sockios.h>

#include <lauxlib.h>

#include "buffer.h"
#include "codec.h"
#include "frame.h"
#include "lpar.h"
#include "lutil.h"
#include "message.h"
#include "options.h"
#include "proc.h"

#define CHANNEL_METATABLE "par.Channel"

/* The ring's default size: the memory spilled messages may take. */
#define DEFAULT_MAX_BYTES ((lua_Integer)1 << 30)

/* The ring is sized and its memory given back in pieces this big. */
#define RING_CHUNK ((size_t)1 << 20)

/* The shared page before the ring. */
#define SHARED_BYTES 4096

/* Each spilled record: its text's length, then the text. */
#define RECORD_HEADER 8

typedef struct Shared {
  pthread_mutex_t lock; /* robust: guards head, tail and closed */
  uint32_t waiting;     /* messages put and not yet taken; capacity waits on it */
  uint32_t closed;
  uint32_t sleepers;    /* readers waiting for the bell */
  uint64_t head, tail;  /* ring offsets, only growing: the first record, the end */
  uint64_t clear_to;    /* records before it were spilled before the socket was seen empty */
} Shared;

typedef struct Channel {
  int send_fd; /* -1 once collected */
  int recv_fd;
  int bell_fd;
  size_t datagram_max; /* the longest datagram put sends */
  uint32_t capacity;   /* 0: no limit */
  Shared *shared;      /* NULL once collected; the ring follows it */
  char *ring;
  size_t ring_size;
} Channel;

/* ---- the ring ----------------------------------------------------------- */

static void lock_ring(Shared *s) {
  /* a holder killed midway changed nothing: each change is one store */
  if (pthread_mutex_lock(&s->lock) == EOWNERDEAD) pthread_mutex_consistent(&s->lock);
}

static void unlock_ring(Shared *s) {
  pthread_mutex_unlock(&s->lock);
}

static int ring_is_empty(Shared *s) {
  uint64_t head = __atomic_load_n(&s->head, __ATOMIC_SEQ_CST); /* head first: it never passes tail */
  return head == __atomic_load_n(&s->tail, __ATOMIC_SEQ_CST);
}

static void ring_write(Channel *ch, uint64_t at, const char *p, size_t n) {
  size_t pos = (size_t)(at % ch->ring_size), first = ch->ring_size - pos;
  if (first > n) first = n;
  memcpy(ch->ring + pos, p, first);
  memcpy(ch->ring, p + first, n - first);
}

static void ring_read(Channel *ch, uint64_t at, char *p, size_t n) {
  size_t pos = (size_t)(at % ch->ring_size), first = ch->ring_size - pos;
  if (first > n) first = n;
  memcpy(p, ch->ring + pos, first);
  memcpy(p + first, ch->ring, n - first);
}

/*
** Gives back the memory of the chunks wholly between offsets from and
** to, records already taken, but not a chunk that the records from 'to'
** up to 'tail' have wrapped around into.
*/
static void ring_release(Channel *ch, uint64_t from, uint64_t to, uint64_t tail) {
  uint64_t c, chunks = ch->ring_size / RING_CHUNK;
  for (c = from / RING_CHUNK; c < to / RING_CHUNK; c++)
    if (tail == to || (tail - 1) / RING_CHUNK < c + chunks)
      madvise(ch->ring + (size_t)(c * RING_CHUNK % ch->ring_size), RING_CHUNK, MADV_REMOVE);
}

/* Appends the text of the frame in msg; 0, or EPIPE when closed, ENOSPC when full. */
static int spill(Channel *ch, Buffer *msg) {
  Shared *s = ch->shared;
  size_t len = msg->len - FRAME_HEADER;
  char header[RECORD_HEADER];
  int err = 0;
  uint64_t one = 1;
  lock_ring(s);
  if (s->closed) {
    err = EPIPE;
  } else if (RECORD_HEADER + len > ch->ring_size - (size_t)(s->tail - s->head)) {
    err = ENOSPC;
  } else {
    frame_put64(header, len);
    ring_write(ch, s->tail, header, RECORD_HEADER);
    ring_write(ch, s->tail + RECORD_HEADER, msg->data + FRAME_HEADER, len);
    __atomic_store_n(&s->tail, s->tail + RECORD_HEADER + len, __ATOMIC_SEQ_CST);
  }
  unlock_ring(s);
  if (err == 0 && __atomic_load_n(&s->sleepers, __ATOMIC_SEQ_CST) > 0)
    (void)!write(ch->bell_fd, &one, sizeof one); /* it only fails when 2^64 rings wait */
  return err;
}

/* The socket has a datagram waiting (end of file does not count). */
static int socket_has_message(int fd) {
  int bytes = 0;
  return ioctl(fd, SIOCINQ, &bytes) == 0 && bytes > 0;
}

enum Unspill { UNSPILL_NONE, UNSPILL_TOOK, UNSPILL_SOCKET_FIRST, UNSPILL_NO_MEMORY };

/* Moves the ring's first record into 'in' (its text, in->len bytes), unless the socket goes first. */
static enum Unspill unspill(Channel *ch, Buffer *in) {
  Shared *s = ch->shared;
  enum Unspill r = UNSPILL_TOOK;
  char header[RECORD_HEADER];
  lock_ring(s);
  if (s->head == s->tail) {
    r = UNSPILL_NONE;
  } else if (s->head >= s->clear_to && socket_has_message(ch->recv_fd)) {
    r = UNSPILL_SOCKET_FIRST;
  } else {
    /* what their writers sent before them is gone: no need to look again for these */
    if (s->head >= s->clear_to) s->clear_to = s->tail;
    uint64_t len;
    ring_read(ch, s->head, header, RECORD_HEADER);
    len = frame_get64(header);
    in->len = 0;
    if (buffer_reserve(in, (size_t)len) != 0) {
      r = UNSPILL_NO_MEMORY;
    } else {
      uint64_t next = s->head + RECORD_HEADER + len;
      ring_read(ch, s->head + RECORD_HEADER, in->data, (size_t)len);
      in->len = (size_t)len;
      uint64_t taken = s->head;
      /* the record is taken before its memory goes: a reader killed between leaves no hole */
      __atomic_store_n(&s->head, next, __ATOMIC_SEQ_CST);
      ring_release(ch, taken, next, s->tail);
    }
  }
  unlock_ring(s);
  return r;
}

/* ---- the count of messages waiting --------------------------------------- */

/* Waits for room and takes a place; 1, or 0 at the deadline. Raises once closed. */
static int reserve(lua_State *L, Channel *ch, int64_t deadline) {
  Shared *s = ch->shared;
  for (;;) {
    uint32_t n = __atomic_load_n(&s->waiting, __ATOMIC_SEQ_CST);
    int sig, woken;
    if (__atomic_load_n(&s->closed, __ATOMIC_SEQ_CST))
      return luaL_error(L, "par.channel: put on a closed channel");
    if (ch->capacity == 0 || n < ch->capacity) {
      if (__atomic_compare_exchange_n(&s->waiting, &n, n + 1, 0, __ATOMIC_SEQ_CST,
                                      __ATOMIC_SEQ_CST))
        return 1;
      continue;
    }
    woken = proc_wait_word(&s->waiting, n, deadline, &sig);
    if (sig != 0) {
      par_push_interrupted(L, "par.channel", sig, "waiting in put");
      return lua_error(L);
    }
    if (!woken) return 0;
  }
}

/* Gives a place back: a message was taken, or a put failed. */
static void release_place(Channel *ch) {
  Shared *s = ch->shared;
  uint32_t n = __atomic_load_n(&s->waiting, __ATOMIC_SEQ_CST);
  /* never below 0, which a process killed between reserve and send could cause */
  while (n > 0 && !__atomic_compare_exchange_n(&s->waiting, &n, n - 1, 0, __ATOMIC_SEQ_CST,
                                               __ATOMIC_SEQ_CST)) {
  }
  if (ch->capacity != 0 && n >= ch->capacity) proc_futex_wake(&s->waiting, INT32_MAX);
}

/* ---- put ---------------------------------------------------------------- */

static Channel *check_channel(lua_State *L) {
  Channel *ch = luaL_checkudata(L, 1, CHANNEL_METATABLE);
  if (ch->shared == NULL) luaL_error(L, "par.channel: the channel was collected");
  return ch;
}

/*
** Spills, or sends a message too big for the ring's room while the ring
** is empty; 0 or an errno. The ring comes first: a message there costs a
** lock and a copy, where the socket costs a system call on each side.
*/
static int spill_or_send(Channel *ch, Buffer *msg) {
  int sig, err = spill(ch, msg);
  if (err != ENOSPC || !ring_is_empty(ch->shared)) return err;
  if (message_send(ch->send_fd, msg, ch->datagram_max, 0, &sig) == 0) return 0;
  return errno == EAGAIN || errno == ETOOMANYREFS ? ENOSPC : errno;
}

static int channel_put(lua_State *L) {
  Channel *ch = check_channel(L);
  int64_t deadline = par_deadline(L, 3);
  Buffer *msg;
  int err;
  lua_settop(L, 3);
  msg = message_encode(L, 2, "par.channel");
  if (!reserve(L, ch, deadline)) return message_push_none(L, "timeout");
  err = spill_or_send(ch, msg);
  if (err == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  release_place(ch);
  if (err == ENOSPC)
    return luaL_error(L, "par.channel: full (%I bytes of messages waiting in memory, max_bytes = %I)",
                      (lua_Integer)(ch->shared->tail - ch->shared->head),
                      (lua_Integer)ch->ring_size);
  return message_send_error(L, "par.channel", "put", "channel", err);
}

/* ---- get ---------------------------------------------------------------- */

/* Takes one token of the bell, if any: a spill rang it for a reader asleep. */
static void take_ring(Channel *ch) {
  uint64_t token;
  (void)!read(ch->bell_fd, &token, sizeof token); /* EAGAIN: no token, nothing to do */
}

/* Waits for the socket or the bell; 0 at the deadline. */
static int wait_for_message(lua_State *L, Channel *ch, int64_t deadline) {
  Shared *s = ch->shared;
  struct pollfd fds[2] = {{ch->recv_fd, POLLIN, 0}, {ch->bell_fd, POLLIN, 0}};
  int ready = 1, sig = 0;
  __atomic_add_fetch(&s->sleepers, 1, __ATOMIC_SEQ_CST);
  if (ring_is_empty(s)) ready = proc_poll(fds, 2, deadline, &sig);
  __atomic_sub_fetch(&s->sleepers, 1, __ATOMIC_SEQ_CST);
  if (sig != 0) {
    par_push_interrupted(L, "par.channel", sig, "waiting in get");
    return lua_error(L);
  }
  if (ready > 0 && (fds[1].revents & POLLIN)) take_ring(ch);
  return ready != 0;
}

static int channel_get(lua_State *L) {
  Channel *ch = check_channel(L);
  int64_t deadline = par_deadline(L, 2), since = par_now_ns();
  int ends = 0, socket_first = 0;
  Buffer *in;
  lua_settop(L, 2);
  in = message_push_inbox(L, "par.channel");
  for (;;) {
    int got = 0;
    /* while the ring holds messages, unspill says when the socket has some */
    if (socket_first || ring_is_empty(ch->shared)) {
      got = message_try_receive(L, ch->recv_fd, in, "par.channel", "get");
      if (got == 1) {
        release_place(ch);
        return 1;
      }
      socket_first = 0;
    }
    switch (unspill(ch, in)) {
      case UNSPILL_TOOK:
        release_place(ch);
        codec_decode(L, in->data, in->len);
        return 1;
      case UNSPILL_SOCKET_FIRST:
        socket_first = 1;
        continue;
      case UNSPILL_NO_MEMORY:
        return luaL_error(L, "par.channel: not enough memory");
      case UNSPILL_NONE:
        break;
    }
    /*
    ** End of file means closed and empty. But a receive that found the
    ** queue empty may see the close only after a put that raced with it
    ** landed; once a close has been seen no put can land, so the second
    ** end of file is final (the ring was looked at after it).
    */
    if (got < 0 && ++ends == 2) return message_push_none(L, "closed");
    if (got == 0 && proc_look_again(since, deadline)) continue;
    if (got == 0 && !wait_for_message(L, ch, deadline)) return message_push_none(L, "timeout");
  }
}

/* ---- len, close, collection, creation ------------------------------------ */

static int channel_len(lua_State *L) {
  Channel *ch = check_channel(L);
  lua_pushinteger(L, (lua_Integer)__atomic_load_n(&ch->shared->waiting, __ATOMIC_SEQ_CST));
  return 1;
}

static int channel_close(lua_State *L) {
  Channel *ch = check_channel(L);
  Shared *s = ch->shared;
  lock_ring(s);
  __atomic_store_n(&s->closed, 1, __ATOMIC_SEQ_CST);
  unlock_ring(s);
  proc_futex_wake(&s->waiting, INT32_MAX); /* puts waiting for room raise */
  if (shutdown(ch->send_fd, SHUT_WR) != 0)
    return luaL_error(L, "par.channel: close failed: %s", strerror(errno));
  return 0;
}

/* Lets go of this process's descriptors and mapping only; the channel stays open for the others. */
static int channel_gc(lua_State *L) {
  Channel *ch = lua_touserdata(L, 1);
  if (ch->send_fd >= 0) close(ch->send_fd);
  if (ch->recv_fd >= 0) close(ch->recv_fd);
  if (ch->bell_fd >= 0) close(ch->bell_fd);
  if (ch->shared != NULL) munmap(ch->shared, SHARED_BYTES + ch->ring_size);
  ch->send_fd = ch->recv_fd = ch->bell_fd = -1;
  ch->shared = NULL;
  return 0;
}

static const luaL_Reg channel_methods[] = {
  {"put", channel_put},
  {"get", channel_get},
  {"len", channel_len},
  {"close", channel_close},
  {NULL, NULL}
};

/* Maps the shared page and the ring; reserved, its memory taken only as messages spill. */
static int map_shared(Channel *ch, lua_Integer max_bytes) {
  pthread_mutexattr_t attr;
  void *p;
  ch->ring_size = ((size_t)max_bytes + RING_CHUNK - 1) / RING_CHUNK * RING_CHUNK;
  p = mmap(NULL, SHARED_BYTES + ch->ring_size, PROT_READ | PROT_WRITE,
           MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return -1;
  ch->shared = p;
  ch->ring = (char *)p + SHARED_BYTES;
  pthread_mutexattr_init(&attr);
  pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
  pthread_mutex_init(&ch->shared->lock, &attr);
  pthread_mutexattr_destroy(&attr);
  return 0;
}

static const char *const channel_options[] = {"capacity", "max_bytes", NULL};

int par_channel(lua_State *L) {
  ParOptions o;
  Channel *ch;
  int fds[2];
  options_read(L, 1, channel_options, &o);
  luaL_argcheck(L, o.capacity <= UINT32_MAX - 1, 1, "option 'capacity' is too large");
  luaL_argcheck(L, o.max_bytes <= ((lua_Integer)1 << 46), 1, "option 'max_bytes' is too large");
  ch = lua_newuserdatauv(L, sizeof *ch, 0);
  ch->send_fd = ch->recv_fd = ch->bell_fd = -1;
  ch->shared = NULL;
  ch->capacity = (uint32_t)o.capacity;
  par_set_class(L, CHANNEL_METATABLE, channel_methods, channel_gc, 0);
  lua_getmetatable(L, -1);
  lua_pushcfunction(L, channel_len);
  lua_setfield(L, -2, "__len"); /* #ch */
  lua_pop(L, 1);
  if (map_shared(ch, o.max_bytes != 0 ? o.max_bytes : DEFAULT_MAX_BYTES) != 0) {
    par_push_syscall_error(L, "par.channel", "system", "mmap");
    return lua_error(L);
  }
  if ((ch->bell_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK | EFD_SEMAPHORE)) < 0) {
    par_push_syscall_error(L, "par.channel", "system", "eventfd");
    return lua_error(L);
  }
  if (proc_seqpacket_pair(fds) != 0) {
    par_push_syscall_error(L, "par.channel", "system", "socketpair");
    return lua_error(L);
  }
  ch->recv_fd = fds[0];
  ch->send_fd = fds[1];
  ch->datagram_max = message_size_queue(ch->send_fd);
  return 1;
}

/*
** Messages of par.channel and par.pipe: one value per datagram of a
** SOCK_SEQPACKET socket (proc_seqpacket_pair), so the kernel hands each
** message, whole, to one reader, and a process killed at any moment has
** sent a whole message or nothing.
**
** A datagram is a frame header (frame.h) followed by:
**   FRAME_VALUE the value's codec text, when it fits in a datagram;
**   FRAME_MEMFD   padding only: the text is in a memfd passed with SCM_RIGHTS.
**
** 'fn' names the Lua function for errors ("par.channel"), 'put' and 'get'
** the methods that send and receive ("put", "recv").
*/
#ifndef PARLUA_MESSAGE_H
#define PARLUA_MESSAGE_H

#include <stddef.h>
#include <stdint.h>

#include <lua.h>

#include "buffer.h"

/* Values whose text is at most this long travel inside their datagram. */
#define MESSAGE_INLINE_MAX (64 * 1024)

/* Sizes the send queue of fd; returns the longest datagram it takes comfortably. */
size_t message_size_queue(int fd);

/*
** Pushes a Buffer (par_push_buffer) holding the value at arg as a
** FRAME_VALUE frame. A value that cannot travel raises a bad argument
** naming it, nil too.
*/
Buffer *message_encode(lua_State *L, int arg, const char *fn);

/*
** Sends the frame in msg (in a memfd when longer than datagram_max, which
** rewrites its header). With 'wait' it blocks while the queue is full, and
** a SIGINT or SIGTERM ends the wait as in proc_send_datagram (*sig);
** without, a full queue fails at once with EAGAIN (or ETOOMANYREFS for a
** memfd when too many descriptors are in flight). Returns 0 or -1 with
** errno set.
*/
int message_send(int fd, Buffer *msg, size_t datagram_max, int wait, int *sig);

/* Raises fn's error for a send that failed with errno 'err' (EPIPE: "put on a closed <what>"). */
int message_send_error(lua_State *L, const char *fn, const char *put, const char *what, int err);

/* A Buffer (par_push_buffer) with room for any datagram message_send sends. */
Buffer *message_push_inbox(lua_State *L, const char *fn);

/*
** Takes one datagram from fd without waiting: pushes its value and returns
** 1; returns 0 when none is waiting (EAGAIN) and -1 at end of file. Raises
** fn's error for a failed or malformed receive.
*/
int message_try_receive(lua_State *L, int fd, Buffer *in, const char *fn, const char *get);

/* Pushes nil and why ("closed", "timeout"); returns 2. */
int message_push_none(lua_State *L, const char *why);

#endif

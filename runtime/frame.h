/*
** Framing: every message between processes is a 9-byte header (a type
** byte and a 64-bit little-endian payload length) followed by the payload.
** Every frame type and the layout of its payload are named here.
*/
#ifndef PARLUA_FRAME_H
#define PARLUA_FRAME_H

#include <stdint.h>

#include <sys/types.h>

#include "buffer.h"

#define FRAME_HEADER 9

/*
** Frame types. Each item a worker is given ends in exactly one outcome:
** its result inside a FRAME_RESULTS, or one FRAME_ERROR; a crash is the
** worker's end of file.
*/
enum FrameType {
  FRAME_JOB = 'J',        /* parent to worker: run list items lo..hi */
  FRAME_LAST_JOB = 'L',   /* the same, and then exit: no more work will come */
  FRAME_ITEM = 'P',       /* parent to worker: run one encoded item */
  FRAME_READY = 'O',      /* worker: its init ran; a death after it is not init's */
  FRAME_RESULTS = 'R',    /* worker: the results of items lo .. lo+n-1 */
  FRAME_ERROR = 'E',      /* worker: one item raised, or its result cannot travel */
  FRAME_INIT_ERROR = 'I', /* worker: init raised; the worker exits */
  FRAME_RETURNED = 'F',   /* par.spawn's child: the values fn returned */
  FRAME_VALUE = 'V',      /* par.channel: a value's text in the datagram */
  FRAME_MEMFD = 'M'       /* par.channel: the text in a memfd sent with it */
};

/* Byte offsets inside payloads: 64-bit integers, then JSON text to the end. */
enum FrameLayout {
  JOB_LO = 0, JOB_HI = 8, JOB_SIZE = 16,            /* FRAME_JOB, FRAME_LAST_JOB */
  ITEM_SLOT = 0, ITEM_ID = 8, ITEM_VALUE = 16,      /* FRAME_ITEM: slot, push id, the item */
  RESULTS_LO = 0, RESULTS_NS = 8, RESULTS_LIST = 16, /* lo, elapsed ns, JSON array */
  ERROR_INDEX = 0, ERROR_VALUE = 8,                 /* FRAME_ERROR, FRAME_INIT_ERROR */
  RETURNED_COUNT = 0, RETURNED_LIST = 8             /* FRAME_RETURNED: count, JSON array */
};
/* Larger lengths mark a corrupt frame. Buffers grow as bytes arrive, so a
   lying header never allocates much more than what was actually sent. */
#define FRAME_MAX ((uint64_t)16 << 30)

/* Starts a frame in b: writes a header to be completed by frame_finish. */
int frame_begin(Buffer *b, char type);

/* Fills in the length of the frame begun at offset 'start' of b. */
void frame_finish(Buffer *b, size_t start);

/* Sends one frame with the given payload; returns 0 or -1 with errno set. */
int frame_send(int fd, char type, const void *payload, size_t len);

/* 64-bit integers inside payloads, little-endian. */
void frame_put64(char *p, uint64_t v);
uint64_t frame_get64(const char *p);



/*
** A buffered reader of frames from one descriptor: one read() may bring
** many small frames, and a whole frame's payload stays contiguous.
*/
typedef struct FrameReader {
  Buffer buf;
  size_t pos; /* start of the bytes not yet taken */
} FrameReader;

/*
** Takes the next whole frame out of the buffer: returns 1 and points
** *payload into the buffer (valid until the next reader_fill), 0 when the
** frame is not all here yet, -1 with a message in err for a bad header.
*/
int reader_take(FrameReader *r, char *type, const char **payload, size_t *len,
                char *err, size_t errsize);

/*
** One read() into the buffer, growing it toward the size of a partly read
** frame. Returns the bytes read, 0 at end of file, -1 with errno set.
*/
ssize_t reader_fill(FrameReader *r, int fd);

/* reader_fill from a socket, without waiting: -1 with errno EAGAIN when nothing is there. */
ssize_t reader_fill_now(FrameReader *r, int fd);

/* True when part of a frame is buffered, so more bytes are on their way. */
int reader_partial(const FrameReader *r);

/* Blocks until a whole frame is here; returns 1, 0 at a clean end of
   file, -1 with a message in err. */
int reader_next(FrameReader *r, int fd, char *type, const char **payload,
                size_t *len, char *err, size_t errsize);

void reader_free(FrameReader *r);
#endif

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "frame.h"
#include "proc.h"

void frame_put64(char *p, uint64_t v) {
  int i;
  for (i = 0; i < 8; i++) p[i] = (char)(v >> (8 * i));
}

uint64_t frame_get64(const char *p) {
  uint64_t v = 0;
  int i;
  for (i = 0; i < 8; i++) v |= (uint64_t)(unsigned char)p[i] << (8 * i);
  return v;
}

int frame_begin(Buffer *b, char type) {
  if (buffer_reserve(b, FRAME_HEADER) != 0) return -1;
  b->data[b->len] = type;
  b->len += FRAME_HEADER;
  return 0;
}

void frame_finish(Buffer *b, size_t start) {
  frame_put64(b->data + start + 1, b->len - start - FRAME_HEADER);
}

int frame_send(int fd, char type, const void *payload, size_t len) {
  char header[FRAME_HEADER];
  header[0] = type;
  frame_put64(header + 1, len);
  return proc_write2(fd, header, sizeof header, payload, len);
}

static size_t buffered(const FrameReader *r) {
  return r->buf.len - r->pos;
}

/* Length of the whole frame at the reader's position, or 0 if the header is not in. */
static uint64_t pending_frame_size(const FrameReader *r) {
  if (buffered(r) < FRAME_HEADER) return 0;
  return FRAME_HEADER + frame_get64(r->buf.data + r->pos + 1);
}

int reader_take(FrameReader *r, char *type, const char **payload, size_t *len,
                char *err, size_t errsize) {
  uint64_t size = pending_frame_size(r);
  if (size == 0) return 0;
  if (size - FRAME_HEADER > FRAME_MAX) {
    snprintf(err, errsize, "frame length %llu is over the limit",
             (unsigned long long)(size - FRAME_HEADER));
    return -1;
  }
  if (buffered(r) < size) return 0;
  *type = r->buf.data[r->pos];
  *payload = r->buf.data + r->pos + FRAME_HEADER;
  *len = (size_t)(size - FRAME_HEADER);
  r->pos += (size_t)size;
  return 1;
}

int reader_partial(const FrameReader *r) {
  return buffered(r) > 0;
}

/* Moves unread bytes to the front and makes room for the next read. */
static int make_room(FrameReader *r) {
  uint64_t size = pending_frame_size(r);
  size_t want = 65536;
  if (r->pos > 0) {
    memmove(r->buf.data, r->buf.data + r->pos, buffered(r));
    r->buf.len -= r->pos;
    r->pos = 0;
  }
  /* grow toward a large frame's size, but only as fast as its bytes come */
  if (size > r->buf.len + want && size <= FRAME_HEADER + FRAME_MAX)
    want = r->buf.len < want ? want : r->buf.len;
  return buffer_reserve(&r->buf, want);
}

ssize_t reader_fill(FrameReader *r, int fd) {
  ssize_t got;
  if (make_room(r) != 0) {
    errno = ENOMEM;
    return -1;
  }
  got = proc_read(fd, r->buf.data + r->buf.len, r->buf.cap - r->buf.len);
  if (got > 0) r->buf.len += (size_t)got;
  return got;
}

int reader_next(FrameReader *r, int fd, char *type, const char **payload,
                size_t *len, char *err, size_t errsize) {
  for (;;) {
    int took = reader_take(r, type, payload, len, err, errsize);
    ssize_t got;
    if (took != 0) return took;
    got = reader_fill(r, fd);
    if (got > 0) continue;
    if (got == 0 && !reader_partial(r)) return 0;
    snprintf(err, errsize, "truncated frame (%s)",
             got == 0 ? "end of file" : strerror(errno));
    return -1;
  }
}

void reader_free(FrameReader *r) {
  buffer_free(&r->buf);
  r->pos = 0;
}

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

/* Whether the next frame's header is all here; if so its payload length goes to *len. */
static int pending_length(const FrameReader *r, uint64_t *len) {
  if (buffered(r) < FRAME_HEADER) return 0;
  *len = frame_get64(r->buf.data + r->pos + 1);
  return 1;
}

int reader_take(FrameReader *r, char *type, const char **payload, size_t *len,
                char *err, size_t errsize) {
  uint64_t length;
  if (!pending_length(r, &length)) return 0;
  if (length > FRAME_MAX) { /* compared before any sum, which could wrap */
    snprintf(err, errsize, "frame length %llu is over the limit", (unsigned long long)length);
    return -1;
  }
  if (buffered(r) < FRAME_HEADER + length) return 0;
  *type = r->buf.data[r->pos];
  *payload = r->buf.data + r->pos + FRAME_HEADER;
  *len = (size_t)length;
  r->pos += FRAME_HEADER + (size_t)length;
  return 1;
}

int reader_partial(const FrameReader *r) {
  return buffered(r) > 0;
}

/* Moves unread bytes to the front and makes room for the next read. */
static int make_room(FrameReader *r) {
  uint64_t length, size = 0;
  size_t want = 65536;
  if (pending_length(r, &length) && length <= FRAME_MAX) size = FRAME_HEADER + length;
  if (r->pos > 0) {
    memmove(r->buf.data, r->buf.data + r->pos, buffered(r));
    r->buf.len -= r->pos;
    r->pos = 0;
  }
  /* grow toward a large frame's size, but only as fast as its bytes come */
  if (size > r->buf.len + want)
    want = r->buf.len < want ? want : r->buf.len;
  return buffer_reserve(&r->buf, want);
}

static ssize_t fill_by(FrameReader *r, int fd, ssize_t (*read_by)(int, void *, size_t)) {
  ssize_t got;
  if (make_room(r) != 0) {
    errno = ENOMEM;
    return -1;
  }
  got = read_by(fd, r->buf.data + r->buf.len, r->buf.cap - r->buf.len);
  if (got > 0) r->buf.len += (size_t)got;
  return got;
}

ssize_t reader_fill(FrameReader *r, int fd) {
  return fill_by(r, fd, proc_read);
}

ssize_t reader_fill_now(FrameReader *r, int fd) {
  return fill_by(r, fd, proc_recv_now);
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

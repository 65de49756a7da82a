/*
** tests/fuzz/fuzz_frames.c: libFuzzer target for the FrameReader.
**
** The input's first byte is a setting, the rest is a byte stream as a
** worker could send it. The stream goes through a pipe in chunks whose
** sizes the setting picks; after each chunk reader_fill reads it and
** reader_take takes every whole frame. At the end the pipe is closed and
** reader_next must report a clean end or a truncated frame. Checked:
**   - each frame taken is the next one in the stream: its type, its
**     length from the header and its payload bytes;
**   - reader_take answers 0 only for a frame not all here yet whose length
**     is within FRAME_MAX, and -1 only for a header over FRAME_MAX;
**   - the buffer never grows beyond a small multiple of the bytes sent,
**     whatever length a header claims (FRAME_MAX is 16 GiB).
** The setting's high bit appends up to 448 KiB of filler bytes after the
** input's stream, so that a header's claim of a large frame can be met
** (or nearly) and the buffer's growth toward a large frame is covered.
*/
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buffer.h"
#include "frame.h"
#include "fuzz_check.h"


/* Below a pipe's default capacity, so that one write never blocks. */
#define CHUNK_MAX 32768
#define FILLER_UNIT 65536
/* Filler bytes: any header read from them claims over FRAME_MAX, so a
   claimed frame once complete is followed by a bad header, not by
   thousands of empty frames that would slow the fuzzer down. */
#define FILLER 0xFF

/* The stream: the input's bytes, then 'filler' FILLER bytes. */
typedef struct Stream {
  const uint8_t *data;
  size_t len, filler;
  size_t sent;   /* bytes written to the pipe so far */
  size_t taken;  /* bytes taken out as frames */
  unsigned lcg;  /* picks chunk sizes */
  unsigned mode;
} Stream;

static size_t total(const Stream *s) {
  return s->len + s->filler;
}

/* Stream bytes [at, at + n) into out. */
static void copy_out(const Stream *s, size_t at, size_t n, char *out) {
  size_t real = at < s->len ? s->len - at : 0;
  if (real > n) real = n;
  if (real > 0) memcpy(out, s->data + at, real);
  memset(out + real, FILLER, n - real);
}

/*
** Chunk sizes: the setting's low 3 bits choose one of several schedules
** for the input's bytes, from a byte at a time (every header split
** everywhere) to all at once.
*/
static size_t next_chunk(Stream *s) {
  static const size_t fixed[] = {1, 3, 9, 10, 4096, CHUNK_MAX};
  size_t left = total(s) - s->sent, n;
  unsigned pick = s->mode & 7;
  s->lcg = s->lcg * 1103515245u + 12345u;
  if (s->sent >= s->len)
    n = CHUNK_MAX >> ((s->lcg >> 16) % 3);  /* filler: 8 to 32 KiB at once */
  else if (pick < 6)
    n = fixed[pick];
  else if (pick == 6)
    n = 1 + (s->lcg >> 16) % 32;  /* small and varied */
  else
    n = 1 + (s->lcg >> 8) % CHUNK_MAX;
  return n < left ? n : left;
}

/* Writes the next chunk into the pipe; returns its size. */
static size_t send_chunk(Stream *s, int fd) {
  static char chunk[CHUNK_MAX];
  size_t n = next_chunk(s);
  copy_out(s, s->sent, n, chunk);
  FUZZ_CHECK(write(fd, chunk, n) == (ssize_t)n, "short write to the pipe");
  s->sent += n;
  return n;
}

/* A frame taken must be the next one of the stream, byte for byte. */
static void check_frame(Stream *s, const FrameReader *r, char type,
                        const char *payload, size_t len) {
  char header[FRAME_HEADER];
  copy_out(s, s->taken, FRAME_HEADER, header);
  FUZZ_CHECK(type == header[0], "frame type %d, the stream has %d", type, header[0]);
  FUZZ_CHECK(len == frame_get64(header + 1), "frame length %zu, the header says"
        " %llu", len, (unsigned long long)frame_get64(header + 1));
  FUZZ_CHECK(payload >= r->buf.data + FRAME_HEADER &&
            payload + len <= r->buf.data + r->buf.len,
        "payload outside the reader's buffer");
  FUZZ_CHECK(s->taken + FRAME_HEADER + len <= s->sent, "a frame not all sent yet");
  if (s->taken + FRAME_HEADER < s->len) {
    size_t real = s->len - (s->taken + FRAME_HEADER);
    if (real > len) real = len;
    FUZZ_CHECK(memcmp(payload, s->data + s->taken + FRAME_HEADER, real) == 0,
          "payload bytes differ from the stream");
  }
  s->taken += FRAME_HEADER + len;
}

/* What the reader holds is what was sent and not taken. */
static void check_buffered(const Stream *s, const FrameReader *r) {
  FUZZ_CHECK(r->buf.len - r->pos == s->sent - s->taken,
        "reader holds %zu bytes, %zu were sent and not taken",
        r->buf.len - r->pos, s->sent - s->taken);
  FUZZ_CHECK(reader_partial(r) == (s->sent > s->taken), "reader_partial is wrong");
}

/* The length in the header at the stream's next frame (all 9 bytes sent). */
static uint64_t next_length(const Stream *s) {
  char header[FRAME_HEADER];
  copy_out(s, s->taken, FRAME_HEADER, header);
  return frame_get64(header + 1);
}

/* Takes all whole frames; returns 0, or -1 after a bad header. */
static int take_all(Stream *s, FrameReader *r) {
  for (;;) {
    char type, err[128] = "";
    const char *payload;
    size_t len;
    int took = reader_take(r, &type, &payload, &len, err, sizeof err);
    if (took == 1) {
      check_frame(s, r, type, payload, len);
      continue;
    }
    check_buffered(s, r);
    if (took == -1) {
      FUZZ_CHECK(s->sent - s->taken >= FRAME_HEADER && next_length(s) > FRAME_MAX,
            "reader_take refused a good header: %s", err);
      FUZZ_CHECK(err[0] != '\0', "no message for a bad header");
      return -1;
    }
    FUZZ_CHECK(took == 0, "reader_take returned %d", took);
    if (s->sent - s->taken >= FRAME_HEADER) {
      uint64_t want = next_length(s);
      FUZZ_CHECK(want <= FRAME_MAX, "a header claiming %llu bytes (over FRAME_MAX)"
            " was taken for a frame still arriving",
            (unsigned long long)want);
      FUZZ_CHECK(want > s->sent - s->taken - FRAME_HEADER,
            "reader_take left a whole frame of %llu bytes",
            (unsigned long long)want);
    }
    return 0;
  }
}

/*
** Reads until the chunk just written is all in the reader. The buffer may
** hold at most about four times what was sent (it doubles, and reserves
** room for as much again as it holds) plus two 64 KiB reads.
*/
static void fill(Stream *s, FrameReader *r, int fd, size_t n) {
  while (n > 0) {
    ssize_t got = reader_fill(r, fd);
    FUZZ_CHECK(got > 0 && (size_t)got <= n, "reader_fill returned %zd", got);
    n -= (size_t)got;
    FUZZ_CHECK(r->buf.cap <= 4 * s->sent + 4 * 65536,
          "a buffer of %zu bytes after %zu were sent", r->buf.cap, s->sent);
  }
}

/* After the writer closes: a clean end, or a truncated frame. */
static void check_end(Stream *s, FrameReader *r, int fd) {
  char type, err[128] = "";
  const char *payload;
  size_t len;
  int partial = reader_partial(r);
  int got = reader_next(r, fd, &type, &payload, &len, err, sizeof err);
  FUZZ_CHECK(got == (partial ? -1 : 0), "reader_next at end of file returned %d"
        " with %zu bytes pending (%s)", got, s->sent - s->taken, err);
  if (got == -1)
    FUZZ_CHECK(strstr(err, "truncated frame") != NULL, "unexpected error: %s", err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  Stream s;
  FrameReader r = {{NULL, 0, 0}, 0};
  int fds[2], bad = 0;
  if (size == 0) return 0;
  memset(&s, 0, sizeof s);
  s.mode = data[0];
  s.data = data + 1;
  s.len = size - 1;
  s.filler = s.mode & 0x80 ? ((s.mode >> 4) & 7) * (size_t)FILLER_UNIT : 0;
  s.lcg = s.mode;
  FUZZ_CHECK(pipe(fds) == 0, "no pipe");
  while (s.sent < total(&s) && !bad) {
    fill(&s, &r, fds[0], send_chunk(&s, fds[1]));
    bad = take_all(&s, &r) != 0;
  }
  close(fds[1]);
  if (!bad) check_end(&s, &r, fds[0]);
  close(fds[0]);
  reader_free(&r);
  return 0;
}

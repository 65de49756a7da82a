#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>

#include "buffer.h"
#include "checkpoint.h"
#include "codec.h"
#include "lutil.h"
#include "proc.h"

#define CHECKPOINT_METATABLE "par.Checkpoint"
#define MAGIC "parlua-checkpoint 1"

/*
** The file: the header line "parlua-checkpoint 1 <items> <hash>", then
** one record per results message: "<first> <count> <length> <json>\n",
** where json is the array of the results of items first .. first+count-1.
*/
struct Checkpoint {
  const char *fn;
  const char *path;       /* held by the user value */
  int fd;
  lua_Integer n, done;
  uint64_t hash;
  char *text;             /* the file as read, until its records are in */
  Buffer record;          /* the record being written */
  unsigned char *recorded; /* a bit per item whose result is in the file */
};

static int is_recorded(const Checkpoint *c, lua_Integer i) {
  return (c->recorded[(i - 1) / 8] >> ((i - 1) % 8)) & 1;
}

static void mark_recorded(Checkpoint *c, lua_Integer i) {
  if (is_recorded(c, i)) return;
  c->recorded[(i - 1) / 8] |= (unsigned char)(1u << ((i - 1) % 8));
  c->done++;
}

static void release(Checkpoint *c) {
  if (c->fd >= 0) proc_close_private(c->fd);
  c->fd = -1;
  free(c->text);
  c->text = NULL;
  buffer_free(&c->record);
}

static int checkpoint_release(lua_State *L) {
  release(luaL_checkudata(L, 1, CHECKPOINT_METATABLE));
  return 0;
}

/* Raises fn's error of kind "checkpoint" about the file, which it closes first. */
static void fail(lua_State *L, Checkpoint *c, const char *fmt, const char *detail) {
  char what[256];
  snprintf(what, sizeof what, fmt, detail);
  par_push_error(L, c->fn, 0, "checkpoint", "file '%s' %s", c->path, what);
  release(c);
  lua_error(L);
}

static void fail_errno(lua_State *L, Checkpoint *c, const char *doing) {
  char what[128];
  snprintf(what, sizeof what, "cannot be %s: %%s", doing);
  fail(L, c, what, strerror(errno));
}

/* FNV-1a over bytes, continuing from h. */
static uint64_t hash_bytes(uint64_t h, const void *p, size_t len) {
  const unsigned char *s = p;
  size_t i;
  for (i = 0; i < len; i++) h = (h ^ s[i]) * 1099511628211u;
  return h;
}

/* A hash of the items' wire text, each preceded by its length; items that cannot travel are refused. */
static uint64_t hash_list(lua_State *L, Checkpoint *c, int list, int arg) {
  uint64_t h = 14695981039346656037u;
  char root[48], err[256];
  lua_Integer i;
  for (i = 1; i <= c->n; i++) {
    uint64_t len;
    c->record.len = 0;
    lua_rawgeti(L, list, i);
    snprintf(root, sizeof root, "list[%lld]", (long long)i);
    if (codec_encode(L, -1, &c->record, root, err, sizeof err) != 0)
      luaL_argerror(L, arg, lua_pushfstring(L, "option 'checkpoint' needs items that can be sent: %s", err));
    lua_pop(L, 1);
    len = c->record.len;
    h = hash_bytes(h, &len, sizeof len);
    h = hash_bytes(h, c->record.data, c->record.len);
  }
  return h;
}

static void header_of(const Checkpoint *c, char *out, size_t size) {
  snprintf(out, size, MAGIC " %lld %016" PRIx64 "\n", (long long)c->n, c->hash);
}

/* Reads a decimal number followed by 'end' at text[*pos]: 1, 0 at the file's end (torn), -1 if malformed. */
static int read_number(const char *text, size_t size, size_t *pos, char end, lua_Integer *out) {
  size_t i = *pos;
  lua_Integer v = 0;
  for (; i < size && text[i] >= '0' && text[i] <= '9'; i++) {
    if (v > (LUA_MAXINTEGER - 9) / 10) return -1;
    v = v * 10 + (text[i] - '0');
  }
  if (i == size) return 0;
  if (i == *pos || text[i] != end) return -1;
  *pos = i + 1;
  *out = v;
  return 1;
}

/* Decodes a record's results: (table, first, text, length) -> count. */
static int decode_record(lua_State *L) {
  lua_Integer count = codec_decode_into(L, 1, lua_tointeger(L, 2), lua_touserdata(L, 3),
                                        (size_t)lua_tointeger(L, 4));
  lua_pushinteger(L, count);
  return 1;
}

static void fail_at(lua_State *L, Checkpoint *c, size_t pos, const char *why) {
  char what[128];
  snprintf(what, sizeof what, "is damaged at byte %zu (%%s)", pos);
  fail(L, c, what, why);
}

/* Takes in the record at text[*pos]; returns 0 when it is torn (the file's end cuts it). */
static int read_record(lua_State *L, Checkpoint *c, size_t size, size_t *pos, int results) {
  size_t at = *pos;
  lua_Integer lo = 0, count = 0, len = 0, decoded, i;
  int ok = read_number(c->text, size, &at, ' ', &lo);
  if (ok > 0) ok = read_number(c->text, size, &at, ' ', &count);
  if (ok > 0) ok = read_number(c->text, size, &at, ' ', &len);
  if (ok == 0 || (ok > 0 && (size_t)len >= size - at)) return 0;
  if (ok < 0) fail_at(L, c, *pos, "not a record");
  if (lo < 1 || count < 1 || count > c->n - lo + 1) fail_at(L, c, *pos, "items out of range");
  if (c->text[at + len] != '\n') fail_at(L, c, *pos, "record too long");
  lua_pushcfunction(L, decode_record);
  lua_pushvalue(L, results);
  lua_pushinteger(L, lo);
  lua_pushlightuserdata(L, c->text + at);
  lua_pushinteger(L, len);
  if (lua_pcall(L, 4, 1, 0) != LUA_OK) fail_at(L, c, *pos, lua_tostring(L, -1));
  decoded = lua_tointeger(L, -1);
  lua_pop(L, 1);
  if (decoded != count) fail_at(L, c, *pos, "wrong number of results");
  for (i = lo; i < lo + count; i++) mark_recorded(c, i);
  *pos = at + (size_t)len + 1;
  return 1;
}

/* Raises for a file whose header names another list. */
static void refuse(lua_State *L, Checkpoint *c, size_t size) {
  size_t pos = sizeof MAGIC;
  lua_Integer items = -1;
  char why[128];
  if (read_number(c->text, size, &pos, ' ', &items) > 0 && items != c->n)
    snprintf(why, sizeof why, "was made for a list of %lld items, not %lld", (long long)items,
             (long long)c->n);
  else
    snprintf(why, sizeof why, "was made for another list of %lld items (their hash differs)",
             (long long)c->n);
  fail(L, c, "%s; remove it to start afresh", why);
}

/*
** Checks the header and takes in every whole record; returns the length of
** the file that holds them (0: start afresh). A file whose header is cut
** short starts afresh, as the kill came before any record.
*/
static size_t read_file(lua_State *L, Checkpoint *c, size_t size, int results) {
  char header[128];
  size_t pos, hlen;
  header_of(c, header, sizeof header);
  hlen = strlen(header);
  if (size < hlen && memcmp(c->text, header, size) == 0) return 0;
  if (size < sizeof MAGIC || memcmp(c->text, MAGIC " ", sizeof MAGIC) != 0)
    fail(L, c, "is not a checkpoint (it does not start with \"%s\")", MAGIC);
  if (size < hlen || memcmp(c->text, header, hlen) != 0) refuse(L, c, size);
  if (lua_isnil(L, results)) {
    lua_newtable(L);
    lua_replace(L, results);
  }
  pos = hlen;
  while (pos < size && read_record(L, c, size, &pos, results)) {}
  return pos;
}

/* Opens or makes the file, takes in its records and leaves it ready to append after them. */
static void open_file(lua_State *L, Checkpoint *c, int results) {
  struct stat st;
  size_t keep = 0;
  c->fd = open(c->path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0666);
  if (c->fd < 0) fail_errno(L, c, "opened");
  if (proc_keep_private(c->fd) != 0) {
    close(c->fd);
    c->fd = -1;
    luaL_error(L, "%s: out of memory", c->fn);
  }
  if (fstat(c->fd, &st) != 0) fail_errno(L, c, "read");
  if (st.st_size > 0) {
    c->text = malloc((size_t)st.st_size);
    if (c->text == NULL) luaL_error(L, "%s: out of memory", c->fn);
    if (proc_pread_all(c->fd, c->text, (size_t)st.st_size) != 0) fail_errno(L, c, "read");
    keep = read_file(L, c, (size_t)st.st_size, results);
    free(c->text);
    c->text = NULL;
  }
  if (keep < (size_t)st.st_size && ftruncate(c->fd, (off_t)keep) != 0) fail_errno(L, c, "cut");
  if (keep == 0) {
    char header[128];
    header_of(c, header, sizeof header);
    if (proc_write2(c->fd, header, strlen(header), NULL, 0) != 0) fail_errno(L, c, "written");
  }
}

Checkpoint *checkpoint_open(lua_State *L, const char *fn, int opts, int arg,
                            int list, lua_Integer n, int results) {
  Checkpoint *c;
  size_t bits = ((size_t)n + 7) / 8;
  if (lua_isnoneornil(L, opts)) lua_pushnil(L);
  else lua_getfield(L, opts, "checkpoint");
  if (lua_isnil(L, -1)) return NULL;
  if (lua_type(L, -1) != LUA_TSTRING)
    luaL_argerror(L, arg, lua_pushfstring(L, "option 'checkpoint' must be a file name (got %s)",
                                          luaL_typename(L, -1)));
  c = lua_newuserdatauv(L, sizeof *c + bits, 1);
  memset(c, 0, sizeof *c + bits);
  c->fd = -1;
  par_set_class(L, CHECKPOINT_METATABLE, NULL, checkpoint_release, 1);
  lua_insert(L, -2);
  c->path = lua_tostring(L, -1);
  lua_setiuservalue(L, -2, 1);
  c->fn = fn;
  c->n = n;
  c->recorded = (unsigned char *)(c + 1);
  c->hash = hash_list(L, c, list, arg);
  open_file(L, c, results);
  return c;
}

lua_Integer checkpoint_done(const Checkpoint *c) {
  return c == NULL ? 0 : c->done;
}

lua_Integer checkpoint_next_missing(const Checkpoint *c, lua_Integer i) {
  if (c == NULL) return i;
  while (i <= c->n && is_recorded(c, i)) i++;
  return i;
}

lua_Integer checkpoint_missing_until(const Checkpoint *c, lua_Integer lo, lua_Integer hi) {
  lua_Integer i;
  if (c == NULL) return hi;
  for (i = lo; i <= hi; i++)
    if (is_recorded(c, i)) return i - 1;
  return hi;
}

void checkpoint_add(lua_State *L, Checkpoint *c, lua_Integer lo, lua_Integer count,
                    const char *text, size_t len) {
  char head[64];
  int hlen;
  if (c == NULL) return;
  hlen = snprintf(head, sizeof head, "%lld %lld %zu ", (long long)lo, (long long)count, len);
  c->record.len = 0;
  if (buffer_append(&c->record, head, (size_t)hlen) != 0 || buffer_append(&c->record, text, len) != 0
      || buffer_append(&c->record, "\n", 1) != 0)
    luaL_error(L, "%s: out of memory", c->fn);
  if (proc_write2(c->fd, c->record.data, c->record.len, NULL, 0) != 0) fail_errno(L, c, "written");
}

/* The cluster of a build without MPI: one rank, which hands out nothing. */
#include <string.h>

#include "cluster.h"

void cluster_start(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
}

void cluster_end(void) {}

int cluster_rank(void) {
  return 0;
}

int cluster_size(void) {
  return 1;
}

int cluster_local_size(void) {
  return 1;
}

int cluster_allgather(const void *mine, size_t size, void *all) {
  memcpy(all, mine, size);
  return 0;
}

void cluster_leave(void) {}

int cluster_is_leaving(void) {
  return 0;
}

int cluster_agree(uint64_t hash, uint64_t *all) {
  static uint64_t agreements = 0;
  all[0] = ++agreements;
  all[1] = hash;
  return 0;
}

int cluster_gather(const char *mine, size_t len, int to_all, Buffer *all, int *sig) {
  (void)to_all;
  *sig = 0;
  return buffer_reserve(all, len + 1) == 0 && buffer_append(all, mine, len) == 0;
}

/* With one rank par never hands out across ranks: these are never called. */
Handout *handout_new(lua_Integer n, lua_Integer first) {
  (void)n;
  (void)first;
  return NULL;
}

void handout_free(Handout *h) {
  (void)h;
}

int handout_take(Handout *h, lua_Integer want, lua_Integer lowest, lua_Integer *lo, lua_Integer *hi) {
  (void)h, (void)want, (void)lowest, (void)lo, (void)hi;
  return 0;
}

void handout_stop(Handout *h) {
  (void)h;
}

int handout_serve(Handout *h) {
  (void)h;
  return 0;
}

int handout_serve_all(Handout *h) {
  (void)h;
  return 0;
}

void handout_describe(Handout *h, char *out, size_t size) {
  (void)h, (void)out, (void)size;
}

#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpus.h"

static int affinity_count(void) {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) != 0) return 0;
  return CPU_COUNT(&set);
}

/* Reads the first line of a file into buf; returns 0 on success. */
static int read_line(const char *path, char *buf, size_t size) {
  FILE *f = fopen(path, "re");
  int ok;
  if (f == NULL) return -1;
  ok = fgets(buf, (int)size, f) != NULL;
  fclose(f);
  return ok ? 0 : -1;
}

/* CPUs allowed by a quota of 'quota' per 'period', rounded up; 0 if none. */
static int quota_cpus(double quota, double period) {
  double cpus;
  if (quota <= 0 || period <= 0) return 0;
  cpus = (quota + period - 1) / period;
  return cpus < INT_MAX ? (int)cpus : 0; /* v1 allows 2^44 us per 1 ms: no limit */
}

/* The quota set on the cgroup directory 'dir' itself, in CPUs; 0 if none. */
static int quota_in(const char *dir, int v2) {
  char path[PATH_MAX + 32], line[128];
  double quota, period;
  if (v2) { /* cpu.max: "max 100000" when there is none, which scans as 1 item */
    snprintf(path, sizeof path, "%s/cpu.max", dir);
    if (read_line(path, line, sizeof line) != 0 ||
        sscanf(line, "%lf %lf", &quota, &period) != 2)
      return 0;
    return quota_cpus(quota, period);
  }
  snprintf(path, sizeof path, "%s/cpu.cfs_quota_us", dir); /* -1 when there is none */
  if (read_line(path, line, sizeof line) != 0 || sscanf(line, "%lf", &quota) != 1)
    return 0;
  snprintf(path, sizeof path, "%s/cpu.cfs_period_us", dir);
  if (read_line(path, line, sizeof line) != 0 || sscanf(line, "%lf", &period) != 1)
    return 0;
  return quota_cpus(quota, period);
}

/*
** The least quota on the cgroup 'path' (as /proc/self/cgroup gives it)
** of the hierarchy mounted at 'mount', and on every cgroup above it: a
** quota on a parent (a container, a systemd slice) binds its children.
*/
static int least_quota(const char *mount, const char *path, int v2) {
  char dir[PATH_MAX];
  size_t root = strlen(mount);
  int least = 0;
  if (snprintf(dir, sizeof dir, "%s%s", mount, path) >= (int)sizeof dir)
    *strrchr(dir, '/') = '\0'; /* too long to open: start from a whole ancestor */
  for (;;) {
    char *slash;
    int q = quota_in(dir, v2);
    if (q > 0 && (least == 0 || q < least)) least = q;
    slash = strrchr(dir + root, '/');
    if (slash == NULL) break;
    *slash = '\0';
  }
  return least;
}

/* Whether the comma-separated list of controllers names "cpu". */
static int names_cpu(const char *list, size_t len) {
  const char *end = list + len;
  while (list < end) {
    const char *comma = memchr(list, ',', (size_t)(end - list));
    size_t n = (size_t)((comma ? comma : end) - list);
    if (n == 3 && memcmp(list, "cpu", 3) == 0) return 1;
    list += n + 1;
  }
  return 0;
}

/*
** The CPU quota of this process's cgroup, from /proc/self/cgroup: the
** cgroup v2 line "0::/path", or the v1 line whose controllers include
** cpu ("4:cpu,cpuacct:/path"), under the usual mount points.
*/
static int cgroup_limit(void) {
  char *line = NULL;
  size_t size = 0;
  int limit = 0;
  FILE *f = fopen("/proc/self/cgroup", "re");
  if (f == NULL) return 0;
  while (limit == 0 && getline(&line, &size, f) > 0) { /* whole lines, however long */
    char *first = strchr(line, ':'), *second, *nl;
    if (first == NULL || (second = strchr(first + 1, ':')) == NULL) continue;
    if ((nl = strchr(second, '\n')) != NULL) *nl = '\0';
    if (strncmp(line, "0::", 3) == 0)
      limit = least_quota("/sys/fs/cgroup", second + 1, 1);
    else if (names_cpu(first + 1, (size_t)(second - first - 1)))
      limit = least_quota("/sys/fs/cgroup/cpu", second + 1, 0);
  }
  free(line);
  fclose(f);
  return limit;
}

/* The quota is read once: it is a file read, and par.map asks on every call. */
static int cached_limit = -1;

int cpus_usable(void) {
  int n = affinity_count(), limit;
  if (cached_limit < 0) cached_limit = cgroup_limit();
  limit = cached_limit;
  if (limit > 0 && (n == 0 || limit < n)) n = limit;
  return n > 0 ? n : 1;
}

int cpus_available(void) {
  const char *env = getenv("PARLUA_WORKERS");
  if (env != NULL && *env != '\0') {
    char *end;
    long v = strtol(env, &end, 10);
    if (*end == '\0' && v >= 1 && v <= 4096) return (int)v;
  }
  return cpus_usable();
}

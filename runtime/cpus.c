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

/* The directory of this process's cgroup v2, from /proc/self/cgroup ("0::/path"). */
static int cgroup2_dir(char *dir, size_t size) {
  char line[512];
  char *nl;
  if (read_line("/proc/self/cgroup", line, sizeof line) != 0) return -1;
  if (strncmp(line, "0::", 3) != 0) return -1;
  if ((nl = strchr(line, '\n')) != NULL) *nl = '\0';
  snprintf(dir, size, "/sys/fs/cgroup%s", line + 3);
  return 0;
}

/* CPUs allowed by a quota of 'quota' per 'period', rounded up; 0 if none. */
static int quota_cpus(double quota, double period) {
  if (quota <= 0 || period <= 0) return 0;
  return (int)((quota + period - 1) / period);
}

static int cgroup_limit(void) {
  char dir[600], path[700], line[128];
  double quota, period;
  if (cgroup2_dir(dir, sizeof dir) == 0) {
    snprintf(path, sizeof path, "%s/cpu.max", dir);
    if (read_line(path, line, sizeof line) == 0 &&
        sscanf(line, "%lf %lf", &quota, &period) == 2)
      return quota_cpus(quota, period); /* "max 100000" scans as 1 item */
  }
  if (read_line("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", line, sizeof line) == 0 &&
      sscanf(line, "%lf", &quota) == 1 &&
      read_line("/sys/fs/cgroup/cpu/cpu.cfs_period_us", line, sizeof line) == 0 &&
      sscanf(line, "%lf", &period) == 1)
    return quota_cpus(quota, period);
  return 0;
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

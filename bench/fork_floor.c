/*
** What forking costs here, beside par.map's start-up: fork two children
** that each write one byte to a pipe, read both bytes, reap both. par.map
** of 2 items with 2 workers did this and more; since its probe sees that
** tiny items need no second worker, it forks one and may come in under.
** Prints "fork_floor<TAB>microseconds", the median of 21 runs.
*/
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define RUNS 21

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int fork_writer(int fd) {
  pid_t pid = fork();
  if (pid == 0) {
    char byte = 'x';
    _exit(write(fd, &byte, 1) == 1 ? 0 : 1);
  }
  return pid > 0;
}

static double one_run(void) {
  int fds[2];
  char bytes[2];
  double start = now_us();
  if (pipe(fds) != 0) { perror("pipe"); exit(1); }
  if (!fork_writer(fds[1]) || !fork_writer(fds[1])) { perror("fork"); exit(1); }
  for (size_t got = 0; got < 2; ) {
    ssize_t n = read(fds[0], bytes + got, 2 - got);
    if (n <= 0) { perror("read"); exit(1); }
    got += (size_t)n;
  }
  while (wait(NULL) > 0) {}
  close(fds[0]);
  close(fds[1]);
  return now_us() - start;
}

static int by_value(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(void) {
  double us[RUNS];
  for (int i = 0; i < RUNS; i++) us[i] = one_run();
  qsort(us, RUNS, sizeof us[0], by_value);
  printf("fork_floor\t%.1f\n", us[RUNS / 2]);
  return 0;
}

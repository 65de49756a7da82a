/*
** The output of ranks other than 0: silenced, or copied with the rank
** before each line by a small forked process that reads both streams.
*/
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "proc.h"
#include "rankout.h"

#define READ_SIZE 1024
#define PREFIX_SIZE 32 /* "[rank N] " and its NUL, for any int N */

static pid_t copier = 0;

void rankout_silence(void) {
  int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
  if (null < 0) return;
  fflush(NULL);
  dup2(null, 1);
  dup2(null, 2);
  close(null);
}

/*
** Copies what 'in' has to 'out', the prefix before each line, in one
** write: the launcher merges every rank's output, and a prefix written
** apart from its line could land before another rank's line.
** 'at_start' is whether a line begins. Returns 0 at end of file.
*/
static int copy_lines(int in, int out, const char *prefix, int *at_start) {
  char buf[READ_SIZE], line[READ_SIZE * PREFIX_SIZE]; /* room for a prefix before every byte */
  size_t plen = strlen(prefix), len = 0;
  ssize_t n = proc_read(in, buf, sizeof buf), i;
  if (n <= 0) return 0;
  for (i = 0; i < n; i++) {
    if (*at_start) {
      memcpy(line + len, prefix, plen);
      len += plen;
      *at_start = 0;
    }
    line[len++] = buf[i];
    if (buf[i] == '\n') *at_start = 1;
  }
  proc_write2(out, line, len, "", 0);
  return 1;
}

static void copy_until_closed(int out_fd, int err_fd, const char *prefix) {
  struct pollfd fds[2] = {{out_fd, POLLIN, 0}, {err_fd, POLLIN, 0}};
  int at_start[2] = {1, 1}, open_count = 2, sig, k;
  while (open_count > 0) {
    if (proc_poll(fds, 2, -1, &sig) < 0) continue;
    for (k = 0; k < 2; k++) {
      if (fds[k].fd < 0 || fds[k].revents == 0) continue;
      if (!copy_lines(fds[k].fd, k + 1, prefix, &at_start[k])) {
        fds[k].fd = -1;
        open_count--;
      }
    }
  }
}

int rankout_prefix(int rank) {
  int out[2], err[2];
  char prefix[PREFIX_SIZE];
  snprintf(prefix, sizeof prefix, "[rank %d] ", rank);
  if (pipe2(out, O_CLOEXEC) != 0) return -1;
  if (pipe2(err, O_CLOEXEC) != 0) return -1;
  copier = proc_fork();
  if (copier < 0) return -1;
  if (copier == 0) {
    close(out[1]);
    close(err[1]);
    copy_until_closed(out[0], err[0], prefix);
    proc_exit(0);
  }
  close(out[0]);
  close(err[0]);
  dup2(out[1], 1);
  dup2(err[1], 2);
  close(out[1]);
  close(err[1]);
  return 0;
}

void rankout_end(void) {
  if (copier <= 0) return;
  fflush(NULL);
  close(1);
  close(2);
  proc_reap(copier);
  copier = 0;
}

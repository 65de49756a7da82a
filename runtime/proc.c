#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "proc.h"

/*
** A worker must not run the parent's signal handlers (lua.c's SIGINT hook,
** an embedder's SIGTERM or SIGCHLD handler): these are the signals that
** get handlers in practice, reset without a syscall for each of the 64.
*/
static const int child_default_signals[] = {
  SIGTERM, SIGHUP, SIGQUIT, SIGPIPE, SIGCHLD, SIGALRM, SIGUSR1, SIGUSR2, SIGWINCH,
};

static void reset_child_signals(void) {
  struct sigaction sa;
  sigset_t none;
  size_t i;
  memset(&sa, 0, sizeof sa);
  sigemptyset(&sa.sa_mask);
  sa.sa_handler = SIG_IGN; /* the parent owns Ctrl-C and stops its workers */
  sigaction(SIGINT, &sa, NULL);
  sa.sa_handler = SIG_DFL;
  for (i = 0; i < sizeof child_default_signals / sizeof child_default_signals[0]; i++)
    sigaction(child_default_signals[i], &sa, NULL);
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
}

/* Descriptors that belong to this process only: a child closes them at once. */
static int *private_fds;
static int private_count, private_cap;

int proc_keep_private(int fd) {
  if (private_count == private_cap) {
    int cap = private_cap ? private_cap * 2 : 16;
    int *p = realloc(private_fds, (size_t)cap * sizeof *p);
    if (p == NULL) return -1;
    private_fds = p;
    private_cap = cap;
  }
  private_fds[private_count++] = fd;
  return 0;
}

void proc_close(int fd) {
  int i;
  for (i = 0; i < private_count; i++) {
    if (private_fds[i] == fd) {
      private_fds[i] = private_fds[--private_count];
      break;
    }
  }
  close(fd);
}

static void close_private_fds(void) {
  while (private_count > 0) close(private_fds[--private_count]);
}

pid_t proc_fork(void) {
  pid_t parent = getpid();
  pid_t pid;
  fflush(NULL); /* or pending output would be written by parent and child */
  pid = fork();
  if (pid != 0) return pid;
  close_private_fds();
  reset_child_signals();
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(1); /* the parent died before prctl */
  return 0;
}

void proc_exit(int status) {
  fflush(NULL);
  _exit(status);
}

int proc_socketpair(int fds[2]) {
  return socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds);
}

int proc_pipe(int fds[2]) {
  if (pipe2(fds, O_CLOEXEC) != 0) return -1;
  fcntl(fds[1], F_SETPIPE_SZ, 1 << 20); /* fewer wake-ups for big results; best effort */
  return 0;
}

ssize_t proc_read(int fd, void *buf, size_t n) {
  ssize_t r;
  do r = read(fd, buf, n); while (r < 0 && errno == EINTR);
  return r;
}

/* Advances an iovec pair past 'done' bytes. */
static void iov_consume(struct iovec *iov, int *count, size_t done) {
  while (*count > 0 && done >= iov[0].iov_len) {
    done -= iov[0].iov_len;
    iov[0] = iov[1];
    (*count)--;
  }
  if (*count > 0) {
    iov[0].iov_base = (char *)iov[0].iov_base + done;
    iov[0].iov_len -= done;
  }
}

int proc_write2(int fd, const void *a, size_t alen, const void *b, size_t blen) {
  struct iovec iov[2];
  struct msghdr msg;
  int count = blen > 0 ? 2 : 1;
  iov[0].iov_base = (void *)a;
  iov[0].iov_len = alen;
  iov[1].iov_base = (void *)b;
  iov[1].iov_len = blen;
  while (count > 0) {
    ssize_t w;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = iov;
    msg.msg_iovlen = (size_t)count;
    w = sendmsg(fd, &msg, MSG_NOSIGNAL); /* a closed peer gives EPIPE, not SIGPIPE */
    if (w < 0 && errno == ENOTSOCK) w = writev(fd, iov, count);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    iov_consume(iov, &count, (size_t)w);
  }
  return 0;
}

int proc_reap(pid_t pid) {
  int status;
  pid_t r;
  do r = waitpid(pid, &status, 0); while (r < 0 && errno == EINTR);
  return r == pid ? status : -1;
}

int proc_try_reap(pid_t pid, int *status) {
  pid_t r;
  do r = waitpid(pid, status, WNOHANG); while (r < 0 && errno == EINTR);
  if (r < 0) return -1;
  return r == pid;
}

void proc_kill(pid_t pid) {
  kill(pid, SIGKILL);
}

static volatile sig_atomic_t caught_signal;
static struct sigaction saved_int, saved_term;

static void note_signal(int sig) {
  caught_signal = sig;
}

void proc_interrupts_catch(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = note_signal;
  sigemptyset(&sa.sa_mask);
  caught_signal = 0;
  sigaction(SIGINT, &sa, &saved_int);
  sigaction(SIGTERM, &sa, &saved_term);
}

int proc_interrupts_release(void) {
  sigaction(SIGINT, &saved_int, NULL);
  sigaction(SIGTERM, &saved_term, NULL);
  return caught_signal;
}

int proc_interrupted(void) {
  return caught_signal != 0;
}

int proc_thread_count(void) {
  char buf[1024];
  const char *p;
  int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC), field;
  ssize_t n;
  if (fd < 0) return 0;
  n = proc_read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = '\0';
  p = strrchr(buf, ')'); /* the command name may hold spaces: skip past it */
  if (p == NULL) return 0;
  for (field = 2; field < 20 && p != NULL; field++) p = strchr(p + 1, ' ');
  return p ? atoi(p + 1) : 0;
}

void proc_describe_status(int status, char *out, size_t size) {
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    const char *name = sigabbrev_np(sig);
    if (name) snprintf(out, size, "killed by SIG%s", name);
    else snprintf(out, size, "killed by signal %d", sig);
  } else if (WIFEXITED(status)) {
    snprintf(out, size, "exited with status %d", WEXITSTATUS(status));
  } else {
    snprintf(out, size, "ended with wait status %d", status);
  }
}

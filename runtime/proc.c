#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
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

static void let_pass(int sig) {
  (void)sig;
}

/*
** In a child of par, Ctrl-C (sent to the whole process group) is let pass:
** the parent owns it and stops its children. Caught, not ignored: a
** program the child runs gets it back at its default, as exec resets
** caught signals but keeps ignored ones, and ends as it would without par.
** A host that ignores SIGINT passes that on, as it would without par.
*/
static void reset_child_signals(void) {
  struct sigaction sa, old;
  sigset_t none;
  size_t i;
  memset(&sa, 0, sizeof sa);
  sigemptyset(&sa.sa_mask);
  sa.sa_handler = let_pass;
  sa.sa_flags = SA_RESTART;
  sigaction(SIGINT, &sa, &old);
  if (old.sa_handler == SIG_IGN) sigaction(SIGINT, &old, NULL); /* as the host does */
  sa.sa_flags = 0;
  sa.sa_handler = SIG_DFL;
  for (i = 0; i < sizeof child_default_signals / sizeof child_default_signals[0]; i++)
    sigaction(child_default_signals[i], &sa, NULL);
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL); /* proc_fork blocked them all */
}

/* Set in every process par forks: its waits leave SIGINT and SIGTERM alone. */
static int forked_by_par;

/*
** This process's id, asked once: getpid is a system call (about 1 us on a
** virtual machine) and every push and pop of a queue checks its owner.
** Any fork's child, par's or a library's, asks again (pthread_atfork).
*/
static pid_t self_pid;

static void forget_self_pid(void) {
  self_pid = 0;
}

pid_t proc_self(void) {
  static int registered;
  if (!registered) {
    registered = pthread_atfork(NULL, NULL, forget_self_pid) == 0;
    if (!registered) return getpid();
  }
  if (self_pid == 0) self_pid = getpid();
  return self_pid;
}

static volatile sig_atomic_t caught_signal;

static void note_signal(int sig) {
  caught_signal = sig;
}

/* Catches sig for a wait, unless the embedder ignores it. */
static void catch_signal(int sig, struct sigaction *saved) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = note_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(sig, &sa, saved);
  if (saved->sa_handler == SIG_IGN) sigaction(sig, saved, NULL);
}

/*
** A signal caught just before a blocking call is seen only when the call
** returns: waits block in slices this long (poll's time-out, a channel
** socket's send time-out, a sleep's).
*/
#define INTERRUPT_CHECK_MS 50

typedef struct Interrupts {
  struct sigaction saved_int, saved_term;
} Interrupts;

/*
** From here to release_interrupts, SIGINT and SIGTERM are only noted in
** caught_signal, for a wait to end on. Only in the process the user
** started: one par forked dies of SIGTERM, and lets SIGINT pass.
*/
static void catch_interrupts(Interrupts *in) {
  caught_signal = 0;
  if (forked_by_par) return;
  catch_signal(SIGINT, &in->saved_int);
  catch_signal(SIGTERM, &in->saved_term);
}

static void release_interrupts(Interrupts *in) {
  if (forked_by_par) return;
  sigaction(SIGINT, &in->saved_int, NULL);
  sigaction(SIGTERM, &in->saved_term, NULL);
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

/* Takes fd off this process's private list; 0 if it was not on it. */
static int forget_private(int fd) {
  int i;
  for (i = 0; i < private_count; i++) {
    if (private_fds[i] == fd) {
      private_fds[i] = private_fds[--private_count];
      return 1;
    }
  }
  return 0;
}

void proc_close(int fd) {
  forget_private(fd);
  close(fd);
}

void proc_close_private(int fd) {
  if (forget_private(fd)) close(fd);
}

static void close_private_fds(void) {
  while (private_count > 0) close(private_fds[--private_count]);
}

/*
** Signals stay blocked across the fork until the child has reset its
** handlers: a child holds its parent's until then, and Ctrl-C or a kill
** sent at once would run the host's SIGINT hook in it.
*/
pid_t proc_fork(void) {
  pid_t parent = proc_self();
  sigset_t all, before;
  pid_t pid;
  fflush(NULL); /* or pending output would be written by parent and child */
  sigfillset(&all);
  sigprocmask(SIG_BLOCK, &all, &before);
  pid = fork();
  if (pid != 0) {
    int fork_errno = errno;
    sigprocmask(SIG_SETMASK, &before, NULL);
    errno = fork_errno;
    return pid;
  }
  forked_by_par = 1;
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

int proc_is_forked(void) {
  return forked_by_par;
}

/* Makes the pair of descriptors of a link; returns NULL or the failed call. */
static const char *open_pair(int fds[2], enum ProcLinkKind kind) {
  if (kind == PROC_COMMANDS)
    return socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0 ? NULL : "socketpair";
  if (pipe2(fds, O_CLOEXEC) != 0) return "pipe";
  fcntl(fds[1], F_SETPIPE_SZ, 1 << 20); /* fewer wake-ups for big results; best effort */
  return NULL;
}

const char *proc_link_open(ProcLink *link, enum ProcLinkKind kind) {
  int fds[2];
  const char *failed = open_pair(fds, kind);
  *link = PROC_LINK_CLOSED;
  if (failed != NULL) return failed;
  /* a pipe's read end is [0]; for a socket pair either end will do */
  link->parent = fds[0];
  link->child = fds[1];
  if (proc_keep_private(link->parent) != 0) {
    proc_link_close(link);
    errno = ENOMEM;
    return "malloc";
  }
  return NULL;
}

void proc_link_close_child(ProcLink *link) {
  if (link->child >= 0) close(link->child);
  link->child = -1;
}

void proc_link_close(ProcLink *link) {
  int saved = errno; /* closing on an error path keeps the error's errno */
  if (link->parent >= 0) proc_close(link->parent);
  link->parent = -1;
  proc_link_close_child(link);
  errno = saved;
}

ssize_t proc_read(int fd, void *buf, size_t n) {
  ssize_t r;
  do r = read(fd, buf, n); while (r < 0 && errno == EINTR);
  return r;
}

ssize_t proc_recv_now(int fd, void *buf, size_t n) {
  ssize_t r;
  do r = recv(fd, buf, n, MSG_DONTWAIT); while (r < 0 && errno == EINTR);
  return r;
}

/* Advances iov[0..*count) past 'done' bytes. */
static void iov_consume(struct iovec **iov, int *count, size_t done) {
  while (*count > 0 && done >= (*iov)[0].iov_len) {
    done -= (*iov)[0].iov_len;
    (*iov)++;
    (*count)--;
  }
  if (*count > 0) {
    (*iov)[0].iov_base = (char *)(*iov)[0].iov_base + done;
    (*iov)[0].iov_len -= done;
  }
}

int proc_sendv(int fd, struct iovec *iov, int count) {
  while (count > 0) {
    struct msghdr msg;
    ssize_t w;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = iov;
    msg.msg_iovlen = (size_t)count;
    w = sendmsg(fd, &msg, MSG_NOSIGNAL); /* a closed peer gives EPIPE, not SIGPIPE */
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    iov_consume(&iov, &count, (size_t)w);
  }
  return 0;
}

int proc_write2(int fd, const void *a, size_t alen, const void *b, size_t blen) {
  struct iovec pair[2], *iov = pair;
  int count = blen > 0 ? 2 : 1;
  pair[0].iov_base = (void *)a;
  pair[0].iov_len = alen;
  pair[1].iov_base = (void *)b;
  pair[1].iov_len = blen;
  while (count > 0) {
    ssize_t w = writev(fd, iov, count);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    iov_consume(&iov, &count, (size_t)w);
  }
  return 0;
}



int proc_seqpacket_pair(int fds[2]) {
  struct timeval slice = {0, INTERRUPT_CHECK_MS * 1000};
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) != 0) return -1;
  setsockopt(fds[0], SOL_SOCKET, SO_SNDTIMEO, &slice, sizeof slice);
  setsockopt(fds[1], SOL_SOCKET, SO_SNDTIMEO, &slice, sizeof slice);
  return 0;
}

/*
** Sends one datagram made of iov[0 .. count) and, when pass_fd >= 0, a
** copy of that descriptor. With 'wait' it blocks while the queue is full, a slice at a
** time (the send time-out of proc_seqpacket_pair), so that a SIGINT or
** SIGTERM ends the wait: then -1, the signal in *sig (a signal that came
** as the datagram went out is in *sig too). Never raises SIGPIPE.
** Returns 0 or -1 with errno set.
*/
int proc_send_datagram(int fd, struct iovec *iov, int count, int pass_fd, int wait, int *sig) {
  Interrupts in;
  ssize_t sent;
  int saved;
  union {
    struct cmsghdr align;
    char space[CMSG_SPACE(sizeof(int))];
  } control;
  struct msghdr msg;
  memset(&msg, 0, sizeof msg);
  msg.msg_iov = iov;
  msg.msg_iovlen = (size_t)count;
  if (pass_fd >= 0) {
    struct cmsghdr *c;
    memset(&control, 0, sizeof control);
    msg.msg_control = control.space;
    msg.msg_controllen = sizeof control.space;
    c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
  }
  *sig = 0;
  if (sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT) >= 0) return 0;
  if ((errno != EAGAIN && errno != EINTR) || !wait) return -1;
  catch_interrupts(&in);
  do {
    sent = sendmsg(fd, &msg, MSG_NOSIGNAL);
  } while (sent < 0 && (errno == EAGAIN || errno == EINTR) && caught_signal == 0);
  saved = errno;
  release_interrupts(&in);
  errno = saved;
  *sig = caught_signal; /* also when it went out meanwhile: the signal still came */
  return sent >= 0 ? 0 : -1;
}

/*
** Receives one datagram into buf[0 .. size), retrying on EINTR; 'flags' is
** 0 or MSG_DONTWAIT. A passed descriptor arrives close-on-exec in *passed,
** else *passed is -1. *lost is set when the datagram or its descriptor did
** not fit (at the descriptor limit). Returns the datagram's length, 0 at
** end of file, or -1 with errno set.
*/
ssize_t proc_recv_datagram(int fd, void *buf, size_t size, int flags,
                                  int *passed, int *lost) {
  union {
    struct cmsghdr align;
    char space[CMSG_SPACE(sizeof(int))];
  } control;
  struct iovec iov = {buf, size};
  struct msghdr msg;
  struct cmsghdr *c;
  ssize_t n;
  do {
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.space;
    msg.msg_controllen = sizeof control.space;
    n = recvmsg(fd, &msg, flags | MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  *passed = -1;
  *lost = n >= 0 && (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0;
  if (n < 0) return n;
  for (c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c))
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
        c->cmsg_len == CMSG_LEN(sizeof(int)))
      memcpy(passed, CMSG_DATA(c), sizeof(int));
  return n;
}

/* A close-on-exec memfd holding data[0 .. len); returns it, or -1 with errno set. */
int proc_memfd_with(const char *name, const void *data, size_t len) {
  int fd = memfd_create(name, MFD_CLOEXEC);
  if (fd < 0) return -1;
  if (proc_write2(fd, data, len, NULL, 0) != 0) {
    int saved = errno;
    close(fd);
    errno = saved;
    return -1;
  }
  return fd;
}

/* Reads exactly len bytes from offset 0 of fd, retrying on EINTR; 0, or -1 with errno set. */
int proc_pread_all(int fd, char *buf, size_t len) {
  size_t done = 0;
  while (done < len) {
    ssize_t got = pread(fd, buf + done, len - done, (off_t)done);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      if (got == 0) errno = EIO; /* shorter than its header said */
      return -1;
    }
    done += (size_t)got;
  }
  return 0;
}

/*
** Waking a sleeping process takes tens of microseconds on a virtual
** machine, as long as a worker needs to exit or a short map's first
** worker to answer. Reaping a worker that was told to end therefore spins
** for up to REAP_SPIN_NS (an exit takes about 50 us here) before it
** sleeps, and a wait whose deadline is under a millisecond away, which
** poll() cannot time, spins until then.
*/
#define REAP_SPIN_NS 200000

int proc_reap(pid_t pid) {
  int64_t spin_end = par_now_ns() + REAP_SPIN_NS;
  int status;
  pid_t r;
  for (;;) { /* it was told to end, or is ending */
    r = waitpid(pid, &status, WNOHANG);
    if ((r != 0 && !(r < 0 && errno == EINTR)) || par_now_ns() >= spin_end) break;
    sched_yield();
  }
  while (r == 0 || (r < 0 && errno == EINTR)) r = waitpid(pid, &status, 0);
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

int64_t par_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* How long the next poll() may sleep, in ms; 0 (a spin) near the deadline. */
static int sleep_ms(int64_t deadline) {
  int64_t left;
  if (deadline < 0) return INTERRUPT_CHECK_MS;
  left = deadline - par_now_ns();
  if (left < 1000000) {
    sched_yield(); /* a worker waiting for this core goes first */
    return 0;
  }
  left /= 1000000;
  return left < INTERRUPT_CHECK_MS ? (int)left : INTERRUPT_CHECK_MS;
}

/*
** A spin holds SIGINT and SIGTERM blocked rather than catching them (see
** proc_poll_spinning); a process par forked leaves them alone.
*/
static void hold_interrupts(sigset_t *before) {
  sigset_t interrupts;
  if (forked_by_par) return;
  sigemptyset(&interrupts);
  sigaddset(&interrupts, SIGINT);
  sigaddset(&interrupts, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &interrupts, before);
}

static void unhold_interrupts(const sigset_t *before) {
  if (!forked_by_par) pthread_sigmask(SIG_SETMASK, before, NULL);
}

/*
** The sleeping part of a wait: SIGINT and SIGTERM are noted from here on;
** 'held' is the signal mask from before a spin that held them, restored
** once they are caught, so that one that came during the spin is noted.
*/
static int poll_catching(struct pollfd *fds, int count, int64_t deadline,
                         const sigset_t *held, int *sig) {
  Interrupts in;
  int ready = 0;
  catch_interrupts(&in);
  if (held != NULL) unhold_interrupts(held);
  while (caught_signal == 0) {
    ready = poll(fds, (nfds_t)count, sleep_ms(deadline));
    if (ready < 0 && errno == EINTR) continue;
    if (ready != 0 || (deadline >= 0 && par_now_ns() >= deadline)) break;
  }
  if (caught_signal != 0) ready = -1;
  release_interrupts(&in);
  *sig = caught_signal;
  return ready;
}

/* Whether a poll found something or failed (an EINTR is neither). */
static int poll_ended(int ready) {
  return ready != 0 && !(ready < 0 && errno == EINTR);
}

int proc_poll(struct pollfd *fds, int count, int64_t deadline, int *sig) {
  int ready = poll(fds, (nfds_t)count, 0); /* what is ready already needs no signal handlers */
  *sig = 0;
  if (poll_ended(ready)) return ready;
  return poll_catching(fds, count, deadline, NULL, sig);
}

/*
** The spin holds SIGINT and SIGTERM blocked rather than catching them:
** two system calls instead of four, as much as the rest of a short
** answer's wait costs. One that comes then is delivered as the spin ends:
** noted, if the wait goes on to sleep, else as it would be just after.
*/
int proc_poll_spinning(struct pollfd *fds, int count, int64_t spin_end, int64_t deadline, int *sig) {
  sigset_t before;
  int64_t since = par_now_ns();
  int ready = poll(fds, (nfds_t)count, 0);
  *sig = 0;
  if (poll_ended(ready)) return ready;
  if (deadline >= 0 && deadline < spin_end) spin_end = deadline;
  hold_interrupts(&before);
  do ready = poll(fds, (nfds_t)count, 0);
  while (!poll_ended(ready) && proc_look_again(since, spin_end));
  if (poll_ended(ready) || (deadline >= 0 && par_now_ns() >= deadline)) {
    unhold_interrupts(&before);
    return ready < 0 && errno == EINTR ? 0 : ready;
  }
  return poll_catching(fds, count, deadline, &before, sig);
}

/*
** A look costs a system call, a yield one more (each about 1 us on a
** virtual machine): yielding at every look made the looks half as
** frequent, and an answer took a look longer to be seen. Every
** LOOK_YIELD_NS is often enough for a process waiting for the core.
** Watching a word in shared memory between polls instead was slower here
** (10.6 against 8.7 us a round trip in C).
*/
#define LOOK_YIELD_NS 5000

int proc_look_again(int64_t since, int64_t deadline) {
  static int64_t yielded;
  int64_t now = par_now_ns();
  if (now >= since + PROC_SPIN_NS || (deadline >= 0 && now >= deadline)) return 0;
  if (now - yielded >= LOOK_YIELD_NS) {
    sched_yield();
    yielded = now;
  }
  return 1;
}

int proc_sleep_until(int64_t deadline) {
  Interrupts in;
  int64_t left;
  catch_interrupts(&in);
  while (caught_signal == 0 && (left = deadline - par_now_ns()) > 0) {
    int64_t slice = left < INTERRUPT_CHECK_MS * 1000000LL ? left : INTERRUPT_CHECK_MS * 1000000LL;
    struct timespec ts = {(time_t)(slice / 1000000000), (long)(slice % 1000000000)};
    nanosleep(&ts, NULL); /* a signal cuts it short */
  }
  release_interrupts(&in);
  return caught_signal;
}

int proc_wait(ProcWaitStep step, void *arg, int64_t deadline, int *sig) {
  Interrupts in;
  int done;
  catch_interrupts(&in);
  for (;;) {
    int64_t until = par_now_ns() + INTERRUPT_CHECK_MS * 1000000LL;
    if (deadline >= 0 && deadline < until) until = deadline;
    done = step(arg, until);
    if (done != 0 || caught_signal != 0) break;
    if (deadline >= 0 && par_now_ns() >= deadline) break;
  }
  release_interrupts(&in);
  *sig = caught_signal;
  return done == 0 && *sig != 0 ? -1 : done;
}

int proc_futex_wait(uint32_t *word, uint32_t expected, int64_t until) {
  int64_t left = until - par_now_ns();
  struct timespec ts;
  if (left <= 0) return 0;
  ts.tv_sec = (time_t)(left / 1000000000);
  ts.tv_nsec = (long)(left % 1000000000);
  /* the word is in a shared mapping: no FUTEX_PRIVATE_FLAG */
  return syscall(SYS_futex, word, FUTEX_WAIT, expected, &ts, NULL, 0) == 0;
}

void proc_futex_wake(uint32_t *word, int count) {
  syscall(SYS_futex, word, FUTEX_WAKE, count, NULL, NULL, 0);
}

typedef struct WordWait {
  uint32_t *word;
  uint32_t seen;
} WordWait;

static int word_changed(void *arg, int64_t until) {
  WordWait *w = arg;
  if (__atomic_load_n(w->word, __ATOMIC_ACQUIRE) != w->seen) return 1;
  return proc_futex_wait(w->word, w->seen, until) ||
         __atomic_load_n(w->word, __ATOMIC_ACQUIRE) != w->seen;
}

int proc_wait_word(uint32_t *word, uint32_t seen, int64_t deadline, int *sig) {
  WordWait w = {word, seen};
  return proc_wait(word_changed, &w, deadline, sig);
}

int proc_thread_count(void) {
  struct stat st;
  /* the task directory links its threads and . and ..: one syscall, no text to parse */
  if (stat("/proc/self/task", &st) != 0 || st.st_nlink < 3) return 0;
  return (int)st.st_nlink - 2;
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

int proc_exit_code(int status, int *code) {
  if (status == -1) return 0;
  if (WIFSIGNALED(status)) *code = -WTERMSIG(status);
  else if (WIFEXITED(status)) *code = WEXITSTATUS(status);
  else return 0;
  return 1;
}

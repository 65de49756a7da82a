/*
** Process-level rules, each in one place: flush before fork, what a child
** resets, _exit in children, close-on-exec, EINTR and short transfers,
** SIGPIPE-free writes and reaping.
*/
#ifndef PARLUA_PROC_H
#define PARLUA_PROC_H

#include <poll.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

/*
** Flushes every stdio stream, then forks. In the child: private
** descriptors are closed, SIGINT is ignored
** (the parent owns Ctrl-C and stops its workers), other signals are reset
** to their defaults, and the child is killed if its parent dies.
** Returns like fork().
*/
pid_t proc_fork(void);

/* Ends a child: flushes stdio and calls _exit, so no finalizer of the parent runs. */
void proc_exit(int status) __attribute__((noreturn));

/* True in every process par forked (a worker, a spawned process, their children). */
int proc_is_forked(void);

/* getpid(), without a system call after the first in each process. */
pid_t proc_self(void);

/*
** The two ends of a channel between a parent and a child it is about to
** fork; -1 for an end that is closed.
*/
typedef struct ProcLink {
  int parent, child;
} ProcLink;

#define PROC_LINK_CLOSED ((ProcLink){-1, -1})

enum ProcLinkKind {
  PROC_RESULTS, /* a pipe with a large buffer, the child writing */
  PROC_COMMANDS /* a stream socket pair, the parent writing */
};

/*
** Opens a close-on-exec link whose parent end is private (below). Returns
** NULL, or the name of the system call that failed with errno set; then
** nothing is left open.
*/
const char *proc_link_open(ProcLink *link, enum ProcLinkKind kind);

/* Closes the ends still open; closing again does nothing. */
void proc_link_close(ProcLink *link);

/* In the parent once the child is forked: closes the child's end. */
void proc_link_close_child(ProcLink *link);

/*
** Marks fd as this process's own: every child forked later closes it
** first thing, so a worker never holds another worker's pipe open.
** Returns 0 or -1 when out of memory.
*/
int proc_keep_private(int fd);

/* Closes fd and forgets it if it was private. */
void proc_close(int fd);

/*
** Closes fd if this process holds it as private. One inherited through a
** fork was closed at the fork, and its number may now be another's: an
** object that owns a private descriptor closes it with this, so that its
** copy collected in a child closes nothing.
*/
void proc_close_private(int fd);

/*
** A connected close-on-exec SOCK_SEQPACKET pair, for proc_send_datagram;
** returns 0 or -1 with errno set.
*/
int proc_seqpacket_pair(int fds[2]);

/*
** Sends one datagram made of iov[0 .. count) and, when pass_fd >= 0, a
** copy of that descriptor. With 'wait' it blocks while the queue is full
** (without, it fails at once with EAGAIN); a SIGINT or
** SIGTERM meanwhile ends the wait, like proc_poll's: -1, the signal in
** *sig (also set, with 0 returned, for a signal that came as the datagram
** went out). Never raises SIGPIPE. Returns 0 or -1 with errno set.
*/
int proc_send_datagram(int fd, struct iovec *iov, int count, int pass_fd, int wait, int *sig);

/*
** Receives one datagram into buf[0 .. size), retrying on EINTR; 'flags' is
** 0 or MSG_DONTWAIT. A passed descriptor arrives close-on-exec in *passed,
** else *passed is -1. *lost is set when the datagram or its descriptor did
** not fit (at the descriptor limit). Returns the datagram's length, 0 at
** end of file, or -1 with errno set.
*/
ssize_t proc_recv_datagram(int fd, void *buf, size_t size, int flags,
                                  int *passed, int *lost);

/* A close-on-exec memfd holding data[0 .. len); returns it, or -1 with errno set. */
int proc_memfd_with(const char *name, const void *data, size_t len);

/* Reads exactly len bytes from offset 0 of fd, retrying on EINTR; 0, or -1 with errno set. */
int proc_pread_all(int fd, char *buf, size_t len);

/* Reads up to n bytes, retrying on EINTR; returns like read(). */
ssize_t proc_read(int fd, void *buf, size_t n);

/* proc_read from a socket that does not wait: -1 with errno EAGAIN when nothing is there. */
ssize_t proc_recv_now(int fd, void *buf, size_t n);

/* Sends all of iov[0..count) on a socket, never raising SIGPIPE; it may
   advance iov. Returns 0 or -1 with errno set (EPIPE: the peer is gone). */
int proc_sendv(int fd, struct iovec *iov, int count);

/*
** Writes all of two buffers (the second may be empty) to a pipe or file.
** Only children write to pipes: if the reader is gone, SIGPIPE ends them.
** Returns 0 or -1 with errno set.
*/
int proc_write2(int fd, const void *a, size_t alen, const void *b, size_t blen);

/* Waits for pid to end, retrying on EINTR; returns its wait status or -1. */
int proc_reap(pid_t pid);

/* Reaps pid if it has ended: 1 with its wait status, 0 if it still runs, -1 on error. */
int proc_try_reap(pid_t pid, int *status);

/* SIGKILLs pid; it still has to be reaped. */
void proc_kill(pid_t pid);

/* Monotonic nanoseconds: the clock of every deadline in par. */
int64_t par_now_ns(void);

/*
** Polls fds until one is ready (returns how many), the deadline on the
** par_now_ns clock passes (0; -1 means none), or SIGINT or SIGTERM comes
** (-1, the signal in *sig). Only during this wait do those signals merely
** get noted, and only in the process the user started (unless it ignores
** them): the caller then stops what it waits for and raises. In a process
** par forked, SIGTERM keeps its default and SIGINT is let pass (the parent
** stops its children). A poll error other than EINTR is returned as -1
** with *sig = 0.
*/
int proc_poll(struct pollfd *fds, int count, int64_t deadline, int *sig);

/*
** proc_poll, but looking again until spin_end (see proc_look_again)
** before it sleeps: for a wait whose answer is likely to come at once.
*/
int proc_poll_spinning(struct pollfd *fds, int count, int64_t spin_end, int64_t deadline, int *sig);

/*
** Before a wait for a message sleeps: a message due soon often comes
** sooner than a sleeping process would wake up, so the receiver looks
** again for PROC_SPIN_NS first. Returns 1 (look again) until then, or
** until 'deadline' (-1: none), yielding the core every few looks, so
** that on a busy machine the sender, or any process, runs instead: a
** plain spin there made a round trip slower than no spin at all. 'since'
** is when the receiver first looked.
*/
#define PROC_SPIN_NS 50000
int proc_look_again(int64_t since, int64_t deadline);

/*
** Sleeps until the deadline on the par_now_ns clock. A SIGINT or SIGTERM
** ends it early, as it ends proc_poll: returns that signal, else 0.
*/
int proc_sleep_until(int64_t deadline);

/*
** A wait for something proc_poll cannot poll (a futex, a mutex): calls
** step(arg, until) until it returns nonzero, which is returned; step
** blocks at most until 'until' on the par_now_ns clock, a slice short
** enough to see a signal. Ends with 0 when the deadline (-1: none) passes
** and, like proc_poll, with -1 on SIGINT or SIGTERM, the signal in *sig
** (also set, whatever is returned, for a signal that came as step
** succeeded: the caller undoes it). step runs at least once.
*/
typedef int (*ProcWaitStep)(void *arg, int64_t until);
int proc_wait(ProcWaitStep step, void *arg, int64_t deadline, int *sig);

/*
** Waits while the 32-bit word, in memory shared between processes, still
** holds 'seen': until proc_wake_word, the deadline on the par_now_ns clock
** (-1: none), or a SIGINT or SIGTERM as in proc_poll. Returns 1 when woken
** or the word changed, 0 at the deadline, -1 with the signal in *sig.
*/
int proc_wait_word(uint32_t *word, uint32_t seen, int64_t deadline, int *sig);

/*
** The futex calls, on a 32-bit word in memory shared between processes:
** proc_futex_wait sleeps while *word == expected, until woken (returns 1)
** or 'until' on the par_now_ns clock (0); proc_futex_wake wakes up to
** count of its sleepers (INT32_MAX: all).
*/
int proc_futex_wait(uint32_t *word, uint32_t expected, int64_t until);
void proc_futex_wake(uint32_t *word, int count);

/* Threads in this process (from /proc/self/task), or 0 if unknown. */
int proc_thread_count(void);

/* Formats how a wait status ended a process: "killed by SIGSEGV", "exited with status 3". */
void proc_describe_status(int status, char *out, size_t size);

/*
** A wait status as Python's Process.exitcode: the exit status, or minus
** the signal that killed the process. Returns 0 when the status is not
** known (-1, a failed reap).
*/
int proc_exit_code(int status, int *code);

#endif

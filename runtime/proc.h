/*
** Process-level rules, each in one place: flush before fork, what a child
** resets, _exit in children, close-on-exec, EINTR and short transfers,
** SIGPIPE-free writes and reaping.
*/
#ifndef PARLUA_PROC_H
#define PARLUA_PROC_H

#include <stddef.h>
#include <sys/types.h>

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

/* A connected close-on-exec socket pair; returns 0 or -1 with errno set. */
int proc_socketpair(int fds[2]);

/* A close-on-exec pipe with a large buffer; returns 0 or -1 with errno set. */
int proc_pipe(int fds[2]);

/*
** Marks fd as this process's own: every child forked later closes it
** first thing, so a worker never holds another worker's pipe open.
** Returns 0 or -1 when out of memory.
*/
int proc_keep_private(int fd);

/* Closes fd and forgets it if it was private. */
void proc_close(int fd);

/* Reads up to n bytes, retrying on EINTR; returns like read(). */
ssize_t proc_read(int fd, void *buf, size_t n);

/* Writes all of two buffers (the second may be empty); on a socket never
   raises SIGPIPE. Returns 0 or -1 with errno set. */
int proc_write2(int fd, const void *a, size_t alen, const void *b, size_t blen);

/* Waits for pid to end, retrying on EINTR; returns its wait status or -1. */
int proc_reap(pid_t pid);

/* Reaps pid if it has ended: 1 with its wait status, 0 if it still runs, -1 on error. */
int proc_try_reap(pid_t pid, int *status);

/* SIGKILLs pid; it still has to be reaped. */
void proc_kill(pid_t pid);

/*
** While a parent blocks waiting for its workers, SIGINT and SIGTERM only
** note that they came: the caller then stops its workers and raises.
** proc_interrupts_catch installs the handlers (saving the old ones),
** proc_interrupts_release puts the old ones back and returns the signal
** that came meanwhile, or 0.
*/
void proc_interrupts_catch(void);
int proc_interrupts_release(void);

/* True once SIGINT or SIGTERM came since proc_interrupts_catch. */
int proc_interrupted(void);

/* Threads in this process (from /proc/self/stat), or 0 if unknown. */
int proc_thread_count(void);

/* Formats how a wait status ended a process: "killed by SIGSEGV", "exited with status 3". */
void proc_describe_status(int status, char *out, size_t size);

#endif

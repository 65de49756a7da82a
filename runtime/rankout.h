/* What becomes of the standard output and error of a rank other than 0. */
#ifndef PARLUA_RANKOUT_H
#define PARLUA_RANKOUT_H

/* Sends both to /dev/null. */
void rankout_silence(void);

/*
** Puts "[rank N] " before every line of both: a forked process copies
** them, so the workers' output is prefixed too. Returns 0, or -1.
*/
int rankout_prefix(int rank);

/* Flushes, closes both and waits for the copier, so no line is lost at exit. */
void rankout_end(void);

#endif

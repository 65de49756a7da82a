/*
** One par.map call spread over the ranks of an MPI job: the check that
** every rank reached the same call, the ranges a rank takes, and the
** exchange of outcomes at the end so that every rank (or only the root)
** ends with them all. Used only when there is more than one rank.
*/
#ifndef PARLUA_SPREAD_H
#define PARLUA_SPREAD_H

#include <lua.h>

typedef struct Spread Spread;

/*
** With more than one rank (and not in a forked worker), raises kind
** "mismatch" on every rank unless all reached this call with the same 'n'
** items (table at 'items'). A call with no items takes part too.
*/
void spread_check(lua_State *L, const char *fn, int items, lua_Integer n);

/*
** With more than one rank, checks that every rank called fn with the
** same 'n' items (table at 'items'), raising kind "mismatch" otherwise,
** and pushes a to-be-closed Spread; with one rank, or in a forked
** worker (which never calls MPI), pushes nil and returns NULL.
*/
Spread *spread_open(lua_State *L, const char *fn, int items, lua_Integer n, int gather_root);

/* This rank's next range of about 'want' items; 0 when none is left. 'lowest': its first unfinished item. */
int spread_take(Spread *s, lua_Integer want, lua_Integer lowest, lua_Integer *lo, lua_Integer *hi);

/* Whether ranges may still come to this rank (it has not been told that none is left). */
int spread_may_take(const Spread *s);

/* On the root, answers the ranks' asks that have come; returns whether any rank may still ask. */
int spread_serve(Spread *s);

/* Keeps the JSON list of results lo, lo+1, ... to send to the others at the end. */
void spread_keep_results(lua_State *L, Spread *s, lua_Integer lo, const char *list, size_t len);

/* Keeps the error on top (left there) for item 'index', marked with this rank. */
void spread_keep_error(lua_State *L, Spread *s, lua_Integer index);

/* After an error without on_error = "collect": this rank takes no more and the others stop soon. */
void spread_stop(Spread *s);

/*
** Exchanges the outcomes: the others' results go into the table at
** 'results' (nil instead on a rank that gets none), the others' errors
** into the table at 'errors' (made if nil) with 'collect', else the error
** of the lowest item on any rank is raised on every rank.
*/
void spread_finish(lua_State *L, Spread *s, int results, int errors, int collect);

/* Pushes fn's error for a job ended (SIGTERM from the launcher) while items were out on ranks. */
void spread_push_ended(lua_State *L, Spread *s, int sig);

#endif

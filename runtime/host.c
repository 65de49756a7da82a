/*
** parlua: the standalone interpreter.
** Behaves like the stock 'lua' command of Lua 5.4, with the 'par'
** module opened as well.
*/

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>
#include <readline/history.h>
#include <readline/readline.h>

#include "cluster.h"
#include "parlua.h"

#define DEFAULT_PROGNAME "lua"
#define PROMPT1 "> "
#define PROMPT2 ">> "
#define EOF_MARK "<eof>"
#define INIT_VAR_VERSIONED "LUA_INIT_5_4"
#define INIT_VAR "LUA_INIT"

/* bits returned by scan_options */
#define OPT_BAD   1
#define OPT_I     2   /* -i */
#define OPT_V     4   /* -v, or -i */
#define OPT_EXEC  8   /* -e */
#define OPT_NOENV 16  /* -E */
#define OPT_HELP  32  /* --help: print and exit (-h is a bad option, as in lua5.4) */
#define OPT_VERSION 64 /* --version: print and exit */

static const char *progname = DEFAULT_PROGNAME;

/* the state a pending SIGINT should interrupt */
static lua_State *running_state = NULL;


/* ------------------------------------------------------------------ */
/* messages                                                             */
/* ------------------------------------------------------------------ */

static void message(const char *pname, const char *msg) {
  if (pname != NULL)
    fprintf(stderr, "%s: ", pname);
  fprintf(stderr, "%s\n", msg);
  fflush(stderr);
}

/* Prints the error message on top of the stack, if any, and pops it. */
static int report(lua_State *L, int status) {
  if (status != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    int pushed = 0;
    if (msg == NULL) {
      msg = lua_pushfstring(L, "(error object is a %s value)",
                            luaL_typename(L, -1));
      pushed = 1;
    }
    message(progname, msg);
    lua_pop(L, 1 + pushed);
  }
  return status;
}

static void print_options(FILE *f) {
  fprintf(f,
          "usage: %s [options] [script [args]]\n"
          "Available options are:\n"
          "  -e stat   execute string 'stat'\n"
          "  -i        enter interactive mode after executing 'script'\n"
          "  -l mod    require library 'mod' into global 'mod'\n"
          "  -l g=mod  require library 'mod' into global 'g'\n"
          "  -v        show version information\n"
          "  -E        ignore environment variables\n"
          "  -W        turn warnings on\n"
          "  --        stop handling options\n"
          "  -         stop handling options and execute stdin\n",
          progname);
}

/* A bad option: the message and usage lua5.4 prints, on stderr. */
static void print_usage(const char *badoption) {
  fprintf(stderr, "%s: ", progname);
  if (badoption[1] == 'e' || badoption[1] == 'l')
    fprintf(stderr, "'%s' needs argument\n", badoption);
  else
    fprintf(stderr, "unrecognized option '%s'\n", badoption);
  print_options(stderr);
  fflush(stderr);
}

/* --help: lua5.4's usage and what parlua adds, on stdout. */
static void print_help(void) {
  print_options(stdout);
  fputs("  --help      show this help and exit\n"
        "  --version   show the parlua and Lua versions and exit\n"
        "The par module is the global 'par' (par.map, par.imap, par.pipeline,\n"
        "par.queue, par.spawn, par.channel, ...); require \"par\" returns it too.\n"
        "Environment: PARLUA_WORKERS=n sets par.workers(); PARLUA_PROGRESS=1\n"
        "draws a progress line for long maps on a terminal, =log writes lines.\n"
        "See parlua(1) and docs/api.md.\n",
        stdout);
  fflush(stdout);
}

/* -v, and the banner at a terminal: exactly what lua5.4 prints. */
static void print_version(void) {
  fputs(LUA_COPYRIGHT "\n", stdout);
  fflush(stdout);
}

static void print_parlua_version(void) {
  fputs(PARLUA_VERSION "\n" LUA_COPYRIGHT "\n", stdout);
  fflush(stdout);
}


/* ------------------------------------------------------------------ */
/* running chunks                                                       */
/* ------------------------------------------------------------------ */

/* Hook installed by the signal handler: the next hook event raises. */
static void interrupt_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  luaL_error(L, "interrupted!");
}

static void set_sigint(void (*handler)(int)) {
  struct sigaction sa;
  sa.sa_handler = handler;
  sa.sa_flags = 0;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
}

/*
** Only lua_sethook is safe to call from a signal handler. A second
** SIGINT before the hook runs gets the default action and ends the
** process, so a stuck C function can still be killed.
*/
static void on_sigint(int sig) {
  int hookmask = LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT;
  set_sigint(SIG_DFL);
  (void)sig;
  lua_sethook(running_state, interrupt_hook, hookmask, 1);
}

/* Turns any error object into a message with a traceback. */
static int error_handler(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
      return 1;  /* the object describes itself; keep it as is */
    msg = lua_pushfstring(L, "(error object is a %s value)",
                          luaL_typename(L, 1));
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/* Calls the function below its 'nargs' arguments, catching SIGINT. */
static int protected_call(lua_State *L, int nargs, int nresults) {
  int status;
  int handler = lua_gettop(L) - nargs;
  lua_pushcfunction(L, error_handler);
  lua_insert(L, handler);
  running_state = L;
  set_sigint(on_sigint);
  status = lua_pcall(L, nargs, nresults, handler);
  set_sigint(SIG_DFL);
  lua_remove(L, handler);
  return status;
}

static int run_loaded(lua_State *L, int status) {
  if (status == LUA_OK)
    status = protected_call(L, 0, 0);
  return report(L, status);
}

static int run_file(lua_State *L, const char *name) {
  return run_loaded(L, luaL_loadfile(L, name));
}

static int run_string(lua_State *L, const char *code, const char *name) {
  return run_loaded(L, luaL_loadbuffer(L, code, strlen(code), name));
}

/* -l mod or -l g=mod: global g (or mod) = require(mod) */
static int require_into_global(lua_State *L, const char *spec) {
  const char *eq = strchr(spec, '=');
  const char *modname = eq != NULL ? eq + 1 : spec;
  size_t namelen = eq != NULL ? (size_t)(eq - spec) : strlen(spec);
  int status;
  lua_getglobal(L, "require");
  lua_pushstring(L, modname);
  status = protected_call(L, 1, 1);
  if (status == LUA_OK) {
    lua_pushglobaltable(L);
    lua_pushlstring(L, spec, namelen);
    lua_rotate(L, -3, -1);  /* globals, name, module */
    lua_settable(L, -3);
    lua_pop(L, 1);
  }
  return report(L, status);
}

/* Pushes arg[1..#arg] and returns how many. */
static int push_script_args(lua_State *L) {
  int i, n;
  if (lua_getglobal(L, "arg") != LUA_TTABLE)
    luaL_error(L, "'arg' is not a table");
  n = (int)luaL_len(L, -1);
  luaL_checkstack(L, n + 3, "too many arguments to script");
  for (i = 1; i <= n; i++)
    lua_rawgeti(L, -i, i);
  lua_remove(L, -i);
  return n;
}

/* 'argv[0]' is the script; "-" means stdin unless it came after "--". */
static int run_script(lua_State *L, char **argv) {
  const char *fname = argv[0];
  int status;
  if (strcmp(fname, "-") == 0 && strcmp(argv[-1], "--") != 0)
    fname = NULL;
  status = luaL_loadfile(L, fname);
  if (status == LUA_OK) {
    int n = push_script_args(L);
    status = protected_call(L, n, LUA_MULTRET);
  }
  return report(L, status);
}

static int run_init(lua_State *L) {
  const char *chunkname = "=" INIT_VAR_VERSIONED;
  const char *init = getenv(INIT_VAR_VERSIONED);
  if (init == NULL) {
    chunkname = "=" INIT_VAR;
    init = getenv(INIT_VAR);
  }
  if (init == NULL)
    return LUA_OK;
  if (init[0] == '@')
    return run_file(L, init + 1);
  return run_string(L, init, chunkname);
}


/* ------------------------------------------------------------------ */
/* command line                                                         */
/* ------------------------------------------------------------------ */

/*
** Checks the options and sets '*script' to the index of the script
** (argc when there is none). On a bad option, '*script' is its index.
*/
static int scan_options(char **argv, int *script) {
  int flags = 0;
  int i;
  if (argv[0] == NULL) {  /* argc is 0 */
    *script = 0;
    return 0;
  }
  for (i = 1; argv[i] != NULL; i++) {
    const char *opt = argv[i];
    *script = i;
    if (opt[0] != '-')
      return flags;
    switch (opt[1]) {
      case '\0':  /* "-": stdin is the script */
        return flags;
      case '-':
        if (strcmp(opt, "--help") == 0)
          return OPT_HELP;
        if (strcmp(opt, "--version") == 0)
          return OPT_VERSION;
        if (opt[2] != '\0')
          return OPT_BAD;
        *script = i + 1;
        return flags;
      case 'E':
        if (opt[2] != '\0')
          return OPT_BAD;
        flags |= OPT_NOENV;
        break;
      case 'W':
        if (opt[2] != '\0')
          return OPT_BAD;
        break;
      case 'i':
      case 'v':
        if (opt[2] != '\0')
          return OPT_BAD;
        flags |= OPT_V | (opt[1] == 'i' ? OPT_I : 0);
        break;
      case 'e':
      case 'l':
        if (opt[1] == 'e')
          flags |= OPT_EXEC;
        if (opt[2] == '\0') {  /* argument is the next word */
          i++;
          if (argv[i] == NULL || argv[i][0] == '-')
            return OPT_BAD;
        }
        break;
      default:
        return OPT_BAD;
    }
  }
  *script = i;
  return flags;
}

/* Runs -e, -l and -W in order; options end before index 'script'. */
static int run_options(lua_State *L, char **argv, int script) {
  int i;
  for (i = 1; i < script; i++) {
    char opt = argv[i][1];
    if (opt == 'e' || opt == 'l') {
      const char *value = argv[i] + 2;
      int status;
      if (*value == '\0')
        value = argv[++i];
      if (opt == 'e')
        status = run_string(L, value, "=(command line)");
      else
        status = require_into_global(L, value);
      if (status != LUA_OK)
        return 0;
    }
    else if (opt == 'W') {
      lua_warning(L, "@on", 0);
    }
  }
  return 1;
}

/*
** arg[0] is the script, the script's arguments follow, and the
** interpreter with its options take the negative indices.
*/
static void create_arg_table(lua_State *L, char **argv, int argc, int script) {
  int i;
  int npositive;
  if (script == argc)  /* no script: the interpreter gets index 0 */
    script = 0;
  npositive = argc - (script + 1);
  lua_createtable(L, npositive > 0 ? npositive : 0, script + 1);
  for (i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - script);
  }
  lua_setglobal(L, "arg");
}


/* ------------------------------------------------------------------ */
/* interactive mode                                                     */
/* ------------------------------------------------------------------ */

/* Pushes the prompt string (tostring of _PROMPT/_PROMPT2 if set). */
static const char *push_prompt(lua_State *L, int firstline) {
  if (lua_getglobal(L, firstline ? "_PROMPT" : "_PROMPT2") == LUA_TNIL) {
    lua_pop(L, 1);
    return lua_pushstring(L, firstline ? PROMPT1 : PROMPT2);
  }
  luaL_tolstring(L, -1, NULL);
  lua_remove(L, -2);
  return lua_tostring(L, -1);
}

/* Whether the loop reads a terminal: then lines come through readline, as in lua5.4. */
static int reading_terminal;

static int read_terminal_line(lua_State *L, const char *prompt) {
  char *line = readline(prompt);
  if (line == NULL)
    return 0;
  lua_pushstring(L, line);
  free(line);
  return 1;
}

/*
** Reads one line of stdin, without its newline, onto the stack; 0 at end
** of input. Read byte by byte, so a NUL stays in the line. The line is
** echoed after the prompt, as lua5.4's readline does when stdin is not a
** terminal.
*/
static int read_line(lua_State *L, const char *prompt) {
  luaL_Buffer b;
  int c;
  if (reading_terminal)
    return read_terminal_line(L, prompt);
  fputs(prompt, stdout);
  fflush(stdout);
  luaL_buffinit(L, &b);
  while ((c = getc(stdin)) != EOF && c != '\n')
    luaL_addchar(&b, (char)c);
  if (c == EOF && luaL_bufflen(&b) == 0) {
    luaL_pushresult(&b);
    lua_pop(L, 1);
    return 0;
  }
  luaL_pushresult(&b);
  fwrite(lua_tostring(L, -1), 1, lua_rawlen(L, -1), stdout);
  fputs("\n", stdout);
  fflush(stdout);
  return 1;
}

/* Pushes the next input line; 0 at end of input. */
static int push_line(lua_State *L, int firstline) {
  int ok = read_line(L, push_prompt(L, firstline));
  lua_remove(L, ok ? -2 : -1);  /* the prompt */
  if (ok && firstline) {
    size_t len;
    const char *line = lua_tolstring(L, -1, &len);
    if (line[0] == '=') {  /* "=expr" is kept from Lua 5.1 */
      lua_pushliteral(L, "return ");
      lua_pushlstring(L, line + 1, len - 1);
      lua_concat(L, 2);
      lua_remove(L, -2);
    }
  }
  return ok;
}

/* Tries the line at index 1 as an expression; pushes it on success. */
static int load_as_expression(lua_State *L) {
  size_t len;
  const char *code;
  int status;
  lua_pushliteral(L, "return ");
  lua_pushvalue(L, 1);
  lua_pushliteral(L, ";");
  lua_concat(L, 3); /* not lua_pushfstring, which would stop at a NUL */
  code = lua_tolstring(L, -1, &len);
  status = luaL_loadbuffer(L, code, len, "=stdin");
  lua_remove(L, -2);  /* the code text */
  if (status != LUA_OK)
    lua_pop(L, 1);  /* not an expression: forget why */
  return status;
}

/* Whether the syntax error on top says that the statement goes on. */
static int is_incomplete(lua_State *L, int status) {
  if (status == LUA_ERRSYNTAX) {
    size_t len;
    size_t marklen = sizeof(EOF_MARK) - 1;
    const char *msg = lua_tolstring(L, -1, &len);
    return len >= marklen && strcmp(msg + len - marklen, EOF_MARK) == 0;
  }
  return 0;
}

/*
** Loads the line at index 1 as a statement, reading more while needed.
** Input that ends inside a statement leaves its syntax error to report.
*/
static int load_statement(lua_State *L) {
  for (;;) {
    size_t len;
    const char *code = lua_tolstring(L, 1, &len);
    int status = luaL_loadbuffer(L, code, len, "=stdin");
    if (!is_incomplete(L, status) || !push_line(L, 0))
      return status;
    lua_remove(L, -2); /* the syntax error: there is more */
    lua_pushliteral(L, "\n");
    lua_insert(L, -2);
    lua_concat(L, 3);
  }
}

/* Leaves a compiled chunk (or an error message) alone on the stack. */
static int load_input(lua_State *L) {
  int status;
  lua_settop(L, 0);
  if (!push_line(L, 1))
    return -1;
  status = load_as_expression(L);
  if (status != LUA_OK)
    status = load_statement(L);
  if (reading_terminal && lua_rawlen(L, 1) > 0)
    add_history(lua_tostring(L, 1)); /* the whole statement, as lua5.4 keeps it */
  lua_remove(L, 1);
  return status;
}

static void print_results(lua_State *L) {
  int n = lua_gettop(L);
  if (n == 0)
    return;
  luaL_checkstack(L, LUA_MINSTACK, "too many results to print");
  lua_getglobal(L, "print");
  lua_insert(L, 1);
  if (lua_pcall(L, n, 0, 0) != LUA_OK)
    message(progname, lua_pushfstring(L, "error calling 'print' (%s)",
                                      lua_tostring(L, -1)));
}

static void repl(lua_State *L) {
  const char *saved = progname;
  int status;
  progname = NULL;  /* messages here carry no program name */
  reading_terminal = isatty(STDIN_FILENO);
  rl_readline_name = "parlua"; /* for $if parlua in ~/.inputrc */
  while ((status = load_input(L)) != -1) {
    if (status == LUA_OK)
      status = protected_call(L, 0, LUA_MULTRET);
    if (status == LUA_OK)
      print_results(L);
    else
      report(L, status);
  }
  lua_settop(L, 0);
  fputs("\n", stdout);
  fflush(stdout);
  progname = saved;
}


/* ------------------------------------------------------------------ */
/* main                                                                 */
/* ------------------------------------------------------------------ */

/* Runs in protected mode, with argc and argv as its two arguments. */
static int protected_main(lua_State *L) {
  int argc = (int)lua_tointeger(L, 1);
  char **argv = (char **)lua_touserdata(L, 2);
  int script = argc;
  int flags = scan_options(argv, &script);
  luaL_checkversion(L);
  if (flags == OPT_BAD) {
    print_usage(argv[script]);
    return 0;
  }
  if (flags == OPT_HELP || flags == OPT_VERSION) {
    if (flags == OPT_HELP)
      print_help();
    else
      print_parlua_version();
    lua_pushboolean(L, 1);
    return 1;
  }
  if (flags & OPT_V)
    print_version();
  if (flags & OPT_NOENV) {  /* libraries check this to ignore env vars */
    lua_pushboolean(L, 1);
    lua_setfield(L, LUA_REGISTRYINDEX, "LUA_NOENV");
  }
  luaL_openlibs(L);
  parlua_openlib(L);
  create_arg_table(L, argv, argc, script);
  lua_gc(L, LUA_GCRESTART);
  lua_gc(L, LUA_GCGEN, 0, 0);
  if (!(flags & OPT_NOENV) && run_init(L) != LUA_OK)
    return 0;
  if (!run_options(L, argv, script))
    return 0;
  if (script < argc && run_script(L, argv + script) != LUA_OK)
    return 0;
  if (flags & OPT_I) {
    repl(L);
  }
  else if (script == argc && !(flags & (OPT_EXEC | OPT_V))) {
    if (isatty(STDIN_FILENO)) {
      print_version();
      repl(L);
    }
    else {
      run_file(L, NULL);
    }
  }
  lua_pushboolean(L, 1);
  return 1;
}

int main(int argc, char **argv) {
  int status, ok;
  lua_State *L;
  if (argv[0] != NULL && argv[0][0] != '\0')
    progname = argv[0];
  cluster_start(&argc, &argv); /* under MPI (build/parlua-mpi), joins the job */
  L = luaL_newstate();
  if (L == NULL) {
    message(progname, "cannot create state: not enough memory");
    return EXIT_FAILURE;
  }
  lua_setallocf(L, parlua_alloc, NULL); /* nothing big is allocated yet */
  lua_gc(L, LUA_GCSTOP);  /* no collections while the state is built */
  lua_pushcfunction(L, protected_main);
  lua_pushinteger(L, argc);
  lua_pushlightuserdata(L, argv);
  status = lua_pcall(L, 2, 1, 0);
  ok = lua_toboolean(L, -1);
  report(L, status);
  lua_close(L);
  return (ok && status == LUA_OK) ? EXIT_SUCCESS : EXIT_FAILURE;
}

# parlua: make builds into build/; make run, make test and make bench
# install what is missing first (scripts/deps.sh).

LUA_PC   ?= lua5.4
LUA      ?= lua5.4
CC       ?= cc
CFLAGS   ?= -O2 -g
B        := build

LUA_CFLAGS  = $(shell pkg-config --cflags $(LUA_PC))
LUA_LIBS    = $(shell pkg-config --libs $(LUA_PC))
# The host's interactive loop edits lines and keeps history, as lua5.4's does.
READLINE_LIBS = $(shell pkg-config --libs readline)
PAR_CFLAGS  = -std=c11 -D_GNU_SOURCE -Wall -Wextra -fPIC $(LUA_CFLAGS) -Iruntime
# Symbols are bound at start: a forked worker would otherwise look up
# each function it is the first to call, in every worker again.
LINK_NOW    = -Wl,-z,now
SAN_FLAGS   = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
SAN_CC      = clang $(PAR_CFLAGS) -O1 -g $(SAN_FLAGS)

MODULE_SRC := runtime/alloc.c runtime/buffer.c runtime/jsontext.c runtime/encode.c runtime/decode.c runtime/frame.c runtime/proc.c runtime/shm.c runtime/shmtable.c runtime/options.c \
              runtime/cpus.c runtime/pool.c runtime/worker.c runtime/map.c runtime/queue.c \
               runtime/spawn.c runtime/message.c runtime/channel.c runtime/pipe.c runtime/lsync.c runtime/ldict.c runtime/lutil.c runtime/dispatch.c runtime/lpar.c
MODULE_SRC += runtime/progress.c runtime/checkpoint.c runtime/spread.c runtime/cluster_stub.c
LUALIB_SRC := $(wildcard lualib/*.lua)
HEADERS    := $(wildcard runtime/*.h)
MODULE_OBJ := $(MODULE_SRC:runtime/%.c=$(B)/obj/%.o) $(B)/obj/lualib.o

BUSTED     ?= $(shell command -v busted)
VERSION    := $(shell sed -n 's/^#define PARLUA_VERSION "parlua \(.*\)"/\1/p' runtime/parlua.h)

.PHONY: all run test check check-mpi check-c check-lua check-san check-fuzz check-install check-rock fuzz bench \
        install uninstall install-rock deps deps-test deps-bench clean

all: $(B)/parlua $(B)/par.so $(B)/libparlua.a $(B)/batch

# With Open MPI's mpicc present, build/parlua-mpi as well: the same host
# with the real cluster (runtime/cluster.c, handout.c) in place of the stub.
MPICC := $(shell command -v mpicc)
MPIRUN := $(shell command -v mpirun)
MPI_SRC := runtime/cluster.c runtime/handout.c runtime/rankout.c runtime/mpiwait.c
MPI_OBJ := $(filter-out $(B)/obj/cluster_stub.o,$(MODULE_OBJ)) $(MPI_SRC:runtime/%.c=$(B)/mpi/%.o)
ifneq ($(MPICC),)
all: $(B)/parlua-mpi
endif

$(B)/mpi/%.o: runtime/%.c $(HEADERS)
	@mkdir -p $(B)/mpi
	$(MPICC) $(PAR_CFLAGS) $(CFLAGS) -c $< -o $@

$(B)/parlua-mpi: $(B)/obj/host.o $(MPI_OBJ)
	$(MPICC) $(CFLAGS) $(LINK_NOW) $^ $(LUA_LIBS) $(READLINE_LIBS) -lm -ldl -o $@

$(B)/obj/%.o: runtime/%.c $(HEADERS) | $(B)/obj
	$(CC) $(PAR_CFLAGS) $(CFLAGS) -c $< -o $@

$(B)/lualib.c: scripts/embed.lua $(LUALIB_SRC) | $(B)/obj
	$(LUA) scripts/embed.lua $(LUALIB_SRC) > $@

$(B)/obj/lualib.o: $(B)/lualib.c
	$(CC) $(PAR_CFLAGS) $(CFLAGS) -c $< -o $@

$(B)/libparlua.a: $(MODULE_OBJ)
	rm -f $@ && ar rcs $@ $^

$(B)/par.so: $(MODULE_OBJ)
	$(CC) -shared $(CFLAGS) $(LINK_NOW) $^ -o $@

$(B)/parlua: $(B)/obj/host.o $(B)/libparlua.a
	$(CC) $(CFLAGS) $(LINK_NOW) $^ $(LUA_LIBS) $(READLINE_LIBS) -lm -ldl -o $@

# examples/host: an application that embeds Lua and parlua
$(B)/batch: examples/host/batch.c $(B)/libparlua.a runtime/parlua.h
	$(CC) -std=c11 -Wall -Wextra $(CFLAGS) $(LUA_CFLAGS) -Iruntime $< $(B)/libparlua.a \
	  $(LUA_LIBS) -lm -ldl -o $@

$(B)/obj:
	mkdir -p $@

# --- install ---------------------------------------------------------------

PREFIX  ?= /usr/local
DESTDIR ?=
ROOT    := $(DESTDIR)$(PREFIX)
INSTALLED := bin/parlua include/parlua.h lib/libparlua.a lib/lua/5.4/par.so \
             share/man/man1/parlua.1 lib/pkgconfig/parlua.pc

# lualib/ is compiled into par.so and parlua, so no .lua file is installed.
install: all
	install -d $(ROOT)/bin $(ROOT)/include $(ROOT)/lib/lua/5.4 $(ROOT)/lib/pkgconfig $(ROOT)/share/man/man1
	install -m 755 $(B)/parlua $(ROOT)/bin/parlua
	install -m 644 runtime/parlua.h $(ROOT)/include/parlua.h
	install -m 644 $(B)/libparlua.a $(ROOT)/lib/libparlua.a
	install -m 755 $(B)/par.so $(ROOT)/lib/lua/5.4/par.so
	install -m 644 docs/parlua.1 $(ROOT)/share/man/man1/parlua.1
	sed 's|@VERSION@|$(VERSION)|' scripts/parlua.pc.in > $(ROOT)/lib/pkgconfig/parlua.pc
	$(if $(MPICC),install -m 755 $(B)/parlua-mpi $(ROOT)/bin/parlua-mpi)

uninstall:
	rm -f $(addprefix $(ROOT)/,$(INSTALLED) bin/parlua-mpi)

# What luarocks make installs: it gives the rock's LIBDIR and BINDIR.
install-rock: all
	install -d $(LIBDIR) $(BINDIR)
	install -m 755 $(B)/par.so $(LIBDIR)/par.so
	install -m 755 $(B)/parlua $(BINDIR)/parlua

# --- tests -----------------------------------------------------------------

$(B)/codec_test: tests/codec_test.c $(MODULE_OBJ)
	$(CC) $(PAR_CFLAGS) $(CFLAGS) $^ $(LUA_LIBS) -lm -ldl -o $@

$(B)/san/codec_test: tests/codec_test.c runtime/alloc.c runtime/buffer.c runtime/jsontext.c runtime/encode.c runtime/decode.c
	mkdir -p $(B)/san
	$(SAN_CC) $^ $(LUA_LIBS) -lm -ldl -o $@

# The host, module and all, built again with AddressSanitizer and UBSan.
SAN_OBJ := $(MODULE_SRC:runtime/%.c=$(B)/san/%.o) $(B)/san/lualib.o $(B)/san/host.o

$(B)/san/%.o: runtime/%.c $(HEADERS)
	@mkdir -p $(B)/san
	$(SAN_CC) -c $< -o $@

$(B)/san/lualib.o: $(B)/lualib.c
	@mkdir -p $(B)/san
	$(SAN_CC) -c $< -o $@

$(B)/san/parlua: $(SAN_OBJ)
	clang $(SAN_FLAGS) $^ $(LUA_LIBS) $(READLINE_LIBS) -lm -ldl -o $@

check-san: $(B)/san/parlua
	PARLUA_LUA=$(B)/san/parlua PARLUA_SANITIZED=1 ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  $(B)/san/parlua $(BUSTED) tests

$(B)/embed_test: tests/embed_test.c $(B)/libparlua.a runtime/parlua.h
	$(CC) -std=c11 -D_GNU_SOURCE -Wall -Wextra -O1 -g $(LUA_CFLAGS) -Iruntime $< $(B)/libparlua.a $(LUA_LIBS) -lm -ldl -pthread -o $@

check-c: $(B)/codec_test $(B)/san/codec_test $(B)/embed_test
	$(LUA) scripts/layers.lua runtime
	$(B)/codec_test
	$(B)/san/codec_test
	$(B)/embed_test

check-lua: all
	PARLUA_LUA=$(B)/parlua $(B)/parlua $(BUSTED) tests
	PARLUA_LUA=$(LUA) LUA_CPATH='$(B)/?.so;;' $(LUA) $(BUSTED) tests

# libFuzzer on the decoder, round trips and frames (tests/fuzz/README.md)
FUZZ_SECONDS ?= 60
fuzz:
	tests/fuzz/run.sh $(FUZZ_SECONDS)

check-fuzz:
	tests/fuzz/run.sh 30

# Installs into a scratch DESTDIR, builds examples/host with pkg-config
# alone, runs it, and checks that uninstall leaves no file.
STAGE := $(CURDIR)/$(B)/stage
STAGED_PC = PKG_CONFIG_PATH=$(STAGE)$(PREFIX)/lib/pkgconfig pkg-config
check-install: all
	rm -rf $(STAGE)
	$(MAKE) install DESTDIR=$(STAGE)
	$(CC) -std=c11 -Wall -Wextra examples/host/batch.c $$($(STAGED_PC) --cflags --libs parlua) \
	  -o $(B)/installed_batch
	$(B)/installed_batch examples/host/rules.lua examples/host/orders.csv /dev/null \
	  | diff examples/host/expected.txt -
	$(STAGE)$(PREFIX)/bin/parlua -e 'assert(par.map)'
	LUA_CPATH='$(STAGE)$(PREFIX)/lib/lua/5.4/?.so' $(LUA) -e 'assert(require("par").map)'
	$(MAKE) uninstall DESTDIR=$(STAGE)
	test -z "$$(find $(STAGE) -type f)"

# luarocks make builds a copy of the sources (without build/) into a
# scratch tree; stock lua5.4 then requires par from that tree.
LUAROCKS  := luarocks --lua-version 5.4
ROCK_SRC  := $(CURDIR)/$(B)/rock-src
ROCK_TREE := $(CURDIR)/$(B)/rock-tree
FROM_ROCK := assert(package.searchpath("par", package.cpath):find("$(ROCK_TREE)", 1, true) == 1) \
             assert(require("par").map(function(x) return x * 2 end, {21})[1] == 42)
check-rock:
	rm -rf $(ROCK_SRC) $(ROCK_TREE) && mkdir -p $(ROCK_SRC)
	tar --exclude=./$(B) --exclude=./.git -cf - . | tar -C $(ROCK_SRC) -xf -
	cd $(ROCK_SRC) && $(LUAROCKS) make --tree $(ROCK_TREE) parlua-scm-1.rockspec
	eval "$$($(LUAROCKS) path --tree $(ROCK_TREE))" && cd / && $(LUA) -e '$(FROM_ROCK)'
	$(ROCK_TREE)/bin/parlua -e 'assert(par.map)'

# The MPI specs, under mpirun -n 3 on this one machine (tests/mpi_spec.lua).
check-mpi: all
	PARLUA_LUA=$(B)/parlua $(B)/parlua $(BUSTED) tests/mpi_spec.lua

CHECK_MPI := $(if $(and $(MPICC),$(MPIRUN)),check-mpi)
check: check-c check-lua check-san check-fuzz check-install check-rock $(CHECK_MPI)

test: deps-test
	$(MAKE) all
	$(MAKE) check

run: deps
	$(MAKE) all
	$(B)/parlua examples/quickstart.lua

$(B)/fork_floor: bench/fork_floor.c | $(B)/obj
	$(CC) -std=c11 -Wall -Wextra -O2 $< -o $@

bench: deps-bench
	$(MAKE) all $(B)/fork_floor
	$(B)/parlua bench/run.lua

deps:
	scripts/deps.sh build
deps-test:
	scripts/deps.sh test
deps-bench:
	scripts/deps.sh bench

clean:
	rm -rf $(B)

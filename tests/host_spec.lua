-- The standalone interpreter build/parlua behaves like Debian's lua5.4.
-- Each test runs it as a subprocess; PARLUA_HOST overrides its path.

local helpers = require "tests.helpers"

local HOST = os.getenv("PARLUA_HOST") or "build/parlua"

local temps = {}

local function quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function tempname(suffix)
  local name = os.tmpname()
  temps[#temps + 1] = name
  if suffix then
    name = name .. suffix
    temps[#temps + 1] = name
  end
  return name
end

local par = helpers.par
local read_file, write_file = helpers.read_file, helpers.write_file

local function temp_script(text)
  return write_file(tempname(), text)
end

-- Runs the host with 'args'; opts.env sets variables (LUA_INIT and
-- LUA_INIT_5_4 are always cleared first), opts.stdin feeds its input.
-- Returns { out = stdout, err = stderr, status = exit code }.
local function run(args, opts)
  opts = opts or {}
  local out, err = tempname(), tempname()
  local cmd = { "unset LUA_INIT LUA_INIT_5_4;" }
  for name, value in pairs(opts.env or {}) do
    cmd[#cmd + 1] = name .. "=" .. quote(value)
  end
  cmd[#cmd + 1] = quote(HOST)
  for _, a in ipairs(args) do
    cmd[#cmd + 1] = quote(a)
  end
  local input = opts.stdin and write_file(tempname(), opts.stdin) or "/dev/null"
  cmd[#cmd + 1] = "<" .. quote(input)
  cmd[#cmd + 1] = ">" .. quote(out)
  cmd[#cmd + 1] = "2>" .. quote(err)
  local _, how, code = os.execute(table.concat(cmd, " "))
  assert(how == "exit", "host ended by signal " .. tostring(code))
  return { out = read_file(out), err = read_file(err), status = code }
end

local function contains(text, piece)
  return text:find(piece, 1, true) ~= nil
end

local function starts_with(text, piece)
  return text:sub(1, #piece) == piece
end

local function parlua_version()
  local header = read_file("runtime/parlua.h")
  return assert(header:match('#define%s+PARLUA_VERSION%s+"(.-)"'))
end

describe("parlua host", function()
  after_each(function()
    for i = #temps, 1, -1 do
      os.remove(temps[i])
      temps[i] = nil
    end
  end)

  describe("options", function()
    it("runs -e statements in order", function()
      local r = run({ "-e", "x = 1", "-e", "print(x + 1)", "-eprint(x + 2)" })
      assert.are.equal("2\n3\n", r.out)
      assert.are.equal("", r.err)
      assert.are.equal(0, r.status)
    end)

    it("requires a module into a global of the same name with -l", function()
      local module = tempname(".lua")
      write_file(module, "return { answer = 42 }")
      local dir, name = module:match("^(.*)/([^/]+)%.lua$")
      local r = run({ "-l", name, "-e", ("print(%s.answer)"):format(name) },
                    { env = { LUA_PATH = dir .. "/?.lua" } })
      assert.are.equal("42\n", r.out)
      assert.are.equal(0, r.status)
    end)

    it("accepts -l with the module name attached", function()
      local r = run({ "-lstring", "-e", "print(type(string.format))" })
      assert.are.equal("function\n", r.out)
    end)

    it("requires a module into another global with -l g=mod", function()
      local module = tempname(".lua")
      write_file(module, "return { answer = 42 }")
      local dir, name = module:match("^(.*)/([^/]+)%.lua$")
      local r = run({ "-l", "m=" .. name, "-e", ("print(m.answer, %s)"):format(name) },
                    { env = { LUA_PATH = dir .. "/?.lua" } })
      assert.are.equal("42\tnil\n", r.out)
      assert.are.equal(0, r.status)
    end)

    it("fails with the require error when -l cannot find the module", function()
      local r = run({ "-l", "no_such_module_here", "-e", "print('ran')" })
      assert.are.equal("", r.out)
      assert.is_true(starts_with(r.err, HOST .. ": "))
      assert.is_true(contains(r.err, "module 'no_such_module_here' not found"))
      assert.are_not.equal(0, r.status)
    end)

    it("prints with -v exactly what lua5.4 -v prints: the Lua copyright", function()
      local r = run({ "-v" })
      assert.is_truthy(r.out:match("^Lua 5%.4%.%d+  Copyright %(C%) 1994%-%d+ Lua%.org, PUC%-Rio\n$"), r.out)
      assert.are.equal(0, r.status)
    end)

    it("runs -e after printing the version with -v", function()
      local r = run({ "-v", "-e", "print('after')" })
      assert.is_truthy(r.out:match("^Lua 5%.4[^\n]*PUC%-Rio\nafter\n$"), r.out)
    end)

    it("prints the parlua version, which is par.version, and then Lua's with --version", function()
      local r = run({ "--version" })
      assert.are.equal(parlua_version() .. "\n" .. run({ "-v" }).out, r.out)
      assert.are.equal(parlua_version(), run({ "-e", "io.write(par.version)" }).out)
      assert.is_truthy(parlua_version():match("^parlua %d+%.%d+%.%d+$"))
      assert.are.equal(0, r.status)
    end)

    it("prints the usage with the par additions on stdout with --help, and runs nothing else", function()
      local r = run({ "--help", "-e", "print('ran')" })
      assert.is_true(starts_with(r.out, "usage: " .. HOST .. " [options] [script [args]]\n"))
      assert.is_true(contains(r.out, "-l g=mod"))
      assert.is_true(contains(r.out, "--version"))
      assert.is_true(contains(r.out, "par.map"))
      assert.is_true(contains(r.out, "PARLUA_WORKERS"))
      assert.is_false(contains(r.out, "ran"))
      assert.are.equal("", r.err)
      assert.are.equal(0, r.status)
    end)

    it("rejects -h and other long options as lua5.4 does", function()
      for _, opt in ipairs({ "-h", "---", "--versions" }) do
        local r = run({ opt })
        assert.is_true(starts_with(r.err, HOST .. ": unrecognized option '" .. opt .. "'\n"), r.err)
        assert.are_not.equal(0, r.status)
      end
    end)

    it("prints a usage message and fails on an unknown option", function()
      local r = run({ "-x" })
      assert.are.equal("", r.out)
      assert.is_true(starts_with(r.err, HOST .. ": unrecognized option '-x'\n"))
      assert.is_true(contains(r.err, "usage: " .. HOST .. " [options] [script [args]]"))
      assert.is_true(contains(r.err, "-l g=mod"))
      assert.are_not.equal(0, r.status)
    end)

    it("prints a usage message when -e has no argument", function()
      local r = run({ "-e" })
      assert.is_true(starts_with(r.err, HOST .. ": '-e' needs argument\n"))
      assert.are_not.equal(0, r.status)
    end)

    it("rejects extra characters after a flag option", function()
      local r = run({ "-vx" })
      assert.is_true(contains(r.err, "unrecognized option '-vx'"))
      assert.are_not.equal(0, r.status)
    end)

    it("turns warnings on with -W", function()
      local r = run({ "-W", "-e", "warn('careful')" })
      assert.are.equal("Lua warning: careful\n", r.err)
      assert.are.equal(0, r.status)
    end)

    it("keeps warnings off without -W until warn('@on')", function()
      local r = run({ "-e", "warn('hidden') warn('@on') warn('shown')" })
      assert.are.equal("Lua warning: shown\n", r.err)
    end)
  end)

  describe("scripts and arguments", function()
    local show_args = [[
      local parts = {}
      for i = -3, #arg do parts[#parts + 1] = i .. "=" .. tostring(arg[i]) end
      print(table.concat(parts, " "))
      print("...", select("#", ...), ...)
    ]]

    it("runs a script that prints", function()
      local r = run({ temp_script("print('hello', 'world')") })
      assert.are.equal("hello\tworld\n", r.out)
      assert.are.equal("", r.err)
      assert.are.equal(0, r.status)
    end)

    it("puts the script at arg[0], its arguments after and options before", function()
      local script = temp_script(show_args)
      local r = run({ "-W", script, "a", "b" })
      assert.are.equal(("-3=nil -2=%s -1=-W 0=%s 1=a 2=b\n"):format(HOST, script)
                       .. "...\t2\ta\tb\n", r.out)
    end)

    it("puts the interpreter at arg[0] when there is no script", function()
      local r = run({ "-e", "print(arg[0], arg[1], #arg, arg[-1])" })
      assert.are.equal(HOST .. "\t-e\t2\tnil\n", r.out)
    end)

    it("stops handling options after --", function()
      local script = temp_script(show_args)
      local r = run({ "-e", "x = 1", "--", script, "-e", "-x" })
      assert.are.equal(("-3=-e -2=x = 1 -1=-- 0=%s 1=-e 2=-x\n"):format(script)
                       .. "...\t2\t-e\t-x\n", r.out)
      assert.are.equal(0, r.status)
    end)

    it("reads the script from stdin for -", function()
      local r = run({ "-", "one", "two" }, { stdin = show_args })
      assert.are.equal(("-3=nil -2=nil -1=%s 0=- 1=one 2=two\n"):format(HOST)
                       .. "...\t2\tone\ttwo\n", r.out)
      assert.are.equal(0, r.status)
    end)

    it("runs stdin as a script when given no arguments and stdin is not a tty", function()
      local r = run({}, { stdin = "print('from stdin')" })
      assert.are.equal("from stdin\n", r.out)
      assert.are.equal(0, r.status)
    end)

    it("fails with a message when the script cannot be opened", function()
      local r = run({ "/nonexistent/dir/script.lua" })
      assert.are.equal(HOST .. ": cannot open /nonexistent/dir/script.lua\n",
                       (r.err:gsub(": No such file or directory", "")))
      assert.are_not.equal(0, r.status)
    end)

    it("reports a syntax error in the script", function()
      local r = run({ temp_script("x = = 1") })
      assert.is_true(starts_with(r.err, HOST .. ": "))
      assert.is_true(contains(r.err, "unexpected symbol near '='"))
      assert.are_not.equal(0, r.status)
    end)
  end)

  describe("errors and exit status", function()
    it("fails with progname, message and traceback on an uncaught error", function()
      local r = run({ "-e", "error('boom')" })
      assert.is_true(starts_with(r.err, HOST .. ": (command line):1: boom\n"))
      assert.is_true(contains(r.err, "stack traceback:"))
      assert.are.equal(1, r.status)
    end)

    it("reports an error raised inside a script with its location", function()
      local script = temp_script("local function f() error('deep') end\nf()\n")
      local r = run({ script })
      assert.is_true(starts_with(r.err, HOST .. ": " .. script .. ":1: deep\n"))
      assert.is_true(contains(r.err, "stack traceback:"))
      assert.are.equal(1, r.status)
    end)

    it("uses __tostring to report an error object", function()
      local r = run({ "-e", [[
        error(setmetatable({}, { __tostring = function() return "custom error" end }))
      ]] })
      assert.are.equal(HOST .. ": custom error\n", r.err)
      assert.are.equal(1, r.status)
    end)

    it("names the type of an error object without __tostring", function()
      local r = run({ "-e", "error({})" })
      assert.is_true(starts_with(r.err, HOST .. ": (error object is a table value)\n"))
      assert.are.equal(1, r.status)
    end)

    it("stops at the first failing -e", function()
      local r = run({ "-e", "print(1)", "-e", "error('stop')", "-e", "print(3)" })
      assert.are.equal("1\n", r.out)
      assert.are.equal(1, r.status)
    end)

    it("exits with the status given to os.exit", function()
      assert.are.equal(3, run({ "-e", "os.exit(3)" }).status)
      assert.are.equal(0, run({ "-e", "os.exit(true)" }).status)
      assert.are.equal(1, run({ "-e", "os.exit(false)" }).status)
      local r = run({ "-e", "io.write('flushed') os.exit(0, true)" })
      assert.are.equal("flushed", r.out)
      assert.are.equal(0, r.status)
    end)

    it("turns SIGINT during a chunk into an 'interrupted!' error", function()
      -- the shell started by io.popen sends SIGINT to its parent, the host
      local r = run({ "-e", [[
        local p = io.popen("kill -INT $PPID")
        p:close()
        local x = 0
        for i = 1, 100 do x = x + i end
        print("not interrupted")
      ]] })
      assert.are.equal("", r.out)
      assert.is_true(starts_with(r.err, HOST .. ": "))
      assert.is_true(contains(r.err, "interrupted!"))
      assert.are.equal(1, r.status)
    end)
  end)

  describe("environment", function()
    it("runs LUA_INIT before the options", function()
      local r = run({ "-e", "print(x)" }, { env = { LUA_INIT = "x = 'from init'" } })
      assert.are.equal("from init\n", r.out)
    end)

    it("prefers LUA_INIT_5_4 over LUA_INIT", function()
      local r = run({ "-e", "print(x)" },
                    { env = { LUA_INIT = "x = 'plain'", LUA_INIT_5_4 = "x = 'versioned'" } })
      assert.are.equal("versioned\n", r.out)
    end)

    it("runs the file named by LUA_INIT=@file", function()
      local init = temp_script("print('init file ran')")
      local r = run({ "-e", "print('then -e')" }, { env = { LUA_INIT = "@" .. init } })
      assert.are.equal("init file ran\nthen -e\n", r.out)
    end)

    it("fails when LUA_INIT raises an error", function()
      local r = run({ "-e", "print('not reached')" }, { env = { LUA_INIT = "error('bad init')" } })
      assert.are.equal("", r.out)
      assert.is_true(starts_with(r.err, HOST .. ": LUA_INIT:1: bad init\n"))
      assert.are.equal(1, r.status)
    end)

    it("skips LUA_INIT under -E", function()
      local r = run({ "-E", "-e", "print(x)" },
                    { env = { LUA_INIT = "x = 1", LUA_INIT_5_4 = "x = 2" } })
      assert.are.equal("nil\n", r.out)
    end)

    it("ignores LUA_PATH and LUA_CPATH under -E", function()
      local code = "print(package.path, package.cpath, debug.getregistry().LUA_NOENV)"
      local env = { LUA_PATH = "/from/env/?.lua", LUA_CPATH = "/from/env/?.so" }
      local with_env = run({ "-e", code }, { env = env })
      assert.are.equal("/from/env/?.lua\t/from/env/?.so\tnil\n", with_env.out)
      local without = run({ "-E", "-e", code }, { env = env })
      assert.is_false(contains(without.out, "/from/env/"))
      assert.is_truthy(without.out:match("\ttrue\n$"))
    end)
  end)

  describe("interactive mode", function()
    it("runs lines from piped stdin with -i", function()
      local r = run({ "-i" }, { stdin = "print(1+1)\n" })
      assert.is_true(contains(r.out, "2\n"))
      assert.is_truthy(r.out:match("^Lua 5%.4"))
      assert.are.equal(0, r.status)
    end)

    it("prints the values of expressions", function()
      local r = run({ "-i" }, { stdin = "6 * 7\n'a' .. 'b', nil, 3\n" })
      assert.is_true(contains(r.out, "> 6 * 7\n42\n"))
      assert.is_true(contains(r.out, "> 'a' .. 'b', nil, 3\nab\tnil\t3\n"))
    end)

    it("continues a statement over several lines", function()
      local r = run({ "-i" }, { stdin = "x =\n20\nprint(x + 1)\n" })
      assert.is_true(contains(r.out, ">> "))
      assert.is_true(contains(r.out, "21\n"))
    end)

    it("uses _PROMPT and _PROMPT2", function()
      local r = run({ "-i" }, { stdin = "_PROMPT = 'P1: ' _PROMPT2 = 'P2: '\ny =\n1\n" })
      assert.is_true(contains(r.out, "P1: y =\nP2: 1\nP1: "))
    end)

    it("reports errors without the program name and keeps going", function()
      local r = run({ "-i" }, { stdin = "error('oops')\nprint('still here')\n" })
      assert.is_true(starts_with(r.err, "stdin:1: oops\n"))
      assert.is_true(contains(r.err, "stack traceback:"))
      assert.is_true(contains(r.out, "still here\n"))
      assert.are.equal(0, r.status)
    end)

    it("reports a statement that the input ends inside of, as a syntax error", function()
      local r = run({ "-i" }, { stdin = "for i = 1, 3 do\n" })
      assert.is_true(starts_with(r.err, "stdin:1: 'end' expected near <eof>\n"))
      assert.are.equal(0, r.status)
    end)

    it("echoes each piped line after its prompt, as lua5.4 does", function()
      local r = run({ "-i" }, { stdin = "x =\n20\nprint(x + 1)\nerror('e')\nx" })
      assert.are.equal(run({ "-v" }).out .. "> x =\n>> 20\n> print(x + 1)\n21\n> error('e')\n> x\n20\n> \n",
                       r.out)
    end)

    it("gives the output lua5.4 gives for the same piped input", function()
      if os.execute("command -v lua5.4 >/dev/null") ~= true then
        pending("no lua5.4 to compare with")
        return
      end
      local input = write_file(tempname(), "_PROMPT = 'P:'\nfor i = 1, 2 do\nprint(i)\nend\n= 6 * 7\nbad bad\n")
      local function output(interpreter)
        local p = io.popen(("unset LUA_INIT LUA_INIT_5_4; %s -i < %s 2>&1"):format(quote(interpreter), quote(input)))
        local text = p:read("a")
        p:close()
        return text
      end
      assert.are.equal(output("lua5.4"), output(HOST))
    end)

    it("keeps a line that holds a NUL apart from the next line", function()
      local r = run({ "-i" }, { stdin = "print(1)\0junk\nprint(2)\n" })
      assert.is_true(starts_with(r.err, "stdin:1: unexpected symbol"))
      assert.is_false(contains(r.out, "\n1\n"))
      assert.is_true(contains(r.out, "> print(2)\n2\n"))
    end)

    -- script(1) runs the host on a terminal, fed from a FIFO one step at a
    -- time: each step's input is sent once the output shows what the step
    -- waits for. Returns all the terminal showed once the host has ended.
    local function on_terminal(steps)
      local fifo, out, ended = tempname(".in"), tempname(".out"), tempname(".ended")
      local function wait_for(done)
        local deadline = par.now() + 10
        while not done() and par.now() < deadline do par.sleep(0.02) end
      end
      assert(os.execute("mkfifo " .. quote(fifo)))
      assert(os.execute(("(script -qfec %s %s < %s > /dev/null 2>&1; touch %s) &"):format(
        quote(HOST .. " -i"), quote(out), quote(fifo), quote(ended))))
      -- opened for reading too, so that a write after the host is gone
      -- (a failing host) is not a SIGPIPE that ends the test run
      local input = assert(io.open(fifo, "r+"))
      for _, step in ipairs(steps) do
        wait_for(function() return contains(read_file(out) or "", step.after) end)
        input:write(step.send)
        input:flush()
      end
      input:close() -- the end of input ends the host
      wait_for(function() return read_file(ended) ~= nil end)
      return read_file(out)
    end

    it("reports a statement that Ctrl-D ends at a terminal, and goes on", function()
      local out = on_terminal({
        {after = "> ", send = "for i = 1, 3 do\n"},
        {after = ">> ", send = "\4"},
        {after = "<eof>", send = 'print("al" .. "ive")\n'},
        {after = "alive", send = ""},
      })
      assert.is_true(contains(out, "stdin:1: 'end' expected near <eof>"), out)
      assert.is_true(contains(out, "alive\r\n"), out)
    end)

    it("edits lines at a terminal: the up arrow brings back the last statement", function()
      local out = on_terminal({
        {after = "> ", send = "1 + 41\n"},
        {after = "42", send = "\27[A\n"},
      })
      local _, answers = out:gsub("42\r\n", "")
      assert.are.equal(2, answers, out)
    end)

    it("enters the loop after running the script and options", function()
      local script = temp_script("y = 'from script'")
      local r = run({ "-i", "-e", "x = 'from -e'", script }, { stdin = "print(x, y)\n" })
      assert.is_true(contains(r.out, "from -e\tfrom script\n"))
    end)
  end)

  -- Lua 5.4.4's own tests of the standalone interpreter; the folder is not
  -- in the repository (LUA_TESTES, or shared/ beside the clone).
  describe("Lua's testes/main.lua", function()
    local testes = os.getenv("LUA_TESTES") or "../shared/lua-5.4.4-testes"

    it("passes in full", function()
      if not read_file(testes .. "/main.lua") then
        pending("no " .. testes .. "/main.lua (set LUA_TESTES to Lua 5.4.4's testes folder)")
        return
      end
      local host = HOST:sub(1, 1) == "/" and HOST or assert(os.getenv("PWD")) .. "/" .. HOST
      local log = tempname()
      local ok = os.execute(("cd %s && unset LUA_INIT LUA_INIT_5_4 && %s main.lua > %s 2>&1 < /dev/null")
        :format(quote(testes), quote(host), quote(log)))
      local out = read_file(log)
      assert.is_true(ok, out)
      assert.is_truthy(out:find("\nOK\n$"), out)
    end)
  end)

  describe("memory", function()
    -- Transparent huge pages when the system allows them on request, and
    -- MADV_COLLAPSE (Linux 6.1) to fold the head malloc writes first.
    local function huge_pages_on_request()
      local f = io.open("/sys/kernel/mm/transparent_hugepage/enabled")
      local setting = f and f:read("a") or ""
      if f then f:close() end
      local p = io.popen("uname -r")
      local major, minor = p:read("a"):match("^(%d+)%.(%d+)")
      p:close()
      local new_enough = tonumber(major) > 6 or (tonumber(major) == 6 and tonumber(minor) >= 1)
      return new_enough and (setting:find("%[madvise%]") or setting:find("%[always%]")) ~= nil
    end
    local on_huge_pages = huge_pages_on_request() and it or pending

    on_huge_pages("keeps a heap grown to 400 MB on huge pages, the head of every step too", function()
      local r = run({ "-e", [[
        local data = {}
        for i = 1, 4000000 do data[i] = {i} end
        local rss, huge, in_heap = 0, 0, false
        for line in io.lines("/proc/self/smaps") do
          if line:find("^%x+%-%x+ ") then in_heap = line:find("%[heap%]") ~= nil end
          if in_heap then
            rss = rss + tonumber(line:match("^Rss:%s*(%d+)") or 0)
            huge = huge + tonumber(line:match("^AnonHugePages:%s*(%d+)") or 0)
          end
        end
        print(rss // 1024, (rss - huge) // 1024)
      ]] })
      local rss, small = r.out:match("^(%d+)\t(%d+)\n$")
      assert.is_true(tonumber(rss) >= 300, r.out .. r.err)
      -- one huge page at the start and the one being filled at the end; on
      -- 4 KiB pages were 2 MiB of every 64 MiB step as well
      assert.is_true(tonumber(small) <= 5, "MB of the heap on 4 KiB pages: " .. r.out)
    end)
  end)

  describe("libraries", function()
    it("has par as a global table", function()
      local r = run({ "-e", "print(type(par), type(require('par')))" })
      assert.are.equal("table\ttable\n", r.out)
      assert.are.equal(0, r.status)
    end)

    it("can require cjson through package.cpath", function()
      local r = run({ "-e", "print(require('cjson').encode({ 1, 2 }))" })
      assert.are.equal("[1,2]\n", r.out)
      assert.are.equal(0, r.status)
    end)

    it("opens the standard libraries", function()
      local r = run({ "-e", "print(type(io), type(os), type(debug), type(utf8), _VERSION)" })
      assert.are.equal("table\ttable\ttable\ttable\tLua 5.4\n", r.out)
    end)
  end)
end)

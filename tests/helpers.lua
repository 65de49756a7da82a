-- Shared by the specs: the par module whichever interpreter runs them,
-- and small probes of this process's descriptors and children.
local helpers = {}

helpers.par = require "par"

-- Number of open file descriptors of this process (lfs comes with busted;
-- its directory handle counts, the same every time).
function helpers.fd_count()
  local lfs = require "lfs"
  local n = 0
  for name in lfs.dir("/proc/self/fd") do
    if name ~= "." and name ~= ".." then n = n + 1 end
  end
  return n
end

-- Number of live child processes of this process (zombies included).
-- Lines of /proc/self/maps: one per mapping of this process.
function helpers.mapping_count()
  local n = 0
  for _ in io.lines("/proc/" .. helpers.par.pid() .. "/maps") do n = n + 1 end
  return n
end

-- The error a function raises (nil if it returns).
function helpers.error_of(fn, ...)
  local ok, err = pcall(fn, ...)
  if not ok then return err end
end

function helpers.child_count()
  local f = io.open("/proc/" .. helpers.par.pid() .. "/task/" .. helpers.par.pid() .. "/children")
  local s = f and f:read("a") or ""
  if f then f:close() end
  local n = 0
  for _ in s:gmatch("%d+") do n = n + 1 end
  return n
end

-- The state of process pid as /proc shows it: "R" running, "S" asleep in
-- a wait, "D" in the kernel, "Z" ended; nil once there is no such process.
function helpers.process_state(pid)
  local stat = helpers.read_file("/proc/" .. pid .. "/stat")
  return stat and stat:match(".*%) (%u)") -- the name in parentheses may hold ") "
end

-- Waits until process pid is asleep (state S): blocked in a wait, as a
-- test wants before it wakes that wait or signals it. Tests know what the
-- process does meanwhile (it told them it started, and has nothing left to
-- block on but that wait). Looks every 2 ms for up to 'seconds' (10 by
-- default); returns whether it saw it asleep (false too once it ended).
function helpers.wait_until_asleep(pid, seconds)
  local deadline = helpers.par.now() + (seconds or 10)
  while true do
    local state = helpers.process_state(pid)
    if state == "S" then return true end
    if state == nil or state == "Z" or helpers.par.now() >= deadline then return false end
    helpers.par.sleep(0.002)
  end
end

-- The whole of a file, or nil when it cannot be read.
function helpers.read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local text = f:read("a")
  f:close()
  return text
end

-- Writes text to a file (replacing it) and returns its path.
function helpers.write_file(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  return path
end

-- The list {1, 2, ..., n}.
function helpers.range(n)
  local list = {}
  for i = 1, n do list[i] = i end
  return list
end

-- s quoted for a shell command line.
function helpers.quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- The interpreter running the specs (the Makefile says which), for subprocesses.
helpers.interpreter = os.getenv("PARLUA_LUA") or "lua5.4"

-- Collects garbage until no finalizer is left to run, so queues and
-- processes dropped by earlier tests are gone before a count.
function helpers.settle()
  collectgarbage()
  collectgarbage()
end

-- Runs a Lua snippet in a fresh interpreter like the one running the specs,
-- in the current directory (the snippet may require "tests.helpers"), with
-- the variables of 'env' (such as "PARLUA_WORKERS=4") if given; returns its
-- exit status, stdout and stderr.
function helpers.run_lua(code, env)
  local script = os.tmpname()
  local errfile = os.tmpname()
  helpers.write_file(script, code)
  local interp = helpers.interpreter
  local cmd = ("%s LUA_CPATH='build/?.so;;' %s %s 2>%s"):format(env or "", interp, script, errfile)
  local p = io.popen(cmd)
  local out = p:read("a")
  local _, _, status = p:close()
  local err = helpers.read_file(errfile)
  os.remove(script)
  os.remove(errfile)
  return status, out, err
end

return helpers

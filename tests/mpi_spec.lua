-- par.map across the ranks of an MPI job: tests/mpi/*.lua under
-- mpirun --oversubscribe -n 3 build/parlua-mpi (pending without Open MPI).
local function have(cmd) return os.execute("command -v " .. cmd .. " >/dev/null 2>&1") end
local runnable = have("mpirun") and io.open("build/parlua-mpi") ~= nil

-- Runs script under 3 ranks; returns stdout, stderr, exit status.
local function mpirun(script, env)
  local err = os.tmpname()
  local cmd = ("OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 %s timeout 120 " ..
    "mpirun --oversubscribe -n 3 build/parlua-mpi %s 2>%s"):format(env or "", script, err)
  local p = io.popen(cmd)
  local out = p:read("a")
  local _, _, status = p:close()
  local f = io.open(err)
  local errtext = f:read("a")
  f:close()
  os.remove(err)
  return out, errtext, status
end

local function lines(text)
  local t = {}
  for line in text:gmatch("[^\n]+") do t[#t + 1] = line end
  table.sort(t)
  return t
end

local describe_mpi = runnable and describe or pending

describe_mpi("par.map under MPI", function()
  it("gives every rank the results in order and exact, computed on every rank", function()
    local out = mpirun("tests/mpi/order.lua", "PARLUA_MPI_OUTPUT=all")
    assert.same({"[rank 1] rank 1 ok 3 ranks computed", "[rank 2] rank 2 ok 3 ranks computed",
                 "rank 0 ok 3 ranks computed"}, lines(out))
  end)

  it("hands out ranges dynamically: a rank with slow items takes fewer", function()
    local n0, n1, n2 = mpirun("tests/mpi/balance.lua"):match("(%d+)%s+(%d+)%s+(%d+)")
    n0, n1, n2 = tonumber(n0), tonumber(n1), tonumber(n2)
    assert.equal(120, n0 + n1 + n2)
    assert.is_true(n1 < n0 and n1 < n2)
  end)

  it("raises an item's error on every rank, and collects errors across ranks", function()
    local out = mpirun("tests/mpi/errors.lua", "PARLUA_MPI_OUTPUT=all")
    for r = 0, 2 do
      local p = r == 0 and "" or ("%%[rank %d%%] "):format(r)
      assert.matches(p .. r .. "\tfalse\t37\terror\ttrue\t[^\n]*boom 37\ttrue", out)
      assert.matches(p .. r .. "\t19\tnil\tc20\tc40\t60\ttrue\ttrue", out)
    end
  end)

  it("delivers results to the root only with gather = \"root\", errors to every rank", function()
    local out = mpirun("tests/mpi/gather.lua", "PARLUA_MPI_OUTPUT=all")
    assert.same({"0\t50\t2500", "0\tfalse\t33\tg", "[rank 1] 1\tfalse\t33\tg", "[rank 1] 1\tnil\tnil",
                 "[rank 2] 2\tfalse\t33\tg", "[rank 2] 2\tnil\tnil"}, lines(out))
  end)

  it("frees the block that gathered results of many MiB: ten such maps leave memory flat", function()
    local out = mpirun("tests/mpi/big_gather.lua", "PARLUA_MPI_OUTPUT=all")
    local ranks = 0
    for rank, grew in out:gmatch("(%d) grew (%-?%d+) MiB") do
      ranks = ranks + 1
      assert.is_true(tonumber(grew) < 40, ("rank %s grew %s MiB"):format(rank, grew))
    end
    assert.equal(3, ranks)
  end)

  it("raises kind \"mismatch\" naming the rank that reached the call with other items", function()
    local out = mpirun("tests/mpi/mismatch.lua", "PARLUA_MPI_OUTPUT=all")
    for r = 0, 2 do
      local p = r == 0 and "" or ("[rank %d] "):format(r)
      assert.matches(p .. r .. "\tfalse\tmismatch\t1\n", out, 1, true)
      assert.matches(p .. r .. "\ttrue\ttable", out, 1, true)
    end
  end)

  it("raises \"mismatch\" when a rank maps an empty list alone, or skips a call and ends: never a hang", function()
    local out, _, status = mpirun("tests/mpi/skipped.lua", "PARLUA_MPI_OUTPUT=all")
    assert.equal(0, status)
    assert.same({"0\tempty\tfalse\tmismatch\t2", "0\tskipped\t1\tfalse\tmismatch\t1",
                 "0\tskipped\t2\tfalse\tmismatch\t1", "[rank 1] 1\tempty\tfalse\tmismatch\t2",
                 "[rank 2] 2\tempty\tfalse\tmismatch\t2", "[rank 2] 2\tskipped\t1\tfalse\tmismatch\t1",
                 "[rank 2] 2\tskipped\t2\tfalse\tmismatch\t1"}, lines(out))
  end)

  it("silences ranks other than 0, and shows them prefixed with PARLUA_MPI_OUTPUT=all", function()
    local out, err = mpirun("tests/mpi/silence.lua")
    assert.same({"out from rank 0", "worker of rank 0", "worker of rank 0"}, {lines(out)[1], lines(out)[2], lines(out)[3]})
    assert.not_matches("rank [12]", out)
    assert.matches("err from rank 0", err)
    assert.not_matches("err from rank [12]", err)
    out, err = mpirun("tests/mpi/silence.lua", "PARLUA_MPI_OUTPUT=all")
    assert.matches("[rank 2] out from rank 2", out, 1, true)
    assert.matches("[rank 1] worker of rank 1", out, 1, true)
    assert.matches("[rank 1] err from rank 1", err, 1, true)
  end)

  it("ends the job with an error naming a killed rank and its unfinished items, leaving no process", function()
    -- 3 s between the launcher's SIGTERM and its SIGKILL (1 s by default): time for rank 0 to report on a busy machine
    local out, err, status = mpirun("tests/mpi/killed.lua", "OMPI_MCA_odls_base_sigkill_timeout=3")
    assert.not_equal(0, status)
    assert.not_matches("not reached", out)
    -- the root names rank 1 unless the launcher's SIGTERM came between two of its waits
    local named = err:match("par.map: rank: the job was ended[^\n]*rank 1 17%-32")
    assert.is_truthy(named or err:match("rank 0 ended by SIGTERM"))
    assert.is_nil(io.popen("pgrep -f 'parlua-mp[i] tests/mpi/killed'"):read("l"))
  end)

  it("leaves no process behind when mpirun gets Ctrl-C (SIGINT)", function()
    local script = "tests/mpi/sleepy.lua"
    assert.is_true(os.execute(("OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 " ..
      "setsid mpirun --oversubscribe -n 3 build/parlua-mpi %s >/dev/null 2>&1 & " ..
      "for i in $(seq 100); do [ $(pgrep -f 'parlua-mp[i] %s' | wc -l) -ge 9 ] && break; sleep 0.1; done; " ..
      "kill -INT $!; wait $!; sleep 1"):format(script, script)))
    assert.is_nil(io.popen("pgrep -f 'parlua-mp[i] tests/mpi/sleepy'"):read("l"))
  end)

  it("gives every example the same standard output as without MPI", function()
    local function normal(text) return (text:gsub("%d+%.%d+", "N")) end
    for _, name in ipairs({"quickstart", "primes", "wordfreq", "pipeline"}) do
      local script = "examples/" .. name .. ".lua"
      local p = io.popen("build/parlua " .. script)
      local alone = p:read("a")
      p:close()
      assert.equal(normal(alone), normal((mpirun(script))))
    end
  end)
end)

describe("par.rank, par.size and opts.gather without MPI", function()
  local par = require("tests.helpers").par

  it("are one rank, rank 0, the root", function()
    assert.equal(0, par.rank())
    assert.equal(1, par.size())
    assert.is_true(par.is_root())
  end)

  it("takes gather = \"all\" or \"root\", both giving every result on one rank", function()
    assert.same({2, 4}, par.map(function(x) return 2 * x end, {1, 2}, {gather = "root"}))
    assert.same({2, 4}, par.map(function(x) return 2 * x end, {1, 2}, {gather = "all"}))
    assert.has_error(function() par.map(print, {1}, {gather = "some"}) end,
      "bad argument #3 to 'map' (option 'gather' must be \"all\" or \"root\" (got some))")
  end)
end)

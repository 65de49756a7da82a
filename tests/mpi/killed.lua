-- Rank 1 is killed with kill -9 in the middle of a map: the job ends with an error naming it.
local items = {}
for i = 1, 200 do items[i] = i end
local rank_pid = par.pid()
par.map(function(x)
  if par.rank() == 1 and x > 20 then os.execute("kill -9 " .. rank_pid) end
  par.sleep(0.01)
  return x
end, items, {workers = 1})
print("not reached")

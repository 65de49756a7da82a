-- A long map of sleeping items, for the Ctrl-C test: 3 ranks of 2 workers.
local items = {}
for i = 1, 100 do items[i] = i end
par.map(function(x) par.sleep(0.2) return x end, items, {workers = 2})

-- Ranks that do not make the same calls: rank 2 alone maps an empty list,
-- then rank 1 skips a map and ends its script. The others raise kind
-- "mismatch" naming the rank each time, and nothing waits for ever.
local items = par.rank() == 2 and {} or {1, 2}
local ok, e = pcall(par.map, function(x) return x end, items)
print(par.rank(), "empty", ok, e.kind, e.rank)
if par.rank() ~= 1 then
  for call = 1, 2 do -- the second call raises at once: rank 1 is gone
    ok, e = pcall(par.map, function(x) return x end, {1, 2, 3})
    print(par.rank(), "skipped", call, ok, e.kind, e.rank)
  end
end

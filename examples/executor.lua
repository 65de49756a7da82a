-- The ProcessPoolExecutor tutorial, ported: which of some large numbers
-- are prime, checked by warm workers, first with pool:map (executor.map),
-- then with submit and as_completed, printing each as it finishes.
-- Run: build/parlua examples/executor.lua
local par = require "par"

local NUMBERS = {
  112272535095293, 112582705942171, 112272535095293,
  115280095190773, 115797848077099, 1099726899285419,
}

-- Trial division by odd numbers up to the square root.
local function is_prime(n)
  if n < 2 then return false end
  if n % 2 == 0 then return n == 2 end
  for d = 3, math.floor(math.sqrt(n)), 2 do
    if n % d == 0 then return false end
  end
  return true
end

local pool <close> = par.pool() -- as many workers as CPUs; closed and joined at the end

-- executor.map: results in order
local primes = pool:map(is_prime, NUMBERS, {chunk = 1})
for i, n in ipairs(NUMBERS) do
  print(("%d is prime: %s"):format(n, tostring(primes[i])))
end

-- executor.submit + as_completed: each as soon as it is known
local futures, number_of = {}, {}
for i, n in ipairs(NUMBERS) do
  futures[i] = pool:submit(is_prime, n)
  number_of[futures[i]] = n
end
for f in par.as_completed(futures) do
  print(("finished: %d is prime: %s"):format(number_of[f], tostring(f:result())))
end

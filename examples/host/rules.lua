-- The rules of examples/host/batch: review(order) judges one order in a
-- par.map worker and returns {verdict = "accept" | "hold" | "refuse",
-- reason = text or nil}. 'host' and 'limits' are the C program's.

-- One order in 8, chosen by a digest of its id, is held for a person to see.
local function sampled(order)
  return host.digest(order.id) % 8 == 0
end

function review(order)
  local limit = limits:of(order.country)
  if limit == nil then
    return {verdict = "refuse", reason = "no shipping to " .. order.country}
  end
  if order.amount > limit then
    host.audit(("%s over the %s limit: %.2f > %.2f"):format(order.id, order.country, order.amount, limit))
    return {verdict = "hold", reason = ("over the %s limit of %g"):format(order.country, limit)}
  end
  if sampled(order) then
    host.audit(order.id .. " sampled")
    return {verdict = "hold", reason = "sampled for review"}
  end
  return {verdict = "accept"}
end

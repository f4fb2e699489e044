-- wrk script: GET /orders/{id} for random ids among the N orders that
-- bench/populate-orders wrote (wrk ... -- N), keep-alive.
local n = 1000

function init(args)
   if args[1] then n = tonumber(args[1]) end
   math.randomseed(os.time() + math.floor(os.clock() * 1e6))
end

function request()
   return wrk.format("GET", string.format("/orders/ord_00000000%018d", math.random(1, n)))
end


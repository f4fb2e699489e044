-- wrk script: like post-order.lua, but each wrk thread stops after N
-- answers (wrk ... -- N), for a fixed number of orders end to end.
dofile(debug.getinfo(1, "S").source:sub(2):match("(.*/)") .. "post-order.lua")

local limit = 1000
local answered = 0

function init(args)
   if args[1] then limit = tonumber(args[1]) end
end

function response(status, headers, body)
   answered = answered + 1
   if answered >= limit then wrk.thread:stop() end
end

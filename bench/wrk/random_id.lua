-- GET <prefix><random id in 1..max_id><suffix>: ids drawn over the whole table, not one hot row.
-- wrk -s random_id.lua <url> -- <prefix> <max_id> [suffix]
local threads = 0
local prefix, max_id, suffix

function setup(thread)
  threads = threads + 1
  thread:set("seed", os.time() * 100 + threads)
end

function init(args)
  prefix = args[1]
  max_id = tonumber(args[2])
  suffix = args[3] or ""
  math.randomseed(seed)
end

function request()
  return wrk.format("GET", prefix .. math.random(1, max_id) .. suffix)
end

function done(summary, latency, requests)
  io.write(string.format("BENCH non2xx=%d\n", summary.errors.status))
end

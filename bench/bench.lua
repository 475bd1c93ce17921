-- wrk script for `make bench`: every request carries the next token of a token file
-- (one token per line), so with a pool larger than the run no token repeats.
--   wrk ... -s bench/bench.lua URL -- TOKEN_FILE START_INDEX
-- done() prints one machine-readable line, `JWTBENCH key=value ...` (latencies in µs);
-- `wraps` > 0 means the run went past the end of the pool and reused tokens.
-- Globals, not locals: done() reads them from the (single) thread with thread:get().

tokens, n, idx, issued, wraps = {}, 0, 0, 0, 0
local threads = {}

function setup(thread)
   table.insert(threads, thread)
end

function init(args)
   for line in io.lines(args[1]) do
      if #line > 0 then
         n = n + 1
         tokens[n] = "Bearer " .. line
      end
   end
   idx = tonumber(args[2] or "0") % n
end

function request()
   idx = idx + 1
   if idx > n then
      idx = 1
      wraps = wraps + 1
   end
   issued = issued + 1
   return wrk.format("GET", "/", { ["Authorization"] = tokens[idx] })
end

function done(summary, latency, requests)
   local issued_all, wraps_all, pool = 0, 0, 0
   for _, t in ipairs(threads) do
      issued_all = issued_all + t:get("issued")
      wraps_all = wraps_all + t:get("wraps")
      pool = t:get("n")
   end
   local e = summary.errors
   io.write(string.format(
      "JWTBENCH requests=%d duration_us=%d status_errors=%d connect_errors=%d read_errors=%d"
         .. " write_errors=%d timeouts=%d p50_us=%d p99_us=%d mean_us=%.1f issued=%d wraps=%d pool=%d\n",
      summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
      latency:percentile(50), latency:percentile(99), latency.mean, issued_all, wraps_all, pool))
end

-- One MCP tools/call per request, the same body and headers on every connection. Counts failed calls
-- (non-200, a JSON-RPC error, or a tool error) and prints one machine-readable line at the end.
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY")
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
wrk.headers["MCP-Protocol-Version"] = os.getenv("BENCH_PROTOCOL_VERSION")
local token = os.getenv("BENCH_TOKEN")
if token ~= nil and token ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. token
end

local threads = {}
failures = 0
shed = 0
-- In the overload run a 503 with Retry-After is the answer expected for what cannot be served: counted apart,
-- and the next call waits as long as it says (wrk asks delay() before each call; one wait per shed answer).
local shed_expected = os.getenv("BENCH_OVERLOAD") == "1"
local waits = {}

if shed_expected then  -- only then: with delay() defined, wrk times every call through its timer
  function delay()
    return table.remove(waits) or 0
  end
end

function setup(thread)
  table.insert(threads, thread)
end

function response(status, headers, body)
  local retry_after = headers["retry-after"] or headers["Retry-After"]
  if shed_expected and status == 503 and retry_after then
    shed = shed + 1
    table.insert(waits, tonumber(retry_after) * 1000 * (1 + math.random() / 2))
  elseif status ~= 200 or string.find(body, '"isError":true', 1, true) or string.find(body, '"error":{', 1, true) then
    failures = failures + 1
  end
end

function done(summary, latency, requests)
  local failed, refused = 0, 0
  for _, thread in ipairs(threads) do
    failed = failed + thread:get("failures")
    refused = refused + thread:get("shed")
  end
  local errors = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d failed=%d shed=%d socket_errors=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, failed, refused, errors.connect + errors.read + errors.write + errors.timeout))
end

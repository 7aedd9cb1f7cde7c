-- wrk script: multipart PBX posts, as in the original's cURL examples.
-- Arguments (after --): mode (create|update), id prefix, counts file, margin.
-- create: every request is a new call with a unique pbx_call_id; done() writes how many
--         each thread sent, less `margin` (the requests still in flight when wrk stopped
--         may never have been created), to the counts file.
-- update: each thread moves its own calls (from the counts file) to `answered`, in order,
--         going round again (answered again) if it runs out.

local boundary = "----vatsbench7d1f0c2e"
local threads = {}

local function part(name, value)
  return "--" .. boundary .. "\r\n"
    .. "Content-Disposition: form-data; name=\"" .. name .. "\"\r\n\r\n"
    .. value .. "\r\n"
end

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

function init(args)
  mode = args[1] or "create"
  prefix = args[2] or "w"
  countsfile = args[3]
  margin = tonumber(args[4] or "0")
  n = 0
  limit = 0
  repeated = 0
  headers = { ["Content-Type"] = "multipart/form-data; boundary=" .. boundary }
  if mode == "update" and countsfile then
    local f = io.open(countsfile, "r")
    if f then
      for line in f:lines() do
        local t, c = line:match("^(%d+) (%d+)$")
        if tonumber(t) == tid then limit = tonumber(c) end
      end
      f:close()
    end
  end
end

function request()
  n = n + 1
  local i = n
  local body
  if mode == "update" then
    if limit > 0 then
      if n > limit then repeated = repeated + 1 end
      i = ((n - 1) % limit) + 1
    end
    body = part("action", "update_call")
      .. part("pbx_call_id", prefix .. "-" .. tid .. "-" .. i)
      .. part("call_status", "answered")
  else
    body = part("action", "create_call")
      .. part("direction", "outgoing")
      .. part("phone", "777777777")
      .. part("call_status", "ringing")
      .. part("comment", "start")
      .. part("pbx_call_id", prefix .. "-" .. tid .. "-" .. i)
  end
  body = body .. "--" .. boundary .. "--\r\n"
  return wrk.format("POST", nil, headers, body)
end

function done(summary, latency, requests)
  -- done() runs in the main state, where init() never ran: read the threads' settings.
  local mode = threads[1]:get("mode")
  local countsfile = threads[1]:get("countsfile")
  local margin = threads[1]:get("margin") or 0
  local total_repeated = 0
  if mode == "create" and countsfile then
    local f = io.open(countsfile, "w")
    for _, thread in ipairs(threads) do
      local sent = math.max(1, thread:get("n") - margin)
      f:write(thread:get("tid") .. " " .. sent .. "\n")
    end
    f:close()
  end
  for _, thread in ipairs(threads) do
    total_repeated = total_repeated + (thread:get("repeated") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "max_us": %d, '
      .. '"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d, "repeated": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, e.connect, e.read, e.write, e.status, e.timeout, total_repeated))
end

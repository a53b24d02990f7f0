-- wrk script for the soak: every request picks one of the prepared users at random
-- (lines of "<path>\t<header name>: <value>" in the file named by SOAK_REQUESTS).
local requests = {}

init = function(args)
  local file = assert(io.open(os.getenv("SOAK_REQUESTS"), "r"))
  for line in file:lines() do
    local path, name, value = line:match("^([^\t]+)\t([^:]+): (.+)$")
    if path then
      requests[#requests + 1] = wrk.format("GET", path, { [name] = value })
    end
  end
  file:close()
  math.randomseed(os.time() + tonumber(tostring(requests):match("0x(%x+)") or "0", 16) % 1000)
end

request = function()
  return requests[math.random(#requests)]
end

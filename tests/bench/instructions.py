"""Instructions per request, counted by callgrind (stable whatever the machine's load).

    instructions.py NAME PID URL [HEADER...]

The server runs under `valgrind --tool=callgrind` (pid PID). Sends WARMUP requests, zeroes the
counters, sends N requests on one keep-alive connection, dumps, and prints
{"name": NAME, "instructions_per_request": ...} as one JSON line.
"""
import glob
import http.client
import json
import os
import subprocess
import sys
import urllib.parse

WARMUP = int(os.environ.get("WARMUP", "200"))
N = int(os.environ.get("N", "1000"))


def send(conn, path, headers, count):
    statuses = set()
    for _ in range(count):
        conn.request("GET", path, headers=headers)
        res = conn.getresponse()
        res.read()
        statuses.add(res.status)
    return statuses


def main():
    name, pid, url = sys.argv[1], sys.argv[2], sys.argv[3]
    headers = dict(h.split(": ", 1) for h in sys.argv[4:])
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
    path = u.path + (f"?{u.query}" if u.query else "")
    send(conn, path, headers, WARMUP)
    subprocess.run(["callgrind_control", "--zero", pid], check=True, capture_output=True)
    statuses = send(conn, path, headers, N)
    subprocess.run(["callgrind_control", "--dump", pid], check=True, capture_output=True)
    dumps = sorted(glob.glob(f"callgrind.out.{pid}.*"), key=os.path.getmtime)
    total = None
    with open(dumps[-1]) as f:
        for line in f:
            if line.startswith(("summary:", "totals:")):
                total = int(line.split()[1])
    print(json.dumps({"name": name, "statuses": sorted(statuses), "requests": N,
                      "instructions_per_request": round(total / N)}), flush=True)


if __name__ == "__main__":
    main()

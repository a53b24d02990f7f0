"""Turn the raw benchmark outputs into one markdown table (stdout)."""

import datetime
import json
import os
import re
import statistics
import sys

work, runs, duration, connections, rss_start, rss_hot = sys.argv[1:7]
pinned = len(sys.argv) > 7 and sys.argv[7] != "shared"
runs = int(runs)


def to_ms(value):
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", value)
    if not m:
        return float("nan")
    n, unit = float(m.group(1)), m.group(2)
    return n / 1000 if unit == "us" else n * 1000 if unit == "s" else n


def wrk(name):
    rps, p50, p99 = [], [], []
    for i in range(1, runs + 1):
        text = open(os.path.join(work, f"wrk-{name}-{i}.txt")).read()
        rps.append(float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)))
        p50.append(to_ms(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1)))
        p99.append(to_ms(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1)))
        errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
        if errors:
            raise SystemExit(f"scenario {name} run {i}: {errors.group(1)} non-2xx responses")
    return statistics.median(rps), statistics.median(p50), statistics.median(p99), rps


names = {
    "a": "(a) ceiling: bare actix-web, same-size JSON",
    "b": "(b) /s3credentials, cached, bearer JWT",
    "c": "(c) /s3credentials, cached, session cookie",
    "d": "(d) /s3credentials, no cache (AssumeRole to moto every request)",
    "e": "(e) /s3/<bucket>/<key>, object link from a cached credential, bearer JWT",
}
results = {k: wrk(k) for k in names}
coalesce = json.load(open(os.path.join(work, "coalesce.json")))
memory = json.load(open(os.path.join(work, "memory.json")))
startup = json.load(open(os.path.join(work, "startup.json")))

a, b, c, d, e = (results[k][0] for k in "abcde")
lines = [
    f"# stsvend benchmarks",
    "",
    f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, "
    f"release build; wrk -t2 -c{connections} -d{duration}, median of {runs} runs; "
    + ("servers pinned to core 0, wrk to core 1 (taskset)" if pinned else "wrk and the servers share the cores")
    + "; stsvend logs JSON at info (an audit line per response) with metrics on.",
    "",
    "| scenario | requests/s | p50 ms | p99 ms | runs (req/s) |",
    "|---|---:|---:|---:|---|",
]
for k, label in names.items():
    rps, p50, p99, all_rps = results[k]
    lines.append(f"| {label} | {rps:,.0f} | {p50:.2f} | {p99:.2f} | {', '.join(f'{r:,.0f}' for r in all_rps)} |")
lines += [
    "",
    "| ratio | value | target |",
    "|---|---:|---:|",
    f"| b/a (bearer vs ceiling) | {b / a:.2f} | ≥ 0.85 |",
    f"| c/a (cookie vs ceiling) | {c / a:.2f} | ≥ 0.85 |",
    f"| b/d (cache vs TEA-style STS per request) | {b / d:.1f}x | |",
    f"| e/b (object link vs cached credential) | {e / b:.2f} | ≥ 0.8 |",
    f"| p99 of (b) | {results['b'][2]:.2f} ms | ≤ 2 ms |",
    f"| p99 of (b) / p99 of (a) | {results['b'][2] / results['a'][2]:.2f} | ≤ 1.5 |",
    "",
    "| other scenario | result | target |",
    "|---|---|---|",
    f"| {coalesce['requests']} concurrent first requests, one user | {coalesce['same_user']['assume_role_calls']} AssumeRole "
    f"({coalesce['same_user']['ok']} × 200, {coalesce['same_user']['seconds']:.2f} s) | exactly 1 |",
    f"| {coalesce['requests']} concurrent first requests, distinct users | {coalesce['distinct_users']['assume_role_calls']} AssumeRole "
    f"({coalesce['distinct_users']['ok']} × 200, {coalesce['distinct_users']['seconds']:.2f} s) | exactly {coalesce['requests']} |",
    f"| server RSS at start (0 cached users) | {int(rss_start) / 1024:.1f} MiB | |",
    f"| server RSS after the hot-path runs (1 cached user) | {int(rss_hot) / 1024:.1f} MiB | |",
    f"| memory per cached user ({memory['users']:,} users) | {memory['kib_per_user']:.2f} KiB "
    f"(RSS {memory['rss_before_kib'] / 1024:.1f} → {memory['rss_after_kib'] / 1024:.1f} MiB) | ≤ 4 KiB |",
    f"| start-up to /readyz 200, IdP up | median {startup['median_ms']:.0f} ms (runs: {', '.join(f'{t:.0f}' for t in startup['runs_ms'])}) | |",
    "",
    f"Memory per user is measured through the library API: {memory['method']}.",
]
instr_path = os.path.join(work, "instructions.jsonl")
if os.path.exists(instr_path):
    counts = {r["name"]: r for r in map(json.loads, open(instr_path))}
    ceiling = counts["ceiling"]["instructions_per_request"]
    lines += [
        "",
        "Instructions per request (valgrind --tool=callgrind, one worker, one keep-alive "
        f"connection, {counts['ceiling']['requests']} requests after a warm-up; independent of load):",
        "",
        "| request | instructions | × ceiling | target |",
        "|---|---:|---:|---:|",
    ]
    for name, label, target in [
        ("ceiling", "(a) ceiling", ""),
        ("bearer", "(b) cached, bearer JWT", "≤ 1.5"),
        ("ticket", "(t) cached, ticket", ""),
        ("cookie", "(c) cached, session cookie", ""),
        ("link", "(e) object link, cached credential, bearer JWT", ""),
        ("error-401", "401, no credentials", "≤ 1.3"),
        ("routed", "target routed to the second archive, cached", ""),
        ("bundle-2", "bundle of two archives, cached", "≤ 2 × (b)"),
    ]:
        if name not in counts:
            continue
        n = counts[name]["instructions_per_request"]
        lines.append(f"| {label} | {n:,} | {n / ceiling:.2f} | {target} |")
    if "bundle-2" in counts:
        ratio = counts["bundle-2"]["instructions_per_request"] / counts["bearer"]["instructions_per_request"]
        lines.append(f"\nA cached bundle of two archives costs {ratio:.2f} × a cached credential (target ≤ 2).")
print("\n".join(lines))

#!/usr/bin/env bash
# The governed-overhead benchmark. One command:
#
#   bench/overhead.sh [--rates "500 2000 5000"] [--duration 10] [--max "2000 4000 ..."]
#                     [--halt-poll NS]
#
# Starts the fast mock upstream (flowgate-mock-upstream: a fixed OpenAI answer or stream) and
# drives, with flowgate-loadgen (open loop at fixed rates over 32 keep-alive connections,
# 2 s warm-up; then closed loop over one connection), four paths:
#   direct    straight to the mock;
#   auth      flowgate with nothing but key authentication (tenant preset "none", no rules,
#             [audit] enabled = false; admission still runs with a limit far above the load);
#   governed  flowgate with everything on: authentication, in-process limits, the `default`
#             policy preset screening the prompt and the answer, the audit log with a
#             request record made durable (SQLite WAL commit) before each answer plus a
#             completion record, metrics;
#   governed-stream  the same with streamed answers (screened chunk by chunk);
#   auth-poll, governed-poll  auth and governed with `[server] busy_poll_us = 2000` (the
#             gateway keeps polling for I/O for 2 ms after each request instead of letting its
#             vCPU halt), at the fixed rates and concurrency 1;
#   and, for reference, hop: straight to a second mock pinned to the gateway's CPU, i.e. what
#   one round trip to a process on the other CPU costs on this machine (the gateway path
#   makes two: client -> gateway, gateway -> mock), measured in the same run.
# Then, per path, the highest rate it keeps (the --max ladder, 5 s per step): >= 99.9 %
# successful answers, >= 95 % of the target rate, and p99 from schedule <= 50 ms. Overhead = path minus direct at the same percentile. Both flowgate
# builds are the same release binary; the two configurations run one after the other.
#
# With FLOWGATE_REDIS_URL set (e.g. redis://127.0.0.1:6379) both gateways take their limits
# through Redis (one script round trip per admission) instead of in process. With
# BENCH_POSTGRES_URL set (e.g. postgres://root@127.0.0.1:5432/test) each gateway keeps its
# state and audit log in PostgreSQL, in a fresh schema created (and dropped) with psql.
#
# --halt-poll NS sets the guest's halt polling (cpuidle-haltpoll's guest_halt_poll_ns: an idle
# vCPU polls up to NS before it halts; the kernel's default is 200000) for the whole run and
# restores the machine's value at exit. It applies to every path, direct included. The table's
# header line names the setting each run had.
#
# CPU pinning on the 2-core machine: the gateway alone on CPU 1 (`taskset -c 1`), the mock
# and the load generator together on CPU 0. Prints a Markdown table, RSS (idle after start,
# peak at the end) per gateway, and writes the raw JSON under bench/results/.
set -euo pipefail
cd "$(dirname "$0")/.."

rates="500 2000 5000"
duration=10
ladder="2000 4000 6000 8000 10000 12000"
halt_poll=""
halt_param=/sys/module/haltpoll/parameters/guest_halt_poll_ns
while [ $# -gt 0 ]; do
  case "$1" in
    --rates) rates="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    --max) ladder="$2"; shift 2 ;;
    --halt-poll) halt_poll="$2"; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done

cargo build --release -p flowgate-cli -p flowgate-test-support --bins >&2
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
bin="$target_dir/release"
work="$(mktemp -d)"
results="bench/results"
mkdir -p "$results"
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
out="$results/overhead-$stamp.json"
pids=()
schemas=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for schema in "${schemas[@]}"; do psql -q "$BENCH_POSTGRES_URL" -c "DROP SCHEMA $schema CASCADE" >/dev/null 2>&1 || true; done
  rm -rf "$work"
  if [ -n "${saved_halt_poll:-}" ]; then echo "$saved_halt_poll" > "$halt_param"; fi
}
trap cleanup EXIT

if [ -n "$halt_poll" ]; then
  if [ ! -w "$halt_param" ]; then
    echo "--halt-poll needs the cpuidle-haltpoll driver and root: $halt_param is not writable" >&2
    exit 2
  fi
  saved_halt_poll="$(cat "$halt_param")"
  echo "$halt_poll" > "$halt_param"
fi
idle_driver="$(cat /sys/devices/system/cpu/cpuidle/current_driver 2>/dev/null || echo none)"
if [ -r "$halt_param" ]; then idle_driver="$idle_driver, guest_halt_poll_ns $(cat "$halt_param")"; fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }

mock_port=$(free_port)
taskset -c 0 "$bin/flowgate-mock-upstream" --listen "127.0.0.1:$mock_port" --threads 1 & pids+=($!)
wait_port "$mock_port"

admin_key="fga_$(python3 -c 'import secrets; print(secrets.token_hex(24))')"
export FLOWGATE_MASTER_KEY="$("$bin/flowgate" gen-master-key)"
export FLOWGATE_ADMIN_API_KEY="$admin_key"
export FLOWGATE_LOG_LEVEL=warn

body='{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"What is the capital of France? Answer in one sentence."}],"temperature":0.2,"max_tokens":64}'
stream_body='{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"What is the capital of France? Answer in one sentence."}],"temperature":0.2,"max_tokens":64}'

load() { # url rate connections body [header] -> JSON line
  local url="$1" rate="$2" connections="$3" payload="$4"; shift 4
  taskset -c 0 "$bin/flowgate-loadgen" --url "$url" --rate "$rate" --connections "$connections" \
    --duration "$duration" --warmup 2 --body "$payload" "$@"
}

load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
# What one wake-up across the two CPUs costs on this machine: a pipe round trip between two
# processes pinned to CPU 0 and CPU 1, against both on CPU 0 (microseconds, 20,000 trips).
pipe_round_trip() { # cpu_a cpu_b
  python3 - "$1" "$2" <<'PY'
import os, sys, time
a, b, n = int(sys.argv[1]), int(sys.argv[2]), 20000
r1, w1 = os.pipe(); r2, w2 = os.pipe()
pid = os.fork()
if pid == 0:
    os.sched_setaffinity(0, {b})
    for _ in range(n + 1):
        os.read(r1, 1); os.write(w2, b"x")
    os._exit(0)
os.sched_setaffinity(0, {a})
os.write(w1, b"x"); os.read(r2, 1)
start = time.perf_counter()
for _ in range(n):
    os.write(w1, b"x"); os.read(r2, 1)
elapsed = time.perf_counter() - start
os.waitpid(pid, 0)
print(f"{elapsed / n * 1e6:.1f}")
PY
}
round_trips="pipe round trip between CPU 0 and CPU 1: $(pipe_round_trip 0 1) us, within CPU 0: $(pipe_round_trip 0 0) us"
echo "[" > "$out"
first=1
emit() { if [ $first -eq 0 ]; then echo "," >> "$out"; fi; first=0; echo "{\"scenario\":\"$1\",\"result\":$2}" >> "$out"; }

# The highest ladder rate kept: >= 99.9 % success, >= 95 % of the target rate, and p99 from
# each request's scheduled time <= 50 ms (a server that queues requests does not keep up).
max_rate() { # label url body [header]
  local label="$1" url="$2" payload="$3"; shift 3
  local kept=0
  for rate in $ladder; do
    local saved=$duration; duration=5
    local r; r=$(load "$url" "$rate" 64 "$payload" "$@")
    duration=$saved
    if python3 -c 'import json,sys; r=json.loads(sys.argv[1]); t=int(sys.argv[2]); n=r["requests"]; bad=r["errors"]+r["non_2xx"]; sys.exit(0 if r["achieved_rate"]>=0.95*t and bad<=0.001*max(n,1) and r["sched_p99_ms"]<=50 else 1)' "$r" "$rate"; then
      kept=$rate
    else
      break
    fi
  done
  emit "$label@max" "{\"max_rate\":$kept}"
}

for rate in $rates; do
  emit "direct@$rate" "$(load "http://127.0.0.1:$mock_port/v1/chat/completions" "$rate" 32 "$body")"
done
emit "direct@c1" "$(load "http://127.0.0.1:$mock_port/v1/chat/completions" 0 1 "$body")"
max_rate direct "http://127.0.0.1:$mock_port/v1/chat/completions" "$body"

# One gateway configuration: start it pinned, create the bench tenant, run its loads, stop it.
run_gateway() { # name audit_enabled preset [busy_poll_us]
  local name="$1" audit="$2" preset="$3" busy_poll="${4:-0}"
  local gw_port internal_port dir
  gw_port=$(free_port); internal_port=$(free_port); dir="$work/$name"; mkdir -p "$dir"
  cat > "$dir/flowgate.toml" <<TOML
[server]
listen = "127.0.0.1:$gw_port"
internal_listen = "127.0.0.1:$internal_port"
busy_poll_us = $busy_poll

[audit]
enabled = $audit
on_full = "refuse"

[[providers]]
name = "mock"
kind = "openai"
base_url = "http://127.0.0.1:$mock_port/v1"

[[models]]
name = "gpt-4o-mini"
routes = [ { provider = "mock" } ]
TOML
  local database="sqlite://$dir/flowgate.db"
  if [ -n "${BENCH_POSTGRES_URL:-}" ]; then
    local schema="bench_${name}_$(date +%s)"
    psql -q "$BENCH_POSTGRES_URL" -c "CREATE SCHEMA $schema" >&2
    schemas+=("$schema")
    database="$BENCH_POSTGRES_URL?options=-c%20search_path%3D$schema"
  fi
  (cd "$dir" && FLOWGATE_DATABASE_URL="$database" exec taskset -c 1 "$bin/flowgate" serve) &
  local gw_pid=$!; pids+=($gw_pid)
  wait_port "$gw_port"
  local key
  key=$(python3 - "$gw_port" "$admin_key" "$preset" <<'PY'
import json, sys, urllib.request
port, admin, preset = sys.argv[1], sys.argv[2], sys.argv[3]
body = {"name": "bench", "max_requests_per_minute": 10000000, "rules_preset": preset}
req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/tenants", data=json.dumps(body).encode(),
                             method="POST", headers={"Authorization": f"Bearer {admin}", "Content-Type": "application/json"})
print(json.load(urllib.request.urlopen(req))["api_key"])
PY
)
  local idle; idle=$(awk '/VmRSS/ {print $2}' "/proc/$gw_pid/status")
  local url="http://127.0.0.1:$gw_port/v1/chat/completions"
  local auth="authorization: Bearer $key"
  for rate in $rates; do
    emit "$name@$rate" "$(load "$url" "$rate" 32 "$body" --header "$auth")"
  done
  emit "$name@c1" "$(load "$url" 0 1 "$body" --header "$auth")"
  if [ "$name" = governed ]; then
    for rate in $rates; do
      emit "governed-stream@$rate" "$(load "$url" "$rate" 32 "$stream_body" --header "$auth")"
    done
    emit "governed-stream@c1" "$(load "$url" 0 1 "$stream_body" --header "$auth")"
  fi
  if [ "$busy_poll" = 0 ]; then
    max_rate "$name" "$url" "$body" --header "$auth"
  fi
  local peak; peak=$(awk '/VmHWM/ {print $2}' "/proc/$gw_pid/status")
  local cpu; cpu=$(awk -v hz="$(getconf CLK_TCK)" '{printf "%.1f", ($14 + $15) / hz}' "/proc/$gw_pid/stat")
  emit "$name@rss" "{\"idle_kb\":$idle,\"peak_kb\":$peak,\"cpu_s\":$cpu}"
  kill "$gw_pid"; wait "$gw_pid" 2>/dev/null || true
}

# The cross-CPU reference: the same mock, alone on the gateway's CPU.
hop_port=$(free_port)
taskset -c 1 "$bin/flowgate-mock-upstream" --listen "127.0.0.1:$hop_port" --threads 1 & hop_pid=$!; pids+=($hop_pid)
wait_port "$hop_port"
for rate in $rates; do
  emit "hop@$rate" "$(load "http://127.0.0.1:$hop_port/v1/chat/completions" "$rate" 32 "$body")"
done
emit "hop@c1" "$(load "http://127.0.0.1:$hop_port/v1/chat/completions" 0 1 "$body")"
kill "$hop_pid"; wait "$hop_pid" 2>/dev/null || true

# The direct stream baseline, for the streamed overhead.
for rate in $rates; do
  emit "direct-stream@$rate" "$(load "http://127.0.0.1:$mock_port/v1/chat/completions" "$rate" 32 "$stream_body")"
done
emit "direct-stream@c1" "$(load "http://127.0.0.1:$mock_port/v1/chat/completions" 0 1 "$stream_body")"

run_gateway auth false none
run_gateway governed true default
run_gateway auth-poll false none 2000
run_gateway governed-poll true default 2000
echo "]" >> "$out"

echo "cpuidle: $idle_driver; load average before the run: $load_before; $round_trips"
echo
python3 - "$out" <<'PY'
import json, sys
rows = json.load(open(sys.argv[1]))
by = {r["scenario"]: r["result"] for r in rows}
print("| load | path | achieved req/s | errors | p50 ms | p90 ms | p99 ms | p99 from schedule ms | overhead p50 ms | overhead p99 ms |")
print("|---|---|---|---|---|---|---|---|---|---|")
for key in [r["scenario"] for r in rows]:
    path, load = key.split("@")
    if load in ("max", "rss"):
        continue
    r = by[key]
    over50 = over99 = ""
    if not path.startswith("direct"):
        base = "direct-stream" if path.endswith("stream") else "direct"
        d = by[f"{base}@{load}"]
        over50 = f"{r['p50_ms'] - d['p50_ms']:.3f}"
        over99 = f"{r['p99_ms'] - d['p99_ms']:.3f}"
    label = "concurrency 1" if load == "c1" else f"{load} req/s"
    print(f"| {label} | {path} | {r['achieved_rate']:.0f} | {r['errors'] + r['non_2xx']} | {r['p50_ms']:.3f} | {r['p90_ms']:.3f} | {r['p99_ms']:.3f} | {r['sched_p99_ms']:.3f} | {over50} | {over99} |")
print()
for path in ("direct", "auth", "governed"):
    if f"{path}@max" in by:
        print(f"- {path}: highest rate kept with >= 99.9 % success: {by[f'{path}@max']['max_rate']} req/s")
for path in ("auth", "governed", "auth-poll", "governed-poll"):
    if f"{path}@rss" in by:
        rss = by[f"{path}@rss"]
        print(f"- {path} gateway RSS: idle {rss['idle_kb']/1024:.1f} MiB, peak {rss['peak_kb']/1024:.1f} MiB; CPU time over its runs {rss.get('cpu_s', 0):.1f} s")
PY
echo "raw results: $out" >&2

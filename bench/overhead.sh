#!/usr/bin/env bash
# The gateway-overhead benchmark. One command:
#
#   bench/overhead.sh [--rates "1000 2000"] [--duration 10]
#
# Starts the fast mock upstream (flowgate-mock-upstream) and flowgate (release build,
# production mode, SQLite, auth on), then drives both with flowgate-loadgen at fixed request
# rates (open loop, latency measured from each request's scheduled time), first straight to the
# mock ("direct"), then through the gateway, and at concurrency 1 (closed loop, one
# connection). The overhead is gateway minus direct at the same percentile. CPU pinning on the
# 2-core machine: the gateway alone on CPU 1; the mock and the load generator share CPU 0.
# Prints a Markdown table and writes the raw JSON under bench/results/.
set -euo pipefail
cd "$(dirname "$0")/.."

rates="1000 2000"
duration=10
while [ $# -gt 0 ]; do
  case "$1" in
    --rates) rates="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
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
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }

mock_port=$(free_port); gw_port=$(free_port); internal_port=$(free_port)
taskset -c 0 "$bin/flowgate-mock-upstream" --listen "127.0.0.1:$mock_port" --threads 1 & pids+=($!)
wait_port "$mock_port"

cat > "$work/flowgate.toml" <<TOML
[server]
listen = "127.0.0.1:$gw_port"
internal_listen = "127.0.0.1:$internal_port"

[[providers]]
name = "mock"
kind = "openai"
base_url = "http://127.0.0.1:$mock_port/v1"

[[models]]
name = "gpt-4o-mini"
routes = [ { provider = "mock" } ]
TOML
admin_key="fga_$(python3 -c 'import secrets; print(secrets.token_hex(24))')"
export FLOWGATE_MASTER_KEY="$("$bin/flowgate" gen-master-key)"
export FLOWGATE_ADMIN_API_KEY="$admin_key"
export FLOWGATE_DATABASE_URL="sqlite://$work/flowgate.db"
export FLOWGATE_LOG_LEVEL=warn
(cd "$work" && exec taskset -c 1 "$bin/flowgate" serve) & gw_pid=$!; pids+=($gw_pid)
wait_port "$gw_port"
tenant_key=$(python3 - "$gw_port" "$admin_key" <<'PY'
import json, sys, urllib.request
port, admin = sys.argv[1], sys.argv[2]
req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/tenants", data=json.dumps({"name": "bench", "max_requests_per_minute": 10000000}).encode(),
                             method="POST", headers={"Authorization": f"Bearer {admin}", "Content-Type": "application/json"})
print(json.load(urllib.request.urlopen(req))["api_key"])
PY
)
idle_rss_kb=$(awk '/VmRSS/ {print $2}' "/proc/$gw_pid/status")

body='{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"What is the capital of France? Answer in one sentence."}],"temperature":0.2,"max_tokens":64}'
load() { # target rate connections -> JSON line
  taskset -c 0 "$bin/flowgate-loadgen" --url "$1" --rate "$2" --connections "$3" --duration "$duration" --warmup 2 \
    --body "$body" --header "authorization: Bearer $tenant_key"
}

echo "[" > "$out"
first=1
emit() { if [ $first -eq 0 ]; then echo "," >> "$out"; fi; first=0; echo "{\"scenario\":\"$1\",\"result\":$2}" >> "$out"; }
for rate in $rates; do
  direct=$(load "http://127.0.0.1:$mock_port/v1/chat/completions" "$rate" 32); emit "direct@$rate" "$direct"
  gateway=$(load "http://127.0.0.1:$gw_port/v1/chat/completions" "$rate" 32); emit "gateway@$rate" "$gateway"
done
direct=$(load "http://127.0.0.1:$mock_port/v1/chat/completions" 0 1); emit "direct@c1" "$direct"
gateway=$(load "http://127.0.0.1:$gw_port/v1/chat/completions" 0 1); emit "gateway@c1" "$gateway"
echo "]" >> "$out"
peak_rss_kb=$(awk '/VmHWM/ {print $2}' "/proc/$gw_pid/status")

python3 - "$out" "$idle_rss_kb" "$peak_rss_kb" <<'PY'
import json, sys
rows = json.load(open(sys.argv[1]))
idle, peak = int(sys.argv[2]), int(sys.argv[3])
by = {r["scenario"]: r["result"] for r in rows}
print("| load | path | achieved req/s | errors | p50 ms | p90 ms | p99 ms | p99 from schedule ms | overhead p50 ms | overhead p99 ms |")
print("|---|---|---|---|---|---|---|---|---|---|")
for key in [r["scenario"] for r in rows]:
    path, load = key.split("@")
    r = by[key]
    over50 = over99 = ""
    if path == "gateway":
        d = by[f"direct@{load}"]
        over50 = f"{r['p50_ms'] - d['p50_ms']:.3f}"
        over99 = f"{r['p99_ms'] - d['p99_ms']:.3f}"
    label = "concurrency 1" if load == "c1" else f"{load} req/s"
    print(f"| {label} | {path} | {r['achieved_rate']:.0f} | {r['errors'] + r['non_2xx']} | {r['p50_ms']:.3f} | {r['p90_ms']:.3f} | {r['p99_ms']:.3f} | {r['sched_p99_ms']:.3f} | {over50} | {over99} |")
print(f"\ngateway RSS: idle {idle/1024:.1f} MiB, peak {peak/1024:.1f} MiB")
PY
echo "raw results: $out" >&2

#!/usr/bin/env bash
# Where the governed overhead goes: one gateway per configuration (tenant preset none/default
# x audit log off/on), each driven closed loop over one connection and at 2,000 requests/s
# for 5 s, with the gateway's CPU time per request from `perf stat -e task-clock`. Uses the
# release binaries bench/overhead.sh builds (or, with BIN set, the binaries in that folder,
# unbuilt: for an A/B of two builds). Same pinning: gateway on
# CPU 1, mock and load generator on CPU 0. RECORD="default true" records a `perf record -g`
# profile of that configuration to /tmp/perf.data. ACK=store acknowledges audit records once
# stored instead of once journaled (the default). Each line also gives the mean of the gateway's
# own overhead histogram (time in the handler minus the upstream wait) over that load.
# NO_SYS_NICE=1 starts the gateways without CAP_SYS_NICE (`setpriv --bounding-set -sys_nice`):
# the audit store thread then stays at normal priority and stores every 5 ms (docs/audit.md),
# for an A/B against the default.
#
#   bench/decompose.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${BIN:-}" ]; then
  cargo build --release -p flowgate-cli -p flowgate-test-support --bins >&2
fi
bin="${BIN:-$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; exit 1; }
# "sum count" of the gateway's overhead histogram, from its internal listener.
overhead_totals() {
  curl -s "127.0.0.1:$1/metrics" | awk '/^flowgate_overhead_duration_seconds_sum/ {s=$2} /^flowgate_overhead_duration_seconds_count/ {c=$2} END {print s+0, c+0}'
}
mock_port=$(free_port)
taskset -c 0 $bin/flowgate-mock-upstream --listen 127.0.0.1:$mock_port --threads 1 & mock=$!
wait_port $mock_port
export FLOWGATE_MASTER_KEY="$($bin/flowgate gen-master-key)"
admin="fga_$(python3 -c 'import secrets; print(secrets.token_hex(24))')"
export FLOWGATE_ADMIN_API_KEY=$admin FLOWGATE_LOG_LEVEL=warn
body='{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are a helpful assistant."},{"role":"user","content":"What is the capital of France? Answer in one sentence."}],"temperature":0.2,"max_tokens":64}'
for spec in "none false" "default false" "none true" "default true"; do
  set -- $spec; preset=$1; audit=$2
  port=$(free_port); iport=$(free_port); dir=$work/$preset-$audit; mkdir -p $dir
  printf '[server]\nlisten = "127.0.0.1:%s"\ninternal_listen = "127.0.0.1:%s"\n[audit]\nenabled = %s\nacknowledge = "%s"\n[[providers]]\nname = "mock"\nkind = "openai"\nbase_url = "http://127.0.0.1:%s/v1"\n[[models]]\nname = "gpt-4o-mini"\nroutes = [ { provider = "mock" } ]\n' $port $iport $audit "${ACK:-journal}" $mock_port > $dir/flowgate.toml
  wrap=(); [ -n "${NO_SYS_NICE:-}" ] && wrap=(setpriv --bounding-set -sys_nice)
  (cd $dir && FLOWGATE_DATABASE_URL=sqlite://$dir/f.db exec "${wrap[@]}" taskset -c 1 $bin/flowgate serve) & gw=$!
  wait_port $port
  key=$(python3 -c "
import json,urllib.request
r=urllib.request.Request('http://127.0.0.1:$port/v1/tenants',data=json.dumps({'name':'b','max_requests_per_minute':10000000,'rules_preset':'$preset'}).encode(),method='POST',headers={'Authorization':'Bearer $admin','Content-Type':'application/json'})
print(json.load(urllib.request.urlopen(r))['api_key'])")
  for rate in 0 2000; do
    conns=$([ $rate = 0 ] && echo 1 || echo 32)
    before=$(overhead_totals $iport)
    r=$(taskset -c 0 $bin/flowgate-loadgen --url http://127.0.0.1:$port/v1/chat/completions --rate $rate --connections $conns --duration 5 --warmup 1 --body "$body" --header "authorization: Bearer $key")
    after=$(overhead_totals $iport)
    echo "$preset audit=$audit rate=$rate $(echo $r | python3 -c 'import json,sys; r=json.load(sys.stdin); print("p50 %.3f p90 %.3f p99 %.3f rate %.0f" % (r["p50_ms"], r["p90_ms"], r["p99_ms"], r["achieved_rate"]))') in-handler mean $(python3 -c "b='$before'.split(); a='$after'.split(); print('%.1f us' % ((float(a[0])-float(b[0]))/max(1,float(a[1])-float(b[1]))*1e6))")"
  done
  if command -v perf >/dev/null; then
    if [ -n "${RECORD:-}" ] && [ "$preset $audit" = "$RECORD" ]; then
      perf record -g -o /tmp/perf.data -p $gw -- sleep 5 2>/dev/null &
    else
      perf stat -e task-clock -p $gw -- sleep 5 2>&1 &
    fi
    perfpid=$!
    taskset -c 0 $bin/flowgate-loadgen --url http://127.0.0.1:$port/v1/chat/completions --rate 2000 --connections 32 --duration 5 --warmup 0 --body "$body" --header "authorization: Bearer $key" > /dev/null
    wait $perfpid || true
  fi
  kill $gw; wait $gw 2>/dev/null || true
done
kill $mock

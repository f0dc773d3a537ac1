#!/usr/bin/env bash
# Runs Limen as a target of ../shared/bench/run.sh: one proxied route to the harness backend,
# metrics on, access log off (the peers log nothing either).
#   GATEWAY_CMD="bash $PWD/bench/gateway.sh" GATEWAY_PORT=18090 ../shared/bench/run.sh 5
# LIMEN_BENCH_ROUTE=apikey puts api_key authentication on the route (wrk must send
# "X-API-Key: $LIMEN_BENCH_KEY"); bench/apikey.tsv is the EXTRA_SPEC line that does so.
set -euo pipefail
: "${GATEWAY_PORT:?}" "${BENCH_BACKEND_URL:?}"
key=${LIMEN_BENCH_KEY:-limen-bench-key-0123456789abcdef}
digest=$(printf '%s' "$key" | sha256sum | cut -d' ' -f1)
policies="[]"
if [[ ${LIMEN_BENCH_ROUTE:-plain} == apikey ]]; then
	policies="[{ api_key: {} }]"
fi
cfg=$(mktemp -t limen-bench-XXXXXX.yaml)
cat > "$cfg" <<YAML
listeners: [{ name: bench, addr: "127.0.0.1:${GATEWAY_PORT}" }]
upstreams:
  backend: { targets: [{ url: "${BENCH_BACKEND_URL}" }] }
consumers:
  - name: bench
    credentials: { api_keys: [{ id: bench, sha256: "${digest}" }] }
routes:
  - { name: bench, match: { path: "/{p...}" }, upstream: backend, policies: ${policies} }
logging: { level: warn, access: { output: "${LIMEN_ACCESS_LOG:-off}" } }
YAML
exec "${LIMEN_BIN:-$(dirname "$0")/../limen}" run -c "$cfg"

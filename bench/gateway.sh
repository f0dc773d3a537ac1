#!/usr/bin/env bash
# Runs Limen as the "gateway" target of ../shared/bench/run.sh: a plain proxied route to the
# harness backend, metrics on, access log off (the peers log nothing either).
#   GATEWAY_CMD="bash $PWD/bench/gateway.sh" GATEWAY_PORT=18090 ../shared/bench/run.sh 5
set -euo pipefail
: "${GATEWAY_PORT:?}" "${BENCH_BACKEND_URL:?}"
cfg=$(mktemp -t limen-bench-XXXXXX.yaml)
cat > "$cfg" <<YAML
listeners: [{ name: bench, addr: "127.0.0.1:${GATEWAY_PORT}" }]
upstreams:
  backend: { targets: [{ url: "${BENCH_BACKEND_URL}" }] }
routes:
  - { name: bench, match: { path: "/{p...}" }, upstream: backend }
logging: { level: warn, access: { output: "${LIMEN_ACCESS_LOG:-off}" } }
YAML
exec "${LIMEN_BIN:-$(dirname "$0")/../limen}" run -c "$cfg"

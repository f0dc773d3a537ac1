#!/usr/bin/env bash
# Runs Limen as a target of ../shared/bench/run.sh: one proxied route to the harness backend,
# metrics on, access log off (the peers log nothing either).
#   GATEWAY_CMD="bash $PWD/bench/gateway.sh" GATEWAY_PORT=18090 ../shared/bench/run.sh 5
# LIMEN_BENCH_ROUTE=apikey puts api_key authentication on the route (wrk must send
# "X-API-Key: $LIMEN_BENCH_KEY"); =full adds a local rate limit (limits far above the load) and
# the access log (to /dev/null: every line is encoded and written, nothing fills the disk).
# =redis is =full with the rate limit's counters in Redis (LIMEN_BENCH_REDIS, default the
# machine's redis://127.0.0.1:6379/0, under the key prefix limen-bench:).
# bench/auth.tsv is the EXTRA_SPEC that adds these as targets.
set -euo pipefail
: "${GATEWAY_PORT:?}" "${BENCH_BACKEND_URL:?}"
key=${LIMEN_BENCH_KEY:-limen-bench-key-0123456789abcdef}
digest=$(printf '%s' "$key" | sha256sum | cut -d' ' -f1)
policies="[]"
state=""
access=${LIMEN_ACCESS_LOG:-off}
case ${LIMEN_BENCH_ROUTE:-plain} in
apikey) policies="[{ api_key: {} }]" ;;
full)
	policies="[{ api_key: {} }, { rate_limit: { key: [consumer], limits: [{ requests: 1000000000, per: 1s }] } }]"
	access=/dev/null
	;;
redis)
	policies="[{ api_key: {} }, { rate_limit: { backend: redis, key: [consumer], limits: [{ requests: 1000000000, per: 1s }] } }]"
	access=/dev/null
	state="state: { redis: { url: \"${LIMEN_BENCH_REDIS:-redis://127.0.0.1:6379/0}\", key_prefix: \"limen-bench:\" } }"
	;;
esac
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
logging: { level: warn, access: { output: "${access}" } }
${state}
YAML
exec "${LIMEN_BIN:-$(dirname "$0")/../limen}" run -c "$cfg"

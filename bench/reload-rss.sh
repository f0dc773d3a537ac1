#!/usr/bin/env bash
# Measures Limen's RSS idle on a small config and again after N reloads pushed through the admin
# API (each push changes a header value, so each is a real reload), then checks it still serves.
#   bench/reload-rss.sh [N]    (default 1000; needs a built ./limen and curl; SETTLE=s waits before each reading,
#   WARM=n reloads before the warm baseline)
set -euo pipefail
n=${1:-1000}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${LIMEN_BIN:-$root/limen}
dir=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pub=$(port); adm=$(port); token=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
config() {
cat <<YAML
listeners: [{ name: public, addr: "127.0.0.1:$pub" }]
admin: { addr: "127.0.0.1:$adm", tokens: [{ name: bench, token: "$token", scope: write }] }
routes:
  - name: hello
    match: { path: /hello }
    respond: { body: "hello\n" }
    policies: [{ response_headers: { set: { X-Version: "$1" } } }]
logging: { level: warn, access: { output: off } }
YAML
}
config 0 > "$dir/limen.yaml"
"$bin" run -c "$dir/limen.yaml" 2>"$dir/log" & pid=$!
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$pub/hello" >/dev/null && break; sleep 0.1; done
rss() { awk '/VmRSS/ {print $2}' "/proc/$pid/status"; }
sleep 1; idle=$(rss)
auth="Authorization: Bearer $token"
push() {
  etag=$(curl -sfI -H "$auth" "http://127.0.0.1:$adm/admin/config" | awk -F'"' '/^[Ee][Tt]ag/ {print $2}')
  config "$1" | curl -sf -o /dev/null -X PUT -H "$auth" -H "Content-Type: application/yaml" -H "If-Match: \"$etag\"" \
    --data-binary @- "http://127.0.0.1:$adm/admin/config"
}
# A warm baseline too: the first reloads grow the runtime's GC metadata and stacks once, which
# later reloads reuse. Growth past this reading is what a leak would look like.
for i in $(seq 1 "${WARM:-10}"); do push "w$i"; done
sleep "${SETTLE:-4}"; warm=$(rss)
for i in $(seq 1 "$n"); do push "$i"; done
sleep "${SETTLE:-4}"; after=$(rss)
version=$(curl -sf -D - -o /dev/null "http://127.0.0.1:$pub/hello" | awk -F': ' 'tolower($1)=="x-version" {print $2}' | tr -d '\r')
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a/b}'; }
echo "reloads=$n idle_rss_kib=$idle warm_rss_kib=$warm after_rss_kib=$after ratio_idle=$(ratio "$after" "$idle") ratio_warm=$(ratio "$after" "$warm") serving_version=$version"

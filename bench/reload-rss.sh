#!/usr/bin/env bash
# Measures Limen's RSS idle on a small config and again after N reloads pushed through the admin
# API (each push changes a header value, so each is a real reload), then checks it still serves.
#   bench/reload-rss.sh [N]    (default 1000; needs a built ./limen and curl; SETTLE=s waits before the last reading)
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
for i in $(seq 1 "$n"); do
  etag=$(curl -sfI -H "$auth" "http://127.0.0.1:$adm/admin/config" | awk -F'"' '/^[Ee][Tt]ag/ {print $2}')
  config "$i" | curl -sf -o /dev/null -X PUT -H "$auth" -H "Content-Type: application/yaml" -H "If-Match: \"$etag\"" \
    --data-binary @- "http://127.0.0.1:$adm/admin/config"
done
sleep "${SETTLE:-2}"; after=$(rss)
version=$(curl -sf -D - -o /dev/null "http://127.0.0.1:$pub/hello" | awk -F': ' 'tolower($1)=="x-version" {print $2}' | tr -d '\r')
echo "reloads=$n idle_rss_kib=$idle after_rss_kib=$after ratio=$(awk -v a="$after" -v b="$idle" 'BEGIN{printf "%.2f", a/b}') serving_version=$version"

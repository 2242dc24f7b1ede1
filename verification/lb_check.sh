#!/usr/bin/env bash
# Run deploy/nginx/alexnet.conf for real in front of two real API processes on this machine, without
# Docker: Debian's nginx binary (unpacked from its package, nothing installed), two API processes started as
# the container starts them (`alexnet-serve`, here `python -m app`) with a tiny random checkpoint, and a third
# upstream that is down.
#
#   verification/lb_check.sh       # uses `python` from PATH, with the project installed (e.g. .venv)
#   verification/lb_check.sh --storm [ARGS]   # then a retry storm through nginx (about 2 minutes; ARGS go to
#                                             # `python -m verification.overload --storm --attach PORT`)
#
# With --storm the replicas serve a serving-size (224 px) checkpoint with an abstention rule, a 2 s deadline,
# one torch thread each, and ALEXNET_HOLD_AFTER_429 as this script's environment says (unset: on).
#
# Checks: requests spread over both replicas; a request sent to the dead one is retried on another (all
# answer 200); an upload over the service's body limit gets the service's JSON 413, not nginx's page; a
# connection sending past the request limits gets nginx's own JSON 429, the health probes never.
# Limits: Debian's nginx (1.22) predates `resolve` (1.27.3), and compose's DNS names do not exist here, so
# the config runs with those two things rewritten (`server api:8000 resolve;` -> `server 127.0.0.1:PORT;`);
# without --storm the per-connection rate is lowered to 10/s, so that its check trips it on a slow machine;
# everything else is the file as shipped.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

WORK="$(mktemp -d)" && chmod 755 "$WORK"  # nginx workers run as nobody when started as root
LB_PORT="${LB_CHECK_PORT:-18200}"
PORTS=($((LB_PORT + 1)) $((LB_PORT + 2)))
DEAD_PORT=$((LB_PORT + 3))
declare -a PIDS=()
STORM=0
if [[ "${1:-}" == --storm ]]; then STORM=1 && shift; fi

log() { echo "lb-check: $*"; }
die() { echo "lb-check: FAILED: $*" >&2; exit 1; }
cleanup() {
    ((${#PIDS[@]})) && kill "${PIDS[@]}" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

unpack_nginx() {
    # A fresh machine may have no package lists yet: fetch them once and try again.
    (cd "$WORK" && apt-get download -q nginx >/dev/null 2>&1) ||
        (apt-get -o DPkg::Lock::Timeout=600 update -qq && cd "$WORK" && apt-get download -q nginx >/dev/null 2>&1) ||
        die "apt-get download nginx"
    dpkg-deb -x "$WORK"/nginx_*.deb "$WORK/nginx"
    mkdir -p "$WORK/run/tmp"
}

start_replicas() {
    local size=64 rule=False
    ((STORM)) && size=224 rule=True && export ALEXNET_REQUEST_TIMEOUT_S=2
    python -c 'import sys; from models import save_random_checkpoint as save
save(sys.argv[1], input_size=int(sys.argv[2]), with_rule=sys.argv[3] == "True")' "$WORK/model.safetensors" "$size" "$rule"
    for port in "${PORTS[@]}"; do
        ALEXNET_CHECKPOINT="$WORK/model.safetensors" ALEXNET_DEVICE=cpu ALEXNET_TORCH_THREADS=1 \
            python -m app --host 127.0.0.1 --port "$port" --log-level warning --no-access-log \
            >"$WORK/replica-$port.log" 2>&1 &
        PIDS+=($!)
    done
    for port in "${PORTS[@]}"; do
        for _ in $(seq 120); do curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break; sleep 0.5; done
        curl -fsS "http://127.0.0.1:$port/health" >/dev/null || die "replica on $port never became ready"
    done
    log "two replicas ready on ${PORTS[*]}; nothing listens on $DEAD_PORT"
}

start_nginx() {
    local run="$WORK/run"
    sed -e 's/ resolve;/;/' \
        -e "s/server api:8000;/server 127.0.0.1:${PORTS[0]};/" \
        -e "s/server api-replica:8000;/server 127.0.0.1:${PORTS[1]};\n    server 127.0.0.1:$DEAD_PORT;/" \
        -e "s/listen 80;/listen 127.0.0.1:$LB_PORT;/" deploy/nginx/alexnet.conf >"$run/alexnet.conf"
    # The check of the per-connection limit must trip it however slow this machine answers: 10 requests/s there.
    ((STORM)) || sed -i 's/zone=alexnet_req_per_connection:10m rate=100r\/s/zone=alexnet_req_per_connection:10m rate=10r\/s/' "$run/alexnet.conf"
    ((STORM)) || grep -q "per_connection:10m rate=10r/s" "$run/alexnet.conf" || die "no per-connection request limit"
    cat >"$run/nginx.conf" <<EOF
pid $run/nginx.pid;
error_log $run/error.log;
daemon off;
worker_processes auto;
events { worker_connections 1024; }  # the nginx image's defaults (Debian's are 768)
http {
    log_format upstream "\$status \$upstream_addr";
    access_log $run/access.log upstream;
    client_body_temp_path $run/tmp/body; proxy_temp_path $run/tmp/proxy; fastcgi_temp_path $run/tmp/fastcgi;
    uwsgi_temp_path $run/tmp/uwsgi; scgi_temp_path $run/tmp/scgi;
    include $run/alexnet.conf;
}
EOF
    "$WORK/nginx/usr/sbin/nginx" -t -q -p "$run" -c "$run/nginx.conf" || die "nginx -t"
    "$WORK/nginx/usr/sbin/nginx" -p "$run" -c "$run/nginx.conf" &
    PIDS+=($!)
    for _ in $(seq 20); do curl -fsS "http://127.0.0.1:$LB_PORT/lb-health" >/dev/null 2>&1 && break; sleep 0.25; done
    log "nginx $("$WORK/nginx/usr/sbin/nginx" -v 2>&1 | sed 's/.*\///') on $LB_PORT"
}

check_balancing() {
    python3 -c 'import struct, sys, zlib
w = h = 40
rows = b"".join(b"\x00" + bytes(v for x in range(w) for v in (x * 6, y * 6, 128)) for y in range(h))
chunk = lambda kind, data: struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
open(sys.argv[1], "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))' "$WORK/image.png"
    local code
    for _ in $(seq 12); do
        code="$(curl -sS -o /dev/null -w '%{http_code}' -F "file=@$WORK/image.png" "http://127.0.0.1:$LB_PORT/predict")"
        [[ "$code" == 200 ]] || die "POST /predict through nginx answered $code"
    done
    for port in "${PORTS[@]}"; do
        grep -q "127.0.0.1:$port\$" "$WORK/run/access.log" || die "no request reached the replica on $port"
    done
    grep -q "127.0.0.1:$DEAD_PORT, " "$WORK/run/access.log" || die "no request was retried after the dead upstream"
    log "12 x POST /predict -> 200 each; by upstream: $(sort "$WORK/run/access.log" | uniq -c | paste -sd';')"
}

check_body_limit() {
    local code
    head -c 40000000 /dev/urandom >"$WORK/big.bin"
    code="$(curl -sS -o "$WORK/big.json" -w '%{http_code}' -F "file=@$WORK/big.bin" "http://127.0.0.1:$LB_PORT/predict")"
    if [[ "$code" != 413 ]] || ! grep -q '"detail"' "$WORK/big.json"; then
        die "40 MB upload: $code $(head -c 200 "$WORK/big.json")"
    fi
    log "40 MB upload -> 413 from the service: $(cat "$WORK/big.json")"
}

check_request_limits() {
    # 400 requests as fast as one keep-alive connection sends them: past the per-connection rate and burst, nginx
    # itself answers 429 in the API's shape; the health probes are never limited.
    python3 -c 'import http.client, json, sys
connection = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=30)
refused = None
for _ in range(400):
    connection.request("GET", "/no-such-path")
    response = connection.getresponse()
    body = response.read()
    if response.status == 429:
        refused = response
        assert json.loads(body)["detail"], body
        assert response.getheader("Retry-After") == "1", response.getheaders()
        break
assert refused is not None, "400 requests on one connection and no 429 from nginx"
connection.request("GET", "/health/live")
assert connection.getresponse().status == 200, "/health/live limited"' "$LB_PORT" || die "nginx request limits"
    log "requests past the per-connection limit -> nginx's JSON 429 with Retry-After; /health/live not limited"
}

unpack_nginx
start_replicas
start_nginx
check_balancing
check_body_limit
check_request_limits
log "OK"
if ((STORM)); then
    log "retry storm through nginx on $LB_PORT (ALEXNET_HOLD_AFTER_429=${ALEXNET_HOLD_AFTER_429:-true} on the replicas)"
    python -m verification.overload --storm --attach "$LB_PORT" --deadline "$ALEXNET_REQUEST_TIMEOUT_S" "$@"
fi

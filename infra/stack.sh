#!/usr/bin/env bash
# The local sn_store stack on 127.0.0.1: a Prefect server (analytics off), `sn serve` (the deployments), and
# optionally a Dask scheduler with workers. Every process leads its own session (setsid); its PID is recorded in
# $SN_HOME/stack/*.pid, and `stop` signals exactly those process groups.
#
#   infra/stack.sh start [--port 4200] [--dask-workers N]
#   infra/stack.sh status
#   infra/stack.sh stop
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${SN_BIN:-$ROOT/.venv/bin}"
export SN_HOME="${SN_HOME:-$ROOT/sn-workspace}"
STATE="$SN_HOME/stack"
PORT=4200
WORKERS=0

launch() {  # name, command...: start in its own session, record the PID
    local name=$1; shift
    setsid "$@" >"$STATE/$name.log" 2>&1 < /dev/null &
    echo $! >"$STATE/$name.pid"
    echo "started $name (pid $!, log $STATE/$name.log)"
}

wait_http() {  # url, seconds
    for _ in $(seq "$2"); do
        "$BIN/python" -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=2)" "$1" \
            2>/dev/null && return 0
        sleep 1
    done
    echo "error: $1 did not answer in $2 s" >&2
    return 1
}

start() {
    while [ $# -gt 0 ]; do
        case $1 in
            --port) PORT=$2; shift 2 ;;
            --dask-workers) WORKERS=$2; shift 2 ;;
            *) echo "error: unknown option $1" >&2; exit 2 ;;
        esac
    done
    mkdir -p "$STATE"
    if ls "$STATE"/*.pid >/dev/null 2>&1; then
        echo "error: a stack is already recorded in $STATE (run: $0 stop)" >&2; exit 1
    fi
    export PREFECT_SERVER_ANALYTICS_ENABLED=false
    export PREFECT_API_URL="http://127.0.0.1:$PORT/api" PREFECT_UI_API_URL="http://127.0.0.1:$PORT/api"
    echo "$PORT" >"$STATE/port"
    launch prefect-server "$BIN/prefect" server start --host 127.0.0.1 --port "$PORT"
    wait_http "$PREFECT_API_URL/health" 180
    if [ "$WORKERS" -gt 0 ]; then
        launch dask-scheduler "$BIN/dask" scheduler --host 127.0.0.1 --port 8786 --no-dashboard
        for i in $(seq "$WORKERS"); do
            launch "dask-worker-$i" "$BIN/dask" worker tcp://127.0.0.1:8786 --host 127.0.0.1 --no-dashboard
        done
        export SN_DASK_ADDRESS=tcp://127.0.0.1:8786
    fi
    launch sn-serve "$BIN/sn" serve
    echo "Prefect UI: http://127.0.0.1:$PORT  (deployments: probe, extract, search, export, reprobe)"
    echo "in your shell: export PREFECT_API_URL=$PREFECT_API_URL"
}

stop() {
    local pidfile pid
    for pidfile in "$STATE"/*.pid; do
        [ -e "$pidfile" ] || continue
        pid=$(cat "$pidfile")
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid"
            for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
            kill -0 "$pid" 2>/dev/null && kill -KILL -- "-$pid" 2>/dev/null || true
            echo "stopped $(basename "$pidfile" .pid) (pid $pid)"
        fi
        rm -f "$pidfile"
    done
}

status() {
    local pidfile pid
    for pidfile in "$STATE"/*.pid; do
        [ -e "$pidfile" ] || { echo "no stack recorded in $STATE"; return 0; }
        pid=$(cat "$pidfile")
        if kill -0 "$pid" 2>/dev/null; then state=running; else state=gone; fi
        echo "$(basename "$pidfile" .pid): pid $pid $state"
    done
}

cmd=${1:-}; shift || true
case $cmd in
    start) start "$@" ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 start [--port P] [--dask-workers N] | status | stop" >&2; exit 2 ;;
esac

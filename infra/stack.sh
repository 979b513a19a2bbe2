#!/usr/bin/env bash
# The local sn_store stack on 127.0.0.1: a Prefect server (analytics off), optionally a Dask scheduler with workers,
# and `sn serve` (the deployments). Every process leads its own session (setsid); its PID is recorded in
# $SN_HOME/stack/*.pid and its name in start order in $SN_HOME/stack/order. `stop` signals exactly those process
# groups, in reverse start order (`sn serve` before the server, workers before the scheduler), each as soon as the
# one before it is gone. Every port is checked free before anything starts; everything listens on 127.0.0.1 only,
# the Dask dashboard included.
#
#   infra/stack.sh start [--port 4200] [--dask-workers N] [--dask-port 8786] [--dask-dashboard-port 8787]
#   infra/stack.sh status
#   infra/stack.sh stop
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${SN_BIN:-$ROOT/.venv/bin}"
export SN_HOME="${SN_HOME:-$ROOT/sn-workspace}"
STATE="$SN_HOME/stack"
PORT=4200
WORKERS=0
DASK_PORT=8786
DASK_DASHBOARD_PORT=8787

launch() {  # name, command...: start in its own session, record the PID
    local name=$1; shift
    setsid "$@" >"$STATE/$name.log" 2>&1 < /dev/null &
    echo $! >"$STATE/$name.pid"
    echo "$name" >>"$STATE/order"
    echo "started $name (pid $!, log $STATE/$name.log)"
}

check_free() {  # port, what: refuse a port something already listens on (before anything starts)
    # SO_REUSEADDR as the servers set it: a port left in TIME_WAIT by a stopped stack is free, a listening one not.
    if ! "$BIN/python" -c "import socket as S,sys; s=S.socket(); s.setsockopt(S.SOL_SOCKET, S.SO_REUSEADDR, 1)
s.bind(('127.0.0.1', int(sys.argv[1])))" "$1" 2>/dev/null; then
        echo "error: port $1 ($2) on 127.0.0.1 is taken; pick another with $3" >&2
        exit 1
    fi
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
            --dask-port) DASK_PORT=$2; shift 2 ;;
            --dask-dashboard-port) DASK_DASHBOARD_PORT=$2; shift 2 ;;
            *) echo "error: unknown option $1" >&2; exit 2 ;;
        esac
    done
    mkdir -p "$STATE"
    if ls "$STATE"/*.pid >/dev/null 2>&1; then
        echo "error: a stack is already recorded in $STATE (run: $0 stop)" >&2; exit 1
    fi
    check_free "$PORT" "Prefect server" --port
    if [ "$WORKERS" -gt 0 ]; then
        check_free "$DASK_PORT" "Dask scheduler" --dask-port
        check_free "$DASK_DASHBOARD_PORT" "Dask dashboard" --dask-dashboard-port
    fi
    rm -f "$STATE/order"
    export PREFECT_SERVER_ANALYTICS_ENABLED=false
    export PREFECT_API_URL="http://127.0.0.1:$PORT/api" PREFECT_UI_API_URL="http://127.0.0.1:$PORT/api"
    echo "$PORT" >"$STATE/port"
    launch prefect-server "$BIN/prefect" server start --host 127.0.0.1 --port "$PORT"
    wait_http "$PREFECT_API_URL/health" 180
    if [ "$WORKERS" -gt 0 ]; then
        # Dashboards bind where they are told, not where --host says: loopback, explicitly (workers: any free port).
        launch dask-scheduler "$BIN/dask" scheduler --host 127.0.0.1 --port "$DASK_PORT" \
            --dashboard-address "127.0.0.1:$DASK_DASHBOARD_PORT"
        for i in $(seq "$WORKERS"); do
            launch "dask-worker-$i" "$BIN/dask" worker "tcp://127.0.0.1:$DASK_PORT" --host 127.0.0.1 \
                --dashboard-address 127.0.0.1:0
        done
        export SN_DASK_ADDRESS="tcp://127.0.0.1:$DASK_PORT"
        echo "Dask dashboard: http://127.0.0.1:$DASK_DASHBOARD_PORT/status"
    fi
    launch sn-serve "$BIN/sn" serve
    echo "Prefect UI: http://127.0.0.1:$PORT  (deployments: probe, extract, search, export, report, reprobe)"
    echo "in your shell: export PREFECT_API_URL=$PREFECT_API_URL"
}

alive() {  # pid: still running. A zombie counts as gone: it has exited, only its parent's reaping is left, and a
    # parent such as a container's init may reap only every few seconds (measured: ~2 s per process, the whole of
    # what `stop` used to wait for).
    local stat
    kill -0 "$1" 2>/dev/null || return 1
    [ -r "/proc/$1/stat" ] || return 0  # no /proc (not Linux): kill -0 is all there is
    { stat=$(<"/proc/$1/stat"); } 2>/dev/null || return 1
    stat=${stat##*) }
    [ "${stat%% *}" != Z ]
}

clock() {  # microseconds since the epoch in $now (bash >= 5), else empty
    now=${EPOCHREALTIME:-}; now=${now//[!0-9]/}
}

stop_one() {  # name: SIGTERM to its leader (each shuts down its own children cleanly), then to its whole group after
    # 10 s, SIGKILL after 20 s
    local pidfile="$STATE/$1.pid" pid i now t0 tenths
    [ -e "$pidfile" ] || return 0
    pid=$(cat "$pidfile")
    if alive "$pid"; then
        clock; t0=$now
        kill -TERM "$pid" 2>/dev/null || true
        for i in $(seq 200); do
            alive "$pid" || break
            [ "$i" = 100 ] && kill -TERM -- "-$pid" 2>/dev/null
            sleep 0.1
        done
        alive "$pid" && kill -KILL -- "-$pid" 2>/dev/null
        clock
        if [ -n "$now" ] && [ -n "$t0" ]; then tenths=$(( (now - t0) / 100000 )); else tenths=$(( i - 1 )); fi
        echo "stopped $1 (pid $pid, $(( tenths / 10 )).$(( tenths % 10 )) s)"
    fi
    kill -KILL -- "-$pid" 2>/dev/null || true  # what is left of its group (a flow run's subprocess)
    rm -f "$pidfile"
}

stop() {  # reverse start order; then anything recorded without an order (a stack started by an older script)
    local name pidfile
    if [ -e "$STATE/order" ]; then
        for name in $(tac "$STATE/order"); do stop_one "$name"; done
        rm -f "$STATE/order"
    fi
    for pidfile in "$STATE"/*.pid; do
        [ -e "$pidfile" ] && stop_one "$(basename "$pidfile" .pid)"
    done
    return 0
}

status() {
    local pidfile pid
    for pidfile in "$STATE"/*.pid; do
        [ -e "$pidfile" ] || { echo "no stack recorded in $STATE"; return 0; }
        pid=$(cat "$pidfile")
        if alive "$pid"; then state=running; else state=gone; fi
        echo "$(basename "$pidfile" .pid): pid $pid $state"
    done
}

cmd=${1:-}; shift || true
case $cmd in
    start) start "$@" ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 start [--port P] [--dask-workers N] [--dask-port P] [--dask-dashboard-port P]" \
            "| status | stop" >&2; exit 2 ;;
esac

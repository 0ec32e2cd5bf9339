#!/usr/bin/env bash
# A Docker engine for the compose test, on a machine that has none running.
#
#   scripts/docker-engine.sh start   an engine answering `docker info`: the one running, or
#                                    dockerd started here (as root; installs Debian's docker.io,
#                                    docker-compose and debootstrap when missing). Exits 1
#                                    printing why on stdout when there can be none.
#   scripts/docker-engine.sh stop    stops the dockerd that `start` started (and only it).
#
# dockerd runs with --bridge=none --iptables=false: containers use the host's network only
# (the compose test listens on 127.0.0.1). Its log and pid file are under build/compose/.
set -uo pipefail

root_dir=$(cd "$(dirname "$0")/.." && pwd)
state=${CONVSCOPE_BUILD_DIR:-$root_dir/build/compose}
pidfile=$state/dockerd.pid
log=$state/dockerd.log

answers() { timeout 10 docker info >/dev/null 2>&1; }

why_not() { echo "$1"; exit 1; }

start() {
    if command -v docker >/dev/null && answers; then
        exit 0
    fi
    [ "$(id -u)" = 0 ] || why_not "no Docker engine answers, and starting dockerd needs root"
    missing=()
    command -v dockerd >/dev/null || missing+=(docker.io)
    command -v docker-compose >/dev/null || docker compose version >/dev/null 2>&1 \
        || missing+=(docker-compose)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    mkdir -p "$state"
    if [ ${#missing[@]} -gt 0 ]; then
        echo "installing ${missing[*]} (Debian packages)" >&2
        { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
            "${missing[@]}"; } >"$state/apt.log" 2>&1 \
            || why_not "apt-get install ${missing[*]} failed (see $state/apt.log)"
    fi
    setsid dockerd --bridge=none --iptables=false --ip6tables=false >"$log" 2>&1 < /dev/null &
    echo $! >"$pidfile"
    for _ in $(seq 60); do
        answers && exit 0
        if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
            rm -f "$pidfile"
            reason=$(grep -i -m1 -E 'fatal|error|fail|unknown|denied' "$log" || tail -1 "$log")
            why_not "dockerd exited: $(echo "$reason" | cut -c1-200) (see $log)"
        fi
        sleep 1
    done
    stop
    why_not "dockerd gave no answer within 60 s (see $log)"
}

stop() {
    [ -s "$pidfile" ] || return 0
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    fi
    rm -f "$pidfile"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac

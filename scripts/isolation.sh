#!/usr/bin/env bash
# Does a plugin spinning at its max concurrency leave the others their
# latency? One `custody serve` with a WAGI hello and a plugin that spins
# until its deadline (`max_concurrency` spinning calls at once, kept busy
# by wrk), three kinds of run paired in rounds on the same server process:
#   quiet      wrk on /hello alone
#   spinning   the same while the spinner runs at its max concurrency
#   throttled  the same against a spinner whose policy throttles long
#              calls (throttle_after_ms, throttle_share: a share of a core)
# Prints a markdown table (medians over the rounds) of /hello's requests/s
# and p99, with the ratios to the quiet run, for docs/RELIABILITY.md.
#
# Usage: scripts/isolation.sh
# Environment: ROUNDS (default 3), DURATION (default 8s), CONNECTIONS
#              (wrk -c on /hello, default 4), SPINNERS (the spinner's
#              max_concurrency, default 1), SHARE (default 10).
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8s}
CONNECTIONS=${CONNECTIONS:-4}
SPINNERS=${SPINNERS:-1}
SHARE=${SHARE:-10}

if ! command -v wrk >/dev/null 2>&1; then
    echo "isolation: wrk is not installed (the Debian package \`wrk\`)" >&2
    exit 1
fi
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/isolation.XXXXXX")
SERVER=""
cleanup() {
    if [ -n "$SERVER" ]; then
        kill "$SERVER" 2>/dev/null || true
        wait "$SERVER" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "isolation: building (release)" >&2
cargo build --release -q -p custody
TARGET=$(cargo metadata --format-version 1 --no-deps |
    grep -o '"target_directory":"[^"]*"' | cut -d'"' -f4)

printf '%s\n' '(module' '  (memory (export "memory") 1)' \
    '  (func (export "_start") (loop $l (br $l))))' >"$WORK/spin.wat"
{
    echo 'listen = "127.0.0.1:0"'
    echo '[[plugin]]'
    echo 'name = "hello"'
    echo 'route = "/hello"'
    echo "module = \"$ROOT/crates/custody-serve/plugins/hello.wat\""
    echo 'max_concurrency = 1024'
    for name in spin spin-throttled; do
        echo '[[plugin]]'
        echo "name = \"$name\""
        echo "route = \"/$name\""
        echo "module = \"$WORK/spin.wat\""
        echo "max_concurrency = $SPINNERS"
        echo 'request_timeout = "1s"'
        if [ "$name" = spin-throttled ]; then
            echo "policy = { throttle_after_ms = 10, throttle_share = $SHARE }"
        fi
    done
} >"$WORK/custody.toml"
"$TARGET/release/custody" serve --config "$WORK/custody.toml" >"$WORK/out" 2>"$WORK/err" &
SERVER=$!
for _ in $(seq 600); do
    grep -q '^GET http://.*/hello$' "$WORK/out" && break
    sleep 0.1
done
BASE=$(grep -m1 '^GET http://.*/hello$' "$WORK/out" | cut -d' ' -f2 | sed 's|/hello$||' || true)
if [ -z "$BASE" ]; then
    echo "isolation: the server did not start" >&2
    cat "$WORK/err" >&2
    exit 1
fi

micros() {
    awk -v v="$1" 'BEGIN { n = v + 0
        if (v ~ /us$/) print n; else if (v ~ /ms$/) print n * 1000;
        else if (v ~ /s$/) print n * 1000000; else print n }'
}

# One run: wrk on /hello while the spinner route $1 is loaded (none for
# the quiet run); prints "rps p99_us".
run() {
    local spinner=$1 load=""
    if [ -n "$spinner" ]; then
        wrk -t1 -c"$SPINNERS" -d"$((${DURATION%s} + 4))s" --timeout 5s "$BASE/$spinner" >/dev/null 2>&1 &
        load=$!
        sleep 2
    fi
    local out
    out=$(wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency "$BASE/hello")
    if [ -n "$load" ]; then
        kill "$load" 2>/dev/null || true
        wait "$load" 2>/dev/null || true
        sleep 1.5
    fi
    if grep -q 'Non-2xx' <<<"$out"; then
        echo "isolation: /hello failed requests: $out" >&2
        exit 1
    fi
    local rps p99
    rps=$(awk '/^Requests\/sec:/ { print $2 }' <<<"$out")
    p99=$(awk '$1 == "99%" { print $2 }' <<<"$out")
    echo "$rps $(micros "$p99")"
}

declare -A RPS P99
for kind in quiet spinning throttled; do RPS[$kind]=""; P99[$kind]=""; done
wrk -t1 -c"$CONNECTIONS" -d2s "$BASE/hello" >/dev/null # warm-up
for round in $(seq "$ROUNDS"); do
    for kind in quiet spinning throttled; do
        case $kind in
            quiet) route="" ;;
            spinning) route=spin ;;
            throttled) route=spin-throttled ;;
        esac
        read -r rps p99 < <(run "$route")
        echo "isolation: round $round $kind: $rps req/s, p99 $p99 µs" >&2
        RPS[$kind]+="$rps "
        P99[$kind]+="$p99 "
    done
done

median() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
quiet_rps=$(median "${RPS[quiet]}")
quiet_p99=$(median "${P99[quiet]}")
echo "| /hello beside | requests/s | p99 | / quiet: requests/s | / quiet: p99 |"
echo "| --- | --- | --- | --- | --- |"
for kind in quiet spinning throttled; do
    rps=$(median "${RPS[$kind]}")
    p99=$(median "${P99[$kind]}")
    awk -v k="$kind" -v r="$rps" -v p="$p99" -v qr="$quiet_rps" -v qp="$quiet_p99" \
        -v s="$SPINNERS" -v sh="$SHARE" 'BEGIN {
        label = (k == "quiet") ? "nothing" : (k == "spinning") ? s " spinning call(s)" : s " spinning call(s), throttled to " sh " %"
        printf "| %s | %.0f | %.2f ms | %.2f× | %.2f× |\n", label, r, p / 1000, r / qr, p / qp }'
done

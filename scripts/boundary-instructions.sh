#!/usr/bin/env bash
# Instructions per run of each boundary path and its raw wasmtime baseline,
# counted by callgrind (the same from run to run on a noisy machine):
# (count of N runs - count of 0 runs) / N. Writes a Markdown table.
#
#   scripts/boundary-instructions.sh            # N = 20000 calls, 2000 lifecycles
#
# The last row is root tracking alone: `Domain::call` of an empty export
# against `call_untracked` (bench-internals), the same call taking only the
# store (examples/call_instructions.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
calls=${CALLS:-20000}
lives=${LIVES:-2000}
cargo build --release -q -p custody-host --features bench-internals \
    --example boundary_instructions --example call_instructions
bin=target/release/examples/boundary_instructions
count() { # path n -> instructions
    valgrind --tool=callgrind --callgrind-out-file=/dev/null "$bin" "$1" "$2" 2>&1 \
        | sed -n 's/.*Collected : *\([0-9]*\).*/\1/p'
}
per() { # path n
    local zero full
    zero=$(count "$1" 0)
    full=$(count "$1" "$2")
    echo $(((full - zero) / $2))
}
row() { # label custody-path baseline-path n
    local ours theirs
    ours=$(per "$2" "$4")
    theirs=$(per "$3" "$4")
    printf '| %s | %s | %s | %s |\n' "$1" "$ours" "$theirs" \
        "$(awk -v a="$ours" -v b="$theirs" 'BEGIN { printf "%.2f×", a / b }')"
}
echo '| path | custody (instructions) | raw wasmtime (instructions) | ratio |'
echo '| --- | --- | --- | --- |'
row 'ABI call failing E_KIND (vs func_wrap reading memory)' abi-kind raw-kind-memory "$calls"
row 'ABI call failing E_KIND (vs plain func_wrap)' abi-kind raw-kind "$calls"
row 'typed embedder function' embedder raw-embedder "$calls"
row 'typed embedder function (vs a func_wrap returning Result)' embedder raw-embedder-fallible "$calls"
row 'typed embedder function (vs a func_wrap that can fail)' embedder raw-embedder-failing "$calls"
row 'create + load + call + unload, one page' lifecycle raw-lifecycle "$lives"
row 'create + load + call + unload, a larger module' lifecycle-larger raw-lifecycle-larger "$lives"
bin=target/release/examples/call_instructions
row 'Domain::call of an empty export (vs call_untracked)' tracked untracked "$calls"

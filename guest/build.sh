#!/usr/bin/env bash
# Build every guest/examples/*.c into ${CUSTODY_GUEST_OUT:-target/guest}/NAME.wasm
# (relative to the repository root).
#
# Needs clang with the WebAssembly target and wasm-ld (Debian/Ubuntu:
# `apt-get install clang lld`). Override the tools with CLANG=... WASM_LD=...
#
# Exit status: 0 built everything; 69 (EX_UNAVAILABLE) clang or wasm-ld is
# missing, nothing was built; anything else is a real failure (a compile
# error). crates/custody-guests/build.rs ignores the C tests on 69 only.
set -euo pipefail

cd "$(dirname "$0")/.."

# newest_versioned NAME: the NAME-NN on PATH with the highest NN, if any.
newest_versioned() {
    local v
    v=$(compgen -c "$1-" | sed -n "s/^$1-\([0-9][0-9]*\)\$/\1/p" | sort -n | tail -n 1 || true)
    if [[ -n $v ]]; then
        echo "$1-$v"
    fi
}

die() {
    echo "guest/build.sh: $*" >&2
    exit 1
}

# missing MESSAGE: the toolchain is not installed (exit 69, see above).
missing() {
    echo "guest/build.sh: $*" >&2
    exit 69
}

clang=${CLANG:-}
if [[ -z $clang ]]; then
    if command -v clang >/dev/null; then
        clang=clang
    else
        clang=$(newest_versioned clang)
    fi
fi
if [[ -z $clang ]] || ! command -v "$clang" >/dev/null; then
    missing "clang not found (install it: apt-get install clang lld, or set CLANG=)"
fi

# Prefer the wasm-ld of the same LLVM version as clang.
major=$("$clang" -dumpversion | cut -d. -f1)
wasm_ld=${WASM_LD:-}
if [[ -z $wasm_ld ]]; then
    for candidate in "wasm-ld-$major" wasm-ld "$(newest_versioned wasm-ld)"; do
        if [[ -n $candidate ]] && command -v "$candidate" >/dev/null; then
            wasm_ld=$candidate
            break
        fi
    done
fi
if [[ -z $wasm_ld ]] || ! command -v "$wasm_ld" >/dev/null; then
    missing "wasm-ld not found (install it: apt-get install lld, or set WASM_LD=)"
fi
wasm_ld=$(command -v "$wasm_ld")

out=${CUSTODY_GUEST_OUT:-target/guest}
mkdir -p "$out"

# -mbulk-memory: at -O2 clang turns loops and struct copies into memset and
# memcpy calls, which nothing defines under -nostdlib (wasm-ld: "undefined
# symbol: memset"); bulk memory lowers them to memory.fill and memory.copy
# instead (examples/bulk.c). wasmtime enables bulk memory by default.
cflags=(--target=wasm32 -nostdlib -O2 -mbulk-memory -Wall -Wextra -Werror -Iguest/include)
# -fuse-ld=PATH, not --ld-path=PATH: clang 14 reports --ld-path as unused
# (fatal under -Werror) even though it uses it.
ldflags=("-fuse-ld=$wasm_ld" "-Wl,--no-entry")

shopt -s nullglob
sources=(guest/examples/*.c)
[[ ${#sources[@]} -gt 0 ]] || die "no sources in guest/examples"

for src in "${sources[@]}"; do
    name=$(basename "$src" .c)
    "$clang" "${cflags[@]}" "${ldflags[@]}" -o "$out/$name.wasm" "$src"
    echo "built $out/$name.wasm"
done

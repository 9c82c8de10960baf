// The Go guests: small programs, each a theme, linked into one binary that
// runs the program argv[0] names (as guest/wasi's corpus.wasm does: one
// module to compile, where one per program would cost seconds each in a
// debug build). Built twice by guest/build.sh: GOOS=wasip1 GOARCH=wasm
// (run under custody) and natively; crates/custody-guests compares the
// two runs' stdout and exit status.
//
// Each program works in its current directory (natively the scratch
// directory; under WASI the same directory pre-opened as "/", which Go
// takes as its working directory: the first pre-open's name, without $PWD)
// and prints only what is the same on both.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

var programs = map[string]func(args []string) int{
	"go_files":      files,
	"go_dirs":       dirs,
	"go_goroutines": goroutines,
	"go_args_env":   argsEnv,
	"go_exit":       exit,
}

func main() {
	name := ""
	if len(os.Args) > 0 {
		name = strings.TrimSuffix(filepath.Base(os.Args[0]), ".wasm")
	}
	program, ok := programs[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "go guests: no program named %q\n", name)
		os.Exit(2)
	}
	os.Exit(program(os.Args[1:]))
}

// must ends the program (status 1) when err is not nil, naming what failed.
func must(what string, err error) {
	if err != nil {
		fmt.Printf("%s: %v\n", what, err)
		os.Exit(1)
	}
}

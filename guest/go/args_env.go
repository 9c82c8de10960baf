package main

import (
	"fmt"
	"os"
	"sort"
	"strings"
)

// args_env: the arguments after argv[0], and the environment (only the
// GUEST_ variables: natively the runner gives no others, but print only
// what the test set), one per line; exits with the argument count.
func argsEnv(args []string) int {
	for i, arg := range args {
		fmt.Printf("arg %d: %q\n", i, arg)
	}
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "GUEST_") {
			env = append(env, kv)
		}
	}
	sort.Strings(env)
	for _, kv := range env {
		fmt.Printf("env %q\n", kv)
	}
	value, ok := os.LookupEnv("GUEST_EMPTY")
	fmt.Printf("GUEST_EMPTY set %v, %q\n", ok, value)
	_, ok = os.LookupEnv("GUEST_MISSING")
	fmt.Println("GUEST_MISSING set", ok)
	return len(args)
}

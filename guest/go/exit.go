package main

import (
	"fmt"
	"os"
	"strconv"
)

// exit: os.Exit with the status given (args[0]), after printing; deferred
// calls do not run, as os.Exit says.
func exit(args []string) int {
	status := 0
	if len(args) > 0 {
		n, err := strconv.Atoi(args[0])
		must("status", err)
		status = n
	}
	defer fmt.Println("deferred (never printed)")
	fmt.Println("exiting with", status)
	os.Exit(status)
	return 0
}

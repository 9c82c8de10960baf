package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// files: create, write, read back, seek, stat, truncate, append, rename and
// unlink a file; the errors of a missing file.
func files(args []string) int {
	f, err := os.Create("notes.txt")
	must("create", err)
	n, err := f.WriteString("hello from go\nsecond line\n")
	must("write", err)
	fmt.Println("wrote", n)
	at, err := f.Seek(6, io.SeekStart)
	must("seek start", err)
	buf := make([]byte, 4)
	_, err = io.ReadFull(f, buf)
	must("read after seek", err)
	fmt.Printf("at %d: %q\n", at, buf)
	end, err := f.Seek(0, io.SeekEnd)
	must("seek end", err)
	cur, err := f.Seek(-5, io.SeekCurrent)
	must("seek current", err)
	fmt.Println("end", end, "back to", cur)
	must("close", f.Close())

	data, err := os.ReadFile("notes.txt")
	must("read file", err)
	fmt.Printf("read %q\n", data)
	info, err := os.Stat("notes.txt")
	must("stat", err)
	fmt.Println("stat:", info.Name(), info.Size(), info.IsDir(), info.Mode().IsRegular())

	f, err = os.OpenFile("notes.txt", os.O_APPEND|os.O_WRONLY, 0)
	must("open append", err)
	_, err = f.WriteString("appended\n")
	must("append", err)
	must("close append", f.Close())
	must("truncate", os.Truncate("notes.txt", 5))
	data, err = os.ReadFile("notes.txt")
	must("read truncated", err)
	fmt.Printf("truncated %q\n", data)

	must("rename", os.Rename("notes.txt", "renamed.txt"))
	_, err = os.Stat("notes.txt")
	fmt.Println("old name gone:", errors.Is(err, fs.ErrNotExist))
	data, err = os.ReadFile("renamed.txt")
	must("read renamed", err)
	fmt.Printf("renamed %q\n", data)
	must("remove", os.Remove("renamed.txt"))
	_, err = os.Open("renamed.txt")
	fmt.Println("removed:", errors.Is(err, fs.ErrNotExist))
	_, err = os.OpenFile("renamed.txt", os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	must("create exclusive", err)
	_, err = os.OpenFile("renamed.txt", os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	fmt.Println("exclusive again exists:", errors.Is(err, fs.ErrExist))
	must("remove again", os.Remove("renamed.txt"))
	return 0
}

package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
)

// dirs: mkdir (one level and a path), readdir (names and kinds, sorted),
// walk a tree, rmdir, and the errors of a directory that is not empty or
// already exists.
func dirs(args []string) int {
	must("mkdir", os.Mkdir("top", 0o755))
	err := os.Mkdir("top", 0o755)
	fmt.Println("mkdir again exists:", errors.Is(err, fs.ErrExist))
	must("mkdir -p", os.MkdirAll(filepath.Join("top", "a", "b"), 0o755))
	for i, name := range []string{"one.txt", "two.txt", filepath.Join("a", "three.txt")} {
		must("write "+name, os.WriteFile(filepath.Join("top", name), []byte(fmt.Sprint(i)), 0o644))
	}
	entries, err := os.ReadDir("top")
	must("readdir", err)
	for _, entry := range entries {
		fmt.Println("entry:", entry.Name(), entry.IsDir())
	}
	var walked []string
	err = filepath.WalkDir("top", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		walked = append(walked, fmt.Sprintf("%s dir=%v", filepath.ToSlash(path), d.IsDir()))
		return nil
	})
	must("walk", err)
	sort.Strings(walked)
	for _, line := range walked {
		fmt.Println("walk:", line)
	}
	err = os.Remove("top")
	fmt.Println("rmdir non-empty fails:", err != nil)
	must("rmdir b", os.Remove(filepath.Join("top", "a", "b")))
	must("remove all", os.RemoveAll("top"))
	_, err = os.Stat("top")
	fmt.Println("gone:", errors.Is(err, fs.ErrNotExist))
	return 0
}

/* Shared by the WASI conformance corpus (the programs in guest/wasi).
 *
 * Every program prints lines that must be the same under custody,
 * wasmtime-wasi and (for most programs) the native build, so errors are
 * printed by errno *name*: the numbers differ between wasi-libc and glibc.
 * Lines whose answer is host-specific start with HOST (below).
 *
 * Every main takes (argc, argv), used or not: build.sh also links all the
 * programs into one module, corpus.wasm, whose main calls the one argv[0]
 * names, the same way for each.
 *
 * Paths are relative: the working directory is the run's scratch directory
 * (pre-opened as "." under WASI, the child's cwd natively). */
#ifndef CUSTODY_CONFORMANCE_COMMON_H
#define CUSTODY_CONFORMANCE_COMMON_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Lines whose answer differs between WASI and POSIX by design start with
 * HOST ("[wasi] " or "[native] "): the native comparison drops them. */
#ifdef __wasi__
#define HOST "[wasi] "
#else
#define HOST "[native] "
#endif

/* First match wins: some names share a number (EAGAIN/EWOULDBLOCK,
 * ENOTSUP/EOPNOTSUPP), which a switch could not list twice. */
static const struct {
    int value;
    const char *name;
} errno_names[] = {
    {0, "ok"},
    {E2BIG, "E2BIG"},
    {EACCES, "EACCES"},
    {EAGAIN, "EAGAIN"},
    {EBADF, "EBADF"},
    {EBUSY, "EBUSY"},
    {EEXIST, "EEXIST"},
    {EFAULT, "EFAULT"},
    {EFBIG, "EFBIG"},
    {EILSEQ, "EILSEQ"},
    {EINVAL, "EINVAL"},
    {EIO, "EIO"},
    {EISDIR, "EISDIR"},
    {ELOOP, "ELOOP"},
    {EMFILE, "EMFILE"},
    {EMLINK, "EMLINK"},
    {ENAMETOOLONG, "ENAMETOOLONG"},
    {ENFILE, "ENFILE"},
    {ENOENT, "ENOENT"},
    {ENOMEM, "ENOMEM"},
    {ENOSPC, "ENOSPC"},
    {ENOSYS, "ENOSYS"},
    {ENOTDIR, "ENOTDIR"},
    {ENOTEMPTY, "ENOTEMPTY"},
    {ENOTSUP, "ENOTSUP"},
    {ENOTTY, "ENOTTY"},
    {ENXIO, "ENXIO"},
    {EPERM, "EPERM"},
    {ERANGE, "ERANGE"},
    {EROFS, "EROFS"},
    {ESPIPE, "ESPIPE"},
    {EXDEV, "EXDEV"},
#ifdef ENOTCAPABLE
    {ENOTCAPABLE, "ENOTCAPABLE"},
#endif
};

static inline const char *errno_name(int e) {
    for (size_t i = 0; i < sizeof errno_names / sizeof errno_names[0]; i++) {
        if (errno_names[i].value == e) {
            return errno_names[i].name;
        }
    }
    static char other[32];
    snprintf(other, sizeof other, "errno %d", e);
    return other;
}

/* "what: ok" when rc >= 0, else "what: ENAME" (errno). */
static inline void report(const char *what, long rc) {
    printf("%s: %s\n", what, rc >= 0 ? "ok" : errno_name(errno));
}

/* An unexpected failure: say so on stderr and exit 99, which no test
 * expects. */
_Noreturn static inline void fail(const char *what) {
    fprintf(stderr, "FAIL %s: %s\n", what, errno_name(errno));
    exit(99);
}

/* Fails unless rc >= 0; returns rc. */
static inline long must(const char *what, long rc) {
    if (rc < 0) {
        fail(what);
    }
    return rc;
}

/* "yes"/"no", for lines that state a fact. */
static inline const char *yes(int cond) {
    return cond ? "yes" : "no";
}

/* Writes `len` bytes of `data` to `path` (created or truncated). */
static inline void put_file(const char *path, const char *data, size_t len) {
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        fail(path);
    }
    if (fwrite(data, 1, len, f) != len || fclose(f) != 0) {
        fail(path);
    }
}

/* Prints `label: "contents"` of a small file (escaping control bytes), or
 * the errno name if it cannot be read. */
static inline void show_file(const char *label, const char *path) {
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        printf("%s: %s\n", label, errno_name(errno));
        return;
    }
    printf("%s: \"", label);
    int c;
    while ((c = fgetc(f)) != EOF) {
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
            putchar(c);
        } else {
            printf("\\x%02x", c);
        }
    }
    printf("\"\n");
    fclose(f);
}

#endif

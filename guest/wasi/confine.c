/* confinement: every way out of the pre-opened directory, and the ways
 * that look like a way out but stay inside. The runner's scratch directory
 * holds inside.txt, sub/file.txt and these symlinks (made by the runner,
 * not the guest):
 *   out_abs  -> /tmp          absolute: out, whatever it names
 *   out_rel  -> ..            relative, leaves
 *   out_deep -> sub/../..     leaves after a detour
 *   in_rel   -> sub           stays inside
 *   in_dots  -> sub/..        stays inside (it is ".")
 * Under WASI every line shows the errno the runtime gives; natively (not
 * compared: there is no sandbox) the escapes succeed. Exits 0.
 *
 * wasi-libc maps an absolute path onto the pre-open whose name is its
 * longest prefix: with "." pre-opened, "/tmp" means "./tmp". The raw
 * path_open calls below show what the runtime itself does with "/" and
 * "..". */
#include "common.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef __wasi__
#include <wasi/api.h>
#endif

static void try_open(const char *path, int flags) {
    int fd = open(path, flags, 0644);
    printf("open %s: %s\n", path, fd >= 0 ? "ok" : errno_name(errno));
    if (fd >= 0) {
        close(fd);
    }
}

static void try_stat(const char *what, const char *path, int follow) {
    struct stat st;
    report(what, follow ? stat(path, &st) : lstat(path, &st));
}

static void try_opendir(const char *path) {
    DIR *d = opendir(path);
    printf("opendir %s: %s\n", path, d != NULL ? "ok" : errno_name(errno));
    if (d != NULL) {
        closedir(d);
    }
}

#ifdef __wasi__
/* The import itself: wasi-libc's __wasi_path_open takes a NUL-terminated
 * string, and these calls pass lengths of their own. */
int32_t wasi_path_open(int32_t dirfd, int32_t lookup, const char *path, int32_t len,
                       int32_t oflags, int64_t base, int64_t inheriting, int32_t fdflags,
                       __wasi_fd_t *fd)
    __attribute__((__import_module__("wasi_snapshot_preview1"),
                   __import_name__("path_open")));

/* path_open beneath `dirfd` with `len` bytes of `path`. */
static void raw_open_at(__wasi_fd_t dirfd, const char *label, const char *path, size_t len,
                        __wasi_oflags_t oflags) {
    __wasi_fd_t fd;
    int32_t e = wasi_path_open((int32_t)dirfd, __WASI_LOOKUPFLAGS_SYMLINK_FOLLOW, path,
                               (int32_t)len, oflags, __WASI_RIGHTS_FD_READ, 0, 0, &fd);
    printf("[wasi] path_open %s: %s\n", label, errno_name(e));
    if (e == 0) {
        close((int)fd);
    }
}

/* The same beneath the pre-open, fd 3. */
static void raw_open(const char *label, const char *path, size_t len, __wasi_oflags_t oflags) {
    raw_open_at(3, label, path, len, oflags);
}
#endif

int main(int argc, char **argv) {
    (void)argc;
    (void)argv;
    try_open("inside.txt", O_RDONLY);
    try_open("sub/../inside.txt", O_RDONLY);
    try_open("./sub/./file.txt", O_RDONLY);
    try_open("in_rel/file.txt", O_RDONLY);
    try_open("in_dots/inside.txt", O_RDONLY);
    try_opendir("in_dots");

    try_open("../inside.txt", O_RDONLY);
    try_open("sub/../../inside.txt", O_RDONLY);
    try_open("out_abs", O_RDONLY);
    try_open("out_rel", O_RDONLY);
    try_open("out_deep", O_RDONLY);
    try_open("out_rel/x.txt", O_WRONLY | O_CREAT);
    try_opendir("..");
    try_opendir("out_abs");
    try_opendir("out_rel");
    try_stat("stat ..", "..", 1);
    try_stat("stat out_abs", "out_abs", 1);
    try_stat("stat out_rel", "out_rel", 1);
    try_stat("stat out_deep", "out_deep", 1);
    try_stat("lstat out_abs (the link itself is inside)", "out_abs", 0);
    char buf[64] = {0};
    ssize_t n = readlink("out_abs", buf, sizeof buf - 1);
    printf("readlink out_abs: %s \"%s\"\n", n >= 0 ? "ok" : errno_name(errno), buf);

    report("mkdir ../evil", mkdir("../evil", 0755));
    report("mkdir out_rel/evil", mkdir("out_rel/evil", 0755));
    report("rename inside.txt ../moved", rename("inside.txt", "../moved"));
    report("rename inside.txt out_rel/moved", rename("inside.txt", "out_rel/moved"));
    report("link inside.txt ../linked", link("inside.txt", "../linked"));
    report("unlink ../inside.txt", unlink("../inside.txt"));
    report("rmdir ..", rmdir(".."));
    report("symlink inside.txt ../made", symlink("inside.txt", "../made"));
    /* Making a link whose target leaves is allowed; following it is not. */
    report("symlink /tmp made_abs", symlink("/tmp", "made_abs"));
    report("symlink ../.. made_rel", symlink("../..", "made_rel"));
    try_open("made_abs", O_RDONLY);
    try_open("made_rel", O_RDONLY);
    try_open("inside.txt", O_RDONLY);

    /* Through chdir the relative path is joined to the cwd first. */
    report("chdir sub", chdir("sub"));
    try_open("../inside.txt", O_RDONLY);
    try_open("../../inside.txt", O_RDONLY);
    report("chdir ..", chdir(".."));
    report("chdir ../..", chdir("../.."));

#ifdef __wasi__
    raw_open("\"inside.txt\"", "inside.txt", 10, 0);
    raw_open("\"/inside.txt\"", "/inside.txt", 11, 0);
    raw_open("\"/tmp\"", "/tmp", 4, 0);
    raw_open("\"..\"", "..", 2, 0);
    raw_open("\"../x\" O_CREAT", "../x", 4, __WASI_OFLAGS_CREAT);
    raw_open("\"sub/../..\"", "sub/../..", 9, 0);
    raw_open("\"sub/..\"", "sub/..", 6, 0);
    raw_open("\".\"", ".", 1, 0);
    raw_open("\"\"", "", 0, 0);
    raw_open("\"out_abs\"", "out_abs", 7, 0);
    raw_open("\"out_rel\"", "out_rel", 7, 0);
    raw_open("\"in_dots\"", "in_dots", 7, 0);
    raw_open("with a NUL byte", "inside.txt\0x", 12, 0);
    raw_open("not UTF-8", "\xff\xfe", 2, 0);
    raw_open("length past the string", "inside.txt", 9, 0);
    raw_open_at(1, "beneath stdout", "x", 1, 0);
    raw_open_at(12345, "beneath a bad fd", "x", 1, 0);
    int file = open("inside.txt", O_RDONLY);
    raw_open_at((__wasi_fd_t)file, "beneath a file", "x", 1, 0);
    close(file);
#endif
    fprintf(stderr, "confine done\n");
    return 0;
}

/* pre-open mapping (WASI only: natively there are no pre-opens, so this
 * program is not compared with the native build). The runners pre-open,
 * in this order (fds 3, 4, 5, 6):
 *   "."           the scratch directory
 *   "/sandbox"    scratch/sandbox
 *   "data"        scratch/data
 *   "data/inner"  scratch/other, which shadows scratch/data/inner
 * It lists them as wasi-libc finds them (fd_prestat_get from fd 3 until
 * EBADF), then opens files by paths that each pre-open's name prefixes:
 * wasi-libc picks the longest. Exits 0. */
#include "common.h"

#include <fcntl.h>
#include <unistd.h>
#ifdef __wasi__
#include <wasi/api.h>
#include <wasi/libc-find-relpath.h>
#endif

int main(int argc, char **argv) {
    (void)argc;
    (void)argv;
#ifdef __wasi__
    __wasi_fd_t fd;
    for (fd = 3;; fd++) {
        __wasi_prestat_t prestat;
        __wasi_errno_t e = __wasi_fd_prestat_get(fd, &prestat);
        if (e != 0) {
            printf("fd_prestat_get %u: %s\n", fd, errno_name(e));
            break;
        }
        char name[64] = {0};
        size_t len = prestat.u.dir.pr_name_len;
        e = __wasi_fd_prestat_dir_name(fd, (uint8_t *)name, len < sizeof name ? len : sizeof name);
        printf("fd %u: tag %d, name length %zu, fd_prestat_dir_name %s \"%s\"\n", fd, prestat.tag,
               len, errno_name(e), name);
    }
    char small[2];
    printf("fd_prestat_dir_name with a short buffer: %s\n",
           errno_name(__wasi_fd_prestat_dir_name(4, (uint8_t *)small, sizeof small)));
    __wasi_prestat_t prestat;
    printf("fd_prestat_get stdout: %s\n", errno_name(__wasi_fd_prestat_get(1, &prestat)));
    int file = open("top.txt", O_RDONLY);
    printf("fd_prestat_get of an opened file: %s\n",
           errno_name(__wasi_fd_prestat_get((__wasi_fd_t)file, &prestat)));
    close(file);

    static const char *paths[] = {
        "top.txt",           "./top.txt",          "/top.txt",         "/sandbox/s.txt",
        "sandbox/s.txt",     "data/d.txt",         "./data/d.txt",     "data/inner/i.txt",
        "/data/inner/i.txt", "data/./inner/i.txt", "data/x/../inner/i.txt",
    };
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        const char *abs = NULL;
        char buf[64] = {0};
        char *rel = buf;
        int dirfd = __wasilibc_find_relpath(paths[i], &abs, &rel, sizeof buf);
        printf("%s: pre-open fd %d (\"%s\"), relative \"%s\"\n", paths[i], dirfd,
               abs != NULL ? abs : "", rel);
        show_file("  contents", paths[i]);
    }
#else
    printf("pre-opens are WASI's\n");
#endif
    fprintf(stderr, "preopens done\n");
    return 0;
}

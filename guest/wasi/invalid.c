/* bad input (WASI only; the tests assert the documented difference, not
 * equality): argv[1] names one call with an argument no valid program
 * passes. custody answers with an errno (EINVAL, or EFAULT for a pointer
 * outside memory); wasmtime-wasi traps on each (its bindings reject the
 * value before the call). Prints "MODE: ERRNO" and exits 0.
 *   whence    lseek with whence 99
 *   advice    posix_fadvise with advice 99
 *   fstflags  fd_filestat_set_times with an undefined flag bit
 *   oflags    path_open with an undefined oflags bit
 *   clockid   clock_time_get of clock 99
 *   wild      fd_write with its iovec array outside memory */
#include "common.h"

#include <fcntl.h>
#include <unistd.h>
#ifdef __wasi__
#include <wasi/api.h>

int32_t wasi_fd_write(int32_t fd, int32_t iovs, int32_t iovs_len, int32_t *nwritten)
    __attribute__((__import_module__("wasi_snapshot_preview1"), __import_name__("fd_write")));
#endif

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "";
#ifdef __wasi__
    int fd = (int)must("open", open("f.txt", O_RDWR | O_CREAT, 0644));
    int e = -1;
    __wasi_filesize_t at;
    if (strcmp(mode, "whence") == 0) {
        e = __wasi_fd_seek((__wasi_fd_t)fd, 0, 99, &at);
    } else if (strcmp(mode, "advice") == 0) {
        e = __wasi_fd_advise((__wasi_fd_t)fd, 0, 0, 99);
    } else if (strcmp(mode, "fstflags") == 0) {
        e = __wasi_fd_filestat_set_times((__wasi_fd_t)fd, 0, 0, 0x10);
    } else if (strcmp(mode, "oflags") == 0) {
        __wasi_fd_t opened;
        e = __wasi_path_open(3, 0, "f.txt", 0x10, __WASI_RIGHTS_FD_READ, 0, 0, &opened);
    } else if (strcmp(mode, "clockid") == 0) {
        e = __wasi_clock_time_get(99, 1, &at);
    } else if (strcmp(mode, "wild") == 0) {
        int32_t written;
        e = wasi_fd_write(1, (int32_t)0xfffffff0u, 2, &written);
    }
    if (e < 0) {
        fprintf(stderr, "unknown mode %s\n", mode);
        return 2;
    }
    printf("%s: %s\n", mode, errno_name(e));
#else
    printf("%s: the bad input is WASI's\n", mode);
#endif
    return 0;
}

/* fd operations: fcntl F_GETFL access modes and O_APPEND, F_SETFL turning
 * append on and off, lseek from each origin (and its errors), a hole
 * past the end, fsync/fdatasync/posix_fadvise, what a closed fd answers,
 * and renumbering: wasi-libc has no dup2, it offers fd_renumber (natively
 * the same is dup2 then close). Under WASI also: fd_fdstat_get's file
 * types and rights, fd_fdstat_set_rights, fd_renumber's edge cases.
 * Exits 0. */
#include "common.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef __wasi__
#include <wasi/api.h>
#endif

static void show_flags(const char *what, int fd) {
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0) {
        printf("F_GETFL %s: %s\n", what, errno_name(errno));
        return;
    }
    int mode = fl & O_ACCMODE;
    printf("F_GETFL %s: %s%s%s\n", what,
           mode == O_RDONLY   ? "O_RDONLY"
           : mode == O_WRONLY ? "O_WRONLY"
           : mode == O_RDWR   ? "O_RDWR"
                              : "?",
           fl & O_APPEND ? " O_APPEND" : "", fl & O_NONBLOCK ? " O_NONBLOCK" : "");
}

static long size_of(const char *path) {
    struct stat st;
    must("stat", stat(path, &st));
    return (long)st.st_size;
}

static void show_seek(const char *what, int fd, off_t off, int whence) {
    off_t at = lseek(fd, off, whence);
    if (at < 0) {
        printf("lseek %s: %s\n", what, errno_name(errno));
    } else {
        printf("lseek %s: %lld\n", what, (long long)at);
    }
}

/* Gives `from`'s file to `to` and closes `from`. */
static int renumber(int from, int to) {
#ifdef __wasi__
    int e = __wasi_fd_renumber((__wasi_fd_t)from, (__wasi_fd_t)to);
    errno = e;
    return e == 0 ? 0 : -1;
#else
    if (dup2(from, to) < 0) {
        return -1;
    }
    return close(from);
#endif
}

#ifdef __wasi__
static void show_fdstat(const char *what, int fd) {
    __wasi_fdstat_t st;
    __wasi_errno_t e = __wasi_fd_fdstat_get((__wasi_fd_t)fd, &st);
    if (e != 0) {
        printf("[wasi] fd_fdstat_get %s: %s\n", what, errno_name(e));
        return;
    }
    /* The rights that mean something for the file type; wasmtime also
     * reports directory rights on files. */
    printf("[wasi] fd_fdstat_get %s: filetype %d, flags %#x, read %d write %d seek %d tell %d",
           what, st.fs_filetype, st.fs_flags,
           !!(st.fs_rights_base & __WASI_RIGHTS_FD_READ),
           !!(st.fs_rights_base & __WASI_RIGHTS_FD_WRITE),
           !!(st.fs_rights_base & __WASI_RIGHTS_FD_SEEK),
           !!(st.fs_rights_base & __WASI_RIGHTS_FD_TELL));
    if (st.fs_filetype == __WASI_FILETYPE_DIRECTORY) {
        printf(" readdir %d path_open %d", !!(st.fs_rights_base & __WASI_RIGHTS_FD_READDIR),
               !!(st.fs_rights_base & __WASI_RIGHTS_PATH_OPEN));
    }
    printf("\n");
}
#endif

int main(int argc, char **argv) {
    (void)argc;
    (void)argv;
    put_file("f.txt", "0123456789", 10);
    int ro = (int)must("open", open("f.txt", O_RDONLY));
    int wo = (int)must("open", open("f.txt", O_WRONLY));
    int rw = (int)must("open", open("f.txt", O_RDWR));
    int ap = (int)must("open", open("f.txt", O_WRONLY | O_APPEND));
    show_flags("O_RDONLY", ro);
    show_flags("O_WRONLY", wo);
    show_flags("O_RDWR", rw);
    show_flags("O_WRONLY|O_APPEND", ap);

    must("write", write(ap, "A", 1));
    printf("append write lands at the end: size %ld, offset %lld\n", size_of("f.txt"),
           (long long)lseek(ap, 0, SEEK_CUR));
    report("F_SETFL O_APPEND on O_WRONLY", fcntl(wo, F_SETFL, O_APPEND));
    show_flags("after F_SETFL O_APPEND", wo);
    lseek(wo, 0, SEEK_SET);
    must("write", write(wo, "B", 1));
    show_file("after appending through F_SETFL", "f.txt");
    report("F_SETFL 0", fcntl(wo, F_SETFL, 0));
    show_flags("after F_SETFL 0", wo);
    lseek(wo, 0, SEEK_SET);
    must("write", write(wo, "C", 1));
    show_file("after writing at 0", "f.txt");
    report("F_SETFL O_NONBLOCK", fcntl(rw, F_SETFL, O_NONBLOCK));
    show_flags("after F_SETFL O_NONBLOCK", rw);
    fcntl(rw, F_SETFL, 0);

    show_seek("SET 5", rw, 5, SEEK_SET);
    show_seek("CUR -2", rw, -2, SEEK_CUR);
    show_seek("CUR 0", rw, 0, SEEK_CUR);
    show_seek("END 0", rw, 0, SEEK_END);
    show_seek("END -1", rw, -1, SEEK_END);
    show_seek("SET -1", rw, -1, SEEK_SET);
    show_seek("CUR -100", rw, -100, SEEK_CUR);
    show_seek("SET 100 (past the end)", rw, 100, SEEK_SET);
    must("write", write(rw, "Z", 1));
    printf("size after writing at 100: %ld\n", size_of("f.txt"));
    char buf[128];
    printf("pread the hole: %zd bytes,", pread(rw, buf, 4, 20));
    printf(" all zero: %s\n", yes(buf[0] == 0 && buf[1] == 0 && buf[2] == 0 && buf[3] == 0));
    report("fsync", fsync(rw));
    report("fdatasync", fdatasync(rw));
    int rc = posix_fadvise(rw, 0, 0, POSIX_FADV_SEQUENTIAL);
    printf("posix_fadvise SEQUENTIAL: %s\n", errno_name(rc));
    report("fsync O_RDONLY", fsync(ro));

    /* renumber: `to` gets `from`'s file (and offset); `from` is closed. */
    put_file("g.txt", "from g", 6);
    int from = (int)must("open", open("g.txt", O_RDONLY));
    lseek(from, 5, SEEK_SET);
    report("renumber g.txt onto the O_RDONLY fd of f.txt", renumber(from, ro));
    memset(buf, 0, sizeof buf);
    printf("read through the target: %zd \"%s\"\n", read(ro, buf, sizeof buf - 1), buf);
    report("read through the source", read(from, buf, 1));
    report("close the source", close(from));

    report("close", close(rw));
    report("close again", close(rw));
    report("read a closed fd", read(rw, buf, 1));
    report("write a closed fd", write(rw, "x", 1));
    show_seek("a closed fd", rw, 0, SEEK_SET);
    show_flags("a closed fd", rw);
    struct stat st;
    report("fstat a closed fd", fstat(rw, &st));
    report("fsync a closed fd", fsync(rw));
    report("lseek on stdout", lseek(1, 0, SEEK_CUR));

#ifdef __wasi__
    show_fdstat("stdin", 0);
    show_fdstat("stdout", 1);
    show_fdstat("the pre-open", 3);
    show_fdstat("O_RDONLY file", ro);
    show_fdstat("O_WRONLY|O_APPEND file", ap);
    int dir = open(".", O_RDONLY | O_DIRECTORY);
    show_fdstat("directory", dir);
    show_fdstat("closed", rw);
    close(dir);

    /* Rights are advisory under wasmtime and custody (set_rights: ENOTSUP);
     * a runtime that enforces them lets one be dropped, never gained. */
    __wasi_fdstat_t fst;
    must("fdstat", -(long)__wasi_fd_fdstat_get((__wasi_fd_t)wo, &fst));
    __wasi_errno_t e = __wasi_fd_fdstat_set_rights(
        (__wasi_fd_t)wo, fst.fs_rights_base & ~__WASI_RIGHTS_FD_WRITE, fst.fs_rights_inheriting);
    printf("[wasi] fd_fdstat_set_rights without FD_WRITE: %s\n", errno_name(e));
    if (e == 0) {
        /* wasi-libc's write() turns ENOTCAPABLE into EBADF: ask WASI. */
        __wasi_ciovec_t x = {.buf = (const uint8_t *)"x", .buf_len = 1};
        __wasi_size_t n;
        printf("[wasi] fd_write after dropping FD_WRITE: %s\n",
               errno_name(__wasi_fd_write((__wasi_fd_t)wo, &x, 1, &n)));
        report("[wasi] write() after dropping FD_WRITE", write(wo, "x", 1));
        e = __wasi_fd_fdstat_set_rights((__wasi_fd_t)wo, fst.fs_rights_base,
                                        fst.fs_rights_inheriting);
        printf("[wasi] fd_fdstat_set_rights gaining FD_WRITE back: %s\n", errno_name(e));
    }

    printf("[wasi] fd_renumber onto itself: %s\n",
           errno_name(__wasi_fd_renumber((__wasi_fd_t)ap, (__wasi_fd_t)ap)));
    printf("[wasi] fd_renumber onto a closed fd: %s\n",
           errno_name(__wasi_fd_renumber((__wasi_fd_t)ap, (__wasi_fd_t)rw)));
    printf("[wasi] fd_renumber from a closed fd: %s\n",
           errno_name(__wasi_fd_renumber((__wasi_fd_t)rw, (__wasi_fd_t)ap)));
    __wasi_filesize_t at;
    printf("[wasi] fd_tell: %s", errno_name(__wasi_fd_tell((__wasi_fd_t)ro, &at)));
    printf(" %llu\n", (unsigned long long)at);
    printf("[wasi] fd_advise len -1: %s\n",
           errno_name(__wasi_fd_advise((__wasi_fd_t)ro, 0, (__wasi_filesize_t)-1, 0)));
    printf("[wasi] fd_fdstat_set_flags DSYNC: %s\n",
           errno_name(__wasi_fd_fdstat_set_flags((__wasi_fd_t)wo, __WASI_FDFLAGS_DSYNC)));
    printf("[wasi] fd_close of the pre-open's neighbour 12345: %s\n",
           errno_name(__wasi_fd_close(12345)));
#endif
    /* posix_fallocate is fd_allocate under WASI: a difference between
     * runtimes (see the tests), so it comes last. */
    rc = posix_fallocate(ap, 0, 4096);
    printf("posix_fallocate 4096: %s, size %ld\n", errno_name(rc), size_of("f.txt"));
    fprintf(stderr, "fdops done\n");
    return 0;
}

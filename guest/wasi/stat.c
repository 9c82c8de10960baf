/* stat and timestamps: file type, size and link count by stat, fstat and
 * lstat (same inode and device for one file), hard links, utimes/utimensat/
 * futimens with exact times (seconds and nanoseconds), UTIME_OMIT and
 * UTIME_NOW, a write moving mtime to now. Host-specific fields (permission
 * bits, owners, block counts, the inode numbers themselves) are compared,
 * never printed. Exits 0. */
#include "common.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#ifdef __wasi__
#include <wasi/api.h>
#endif

static const char *kind(mode_t mode) {
    return S_ISREG(mode)   ? "regular file"
           : S_ISDIR(mode) ? "directory"
           : S_ISLNK(mode) ? "symlink"
                           : "other";
}

static void show(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) {
        printf("stat %s: %s\n", path, errno_name(errno));
        return;
    }
    printf("stat %s: %s", path, kind(st.st_mode));
    if (!S_ISDIR(st.st_mode)) {
        /* A directory's size and link count depend on the file system. */
        printf(", size %lld, nlink %lu", (long long)st.st_size, (unsigned long)st.st_nlink);
    }
    printf("\n");
}

static void show_times(const char *path) {
    struct stat st;
    must("stat", stat(path, &st));
    printf("%s: atime %lld.%09ld mtime %lld.%09ld\n", path, (long long)st.st_atim.tv_sec,
           st.st_atim.tv_nsec, (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
}

/* Whether `t` is within a minute of the wall clock. */
static int recent(struct timespec t) {
    struct timespec now;
    must("clock_gettime", clock_gettime(CLOCK_REALTIME, &now));
    long long d = (long long)now.tv_sec - (long long)t.tv_sec;
    return d >= -60 && d <= 60;
}

int main(int argc, char **argv) {
    (void)argc;
    (void)argv;
    char data[1234];
    memset(data, 's', sizeof data);
    put_file("s.txt", data, sizeof data);
    show("s.txt");
    show(".");
    report("mkdir sd", mkdir("sd", 0755));
    show("sd");
    show("missing");
    show("s.txt/x");
    /* wasi-libc resolves "" to the pre-open of "/" and "." */
    printf(HOST);
    show("");

    struct stat by_path, by_fd, by_lstat;
    int fd = (int)must("open", open("s.txt", O_RDONLY));
    must("stat", stat("s.txt", &by_path));
    must("fstat", fstat(fd, &by_fd));
    must("lstat", lstat("s.txt", &by_lstat));
    printf("fstat: %s, size %lld\n", kind(by_fd.st_mode), (long long)by_fd.st_size);
    printf("stat, fstat and lstat agree on dev and ino: %s\n",
           yes(by_path.st_dev == by_fd.st_dev && by_path.st_ino == by_fd.st_ino &&
               by_path.st_ino == by_lstat.st_ino && by_path.st_dev == by_lstat.st_dev));
    printf("ctime recent: %s\n", yes(recent(by_fd.st_ctim)));
    close(fd);
    report("fstat on a closed fd", fstat(fd, &by_fd));

    report("link s.txt s2.txt", link("s.txt", "s2.txt"));
    show("s.txt");
    show("s2.txt");
    struct stat linked;
    must("stat s2", stat("s2.txt", &linked));
    printf("link shares the inode: %s\n", yes(linked.st_ino == by_path.st_ino));
    report("link to an existing name", link("s.txt", "s2.txt"));
    report("link missing", link("missing", "s3.txt"));
    report("unlink s2.txt", unlink("s2.txt"));
    show("s.txt");

    struct timeval tv[2] = {{1000000000, 500000}, {1234567890, 250000}};
    report("utimes", utimes("s.txt", tv));
    show_times("s.txt");
    struct timespec ts[2] = {{1500000000, 123456789}, {1600000000, 987654321}};
    report("utimensat", utimensat(AT_FDCWD, "s.txt", ts, 0));
    show_times("s.txt");
    /* Debian 12's wasi-libc (2022-05) defines UTIME_NOW and UTIME_OMIT in
     * two headers with two values, and its futimens(fd, NULL) sets both
     * times to 0: host-specific lines; the [wasi] lines below check the
     * WASI flags themselves. */
    struct timespec omit_now[2] = {{0, UTIME_OMIT}, {0, UTIME_NOW}};
    report(HOST "utimensat OMIT, NOW", utimensat(AT_FDCWD, "s.txt", omit_now, 0));
    struct stat st;
    must("stat", stat("s.txt", &st));
    printf(HOST "atime kept: %lld.%09ld, mtime now: %s\n", (long long)st.st_atim.tv_sec,
           st.st_atim.tv_nsec, yes(recent(st.st_mtim)));
    struct timespec bad[2] = {{0, 1000000000}, {0, 0}};
    report("utimensat tv_nsec 1e9", utimensat(AT_FDCWD, "s.txt", bad, 0));
    report("utimensat missing", utimensat(AT_FDCWD, "missing", ts, 0));

    fd = (int)must("open", open("s.txt", O_RDWR));
    struct timespec old[2] = {{2000000000, 1}, {1100000000, 2}};
    report("futimens", futimens(fd, old));
    show_times("s.txt");
    must("write", write(fd, "more", 4));
    must("fstat", fstat(fd, &st));
    printf("after a write: size %lld, mtime now: %s, atime kept: %lld.%09ld\n",
           (long long)st.st_size, yes(recent(st.st_mtim)), (long long)st.st_atim.tv_sec,
           st.st_atim.tv_nsec);
    report(HOST "futimens NULL (both now)", futimens(fd, NULL));
    must("fstat", fstat(fd, &st));
    printf(HOST "both now: %s\n", yes(recent(st.st_atim) && recent(st.st_mtim)));
#ifdef __wasi__
    must("futimens", futimens(fd, old));
    int e = __wasi_fd_filestat_set_times(fd, 0, 0, __WASI_FSTFLAGS_MTIM_NOW);
    must("fstat", fstat(fd, &st));
    printf("[wasi] fd_filestat_set_times MTIM_NOW: %s, atime kept: %lld.%09ld, mtime now: %s\n",
           errno_name(e), (long long)st.st_atim.tv_sec, st.st_atim.tv_nsec,
           yes(recent(st.st_mtim)));
    e = __wasi_path_filestat_set_times(3, 0, "s.txt", 0, 0,
                                       __WASI_FSTFLAGS_ATIM_NOW | __WASI_FSTFLAGS_MTIM_NOW);
    must("fstat", fstat(fd, &st));
    printf("[wasi] path_filestat_set_times ATIM_NOW|MTIM_NOW: %s, both now: %s\n",
           errno_name(e), yes(recent(st.st_atim) && recent(st.st_mtim)));
    e = __wasi_fd_filestat_set_times(fd, 5, 0, __WASI_FSTFLAGS_ATIM | __WASI_FSTFLAGS_ATIM_NOW);
    printf("[wasi] fd_filestat_set_times ATIM|ATIM_NOW: %s\n", errno_name(e));
#endif
    close(fd);

    report("utimensat on a directory", utimensat(AT_FDCWD, "sd", ts, 0));
    show_times("sd");
    fprintf(stderr, "stat done\n");
    return 0;
}

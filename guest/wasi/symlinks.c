/* symlinks: symlink, readlink (also into a short buffer), lstat against
 * stat, opening through a link to a file and to a directory, a dangling
 * link (reading through it, creating through it), a loop, O_NOFOLLOW,
 * readlink of what is not a link, unlinking and renaming a link. Every
 * target is relative and stays inside the directory (confine.c does the
 * ones that leave). Exits 0. */
#include "common.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

static void show_link(const char *path, size_t size) {
    char buf[64];
    memset(buf, 0, sizeof buf);
    ssize_t n = readlink(path, buf, size);
    if (n < 0) {
        printf("readlink %s (%zu): %s\n", path, size, errno_name(errno));
    } else {
        printf("readlink %s (%zu): %zd \"%.*s\"\n", path, size, n, (int)n, buf);
    }
}

static void show_stat(const char *what, const char *path, int follow) {
    struct stat st;
    int rc = follow ? stat(path, &st) : lstat(path, &st);
    if (rc != 0) {
        printf("%s %s: %s\n", what, path, errno_name(errno));
        return;
    }
    printf("%s %s: %s, size %lld\n", what, path,
           S_ISLNK(st.st_mode)   ? "symlink"
           : S_ISREG(st.st_mode) ? "regular file"
           : S_ISDIR(st.st_mode) ? "directory"
                                 : "other",
           S_ISDIR(st.st_mode) ? 0LL : (long long)st.st_size);
}

static void try_open(const char *what, const char *path, int flags) {
    int fd = open(path, flags, 0644);
    printf("open %s %s: %s\n", what, path, fd >= 0 ? "ok" : errno_name(errno));
    if (fd >= 0) {
        close(fd);
    }
}

int main(int argc, char **argv) {
    (void)argc;
    (void)argv;
    put_file("target.txt", "T\n", 2);
    report("symlink target.txt link", symlink("target.txt", "link"));
    report("symlink again", symlink("target.txt", "link"));
    show_link("link", 64);
    show_link("link", 4);
    show_link("target.txt", 64);
    show_link("missing", 64);
    show_stat("lstat", "link", 0);
    show_stat("stat", "link", 1);
    show_file("through link", "link");

    must("mkdir dir", mkdir("dir", 0755));
    put_file("dir/inner.txt", "inner", 5);
    report("symlink dir dlink", symlink("dir", "dlink"));
    show_stat("lstat", "dlink", 0);
    show_stat("stat", "dlink", 1);
    show_file("through dlink", "dlink/inner.txt");
    report("symlink ../target.txt dir/up", symlink("../target.txt", "dir/up"));
    show_file("through dir/up", "dir/up");
    DIR *d = opendir("dlink");
    int links = 0, files = 0;
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL) {
        links += e->d_type == DT_LNK;
        files += e->d_type == DT_REG;
    }
    if (d != NULL) {
        closedir(d);
    }
    printf("opendir dlink: %s, %d link, %d file\n", yes(d != NULL), links, files);

    report("symlink nowhere dangling", symlink("nowhere", "dangling"));
    show_stat("lstat", "dangling", 0);
    show_stat("stat", "dangling", 1);
    try_open("O_RDONLY", "dangling", O_RDONLY);
    /* O_CREAT through a dangling link creates its target (POSIX). */
    try_open("O_CREAT", "dangling", O_WRONLY | O_CREAT);
    show_stat("stat", "nowhere", 1);
    try_open("O_CREAT|O_EXCL", "link", O_WRONLY | O_CREAT | O_EXCL);

    report("symlink loop2 loop1", symlink("loop2", "loop1"));
    report("symlink loop1 loop2", symlink("loop1", "loop2"));
    try_open("O_RDONLY", "loop1", O_RDONLY);
    show_stat("stat", "loop1", 1);
    show_stat("lstat", "loop1", 0);
    try_open("O_NOFOLLOW", "link", O_RDONLY | O_NOFOLLOW);
    try_open("O_NOFOLLOW", "target.txt", O_RDONLY | O_NOFOLLOW);
    try_open("O_DIRECTORY", "dlink", O_RDONLY | O_DIRECTORY);
    try_open("O_DIRECTORY", "link", O_RDONLY | O_DIRECTORY);
    try_open("trailing slash", "link/", O_RDONLY);
    try_open("trailing slash", "dlink/", O_RDONLY);

    report("symlink to an empty target", symlink("", "empty"));
    report("rename link renamed", rename("link", "renamed"));
    show_link("renamed", 64);
    report("unlink renamed", unlink("renamed"));
    show_stat("lstat", "renamed", 0);
    show_file("target after unlinking the link", "target.txt");
    report("unlink dlink (a link to a directory)", unlink("dlink"));
    show_stat("stat", "dir", 1);
    report("rmdir of a link", rmdir("dangling"));
    fprintf(stderr, "symlinks done\n");
    return 0;
}

/* rename and unlink: rename a file, over an existing file (replaced), onto
 * itself, a directory (empty and non-empty targets), a file over a
 * directory and back, into a missing directory, into its own subdirectory;
 * unlink a file, a directory, a missing name; a file unlinked while open
 * stays readable. Exits 0. */
#include "common.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

static void exists(const char *path) {
    struct stat st;
    printf("  %s exists: %s\n", path, yes(lstat(path, &st) == 0));
}

int main(int argc, char **argv) {
    (void)argc;
    (void)argv;
    put_file("a.txt", "A", 1);
    put_file("b.txt", "B", 1);
    report("rename a.txt c.txt", rename("a.txt", "c.txt"));
    exists("a.txt");
    show_file("  c.txt", "c.txt");
    report("rename c.txt b.txt (replaces)", rename("c.txt", "b.txt"));
    exists("c.txt");
    show_file("  b.txt", "b.txt");
    report("rename b.txt b.txt", rename("b.txt", "b.txt"));
    show_file("  b.txt", "b.txt");
    report("rename missing x", rename("missing", "x"));
    report("rename b.txt nodir/b.txt", rename("b.txt", "nodir/b.txt"));
    report("rename b.txt b.txt/x", rename("b.txt", "b.txt/x"));

    must("mkdir d1", mkdir("d1", 0755));
    put_file("d1/f", "F", 1);
    must("mkdir d2", mkdir("d2", 0755));
    report("rename d1 d2 (empty target: replaced)", rename("d1", "d2"));
    exists("d1");
    show_file("  d2/f", "d2/f");
    must("mkdir d3", mkdir("d3", 0755));
    put_file("d3/g", "G", 1);
    report("rename d2 d3 (target not empty)", rename("d2", "d3"));
    report("rename b.txt d3 (file over a directory)", rename("b.txt", "d3"));
    report("rename d3 b.txt (directory over a file)", rename("d3", "b.txt"));
    report("rename d3 d3/sub (into itself)", rename("d3", "d3/sub"));
    report("rename d3/g d2/g (across directories)", rename("d3/g", "d2/g"));
    show_file("  d2/g", "d2/g");
    report("rename d3 d4 (empty directory)", rename("d3", "d4"));
    exists("d3");
    exists("d4");
    report("rename d4/ d5/ (trailing slashes)", rename("d4/", "d5/"));
    exists("d5");
    report("rename b.txt/ x (trailing slash on a file)", rename("b.txt/", "x"));

    report("unlink b.txt", unlink("b.txt"));
    exists("b.txt");
    report("unlink b.txt again", unlink("b.txt"));
    report("unlink d5 (a directory)", unlink("d5"));
    report("unlink d2/missing", unlink("d2/missing"));
    report("unlink d2/g/x", unlink("d2/g/x"));
    report("remove d5", remove("d5"));
    exists("d5");

    put_file("open.txt", "still here", 10);
    int fd = (int)must("open", open("open.txt", O_RDONLY));
    report("unlink open.txt while open", unlink("open.txt"));
    exists("open.txt");
    char buf[16] = {0};
    printf("read after unlink: %zd \"%s\"\n", read(fd, buf, sizeof buf - 1), buf);
    struct stat st;
    must("fstat", fstat(fd, &st));
    printf("fstat after unlink: size %lld, nlink %lu\n", (long long)st.st_size,
           (unsigned long)st.st_nlink);
    close(fd);
    fprintf(stderr, "rename done\n");
    return 0;
}

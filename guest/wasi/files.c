/* files: fopen modes (w, r, a, r+, w+, wx), fread/fwrite/fgets, fseek and
 * ftell from each origin, seeking past the end, truncate/ftruncate both
 * ways, append ignoring the position, pread/pwrite leaving it alone, and
 * the errors of opening what cannot be opened. Exits 0. */
#include "common.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

static long size_of(const char *path) {
    struct stat st;
    must("stat", stat(path, &st));
    return (long)st.st_size;
}

static void try_fopen(const char *path, const char *mode) {
    FILE *f = fopen(path, mode);
    printf("fopen %s \"%s\": %s\n", path, mode, f != NULL ? "ok" : errno_name(errno));
    if (f != NULL) {
        fclose(f);
    }
}

int main(int argc, char **argv) {
    (void)argc;
    (void)argv;
    FILE *f = fopen("a.txt", "w");
    if (f == NULL) {
        fail("fopen a.txt w");
    }
    printf("fputs: %d\n", fputs("hello\nworld\n", f) >= 0);
    printf("fwrite: %zu\n", fwrite("xyz", 1, 3, f));
    printf("ftell after writes: %ld\n", ftell(f));
    must("fclose", fclose(f));
    printf("size: %ld\n", size_of("a.txt"));

    f = fopen("a.txt", "r");
    if (f == NULL) {
        fail("fopen a.txt r");
    }
    char line[64];
    while (fgets(line, sizeof line, f) != NULL) {
        printf("line: %s%s", line, strchr(line, '\n') ? "" : "<no newline>\n");
    }
    printf("feof: %s\n", yes(feof(f)));
    report("fseek SET 6", fseek(f, 6, SEEK_SET));
    long at = ftell(f);
    printf("ftell: %ld, fgets: %s", at, fgets(line, sizeof line, f));
    report("fseek END -3", fseek(f, -3, SEEK_END));
    at = ftell(f);
    printf("ftell: %ld, fgetc: %c\n", at, fgetc(f));
    report("fseek CUR -4", fseek(f, -4, SEEK_CUR));
    at = ftell(f);
    printf("ftell: %ld, fgetc: %c\n", at, fgetc(f));
    report("fseek SET 100 (past the end)", fseek(f, 100, SEEK_SET));
    at = ftell(f);
    printf("ftell: %ld, fgetc is EOF: %s\n", at, yes(fgetc(f) == EOF));
    report("fseek SET -1", fseek(f, -1, SEEK_SET));
    rewind(f);
    char buf[64] = {0};
    printf("fread 5 after rewind: %zu \"%.5s\"\n", fread(buf, 1, 5, f), buf);
    int pushed = ungetc('Q', f);
    printf("ungetc: %c, then fgetc: %c\n", pushed, fgetc(f));
    size_t wrote = fwrite("x", 1, 1, f);
    printf("fwrite on a read-only stream: %zu, ferror %s\n", wrote, yes(ferror(f)));
    fclose(f);

    /* "a": every write goes to the end, wherever the position is. */
    f = fopen("a.txt", "a");
    if (f == NULL) {
        fail("fopen a.txt a");
    }
    fseek(f, 0, SEEK_SET);
    fputs("\nappended", f);
    fclose(f);
    show_file("after append", "a.txt");

    /* "r+": overwrite in place. */
    f = fopen("a.txt", "r+");
    if (f == NULL) {
        fail("fopen a.txt r+");
    }
    fputs("HELLO", f);
    fseek(f, 0, SEEK_CUR);
    printf("r+ read after write: %d\n", fgetc(f));
    fclose(f);
    show_file("after r+", "a.txt");

    /* "w+": truncates, then reads back what it wrote. */
    f = fopen("a.txt", "w+");
    if (f == NULL) {
        fail("fopen a.txt w+");
    }
    printf("w+ size at open: %ld\n", size_of("a.txt"));
    fputs("0123456789", f);
    rewind(f);
    memset(buf, 0, sizeof buf);
    printf("w+ read back: %zu \"%s\"\n", fread(buf, 1, sizeof buf - 1, f), buf);
    fclose(f);

    try_fopen("a.txt", "wx");
    try_fopen("new.txt", "wx");
    try_fopen("missing.txt", "r");
    try_fopen("missing/x.txt", "w");
    try_fopen("a.txt/x", "r");
    must("mkdir", mkdir("adir", 0755));
    try_fopen("adir", "w");
    try_fopen("adir", "r+");

    /* truncate shrinks, and grows with zeros. */
    report("truncate a.txt 4", truncate("a.txt", 4));
    show_file("after truncate 4", "a.txt");
    report("truncate a.txt 7", truncate("a.txt", 7));
    show_file("after truncate 7", "a.txt");
    report("truncate missing.txt", truncate("missing.txt", 1));
    report("truncate adir", truncate("adir", 1));

    int fd = (int)must("open a.txt O_RDWR", open("a.txt", O_RDWR));
    report("ftruncate 2", ftruncate(fd, 2));
    report("ftruncate -1", ftruncate(fd, -1));
    printf("size after ftruncate: %ld\n", size_of("a.txt"));
    printf("pwrite at 5: %zd\n", pwrite(fd, "PW", 2, 5));
    printf("offset after pwrite: %ld\n", (long)lseek(fd, 0, SEEK_CUR));
    memset(buf, 0, sizeof buf);
    printf("pread 3 at 4: %zd", pread(fd, buf, 3, 4));
    printf(" \"\\x%02x%s\"\n", (unsigned char)buf[0], buf + 1);
    printf("offset after pread: %ld\n", (long)lseek(fd, 0, SEEK_CUR));
    printf("pread at 1000: %zd\n", pread(fd, buf, 3, 1000));
    printf("read: %zd\n", read(fd, buf, 2));
    close(fd);
    show_file("after pwrite", "a.txt");

    fd = (int)must("open O_RDONLY", open("a.txt", O_RDONLY));
    report("write on O_RDONLY", write(fd, "x", 1));
    close(fd);
    fd = (int)must("open O_WRONLY", open("a.txt", O_WRONLY));
    report("read on O_WRONLY", read(fd, buf, 1));
    close(fd);
    report("open O_CREAT|O_EXCL existing",
           open("a.txt", O_WRONLY | O_CREAT | O_EXCL, 0644));
    fd = (int)must("open O_TRUNC", open("a.txt", O_WRONLY | O_TRUNC));
    printf("size after O_TRUNC: %ld\n", size_of("a.txt"));
    close(fd);
    report("open O_DIRECTORY on a file", open("a.txt", O_RDONLY | O_DIRECTORY));
    fd = (int)open("adir", O_RDONLY | O_DIRECTORY);
    report("open O_DIRECTORY on a dir", fd);
    report(HOST "read on a directory", read(fd, buf, 1));
    close(fd);
    fprintf(stderr, "files done\n");
    return 0;
}

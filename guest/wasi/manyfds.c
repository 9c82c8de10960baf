/* many fds: 500 files open at once (each written with its number, all
 * fds distinct), read back through every fd while all are open, closed
 * together; then one directory opened 500 times at once. (An empty one:
 * wasi-libc's opendir reads the first entries, and wasmtime-wasi stats
 * every entry of the directory on each read, which would make 500 opens of
 * the 500-file directory cost 250 000 stats.) Exits 0. */
#include "common.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#define N 500

static int by_int(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* Whether the N fds in `fds` are all different. */
static int all_distinct(const int *fds) {
    static int sorted[N];
    memcpy(sorted, fds, sizeof sorted);
    qsort(sorted, N, sizeof *sorted, by_int);
    for (int i = 1; i < N; i++) {
        if (sorted[i] == sorted[i - 1]) {
            return 0;
        }
    }
    return 1;
}

int main(int argc, char **argv) {
    (void)argc;
    (void)argv;
    static int fds[N];
    char name[32], buf[32];
    int opened = 0, wrong = 0, closed = 0;
    must("mkdir", mkdir("many", 0755));
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "many/f%03d", i);
        fds[i] = open(name, O_RDWR | O_CREAT | O_EXCL, 0644);
        if (fds[i] < 0) {
            fail(name);
        }
        opened++;
        int len = snprintf(buf, sizeof buf, "file %d", i);
        must("write", write(fds[i], buf, (size_t)len));
    }
    printf("opened %d files at once, fds all distinct: %s\n", opened, yes(all_distinct(fds)));
    for (int i = 0; i < N; i++) {
        char want[32];
        int len = snprintf(want, sizeof want, "file %d", i);
        memset(buf, 0, sizeof buf);
        if (pread(fds[i], buf, sizeof buf - 1, 0) != len || strcmp(buf, want) != 0) {
            wrong++;
        }
    }
    printf("read back through each: %d wrong\n", wrong);
    for (int i = 0; i < N; i++) {
        closed += close(fds[i]) == 0;
    }
    printf("closed %d\n", closed);
    report("read a closed one", read(fds[N / 2], buf, 1));

    static DIR *dirs[N];
    opened = 0;
    must("mkdir", mkdir("empty", 0755));
    for (int i = 0; i < N; i++) {
        dirs[i] = opendir("empty");
        opened += dirs[i] != NULL;
    }
    printf("opened the directory %d times at once\n", opened);
    int entries = 0;
    while (readdir(dirs[N - 1]) != NULL) {
        entries++;
    }
    printf("the last one lists %d entries\n", entries);
    closed = 0;
    for (int i = 0; i < N; i++) {
        closed += dirs[i] != NULL && closedir(dirs[i]) == 0;
    }
    printf("closed %d\n", closed);

    int again = open("many/f000", O_RDONLY);
    report("open after closing them all", again);
    close(again);
    fprintf(stderr, "manyfds done\n");
    return 0;
}

/* 1,000,000 writes of 4 KiB to stdout (run with stdout on /dev/null), or
 * as many as argv[1] says (fewer, for callgrind). */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    static char buf[4096];
    int count = argc > 1 ? atoi(argv[1]) : 1000000;
    memset(buf, 'x', sizeof buf);
    for (int i = 0; i < count; i++) {
        if (write(STDOUT_FILENO, buf, sizeof buf) != (ssize_t)sizeof buf) return 1;
    }
    return 0;
}

/* 1,000,000 writes of 4 KiB to stdout (run with stdout on /dev/null). */
#include <string.h>
#include <unistd.h>

int main(void) {
    static char buf[4096];
    memset(buf, 'x', sizeof buf);
    for (int i = 0; i < 1000000; i++) {
        if (write(STDOUT_FILENO, buf, sizeof buf) != (ssize_t)sizeof buf) return 1;
    }
    return 0;
}

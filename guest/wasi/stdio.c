/* stdio: printf and friends on stdout, stderr unbuffered, raw write() and
 * writev() after a flush, bytes that are not text, and stdin read to EOF
 * (the runners feed it stdin.txt). Exits 0. */
#include "common.h"

#include <stdint.h>
#include <sys/uio.h>
#include <unistd.h>

int main(int argc, char **argv) {
    (void)argc;
    (void)argv;
    printf("hello from stdio\n");
    printf("formatted: %d %5.2f %s %#x %lld %c\n", 42, 3.14159, "str", 0xbeef,
           -1234567890123LL, 'z');
    puts("puts line");
    fputc('c', stdout);
    fputc('\n', stdout);
    fputs("to stderr\n", stderr);
    fprintf(stderr, "stderr formatted %d\n", -7);

    /* stdout is buffered: flush it before writing around stdio. */
    fflush(stdout);
    must("write", write(1, "raw write\n", 10));
    printf("zero-length write returns %zd\n", write(1, "", 0));
    fflush(stdout);
    struct iovec iov[3] = {
        {.iov_base = "writev ", .iov_len = 7},
        {.iov_base = "", .iov_len = 0},
        {.iov_base = "gathers\n", .iov_len = 8},
    };
    fflush(stdout);
    /* A runtime may write fewer bytes than asked (wasmtime-wasi writes the
     * first non-empty buffer only): go on until all are out. */
    size_t left = 7 + 8;
    while (left > 0) {
        ssize_t n = must("writev", writev(1, iov, 3));
        left -= (size_t)n;
        for (int i = 0; i < 3; i++) {
            size_t used = (size_t)n < iov[i].iov_len ? (size_t)n : iov[i].iov_len;
            iov[i].iov_base = (char *)iov[i].iov_base + used;
            iov[i].iov_len -= used;
            n -= (ssize_t)used;
        }
    }
    must("write stderr", write(2, "raw stderr\n", 11));

    /* Bytes that are not text pass through unchanged. */
    static const char binary[] = {'b', 0, 1, (char)0x80, (char)0xff, '\n'};
    fwrite(binary, 1, sizeof binary, stdout);

    /* A line longer than stdio's buffer. */
    for (int i = 0; i < 5000; i++) {
        putchar('a' + i % 26);
    }
    putchar('\n');

    /* stdin to EOF. */
    uint32_t sum = 0;
    unsigned long bytes = 0, lines = 0;
    int c;
    while ((c = getchar()) != EOF) {
        sum = sum * 31 + (unsigned char)c;
        bytes++;
        lines += c == '\n';
    }
    printf("stdin: %lu bytes, %lu lines, checksum %lu, eof %s, error %s\n", bytes,
           lines, (unsigned long)sum, yes(feof(stdin)), yes(ferror(stdin)));
    char buf[4];
    printf("read after eof returns %zd\n", read(0, buf, sizeof buf));

    fprintf(stderr, "done\n");
    return 0;
}

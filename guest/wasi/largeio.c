/* large I/O: 8 MiB written through fwrite in chunks of changing sizes,
 * read back through fread in other sizes and checked byte by byte; then
 * the whole 8 MiB in one write() and one read() (single fd_write and
 * fd_read calls that the runtime may split). Exits 0. */
#include "common.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#define SIZE (8u << 20)

static unsigned char pattern(size_t i) {
    return (unsigned char)(i * 31 + (i >> 13) + 7);
}

int main(int argc, char **argv) {
    (void)argc;
    (void)argv;
    unsigned char *data = malloc(SIZE), *back = malloc(SIZE);
    if (data == NULL || back == NULL) {
        fail("malloc");
    }
    for (size_t i = 0; i < SIZE; i++) {
        data[i] = pattern(i);
    }

    FILE *f = fopen("big.bin", "w");
    if (f == NULL) {
        fail("fopen w");
    }
    static const size_t chunks[] = {1, 4095, 4096, 4097, 65536, 100000, 1 << 20};
    size_t done = 0, calls = 0;
    while (done < SIZE) {
        size_t n = chunks[calls++ % (sizeof chunks / sizeof chunks[0])];
        if (n > SIZE - done) {
            n = SIZE - done;
        }
        if (fwrite(data + done, 1, n, f) != n) {
            fail("fwrite");
        }
        done += n;
    }
    must("fclose", fclose(f));
    struct stat st;
    must("stat", stat("big.bin", &st));
    printf("fwrite: %zu bytes in %zu calls, file size %lld\n", done, calls, (long long)st.st_size);

    f = fopen("big.bin", "r");
    if (f == NULL) {
        fail("fopen r");
    }
    static const size_t reads[] = {7, 8192, 12345, 65536, 3 << 20};
    size_t got = 0;
    calls = 0;
    for (;;) {
        size_t n = reads[calls++ % (sizeof reads / sizeof reads[0])];
        if (n > SIZE - got) {
            n = SIZE - got;
        }
        size_t r = fread(back + got, 1, n, f);
        got += r;
        if (r < n || got == SIZE) {
            break;
        }
    }
    unsigned char extra;
    printf("fread: %zu bytes, then EOF: %s\n", got, yes(fread(&extra, 1, 1, f) == 0 && feof(f)));
    fclose(f);
    size_t first_bad = SIZE;
    for (size_t i = 0; i < SIZE; i++) {
        if (back[i] != data[i]) {
            first_bad = i;
            break;
        }
    }
    printf("contents match: %s\n", yes(first_bad == SIZE));

    int fd = (int)must("open", open("big2.bin", O_RDWR | O_CREAT | O_TRUNC, 0644));
    size_t wrote = 0;
    while (wrote < SIZE) {
        ssize_t n = write(fd, data + wrote, SIZE - wrote);
        if (n <= 0) {
            fail("write");
        }
        wrote += (size_t)n;
    }
    printf("write: %zu bytes\n", wrote);
    must("lseek", lseek(fd, 0, SEEK_SET));
    memset(back, 0, SIZE);
    size_t read_total = 0;
    while (read_total < SIZE) {
        ssize_t n = read(fd, back + read_total, SIZE - read_total);
        if (n <= 0) {
            fail("read");
        }
        read_total += (size_t)n;
    }
    printf("read: %zu bytes, then %zd at EOF, contents match: %s\n", read_total,
           read(fd, &extra, 1), yes(memcmp(back, data, SIZE) == 0));
    close(fd);
    fprintf(stderr, "largeio done\n");
    return 0;
}

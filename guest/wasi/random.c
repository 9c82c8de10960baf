/* random: getentropy fills its buffer (bytes spread over many values, two
 * draws differ), its 256-byte limit (EIO past it), zero bytes; arc4random
 * as libc builds it on the same source. Prints facts, never bytes. Exits
 * 0. */
#include "common.h"

#include <stdint.h>
#include <unistd.h>
#ifdef __wasi__
#include <wasi/api.h>
#else
#include <sys/random.h>
#endif

/* How many distinct byte values `n` bytes hold. */
static int distinct(const unsigned char *buf, size_t n) {
    int seen[256] = {0}, count = 0;
    for (size_t i = 0; i < n; i++) {
        count += !seen[buf[i]]++;
    }
    return count;
}

int main(int argc, char **argv) {
    (void)argc;
    (void)argv;
    unsigned char a[1024], b[1024];
    memset(a, 0, sizeof a);
    memset(b, 0, sizeof b);
    for (size_t off = 0; off < sizeof a; off += 256) {
        must("getentropy", getentropy(a + off, 256));
        must("getentropy", getentropy(b + off, 256));
    }
    /* 1024 random bytes hold about 252 distinct values; fewer than 200 has
     * a probability below 1e-30. */
    printf("getentropy 4 x 256: over 200 distinct byte values: %s\n",
           yes(distinct(a, sizeof a) > 200));
    printf("two draws differ: %s\n", yes(memcmp(a, b, sizeof a) != 0));
    report("getentropy 257", getentropy(a, 257));
    report("getentropy 0", getentropy(a, 0));

    unsigned char tail[8];
    memset(tail, 0xAA, sizeof tail);
    must("getentropy", getentropy(tail, 4));
    printf("getentropy 4 leaves the bytes after them: %s\n",
           yes(tail[4] == 0xAA && tail[5] == 0xAA && tail[6] == 0xAA && tail[7] == 0xAA));

    memset(a, 0, sizeof a);
    arc4random_buf(a, sizeof a);
    printf("arc4random_buf: over 200 distinct byte values: %s\n", yes(distinct(a, sizeof a) > 200));
    uint32_t below = arc4random_uniform(10);
    printf("arc4random_uniform(10) < 10: %s\n", yes(below < 10));

    static unsigned char big[1 << 20];
#ifdef __wasi__
    printf("random_get 1 MiB: %s\n", errno_name(__wasi_random_get(big, sizeof big)));
#else
    size_t got = 0;
    while (got < sizeof big) {
        ssize_t n = getrandom(big + got, sizeof big - got, 0);
        if (n < 0) {
            fail("getrandom");
        }
        got += (size_t)n;
    }
    printf("random_get 1 MiB: ok\n");
#endif
    printf("1 MiB: every byte value seen: %s\n", yes(distinct(big, sizeof big) == 256));
    fprintf(stderr, "random done\n");
    return 0;
}

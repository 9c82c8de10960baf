/* poll (poll_oneoff under WASI): a timeout alone sleeps at least as long,
 * timeout 0 returns at once, a regular file is ready for reading and for
 * writing, stdout for writing, stdin (empty) for reading, a closed fd
 * is POLLNVAL, a negative fd is skipped. Exits 0. */
#include "common.h"

#include <fcntl.h>
#include <poll.h>
#include <time.h>
#include <unistd.h>

static long long now_ms(void) {
    struct timespec t;
    must("clock_gettime", clock_gettime(CLOCK_MONOTONIC, &t));
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void show(const char *what, int rc, struct pollfd *fds, int n) {
    printf("%s: %s", what, rc >= 0 ? "" : errno_name(errno));
    if (rc >= 0) {
        printf("%d ready", rc);
    }
    for (int i = 0; i < n; i++) {
        short r = fds[i].revents;
        printf(" [%s%s%s%s%s]", r & POLLIN ? "IN " : "", r & POLLOUT ? "OUT " : "",
               r & POLLHUP ? "HUP " : "", r & POLLERR ? "ERR " : "", r & POLLNVAL ? "NVAL " : "");
    }
    printf("\n");
}

int main(int argc, char **argv) {
    (void)argc;
    (void)argv;
    long long start = now_ms();
    int rc = poll(NULL, 0, 0);
    printf("poll no fds, timeout 0: %d\n", rc);
    start = now_ms();
    rc = poll(NULL, 0, 30);
    long long took = now_ms() - start;
    printf("poll no fds, timeout 30ms: %d, waited long enough: %s, not far too long: %s\n", rc,
           yes(took >= 30), yes(took < 2030));

    put_file("p.txt", "data", 4);
    int file = (int)must("open", open("p.txt", O_RDWR));
    /* One event per call: poll returns as soon as one event is ready, and
     * which of two ready events a runtime notices first is its business
     * (wasmtime reads a file for POLLIN on a thread; POLLOUT is ready at
     * once). */
    struct pollfd fds[4] = {{.fd = file, .events = POLLIN}};
    show("file IN", poll(fds, 1, 1000), fds, 1);
    fds[0] = (struct pollfd){.fd = file, .events = POLLOUT};
    show("file OUT", poll(fds, 1, 1000), fds, 1);
    fds[0] = (struct pollfd){.fd = 0, .events = POLLIN};
    show("stdin (empty) IN", poll(fds, 1, 1000), fds, 1);
    fds[0] = (struct pollfd){.fd = 1, .events = POLLOUT};
    show("stdout OUT", poll(fds, 1, 1000), fds, 1);

    fds[0] = (struct pollfd){.fd = file, .events = POLLOUT};
    fds[1] = (struct pollfd){.fd = -1, .events = POLLIN};
    fds[2] = (struct pollfd){.fd = 2, .events = POLLOUT};
    show("file OUT, fd -1, stderr OUT", poll(fds, 3, 1000), fds, 3);

    int closed = (int)must("open", open("p.txt", O_RDONLY));
    close(closed);
    fds[0] = (struct pollfd){.fd = closed, .events = POLLIN};
    rc = poll(fds, 1, 500);
    printf(HOST);
    show("closed fd", rc, fds, 1);
    close(file);
    fprintf(stderr, "poll done\n");
    return 0;
}

/* clocks: the monotonic clock never goes back, the realtime clock is past
 * 2020, resolutions are positive, nanosleep/clock_nanosleep/usleep sleep
 * at least as long as asked (relative and absolute), a bad timespec is
 * EINVAL; under WASI, what the CPU-time clocks answer. Prints facts, never times. Exits 0. */
#include "common.h"

#include <time.h>
#include <unistd.h>
#ifdef __wasi__
#include <wasi/api.h>
#endif

static long long ns(struct timespec t) {
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static long long now(clockid_t clock) {
    struct timespec t;
    must("clock_gettime", clock_gettime(clock, &t));
    return ns(t);
}

/* Runs one sleep of `want` ns and prints whether it took at least that
 * long (and less than two seconds more). */
static void timed(const char *what, int rc_of_sleep, long long start, long long want) {
    long long took = now(CLOCK_MONOTONIC) - start;
    printf("%s: %s, slept long enough: %s, not far too long: %s\n", what,
           rc_of_sleep == 0 ? "ok" : errno_name(errno), yes(took >= want),
           yes(took < want + 2000000000LL));
}

int main(int argc, char **argv) {
    (void)argc;
    (void)argv;
    long long prev = now(CLOCK_MONOTONIC), backwards = 0;
    for (int i = 0; i < 1000; i++) {
        long long t = now(CLOCK_MONOTONIC);
        backwards += t < prev;
        prev = t;
    }
    printf("monotonic went back in 1000 reads: %lld times\n", backwards);
    printf("realtime is after 2020: %s\n", yes(now(CLOCK_REALTIME) > 1577836800LL * 1000000000LL));
    printf("time() agrees with realtime: %s\n",
           yes(llabs((long long)time(NULL) - now(CLOCK_REALTIME) / 1000000000LL) <= 1));

    struct timespec res;
    must("clock_getres", clock_getres(CLOCK_MONOTONIC, &res));
    printf("monotonic resolution in (0, 1ms]: %s\n", yes(ns(res) > 0 && ns(res) <= 1000000));
    must("clock_getres", clock_getres(CLOCK_REALTIME, &res));
    printf("realtime resolution in (0, 1s]: %s\n", yes(ns(res) > 0 && ns(res) <= 1000000000));

    long long start = now(CLOCK_MONOTONIC);
    struct timespec req = {0, 20000000};
    timed("nanosleep 20ms", nanosleep(&req, NULL), start, 20000000);
    start = now(CLOCK_MONOTONIC);
    struct timespec zero = {0, 0};
    timed("nanosleep 0", nanosleep(&zero, NULL), start, 0);
    struct timespec bad = {0, 1000000000};
    report("nanosleep tv_nsec 1e9", nanosleep(&bad, NULL));
    struct timespec negative = {-1, 0};
    /* wasi-libc takes a negative time as no time. */
    report(HOST "nanosleep -1 s", nanosleep(&negative, NULL));

    start = now(CLOCK_MONOTONIC);
    struct timespec until = {(start + 15000000) / 1000000000, (start + 15000000) % 1000000000};
    int rc = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, NULL);
    errno = rc;
    timed("clock_nanosleep MONOTONIC absolute +15ms", rc, start, 15000000);
    start = now(CLOCK_MONOTONIC);
    req.tv_nsec = 10000000;
    rc = clock_nanosleep(CLOCK_REALTIME, 0, &req, NULL);
    errno = rc;
    timed("clock_nanosleep REALTIME relative 10ms", rc, start, 10000000);
    start = now(CLOCK_MONOTONIC);
    rc = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &zero, NULL);
    errno = rc;
    timed("clock_nanosleep to a time long past", rc, start, 0);
    start = now(CLOCK_MONOTONIC);
    timed("usleep 5ms", usleep(5000), start, 5000000);
    start = now(CLOCK_MONOTONIC);
    timed("sleep 0", (int)sleep(0), start, 0);

#ifdef __wasi__
    /* wasi-libc only offers the CPU-time clocks with emulation; ask WASI. */
    __wasi_timestamp_t t;
    printf("[wasi] clock_time_get PROCESS_CPUTIME_ID: %s\n",
           errno_name(__wasi_clock_time_get(__WASI_CLOCKID_PROCESS_CPUTIME_ID, 1, &t)));
    printf("[wasi] clock_res_get THREAD_CPUTIME_ID: %s\n",
           errno_name(__wasi_clock_res_get(__WASI_CLOCKID_THREAD_CPUTIME_ID, &t)));
    printf("[wasi] clock_time_get with precision 0: %s\n",
           errno_name(__wasi_clock_time_get(__WASI_CLOCKID_MONOTONIC, 0, &t)));
#endif
    fprintf(stderr, "clocks done\n");
    return 0;
}

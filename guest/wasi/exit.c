/* exit codes: argv[1] says how to end, argv[2] with which status.
 *   return N  main returns N
 *   exit N    exit(N) after printf without a newline (exit flushes stdio)
 *   _Exit N   _Exit(N) after a raw write (nothing buffered to lose)
 *   atexit N  exit(N) runs the atexit handlers, last registered first
 *   abort     abort(): a trap under WASI, SIGABRT natively
 *   raise     under WASI, what proc_raise(SIGTERM) returns (then exits 0) */
#include "common.h"

#include <stdint.h>
#include <unistd.h>
#ifdef __wasi__
/* wasi-libc no longer declares proc_raise; the import is still WASI's. */
int32_t wasi_proc_raise(int32_t signal)
    __attribute__((__import_module__("wasi_snapshot_preview1"), __import_name__("proc_raise")));
/* WASI's SIGTERM. */
#define WASI_SIGNAL_TERM 15
#endif

static void first_registered(void) {
    printf("atexit: first registered, runs last\n");
}

static void second_registered(void) {
    printf("atexit: second registered, runs first\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: exit MODE [STATUS]\n");
        return 2;
    }
    const char *mode = argv[1];
    int status = argc > 2 ? atoi(argv[2]) : 0;
    printf("mode %s, status %d\n", mode, status);
    fprintf(stderr, "stderr before %s\n", mode);
    if (strcmp(mode, "return") == 0) {
        return status;
    }
    if (strcmp(mode, "exit") == 0) {
        printf("no newline before exit");
        exit(status);
    }
    if (strcmp(mode, "_Exit") == 0) {
        fflush(stdout);
        must("write", write(1, "raw write before _Exit\n", 23));
        _Exit(status);
    }
    if (strcmp(mode, "atexit") == 0) {
        atexit(first_registered);
        atexit(second_registered);
        exit(status);
    }
    if (strcmp(mode, "abort") == 0) {
        fflush(stdout);
        abort();
    }
    if (strcmp(mode, "raise") == 0) {
#ifdef __wasi__
        printf("[wasi] proc_raise SIGTERM: %s\n",
               errno_name(wasi_proc_raise(WASI_SIGNAL_TERM)));
#else
        printf("[native] proc_raise is WASI's\n");
#endif
        return 0;
    }
    fprintf(stderr, "unknown mode %s\n", mode);
    return 2;
}

/*
 * pipe_echo.c: pipes and poll.
 *
 * Shows: custody_pipe, writing and reading through the two ends,
 * custody_poll with a finite timeout, end of file on a pipe.
 *
 * Export:  int32_t echo(int32_t n)
 *   0 <= n <= 1024. Makes a pipe, writes n pattern bytes into the write end
 *   and closes it, polls the read end (timeout 1000 ms), reads until end of
 *   file, closes the read end. Closing the write end first makes the read
 *   end readable even for n == 0 (hang-up) and lets the read loop stop at
 *   end of file.
 *   Returns the number of bytes read back (== n), or a negative
 *   CUSTODY_E_* code (CUSTODY_E_INVAL for n outside 0..1024).
 *
 * Host:    custody run pipe_echo.wasm --invoke echo 100 --json
 *   Result [100]; ledger opened 2, closed_by_guest 2, released_at_unload 0.
 */
#include <custody.h>

#define MAX_ECHO 1024

static char out_buf[MAX_ECHO];
static char in_buf[MAX_ECHO];

/* Write all of out_buf[0..len), looping over short writes. */
static int32_t write_all(custody_handle h, int32_t len)
{
    int32_t done = 0;
    while (done < len) {
        int32_t n = 0;
        int32_t rc = custody_write(h, CUSTODY_PTR(out_buf + done), len - done,
                                   CUSTODY_PTR(&n));
        if (rc < 0) {
            return rc;
        }
        done += n;
    }
    return 0;
}

/* Wait for the read end, then read until end of file. */
static int32_t read_back(custody_handle h)
{
    int32_t ready = -1;
    int32_t rc = custody_poll(CUSTODY_PTR(&h), 1, 1000, CUSTODY_PTR(&ready));
    if (rc < 0) {
        return rc;
    }

    int32_t total = 0;
    while (total < MAX_ECHO) {
        int32_t n = 0;
        rc = custody_read(h, CUSTODY_PTR(in_buf + total), MAX_ECHO - total,
                          CUSTODY_PTR(&n));
        if (rc < 0) {
            return rc;
        }
        if (n == 0) {
            break; /* end of file: the write end is closed */
        }
        total += n;
    }
    return total;
}

CUSTODY_EXPORT(echo) int32_t echo(int32_t n)
{
    if (n < 0 || n > MAX_ECHO) {
        return CUSTODY_E_INVAL;
    }
    for (int32_t i = 0; i < n; i++) {
        out_buf[i] = (char)('a' + i % 26);
    }

    custody_handle r = CUSTODY_HANDLE_NULL;
    custody_handle w = CUSTODY_HANDLE_NULL;
    int32_t rc = custody_pipe(CUSTODY_PTR(&r), CUSTODY_PTR(&w));
    if (rc < 0) {
        return rc;
    }

    rc = write_all(w, n);
    custody_close(w);
    if (rc >= 0) {
        rc = read_back(r);
    }
    custody_close(r);
    return rc;
}

/*
 * copy.c: file I/O under a pre-opened directory.
 *
 * Shows: custody_open with NAME/rel/path paths and open flags, a read/write
 * loop that handles short writes, closing on every path, and passing errors
 * back as the export's result.
 *
 * Export:  int32_t copy(void)
 *   Opens data/in.txt read-only and data/out.txt create|write|trunc, copies
 *   every byte through a 4 KiB static buffer, closes both handles.
 *   Returns the number of bytes copied (< 2 GiB), or a negative
 *   CUSTODY_E_* code (e.g. CUSTODY_E_IO when in.txt is missing,
 *   CUSTODY_E_DENIED when no directory is pre-opened as "data").
 *
 * Host:    custody run copy.wasm --invoke copy --preopen data=DIR --json
 *   With DIR/in.txt holding N bytes: result [N], DIR/out.txt equals
 *   in.txt, ledger opened 2, closed_by_guest 2, released_at_unload 0.
 */
#include <custody.h>

static char buf[4096];

static int32_t open_path(const char *path, int32_t flags, custody_handle *out)
{
    int32_t len = 0;
    while (path[len] != '\0') {
        len++;
    }
    return custody_open(CUSTODY_PTR(path), len, flags, CUSTODY_PTR(out));
}

/* Write all of buf[0..len), looping over short writes. */
static int32_t write_all(custody_handle h, int32_t len)
{
    int32_t done = 0;
    while (done < len) {
        int32_t n = 0;
        int32_t rc = custody_write(h, CUSTODY_PTR(buf + done), len - done,
                                   CUSTODY_PTR(&n));
        if (rc < 0) {
            return rc;
        }
        done += n;
    }
    return 0;
}

/* Copy until end of file; returns bytes copied or an error code. */
static int32_t copy_all(custody_handle in, custody_handle out)
{
    int32_t total = 0;
    for (;;) {
        int32_t n = 0;
        int32_t rc = custody_read(in, CUSTODY_PTR(buf), (int32_t)sizeof buf,
                                  CUSTODY_PTR(&n));
        if (rc < 0) {
            return rc;
        }
        if (n == 0) {
            return total;
        }
        rc = write_all(out, n);
        if (rc < 0) {
            return rc;
        }
        total += n;
    }
}

CUSTODY_EXPORT(copy) int32_t copy(void)
{
    custody_handle in = CUSTODY_HANDLE_NULL;
    custody_handle out = CUSTODY_HANDLE_NULL;

    int32_t rc = open_path("data/in.txt", CUSTODY_O_READ, &in);
    if (rc < 0) {
        return rc;
    }
    rc = open_path("data/out.txt",
                   CUSTODY_O_WRITE | CUSTODY_O_CREATE | CUSTODY_O_TRUNC, &out);
    if (rc < 0) {
        custody_close(in);
        return rc;
    }

    int32_t result = copy_all(in, out);

    rc = custody_close(out);
    if (result >= 0 && rc < 0) {
        result = rc;
    }
    custody_close(in);
    return result;
}

/*
 * http_echo.c: a plugin for `custody serve` (interface = "custody").
 *
 * Shows: the custody_http functions (the method, the URI, a header by
 * name; the status and a response header), and the request and response
 * bodies as handles, streamed with custody_read and custody_write.
 *
 * Export:  int32_t handle(custody_handle request, custody_handle response)
 *   Answers 200 with `content-type: text/plain` and a body of
 *   "METHOD URI\n", then the request's `x-echo` header if it has one
 *   ("x-echo: VALUE\n"), then the request body, copied as it arrives.
 *   A request whose method is DELETE gets 405 and an empty body.
 *   Returns 0, or the first negative CUSTODY_E_* code.
 *
 * Host:    custody serve --config serve.toml, with
 *            [[plugin]]
 *            name = "echo"
 *            route = "/echo/..."
 *            module = "http_echo.wasm"
 *            interface = "custody"
 */
#include <custody.h>

static char line[1024];
static char chunk[4096];

/* Write all of buf[0..len), looping over short writes. */
static int32_t write_all(custody_handle h, const char *buf, int32_t len)
{
    int32_t done = 0;
    while (done < len) {
        int32_t n = 0;
        int32_t rc = custody_write(h, CUSTODY_PTR(buf + done), len - done, CUSTODY_PTR(&n));
        if (rc < 0) {
            return rc;
        }
        done += n;
    }
    return 0;
}

/* Appends what `get` copied (at most the room left) at line[*at]. */
static int32_t append(int32_t *at, int32_t rc, int32_t len)
{
    if (rc < 0) {
        return rc;
    }
    int32_t room = (int32_t)sizeof line - *at;
    *at += len < room ? len : room;
    return 0;
}

CUSTODY_EXPORT(handle)
int32_t handle(custody_handle request, custody_handle response)
{
    static const char name[] = "content-type";
    static const char type[] = "text/plain";
    static const char echo[] = "x-echo";
    int32_t at = 0, len = 0, rc;

    rc = custody_http_method(CUSTODY_PTR(line), (int32_t)sizeof line, CUSTODY_PTR(&len));
    if ((rc = append(&at, rc, len)) < 0) {
        return rc;
    }
    if (len == 6 && line[0] == 'D' && line[1] == 'E' && line[2] == 'L') {
        return custody_http_set_status(405);
    }
    rc = custody_http_set_header(CUSTODY_PTR(name), (int32_t)sizeof name - 1, CUSTODY_PTR(type),
                                 (int32_t)sizeof type - 1);
    if (rc < 0) {
        return rc;
    }
    line[at++] = ' ';
    rc = custody_http_uri(CUSTODY_PTR(line + at), (int32_t)sizeof line - at, CUSTODY_PTR(&len));
    if ((rc = append(&at, rc, len)) < 0) {
        return rc;
    }
    if (at < (int32_t)sizeof line) {
        line[at++] = '\n';
    }
    if ((rc = write_all(response, line, at)) < 0) {
        return rc;
    }
    /* The head is sent with the first body bytes: from here on a status
     * or header change would be CUSTODY_E_INVAL. */
    rc = custody_http_header(CUSTODY_PTR(echo), (int32_t)sizeof echo - 1, CUSTODY_PTR(line + 8),
                             (int32_t)sizeof line - 9, CUSTODY_PTR(&len));
    if (rc < 0) {
        return rc;
    }
    if (rc == 1) {
        static const char prefix[] = "x-echo: ";
        for (int32_t i = 0; i < 8; i++) {
            line[i] = prefix[i];
        }
        int32_t total = 8 + (len < (int32_t)sizeof line - 9 ? len : (int32_t)sizeof line - 9);
        line[total++] = '\n';
        if ((rc = write_all(response, line, total)) < 0) {
            return rc;
        }
    }
    for (;;) {
        int32_t n = 0;
        rc = custody_read(request, CUSTODY_PTR(chunk), (int32_t)sizeof chunk, CUSTODY_PTR(&n));
        if (rc < 0) {
            return rc;
        }
        if (n == 0) {
            return 0;
        }
        if ((rc = write_all(response, chunk, n)) < 0) {
            return rc;
        }
    }
}

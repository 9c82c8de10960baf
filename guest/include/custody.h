/*
 * custody.h: the custody guest ABI, version 1 (SPEC B1).
 *
 * For guests built with `clang --target=wasm32 -nostdlib`. No libc needed:
 * this header only includes <stdint.h>, which clang ships as a freestanding
 * header.
 *
 * Conventions
 * -----------
 * - Every host function is imported from the wasm module "custody" under the
 *   name after the `custody_` prefix (custody_open imports custody.open).
 * - All parameters and results are i32 (int32_t here).
 * - A "pointer" argument is an offset into the guest's exported memory
 *   `memory`. Pass C pointers with CUSTODY_PTR(p). Pointers need no
 *   particular alignment. Values the host writes through an out pointer are
 *   4-byte little-endian i32.
 * - A result >= 0 is success (0, or a count where noted); a result < 0 is
 *   one of the CUSTODY_E_* codes below. Out values are written only on
 *   success.
 * - A handle is a 32-bit id in the domain's handle table. 0 is never issued
 *   and means "no handle" (CUSTODY_HANDLE_NULL).
 *
 * Handle arguments
 * ----------------
 * Every handle argument (including each element of poll's array) is
 * resolved and add-ref'd before the host function runs, and released after
 * it returns. A handle another thread closes during the call is therefore
 * released only when the call ends. Resolution fails with:
 *   CUSTODY_E_NULL    the id is 0.
 *   CUSTODY_E_STALE   the id was never issued to this domain, or the guest
 *                     has already closed it (also fires the host's
 *                     staleHandleUse diagnostic, naming the id).
 *   CUSTODY_E_CLOSED  the id is still in the table, but the resource behind
 *                     it was closed by its owner (the host).
 *   CUSTODY_E_KIND    the id names a live handle of a kind this function
 *                     does not accept.
 * Ids are never reused: a stale id can never name a newer handle.
 *
 * Errors every function may return
 * --------------------------------
 *   CUSTODY_E_ABORTED the call is being aborted (deadline, unload). Only
 *                     code that can still observe a result sees it, e.g.
 *                     the custody_unloading hook; elsewhere the call simply
 *                     does not return to the guest.
 * A call that fails has not acted: every pointer, length and out slot (and
 * the room for a new handle) is checked before anything is created,
 * opened, truncated, read or written. An error means nothing was made,
 * changed or consumed, unless the OS itself failed part-way (E_IO).
 *
 * Guest exports the host looks for
 * --------------------------------
 *   memory             the linear memory all pointers refer to. wasm-ld
 *                      exports it as "memory" by default. Without it the
 *                      module still loads (nothing checks at load), but
 *                      the host sees an empty memory: every host function
 *                      that reads or writes guest memory returns
 *                      CUSTODY_E_FAULT (only an empty range at offset 0,
 *                      such as custody_log(level, 0, 0), is accepted). A
 *                      memory exported under another name counts as none.
 *                      A guest linked with -Wl,--import-memory does not
 *                      load: "unresolved import env::memory: no module
 *                      named "env" in this domain or the host exports it".
 *   custody_unloading  optional, `void custody_unloading(void)`. Called
 *                      once by Domain::unload() before the handle table is
 *                      drained, with a time bound. Handles are still valid
 *                      inside it; whatever the guest does not close is
 *                      released by the host afterwards.
 * Export functions with CUSTODY_EXPORT(name); the host invokes them by name.
 */
#ifndef CUSTODY_H
#define CUSTODY_H

#include <stdint.h>

#if !defined(__wasm32__)
#error "custody.h targets wasm32 (clang --target=wasm32)"
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Types and helpers ------------------------------------------------- */

/* A handle id. 0 = null, never issued. */
typedef int32_t custody_handle;
#define CUSTODY_HANDLE_NULL 0

/* A guest pointer as the i32 the ABI expects (wasm32 pointers are 32-bit). */
#define CUSTODY_PTR(p) ((int32_t)(uintptr_t)(p))

/* Export a function to the host under `name`:
 *     CUSTODY_EXPORT(run) int32_t run(int32_t n) { ... }                    */
#define CUSTODY_EXPORT(name) __attribute__((export_name(#name)))

/* Internal: import `name` from the "custody" module. */
#define CUSTODY_IMPORT_(name)                                                  \
    __attribute__((import_module("custody"), import_name(#name)))

/* ---- Error codes ------------------------------------------------------- */

#define CUSTODY_E_NULL     (-1)  /* handle id is 0 */
#define CUSTODY_E_STALE    (-2)  /* id never issued, or closed by the guest */
#define CUSTODY_E_CLOSED   (-3)  /* handle closed by its owner (the host) */
#define CUSTODY_E_KIND     (-4)  /* live handle of the wrong kind */
#define CUSTODY_E_FAULT    (-5)  /* pointer/length outside the guest's memory */
#define CUSTODY_E_QUOTA    (-6)  /* the domain's handle quota is used up */
#define CUSTODY_E_TIMEDOUT (-7)  /* the wait ended before anything happened */
#define CUSTODY_E_DENIED   (-8)  /* refused by policy or the pre-open sandbox */
#define CUSTODY_E_NOTSUP   (-9)  /* poll: handle array changed mid-call */
#define CUSTODY_E_IO       (-10) /* OS error; errno from custody_last_error() */
#define CUSTODY_E_INVAL    (-11) /* bad flags, negative length, bad count */
#define CUSTODY_E_ABORTED  (-12) /* the call is being aborted */

/* ---- Open flags (custody_open) ----------------------------------------- */

#define CUSTODY_O_READ   1  /* open for reading */
#define CUSTODY_O_WRITE  2  /* open for writing */
#define CUSTODY_O_CREATE 4  /* create the file if missing (needs WRITE) */
#define CUSTODY_O_TRUNC  8  /* truncate to length 0 (needs WRITE) */
#define CUSTODY_O_APPEND 16 /* every write goes to the end (needs WRITE) */

/* ---- Log levels (custody_log) ------------------------------------------ */

#define CUSTODY_LOG_ERROR 0
#define CUSTODY_LOG_WARN  1
#define CUSTODY_LOG_INFO  2
#define CUSTODY_LOG_DEBUG 3
#define CUSTODY_LOG_TRACE 4

/* ---- Host functions ---------------------------------------------------- */

/*
 * custody_log(level, ptr, len): write one line to the host's log.
 *   level  CUSTODY_LOG_ERROR (0) .. CUSTODY_LOG_TRACE (4).
 *   ptr    text in guest memory, UTF-8 (invalid sequences are replaced).
 *   len    length of the text in bytes, >= 0. No terminator needed.
 * Returns 0.
 * Errors:
 *   E_INVAL   level outside 0..4, or len < 0.
 *   E_FAULT   [ptr, ptr + len) is not inside memory.
 *   E_ABORTED the call is being aborted.
 */
CUSTODY_IMPORT_(log)
int32_t custody_log(int32_t level, int32_t ptr, int32_t len);

/*
 * custody_open(path_ptr, path_len, flags, out_handle_ptr): open a file.
 *   path_ptr, path_len  UTF-8 path `NAME/rel/path`, where NAME is the name
 *                       of a directory the host pre-opened for this domain
 *                       (`--preopen NAME=DIR`); rel/path is resolved inside
 *                       that directory. No terminator needed.
 *   flags               CUSTODY_O_* bits: READ and/or WRITE, plus any of
 *                       CREATE, TRUNC, APPEND (these three need WRITE).
 *   out_handle_ptr      where the new handle id is written (4 bytes).
 * Returns 0 and writes the new handle to *out_handle_ptr.
 * Errors:
 *   E_INVAL   unknown flag bits; neither READ nor WRITE; CREATE, TRUNC or
 *             APPEND without WRITE; path_len < 0; path not UTF-8.
 *   E_FAULT   the path or the 4 bytes at out_handle_ptr are not inside
 *             memory (checked before the open: nothing is created or
 *             truncated).
 *   E_DENIED  no pre-open named NAME; an absolute path (NAME//x too); a
 *             `..` that steps above the pre-opened directory at any point,
 *             even if the path comes back inside (`data/..`, or
 *             `data/../D/x` where D is the directory's own name); a
 *             symlink that leads outside it, or any symlink with an
 *             absolute target (even one naming a file inside). A `..`
 *             that stays beneath the pre-open is an ordinary component:
 *             `data/sub/../x` opens `data/x`. (The kernel decides: openat2
 *             with RESOLVE_BENEATH. A path with `..` can rarely fail with
 *             E_IO and EAGAIN (11) when a rename elsewhere raced it: retry.)
 *   E_QUOTA   the domain's handle quota is used up.
 *   E_IO      the OS refused (errno via custody_last_error(), e.g. ENOENT
 *             without CREATE, EACCES). A directory (`NAME` itself, or
 *             `NAME/dir`) opens with READ alone, and a custody_read of
 *             that handle is E_IO with EISDIR (21); with WRITE, the open
 *             itself is E_IO with EISDIR (21).
 *   E_ABORTED the call is being aborted.
 */
CUSTODY_IMPORT_(open)
int32_t custody_open(int32_t path_ptr, int32_t path_len, int32_t flags,
                     int32_t out_handle_ptr);

/*
 * custody_read(handle, buf_ptr, buf_len, out_n_ptr): read bytes.
 *   handle     a file or pipe read end (an OS pipe's, or an in-process
 *              pipe's the host gave, such as custody serve's request body:
 *              both behave alike, see "In-process pipe ends" below).
 *   buf_ptr    destination buffer in guest memory.
 *   buf_len    capacity of the buffer, >= 0.
 *   out_n_ptr  where the number of bytes read is written (4 bytes).
 * Returns 0 and writes the count to *out_n_ptr: 0 means end of file (for a
 * pipe: every write end is closed). The count may be less than buf_len.
 * On an empty pipe the call blocks until data or end of file arrives; the
 * wait is capped by the policy (default 10 s) and cut short by abort and
 * unload.
 * Errors:
 *   E_NULL, E_STALE, E_CLOSED, E_KIND: see "Handle arguments".
 *   E_INVAL    buf_len < 0.
 *   E_FAULT    the buffer or the 4 bytes at out_n_ptr are not inside memory.
 *   E_TIMEDOUT a blocking read hit the policy's wait cap with no data.
 *   E_IO       the OS refused (errno via custody_last_error(); e.g. EBADF
 *              for a handle not opened for reading or a pipe's write end,
 *              EISDIR for a directory).
 *   E_ABORTED  the call is being aborted.
 */
CUSTODY_IMPORT_(read)
int32_t custody_read(custody_handle handle, int32_t buf_ptr, int32_t buf_len,
                     int32_t out_n_ptr);

/*
 * custody_write(handle, buf_ptr, buf_len, out_n_ptr): write bytes.
 *   handle     a file or pipe write end (an OS pipe's or an in-process
 *              pipe's, such as custody serve's response body).
 *   buf_ptr    source bytes in guest memory.
 *   buf_len    number of bytes to write, >= 0.
 *   out_n_ptr  where the number of bytes written is written (4 bytes).
 * Returns 0 and writes the count to *out_n_ptr. The count may be less than
 * buf_len (a short write): loop until everything is written. On a full pipe
 * the call blocks like custody_read (capped, interruptible).
 * Errors:
 *   E_NULL, E_STALE, E_CLOSED, E_KIND: see "Handle arguments".
 *   E_INVAL    buf_len < 0.
 *   E_FAULT    the buffer or the 4 bytes at out_n_ptr are not inside memory.
 *   E_TIMEDOUT a blocking write hit the policy's wait cap.
 *   E_IO       the OS refused (errno via custody_last_error(); e.g. EBADF
 *              for a handle not opened for writing or a pipe's read end,
 *              EPIPE when every read end of a pipe is closed, ENOSPC).
 *   E_ABORTED  the call is being aborted.
 */
CUSTODY_IMPORT_(write)
int32_t custody_write(custody_handle handle, int32_t buf_ptr, int32_t buf_len,
                      int32_t out_n_ptr);

/*
 * custody_close(handle): close a handle.
 *   handle  any handle this domain holds.
 * The id becomes stale at once: using it again is E_STALE. The OS resource
 * is released when no call is using it any more (at once, unless another
 * thread is inside a call with this handle).
 * Returns 0.
 * Errors:
 *   E_NULL    handle is 0.
 *   E_STALE   never issued, or already closed (a double close).
 *   E_CLOSED  the host closed the resource; the id is removed anyway.
 *   E_IO      the OS release ran during this call and failed (errno via
 *             custody_last_error()). The id is gone anyway and the release
 *             is never retried; the host reports releaseHandleFailed.
 *   E_ABORTED the call is being aborted.
 */
CUSTODY_IMPORT_(close)
int32_t custody_close(custody_handle handle);

/*
 * custody_dup(handle, out_handle_ptr): duplicate a handle.
 *   handle          the handle to duplicate.
 *   out_handle_ptr  where the new handle id is written (4 bytes).
 * Returns 0 and writes a new, independent id over an OS-level duplicate
 * (closing one does not close the other); for an in-process pipe end,
 * another holder of the same end (the other side sees it closed once
 * every holder is).
 * Errors:
 *   E_NULL, E_STALE, E_CLOSED, E_KIND: see "Handle arguments".
 *   E_FAULT   the 4 bytes at out_handle_ptr are not inside memory (no
 *             duplicate is made).
 *   E_QUOTA   the domain's handle quota is used up.
 *   E_IO      the OS refused (errno via custody_last_error(), e.g. EMFILE).
 *   E_ABORTED the call is being aborted.
 */
CUSTODY_IMPORT_(dup)
int32_t custody_dup(custody_handle handle, int32_t out_handle_ptr);

/*
 * custody_pipe(out_read_ptr, out_write_ptr): create a pipe.
 *   out_read_ptr   where the read end's id is written (4 bytes).
 *   out_write_ptr  where the write end's id is written (4 bytes).
 * Returns 0 and writes both ids. On any error neither handle exists.
 * Errors:
 *   E_INVAL   the two out slots overlap.
 *   E_FAULT   either out slot is not inside memory (no pipe is made).
 *   E_QUOTA   the domain's handle quota has no room for two more handles.
 *   E_IO      the OS refused (errno via custody_last_error(), e.g. EMFILE).
 *   E_ABORTED the call is being aborted.
 */
CUSTODY_IMPORT_(pipe)
int32_t custody_pipe(int32_t out_read_ptr, int32_t out_write_ptr);

/*
 * custody_poll(handles_ptr, count, timeout_ms, out_ready_index_ptr): wait
 * until one of several handles is readable.
 *   handles_ptr          array of `count` handle ids (4 bytes each). The
 *                        host reads it once, add-refs every element, and
 *                        compares it again on return (see E_NOTSUP).
 *   count                number of ids, 1 .. the host's limit.
 *   timeout_ms           0 = check without waiting; > 0 = wait at most that
 *                        long; -1 = no timeout (only if the policy allows).
 *   out_ready_index_ptr  where the index (0-based) of a readable handle is
 *                        written (4 bytes).
 * "Readable" means a read would not block: data is available, or end of
 * file / hang-up (every write end of a pipe closed), or an error is pending
 * (a pipe's write end whose reader is gone). Elements may be in-process
 * pipe ends as well as fds.
 * Returns 0 and writes the index of the first readable handle. Abort and
 * unload end the wait at once.
 * Errors:
 *   E_NULL, E_STALE, E_CLOSED, E_KIND: an element fails "Handle arguments";
 *              nothing waits.
 *   E_INVAL    count < 1 or above the host's limit; timeout_ms < -1.
 *   E_FAULT    the array or the 4 bytes at out_ready_index_ptr are not
 *              inside memory.
 *   E_TIMEDOUT nothing became readable within timeout_ms.
 *   E_DENIED   timeout_ms is -1, or above the policy's wait cap (default
 *              10 s), and the policy does not grant it.
 *   E_NOTSUP   an element of the array was changed during the call (another
 *              guest thread writing shared memory): the ready index would
 *              name a different handle, so none is reported.
 *   E_IO       the OS refused (errno via custody_last_error()).
 *   E_ABORTED  the call is being aborted.
 */
CUSTODY_IMPORT_(poll)
int32_t custody_poll(int32_t handles_ptr, int32_t count, int32_t timeout_ms,
                     int32_t out_ready_index_ptr);

/*
 * In-process pipe ends
 * --------------------
 * A host may give a guest handles to in-process pipes (no OS pipe under
 * them; custody serve's `handle(request, response)` does). custody_read,
 * custody_write, custody_poll, custody_dup and custody_close take them as
 * they take an OS pipe's ends, with the same results: an empty pipe's read
 * and a full pipe's write block (capped by the policy's wait, cut short by
 * abort and unload), a read after the host's end closed is end of file (0
 * bytes), a write after it is E_IO with EPIPE, and an end used against its
 * direction is E_IO with EBADF.
 */

/*
 * custody_sleep(ms): sleep.
 *   ms  milliseconds, >= 0.
 * Returns 0 after ms milliseconds. Abort and unload end the sleep at once.
 * Errors:
 *   E_INVAL   ms < 0.
 *   E_DENIED  ms is above the policy's wait cap (default 10 s).
 *   E_ABORTED the call is being aborted (the sleep was cut short).
 */
CUSTODY_IMPORT_(sleep)
int32_t custody_sleep(int32_t ms);

/*
 * custody_last_error(): the OS errno behind the last E_IO in this domain.
 * Returns the errno (Linux numbering, > 0), or 0 if no call in this domain
 * has returned E_IO yet. Other results do not reset it. Never fails.
 */
CUSTODY_IMPORT_(last_error)
int32_t custody_last_error(void);

/*
 * custody_critical_enter(): enter a critical region (SPEC Part C).
 * Regions nest. While one is open, an abort (deadline, memory or stack
 * limit, trap) cannot be contained to the call: the host escalates and
 * recycles the whole domain, releasing all its handles. Outside a region
 * only the call is aborted and the domain goes on. Keep regions short and
 * balanced within one exported call.
 * Returns 0.
 * Errors:
 *   E_ABORTED the call is being aborted.
 */
CUSTODY_IMPORT_(critical_enter)
int32_t custody_critical_enter(void);

/*
 * custody_critical_exit(): leave the innermost critical region.
 * Returns 0.
 * Errors:
 *   E_INVAL   no critical region is open.
 *   E_ABORTED the call is being aborted.
 */
CUSTODY_IMPORT_(critical_exit)
int32_t custody_critical_exit(void);

/*
 * custody_timer_set(delay_ms, period_ms, export_ptr, export_len,
 *                   out_handle_ptr): arm a timer that calls one of this
 * module's exports.
 *   delay_ms            when the first call happens (0 .. the host's
 *                       max_wait, 10 s by default; below the host's
 *                       timer_min_period, 10 ms by default, it is raised
 *                       to it).
 *   period_ms           then every period_ms if > 0 (same cap and floor),
 *                       counted from the end of the last call, so a slow
 *                       callback skips beats rather than piling them up;
 *                       0: once.
 *   export_ptr, export_len  the export's name (UTF-8, at most 256 bytes):
 *                       a function taking one int32_t (the timer's handle)
 *                       and returning nothing, e.g.
 *                       CUSTODY_EXPORT(tick) void tick(int32_t timer);
 *   out_handle_ptr      where the timer's handle is written (4 bytes).
 * Returns 0 and writes the handle. The timer is a handle: custody_close
 * disarms it. Each callback is an ordinary call (serialized with the
 * others, under the deadline). An armed timer keeps the domain from
 * finishing an unload: close your timers in custody_unloading (a forced
 * unload disarms them).
 * Errors:
 *   E_INVAL   delay_ms or period_ms < 0; export_len < 0 or > 256; no
 *             such export, or not a (func (param i32)).
 *   E_FAULT   the name or the 4 bytes at out_handle_ptr are not inside
 *             memory (no timer is armed).
 *   E_DENIED  a delay or period above the host's max_wait; the domain is
 *             unloading.
 *   E_QUOTA   the domain's handle quota is used up.
 *   E_NOTSUP  the host offers no timers.
 *   E_ABORTED the call is being aborted.
 */
CUSTODY_IMPORT_(timer_set)
int32_t custody_timer_set(int32_t delay_ms, int32_t period_ms, int32_t export_ptr,
                          int32_t export_len, int32_t out_handle_ptr);

/* ---- HTTP (custody serve) ---------------------------------------------- */

/*
 * A plugin served by `custody serve` with `interface = "custody"` exports
 *   CUSTODY_EXPORT(handle) int32_t handle(custody_handle request,
 *                                         custody_handle response);
 * `request` is the request body (custody_read until 0 bytes), `response`
 * the response body (custody_write); both stream, and both are released
 * when the request ends, whatever the plugin did. Return 0. The head goes
 * through the functions below (import module "custody_http", category
 * Http). Text is copied out: at most buf_len bytes into buf_ptr, and the
 * whole length written at out_len_ptr (4 bytes), so a plugin whose buffer
 * was short asks again with a larger one. The status and headers may
 * change until the head is sent: when the first body bytes leave, or when
 * handle returns.
 */
#define CUSTODY_HTTP_IMPORT_(name)                                             \
    __attribute__((import_module("custody_http"), import_name(#name)))

/*
 * custody_http_method(buf_ptr, buf_len, out_len_ptr): the request's method
 * (GET, POST, ...).
 * Returns 0.
 * Errors:
 *   E_INVAL   buf_len < 0; no request in flight.
 *   E_FAULT   [buf_ptr, buf_ptr + buf_len) or the 4 bytes at out_len_ptr
 *             are not inside memory (nothing is written).
 *   E_ABORTED the call is being aborted.
 */
CUSTODY_HTTP_IMPORT_(method)
int32_t custody_http_method(int32_t buf_ptr, int32_t buf_len, int32_t out_len_ptr);

/*
 * custody_http_uri(buf_ptr, buf_len, out_len_ptr): the request's target
 * as the client sent it (path and query).
 * Returns 0.
 * Errors:
 *   E_INVAL   buf_len < 0; no request in flight.
 *   E_FAULT   the buffer or the 4 bytes at out_len_ptr are not inside
 *             memory (nothing is written).
 *   E_ABORTED the call is being aborted.
 */
CUSTODY_HTTP_IMPORT_(uri)
int32_t custody_http_uri(int32_t buf_ptr, int32_t buf_len, int32_t out_len_ptr);

/*
 * custody_http_header(name_ptr, name_len, buf_ptr, buf_len, out_len_ptr):
 * the value of the request header `name` (any case); several values are
 * joined with ", ".
 * Returns 1 if the request has the header, 0 if not (then *out_len_ptr
 * is 0).
 * Errors:
 *   E_INVAL   name_len < 0 or > 256; buf_len < 0; no request in flight.
 *   E_FAULT   the name, the buffer or the 4 bytes at out_len_ptr are not
 *             inside memory (nothing is written).
 *   E_ABORTED the call is being aborted.
 */
CUSTODY_HTTP_IMPORT_(header)
int32_t custody_http_header(int32_t name_ptr, int32_t name_len, int32_t buf_ptr,
                            int32_t buf_len, int32_t out_len_ptr);

/*
 * custody_http_header_names(buf_ptr, buf_len, out_len_ptr): the request's
 * header names, lower case, each once, separated by '\n'.
 * Returns 0.
 * Errors:
 *   E_INVAL   buf_len < 0; no request in flight.
 *   E_FAULT   the buffer or the 4 bytes at out_len_ptr are not inside
 *             memory (nothing is written).
 *   E_ABORTED the call is being aborted.
 */
CUSTODY_HTTP_IMPORT_(header_names)
int32_t custody_http_header_names(int32_t buf_ptr, int32_t buf_len, int32_t out_len_ptr);

/*
 * custody_http_set_status(status): the response's status (default 200).
 * Returns 0.
 * Errors:
 *   E_INVAL   status outside 100..999; no request in flight; the head was
 *             sent already.
 *   E_ABORTED the call is being aborted.
 */
CUSTODY_HTTP_IMPORT_(set_status)
int32_t custody_http_set_status(int32_t status);

/*
 * custody_http_set_header(name_ptr, name_len, value_ptr, value_len): set a
 * response header, replacing every value it had.
 * Returns 0.
 * Errors:
 *   E_INVAL   a name that is not an HTTP token (or longer than 256); a
 *             value with CR, LF, NUL or another control character, with a
 *             space at either end, or longer than 8192; a negative length;
 *             no request in flight; the head was sent already.
 *   E_FAULT   the name or the value is not inside memory.
 *   E_QUOTA   more than 100 headers, or 64 KiB of them.
 *   E_ABORTED the call is being aborted.
 */
CUSTODY_HTTP_IMPORT_(set_header)
int32_t custody_http_set_header(int32_t name_ptr, int32_t name_len, int32_t value_ptr,
                                int32_t value_len);

/*
 * custody_http_append_header(name_ptr, name_len, value_ptr, value_len):
 * add a response header (a name may repeat: Set-Cookie).
 * Returns 0.
 * Errors:
 *   E_INVAL   as custody_http_set_header.
 *   E_FAULT   the name or the value is not inside memory.
 *   E_QUOTA   more than 100 headers, or 64 KiB of them.
 *   E_ABORTED the call is being aborted.
 */
CUSTODY_HTTP_IMPORT_(append_header)
int32_t custody_http_append_header(int32_t name_ptr, int32_t name_len, int32_t value_ptr,
                                   int32_t value_len);

/* ---- Convenience ------------------------------------------------------- */

/* Log a NUL-terminated string (no libc: computes the length itself).
 * Returns what custody_log returns. */
static inline int32_t custody_log_str(int32_t level, const char *text)
{
    int32_t len = 0;
    if (text) {
        while (text[len] != '\0') {
            len++;
        }
    }
    return custody_log(level, CUSTODY_PTR(text), len);
}

#ifdef __cplusplus
}
#endif

#endif /* CUSTODY_H */

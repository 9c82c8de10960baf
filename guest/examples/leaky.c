/*
 * leaky.c: a guest that leaks handles, and the unloading hook.
 *
 * Shows: that a guest cannot leak OS resources past its domain. Handles it
 * never closes are released by the host when the domain unloads, after the
 * optional custody_unloading export has run.
 *
 * Export:  int32_t leak(int32_t n)
 *   Opens n pipes (2 * n handles) and never closes them.
 *   Returns n, or a negative CUSTODY_E_* code: CUSTODY_E_INVAL for n < 0,
 *   or the error of the pipe that failed (e.g. CUSTODY_E_QUOTA); pipes
 *   opened before the failure stay open (leaked) either way.
 *
 * Export:  void custody_unloading(void)
 *   Called by the host during unload; logs one info line. It does not close
 *   anything: releasing the leaked handles is the host's job.
 *
 * Host:    custody run leaky.wasm --invoke leak 3 --json
 *   Result [3]; ledger opened 6, closed_by_guest 0, released_at_unload 6,
 *   release_failures 0; the process's open fd count is back to where it
 *   started after the unload.
 */
#include <custody.h>

CUSTODY_EXPORT(leak) int32_t leak(int32_t n)
{
    if (n < 0) {
        return CUSTODY_E_INVAL;
    }
    for (int32_t i = 0; i < n; i++) {
        custody_handle r = CUSTODY_HANDLE_NULL;
        custody_handle w = CUSTODY_HANDLE_NULL;
        int32_t rc = custody_pipe(CUSTODY_PTR(&r), CUSTODY_PTR(&w));
        if (rc < 0) {
            return rc;
        }
    }
    return n;
}

CUSTODY_EXPORT(custody_unloading) void custody_unloading(void)
{
    custody_log_str(CUSTODY_LOG_INFO,
                    "leaky: unloading, leaving every pipe to the host");
}

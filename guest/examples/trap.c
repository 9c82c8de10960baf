/*
 * trap.c: a trap while holding a handle.
 *
 * Shows: that a trap aborts only the call, and the handles the guest held
 * are still released (at the latest when the domain unloads).
 *
 * Export:  int32_t open_then_trap(void)
 *   Opens a pipe (2 handles), then executes __builtin_trap() (the wasm
 *   `unreachable` instruction) without closing anything.
 *   Never returns normally; returns a negative CUSTODY_E_* code only if
 *   the pipe could not be created.
 *
 * Host:    custody run trap.wasm --invoke open_then_trap --json
 *   Exits 3 (trap) with a one-line error on stderr. The domain's unload
 *   report shows 2 handles opened, 0 closed by the guest, 2 released at
 *   unload, no release failures; no fd is left open.
 */
#include <custody.h>

CUSTODY_EXPORT(open_then_trap) int32_t open_then_trap(void)
{
    custody_handle r = CUSTODY_HANDLE_NULL;
    custody_handle w = CUSTODY_HANDLE_NULL;
    int32_t rc = custody_pipe(CUSTODY_PTR(&r), CUSTODY_PTR(&w));
    if (rc < 0) {
        return rc;
    }
    __builtin_trap();
}

/*
 * bulk.c: loops that clang turns into memset and memcpy.
 *
 * Shows: why guests are built with -mbulk-memory. At -O2 clang recognizes
 * the fill loop as memset and the copy loop as memcpy (struct copies
 * become memcpy too). Under -nostdlib nothing defines those, so without
 * -mbulk-memory wasm-ld fails with "undefined symbol: memset" and
 * "undefined symbol: memcpy"; with it they become the wasm instructions
 * memory.fill and memory.copy, which wasmtime supports by default.
 *
 * Export:  int32_t fill(int32_t n, int32_t byte)
 *   0 <= n <= 1024. Sets the first n bytes of buffer a to (uint8_t)byte.
 *   Returns n, or CUSTODY_E_INVAL for n outside 0..1024.
 *
 * Export:  int32_t copy_sum(int32_t n)
 *   0 <= n <= 1024. Copies the first n bytes of a into buffer b and returns
 *   their sum (each byte 0..255), or CUSTODY_E_INVAL for n outside 0..1024.
 *
 * Host:    fill(1000, 7) returns 1000, then copy_sum(1000) returns 7000.
 *   No host function is imported; the ledger stays empty.
 */
#include <custody.h>

#define MAX 1024

static uint8_t a[MAX];
static uint8_t b[MAX];

CUSTODY_EXPORT(fill) int32_t fill(int32_t n, int32_t byte)
{
    if (n < 0 || n > MAX) {
        return CUSTODY_E_INVAL;
    }
    for (int32_t i = 0; i < n; i++) {
        a[i] = (uint8_t)byte; /* memset(a, byte, n) */
    }
    return n;
}

CUSTODY_EXPORT(copy_sum) int32_t copy_sum(int32_t n)
{
    if (n < 0 || n > MAX) {
        return CUSTODY_E_INVAL;
    }
    for (int32_t i = 0; i < n; i++) {
        b[i] = a[i]; /* memcpy(b, a, n) */
    }
    int32_t sum = 0;
    for (int32_t i = 0; i < n; i++) {
        sum += b[i];
    }
    return sum;
}

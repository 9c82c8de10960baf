/* oom (for wasi_memory.rs, not the comparison): allocates 64 KiB blocks
 * until malloc returns NULL, then frees them and says it survived. Under a
 * memory cap the grow behind malloc fails (-1), as WebAssembly says, and
 * the program goes on. Never run natively: there, nothing caps it. */
#include "common.h"

#define BLOCK (64 * 1024)

struct block {
    struct block *next;
};

int main(int argc, char **argv) {
    (void)argc;
    (void)argv;
    struct block *held = NULL;
    size_t blocks = 0;
    for (;;) {
        struct block *b = malloc(BLOCK);
        if (b == NULL) {
            break;
        }
        memset(b, 0xAB, BLOCK);
        b->next = held;
        held = b;
        blocks++;
    }
    while (held != NULL) {
        struct block *next = held->next;
        free(held);
        held = next;
    }
    printf("allocated %s\n", blocks > 0 ? "some" : "none");
    puts("survived");
    return 0;
}

/* leak (for the leak tests, not the comparison): opens files and
 * directories, says so, and never closes them. argv[1] says how it ends:
 * "exit" exit(3), "return" returns 0, "trap" traps (abort()). */
#include "common.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#define FILES 10
#define DIRS 5

int main(int argc, char **argv) {
    const char *how = argc > 1 ? argv[1] : "exit";
    int held = 0;
    char name[32];
    for (int i = 0; i < FILES; i++) {
        snprintf(name, sizeof name, "leak-%d.txt", i);
        held += fopen(name, "w") != NULL;
    }
    for (int i = 0; i < DIRS; i++) {
        held += opendir(".") != NULL;
        held += open(".", O_RDONLY | O_DIRECTORY) >= 0;
    }
    printf("holding %d\n", held);
    fflush(stdout);
    if (strcmp(how, "trap") == 0) {
        abort();
    }
    if (strcmp(how, "return") == 0) {
        return 0;
    }
    exit(3);
}

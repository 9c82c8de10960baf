/* args and environment: argv as given (argv[0] included), getenv of set,
 * empty, missing and '='-containing variables, the whole environment
 * (sorted: its order is the runner's business), setenv/unsetenv. Exits
 * with argc. */
#include "common.h"

extern char **environ;

static int by_string(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void show_env(const char *name) {
    const char *value = getenv(name);
    if (value == NULL) {
        printf("getenv %s: (null)\n", name);
    } else {
        printf("getenv %s: \"%s\" (%zu bytes)\n", name, value, strlen(value));
    }
}

int main(int argc, char **argv) {
    printf("argc %d\n", argc);
    for (int i = 0; i < argc; i++) {
        printf("argv[%d] = \"%s\" (%zu bytes)\n", i, argv[i], strlen(argv[i]));
    }
    printf("argv[argc] is NULL: %s\n", yes(argv[argc] == NULL));

    show_env("CONF_GREETING");
    show_env("CONF_EMPTY");
    show_env("CONF_EQUALS");
    show_env("CONF_UNICODE");
    show_env("CONF_MISSING");

    size_t n = 0;
    while (environ[n] != NULL) {
        n++;
    }
    char **sorted = malloc((n + 1) * sizeof *sorted);
    if (sorted == NULL) {
        fail("malloc");
    }
    memcpy(sorted, environ, n * sizeof *sorted);
    qsort(sorted, n, sizeof *sorted, by_string);
    printf("environ has %zu entries\n", n);
    for (size_t i = 0; i < n; i++) {
        printf("  %s\n", sorted[i]);
    }
    free(sorted);

    report("setenv CONF_NEW", setenv("CONF_NEW", "fresh", 1));
    show_env("CONF_NEW");
    report("setenv CONF_GREETING (no overwrite)", setenv("CONF_GREETING", "x", 0));
    show_env("CONF_GREETING");
    report("unsetenv CONF_GREETING", unsetenv("CONF_GREETING"));
    show_env("CONF_GREETING");
    fprintf(stderr, "args_env exits with argc %d\n", argc);
    return argc;
}

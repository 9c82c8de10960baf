/* directories: mkdir (and its errors), a listing with readdir (sorted, with
 * each entry's type, "." and ".." included), a directory of 300 entries
 * read across many fd_readdir calls, telldir/seekdir/rewinddir, rmdir of a
 * non-empty and an empty directory, opendir's errors. Exits 0. */
#include "common.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#define BIG 300

static int by_string(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static char type_letter(unsigned char type) {
    switch (type) {
    case DT_REG:
        return 'f';
    case DT_DIR:
        return 'd';
    case DT_LNK:
        return 'l';
    case DT_UNKNOWN:
        return '?';
    default:
        return 'o';
    }
}

/* Prints the entries of `path`, sorted, as "TYPE NAME". */
static void list(const char *path) {
    DIR *dir = opendir(path);
    if (dir == NULL) {
        printf("opendir %s: %s\n", path, errno_name(errno));
        return;
    }
    char *names[64];
    size_t n = 0;
    struct dirent *entry;
    while (n < 64 && (entry = readdir(dir)) != NULL) {
        names[n] = malloc(strlen(entry->d_name) + 3);
        if (names[n] == NULL) {
            fail("malloc");
        }
        sprintf(names[n], "%s %c", entry->d_name, type_letter(entry->d_type));
        n++;
    }
    closedir(dir);
    qsort(names, n, sizeof *names, by_string);
    printf("%s has %zu entries:", path, n);
    for (size_t i = 0; i < n; i++) {
        printf(" [%s]", names[i]);
        free(names[i]);
    }
    printf("\n");
}

/* How many entries `dir` yields from where it is to its end. */
static long count_rest(DIR *dir) {
    long n = 0;
    while (readdir(dir) != NULL) {
        n++;
    }
    return n;
}

int main(int argc, char **argv) {
    (void)argc;
    (void)argv;
    report("mkdir d", mkdir("d", 0755));
    report("mkdir d again", mkdir("d", 0755));
    report("mkdir d/sub", mkdir("d/sub", 0755));
    report("mkdir missing/x", mkdir("missing/x", 0755));
    put_file("d/file.txt", "x", 1);
    put_file("d/.hidden", "", 0);
    report("mkdir d/file.txt/x", mkdir("d/file.txt/x", 0755));
    report("mkdir d/file.txt", mkdir("d/file.txt", 0755));
    report("mkdir d/sub/deeper/", mkdir("d/sub/deeper/", 0755));
    list("d");
    list("d/sub");
    list("d/sub/deeper");

    must("mkdir big", mkdir("big", 0755));
    char name[64];
    unsigned long name_sum = 0;
    for (int i = 0; i < BIG; i++) {
        snprintf(name, sizeof name, "big/entry-%03d-with-a-name-long-enough", i);
        put_file(name, "", 0);
    }
    DIR *dir = opendir("big");
    if (dir == NULL) {
        fail("opendir big");
    }
    long files = 0, dots = 0;
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
        if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0) {
            dots++;
            continue;
        }
        int k;
        if (sscanf(entry->d_name, "entry-%03d-", &k) != 1 || k < 0 || k >= BIG) {
            fail(entry->d_name);
        }
        name_sum += (unsigned long)k;
        files++;
    }
    printf("big: %ld files, %ld dot entries, index sum %lu (expected %d)\n", files,
           dots, name_sum, BIG * (BIG - 1) / 2);
    printf("readdir at the end again is NULL: %s\n", yes(readdir(dir) == NULL));

    rewinddir(dir);
    for (int i = 0; i < 100; i++) {
        if (readdir(dir) == NULL) {
            fail("readdir after rewinddir");
        }
    }
    long mark = telldir(dir);
    long rest = count_rest(dir);
    printf("after 100 entries, %ld remain\n", rest);
    seekdir(dir, mark);
    printf("after seekdir back, %ld remain again\n", count_rest(dir));
    rewinddir(dir);
    printf("after rewinddir, %ld in all\n", count_rest(dir));
    closedir(dir);

    report("rmdir d (not empty)", rmdir("d"));
    report("rmdir d/file.txt", rmdir("d/file.txt"));
    report("rmdir d/sub/deeper", rmdir("d/sub/deeper"));
    report("rmdir d/sub", rmdir("d/sub"));
    report("rmdir d/sub again", rmdir("d/sub"));
    report("unlink d/file.txt", unlink("d/file.txt"));
    report("unlink d/.hidden", unlink("d/.hidden"));
    list("d");
    report("rmdir d", rmdir("d"));
    list("d");
    put_file("plain.txt", "p", 1);
    list("plain.txt");
    report("open O_DIRECTORY big", open("big", O_RDONLY | O_DIRECTORY));
    fprintf(stderr, "dirs done\n");
    return 0;
}

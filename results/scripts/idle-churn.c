// Another program writing beside a bus: creates, writes, renames and deletes
// a file of another name in DIR, as fast as it goes, for SECONDS; prints how
// many files it made. Usage: churn DIR SECONDS
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: churn DIR SECONDS\n");
        return 2;
    }
    double seconds = atof(argv[2]);
    char staged[4096], named[4096];
    snprintf(staged, sizeof staged, "%s/other.part", argv[1]);
    snprintf(named, sizeof named, "%s/other", argv[1]);
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    long files = 0;
    for (;;) {
        int fd = open(staged, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || write(fd, "another program's file\n", 23) != 23 || close(fd) != 0 ||
            rename(staged, named) != 0 || unlink(named) != 0) {
            perror("churn");
            return 1;
        }
        files++;
        if ((files & 255) == 0) {
            clock_gettime(CLOCK_MONOTONIC, &now);
            if ((now.tv_sec - start.tv_sec) + (now.tv_nsec - start.tv_nsec) / 1e9 >= seconds)
                break;
        }
    }
    printf("%ld\n", files);
    return 0;
}

/* Wake-up lateness of 10 ms sleeps, measured by the sleeper itself (bench/noisy-neighbour): clock_nanosleep(10 ms)
 * N times on CLOCK_MONOTONIC and prints, one per line, how many microseconds each wake-up came after its deadline.
 * Built static on the host (cc -static -O2) and copied into the environment through exec's stdin. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int main(int argc, char **argv) {
  int count = argc > 1 ? atoi(argv[1]) : 300;
  for (int i = 0; i < count; i++) {
    struct timespec start, end, request = {0, 10 * 1000 * 1000};
    clock_gettime(CLOCK_MONOTONIC, &start);
    clock_nanosleep(CLOCK_MONOTONIC, 0, &request, NULL);
    clock_gettime(CLOCK_MONOTONIC, &end);
    long long elapsed = (end.tv_sec - start.tv_sec) * 1000000000LL + (end.tv_nsec - start.tv_nsec);
    printf("%lld\n", (elapsed - 10 * 1000 * 1000LL) / 1000);
  }
  return 0;
}

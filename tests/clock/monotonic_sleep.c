/* libfaketime 0.9.10 with FAKETIME_DONT_FAKE_MONOTONIC=1 still shifts the absolute deadline of
 * clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, ...) (Python 3.11's time.sleep) -> EINVAL.
 * Preloaded before libfaketime: sleeps on any clock but CLOCK_REALTIME go straight to the kernel. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

int clock_nanosleep(clockid_t clk, int flags, const struct timespec *req, struct timespec *rem) {
    if (clk != CLOCK_REALTIME) {
        long r = syscall(SYS_clock_nanosleep, clk, flags, req, rem);
        return r == 0 ? 0 : errno;  /* clock_nanosleep returns the error number */
    }
    static int (*next)(clockid_t, int, const struct timespec *, struct timespec *);
    if (!next) next = dlsym(RTLD_NEXT, "clock_nanosleep");
    return next(clk, flags, req, rem);
}

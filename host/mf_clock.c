/* Host clocks (see mf_clock.h). */
#include "mf_clock.h"

#include <time.h>

int64_t mf_clock_local(void *context)
{
    (void)context;
    time_t now = time(NULL);
    struct tm tm;
    if (!localtime_r(&now, &tm))
        return (int64_t)now;
    return (int64_t)now + tm.tm_gmtoff;
}

uint64_t mf_clock_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Host clocks handed to the core: wall time for FAT timestamps, monotonic time for timeouts. */
#ifndef MF_CLOCK_H
#define MF_CLOCK_H

#include <stdint.h>

/* Local wall-clock time as seconds since 1970 (FAT stores local time), in the shape of
 * mf_fat_clock_fn; `context` is unused. */
int64_t mf_clock_local(void *context);

/* Monotonic milliseconds, for timeouts and durations. */
uint64_t mf_clock_ms(void);

#endif

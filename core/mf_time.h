/* Calendar arithmetic on seconds since 1970 (no time zones: the platform's clock hands in local
 * time where local time is wanted, as FAT and FLASHER.LOG store it). */
#ifndef MF_TIME_H
#define MF_TIME_H

#include <stdint.h>

struct mf_civil_time {
    int64_t year;
    unsigned month, day, hour, minute, second;
};

/* Days since 1970-01-01 of a date in the proleptic Gregorian calendar. */
int64_t mf_time_days_from_civil(int64_t year, unsigned month, unsigned day);

/* Splits seconds since 1970 into a date and time. */
void mf_time_to_civil(int64_t seconds, struct mf_civil_time *out);

/* Formats "YYYY-MM-DD hh:mm:ss" into `buffer` (at least 20 bytes). */
void mf_time_format(int64_t seconds, char buffer[20]);

#endif

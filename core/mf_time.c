/* Calendar arithmetic (see mf_time.h): the usual 400-year-era day count, no tables. */
#include "mf_time.h"

#include <stdio.h>

int64_t mf_time_days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? (unsigned)-3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

void mf_time_to_civil(int64_t seconds, struct mf_civil_time *out)
{
    int64_t z = seconds / 86400, secs = seconds % 86400;
    if (secs < 0) {
        secs += 86400;
        z--;
    }
    out->hour = (unsigned)(secs / 3600);
    out->minute = (unsigned)(secs / 60 % 60);
    out->second = (unsigned)(secs % 60);
    z += 719468;
    const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const unsigned doe = (unsigned)(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    out->day = doy - (153 * mp + 2) / 5 + 1;
    out->month = mp < 10 ? mp + 3 : mp - 9;
    out->year = (int64_t)yoe + era * 400 + (out->month <= 2);
}

void mf_time_format(int64_t seconds, char buffer[20])
{
    struct mf_civil_time t;
    mf_time_to_civil(seconds, &t);
    if (t.year < 0 || t.year > 9999)
        t = (struct mf_civil_time){1970, 1, 1, 0, 0, 0};
    snprintf(buffer, 20, "%04d-%02u-%02u %02u:%02u:%02u", (int)t.year, t.month % 100, t.day % 100,
             t.hour % 100, t.minute % 100, t.second % 100);
}

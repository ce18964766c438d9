/* FLASHER.LOG: the production log in the public area, one line per event, readable by any tool
 * while the programmer runs (every line is synced). Its size is bounded: when a line would take it
 * past the limit, FLASHER.LOG becomes FLASHER.OLD (replacing the previous one) and a new
 * FLASHER.LOG starts. The log is written to the public area also when the programmer runs from
 * the secure area (the spec: "Only the FLASHER.LOG is viewable and updated in the public area"). */
#ifndef MF_FLASHLOG_H
#define MF_FLASHLOG_H

#include "mf_area.h"
#include "mf_fat.h"

#include <stdint.h>

#define MF_FLASHLOG_NAME     "FLASHER.LOG"
#define MF_FLASHLOG_OLD_NAME "FLASHER.OLD"
/* Bytes of one line, with its CR LF: a cycle's line holds a message (MF_CYCLE_MESSAGE_MAX), the
 * project's name and up to 16 job names of up to 63 bytes each. */
#define MF_FLASHLOG_LINE_MAX 2048u

/* Bytes of mf_flashlog_room's message, with the NUL. */
#define MF_FLASHLOG_MESSAGE_MAX 160u

struct mf_flashlog {
    struct mf_fat *fs;               /* the public area */
    struct mf_lock lock;             /* the public area's lock (shared with its mf_area) */
    uint32_t max_bytes;              /* rotation limit of FLASHER.LOG */
    int64_t (*clock)(void *context); /* local time, seconds since 1970 */
    void *clock_context;
    int last_error; /* of the last failed append, 0 when the log works */
};

/* Sets up the log on a mounted public area; nothing is written yet. */
void mf_flashlog_init(struct mf_flashlog *log, struct mf_fat *fs, const struct mf_lock *lock,
                      uint32_t max_bytes, int64_t (*clock)(void *context), void *clock_context);

/* Appends "YYYY-MM-DD hh:mm:ss <text>" and CR LF, rotating first when needed, and syncs.
 * Text longer than a line is cut; control characters become spaces. A line is whole or absent:
 * one that fails is cut off again (or, after a device error, never reaches the directory entry),
 * and one after a file that does not end with a line end starts on a line of its own. */
int mf_flashlog_write(struct mf_flashlog *log, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Is there room on the public area for `lines` more lines of the longest kind
 * (MF_FLASHLOG_LINE_MAX bytes each)? Counts whole clusters: the room left in the log's last
 * cluster, and, when the lines would take it past its limit, the rotation (FLASHER.OLD's clusters
 * come free, a new log starts), and the root folder entry each new name takes (a new cluster for
 * it on FAT32, MF_ENOSPC when a fixed FAT12/16 root is full). Two names of one log
 * (a rename an earlier version left half-done) become FLASHER.OLD first, as the next line would
 * do. When the last line failed, first logs that one is missing: the error when that fails too.
 * 0 when they fit; MF_ENOSPC when not; MF_EISDIR when FLASHER.LOG is a folder, or FLASHER.OLD is
 * one and the lines would rotate the log; with `message` (MF_FLASHLOG_MESSAGE_MAX) naming
 * FLASHER.LOG and the bytes free and needed, the folder, or the error. For a check before a cycle
 * takes a count: its line must not go unlogged. */
int mf_flashlog_room(struct mf_flashlog *log, unsigned lines, char *message);

#endif

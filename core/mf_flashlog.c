/* FLASHER.LOG (see mf_flashlog.h). */
#include "mf_flashlog.h"

#include "mf_cp437.h"
#include "mf_err.h"
#include "mf_time.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void mf_flashlog_init(struct mf_flashlog *log, struct mf_fat *fs, const struct mf_lock *lock,
                      uint32_t max_bytes, int64_t (*clock)(void *context), void *clock_context)
{
    memset(log, 0, sizeof *log);
    log->fs = fs;
    if (lock)
        log->lock = *lock;
    log->max_bytes = max_bytes < 4096 ? 4096 : max_bytes;
    log->clock = clock;
    log->clock_context = clock_context;
}

/* Moves FLASHER.LOG to FLASHER.OLD. A cut in between leaves one of the names, never a lost
 * current log; the rename is in place (both are short names), so it needs no free entry in the
 * root folder and no new cluster for it. */
static int rotate(struct mf_fat *fs)
{
    int err = mf_fat_remove(fs, MF_FLASHLOG_OLD_NAME);
    if (err && err != MF_ENOENT)
        return err;
    return mf_fat_rename(fs, MF_FLASHLOG_NAME, MF_FLASHLOG_OLD_NAME);
}

/* A cut during the rename of an earlier version (a new entry written before the old one went)
 * can leave FLASHER.LOG and FLASHER.OLD naming the same clusters: the rename is finished (the
 * clusters stay FLASHER.OLD's) before anything else, else the next rotation would free them under
 * FLASHER.OLD's name and lose the log. */
static int finish_rename(struct mf_fat *fs)
{
    struct mf_fat_stat cur, old;
    if (mf_fat_stat(fs, MF_FLASHLOG_NAME, &cur) != 0 ||
        mf_fat_stat(fs, MF_FLASHLOG_OLD_NAME, &old) != 0)
        return 0;
    if (cur.first_cluster == 0 || cur.first_cluster != old.first_cluster)
        return 0;
    return mf_fat_remove_alias(fs, MF_FLASHLOG_NAME, MF_FLASHLOG_OLD_NAME);
}

/* 0 when the file is empty or ends with a line end, 1 when not (a line cut short by a tool or by
 * a power cut of a disk that is not sector-atomic), or an error. */
static int ends_open(struct mf_fat *fs, struct mf_fat_file *file)
{
    uint32_t size = mf_fat_size(file);
    if (size == 0)
        return 0;
    char last;
    int n = mf_fat_seek(fs, file, size - 1);
    if (!n)
        n = mf_fat_read(fs, file, &last, 1);
    return n < 0 ? n : n != 1 ? MF_ECORRUPT : last != '\n';
}

/* A line is whole or absent: one that does not go in whole is cut off again, and a line goes on a
 * line of its own after a file that does not end with a line end. */
static int append(struct mf_flashlog *log, const char *line, uint32_t len)
{
    struct mf_fat_stat st;
    int err = finish_rename(log->fs);
    if (err)
        return err;
    err = mf_fat_stat(log->fs, MF_FLASHLOG_NAME, &st);
    if (!err && st.size + len > log->max_bytes) {
        err = rotate(log->fs);
        if (err == MF_EBUSY)
            err = 0; /* a client holds FLASHER.LOG open: rotate at a later line */
    } else if (err == MF_ENOENT) {
        err = 0;
    }
    if (err)
        return err;
    struct mf_fat_file file;
    err = mf_fat_open(log->fs, &file, MF_FLASHLOG_NAME,
                      MF_FAT_O_RDWR | MF_FAT_O_CREAT | MF_FAT_O_APPEND);
    if (err)
        return err;
    uint32_t size = mf_fat_size(&file);
    int n = ends_open(log->fs, &file);
    if (n == 1)
        n = mf_fat_write(log->fs, &file, "\r\n", 2);
    if (n >= 0)
        n = mf_fat_write(log->fs, &file, line, len);
    if (n < 0)
        mf_fat_truncate(log->fs, &file, size); /* after a device error the file only closes */
    int cerr = mf_fat_close(log->fs, &file);
    return n < 0 ? n : cerr;
}

/* What `name` is; all zero when absent. */
static int stat_of(struct mf_fat *fs, const char *name, struct mf_fat_stat *st)
{
    int err = mf_fat_stat(fs, name, st);
    if (err)
        memset(st, 0, sizeof *st);
    return err == MF_ENOENT ? 0 : err;
}

static uint64_t round_up(uint64_t bytes, uint64_t cluster)
{
    return (bytes + cluster - 1) / cluster * cluster;
}

int mf_flashlog_room(struct mf_flashlog *log, unsigned lines, char *message)
{
    struct mf_fat *fs = log->fs;
    uint64_t free_bytes = 0, total;
    struct mf_fat_stat current, previous;
    mf_lock_take(&log->lock);
    int failed = log->last_error;
    uint64_t cluster = (uint64_t)fs->geo.bytes_per_sector * fs->geo.sectors_per_cluster;
    /* Two names of one log (an interrupted rename) become one first, as the next line does: the
     * clusters stay FLASHER.OLD's, and the new log needs its own. */
    int err = finish_rename(fs);
    if (!err)
        err = mf_fat_space(fs, &free_bytes, &total);
    if (!err)
        err = stat_of(fs, MF_FLASHLOG_NAME, &current);
    if (!err)
        err = stat_of(fs, MF_FLASHLOG_OLD_NAME, &previous);
    mf_lock_give(&log->lock);
    if (err) {
        snprintf(message, MF_FLASHLOG_MESSAGE_MAX, "%s: cannot read the public area: %s",
                 MF_FLASHLOG_NAME, mf_strerror(err));
        return err;
    }
    uint64_t size = current.size, old = previous.size;
    /* The lines go on at the end until one would take the log past its limit; then FLASHER.OLD
     * goes (its clusters come free), the log becomes FLASHER.OLD and a new log takes the rest.
     * After a line that failed, one more says so. */
    uint64_t lines_bytes = (uint64_t)(lines + (failed != 0)) * MF_FLASHLOG_LINE_MAX;
    uint64_t end = size + lines_bytes, need = 0;
    /* Folders of the user's under the log's names stop the log: say so before a cycle counts. */
    const char *folder = current.is_dir                            ? MF_FLASHLOG_NAME
                         : previous.is_dir && end > log->max_bytes ? MF_FLASHLOG_OLD_NAME
                                                                   : NULL;
    if (folder) {
        snprintf(message, MF_FLASHLOG_MESSAGE_MAX,
                 "%s is a folder, so %s cannot %s: remove or rename the folder", folder,
                 MF_FLASHLOG_NAME, current.is_dir ? "be written" : "rotate");
        return MF_EISDIR;
    }
    /* Nor can a read-only log take a line (a writable open of it is refused). */
    if (current.name[0] && (current.attributes & MF_FAT_ATTR_READ_ONLY)) {
        snprintf(message, MF_FLASHLOG_MESSAGE_MAX,
                 "%s is read-only, so it cannot be written: clear its read-only attribute",
                 MF_FLASHLOG_NAME);
        return MF_EACCES;
    }
    /* A new name (FLASHER.LOG, and FLASHER.OLD at the first rotation) takes a root entry: a new
     * root cluster on FAT32 when none is free, none at all when the fixed root is full. */
    bool rotates = end > log->max_bytes;
    uint32_t entries = (current.name[0] == '\0') + (rotates && previous.name[0] == '\0');
    mf_lock_take(&log->lock);
    err = mf_fat_dir_need(fs, "/", entries, &need);
    mf_lock_give(&log->lock);
    if (err) {
        snprintf(message, MF_FLASHLOG_MESSAGE_MAX, "%s: %s", MF_FLASHLOG_NAME,
                 err == MF_ENOSPC
                     ? "the root folder of the public area is full: remove a file there"
                     : mf_strerror(err));
        return err;
    }
    if (!rotates) {
        need += round_up(end, cluster) - round_up(size, cluster);
    } else {
        if (log->max_bytes > size)
            need += round_up(log->max_bytes, cluster) - round_up(size, cluster);
        /* A new log rotates again past its limit (its predecessor's clusters come free then):
         * it never holds more than the limit and one line. */
        uint64_t most = (uint64_t)log->max_bytes + MF_FLASHLOG_LINE_MAX;
        uint64_t fresh = round_up(lines_bytes < most ? lines_bytes : most, cluster);
        uint64_t freed = round_up(old, cluster);
        need += fresh > freed ? fresh - freed : 0;
    }
    if (need > free_bytes) {
        snprintf(message, MF_FLASHLOG_MESSAGE_MAX,
                 "the public area is too full for %s (%llu bytes free, %llu needed): free space",
                 MF_FLASHLOG_NAME, (unsigned long long)free_bytes, (unsigned long long)need);
        return MF_ENOSPC;
    }
    /* A failure free space does not show (a full host file system under the image): the log
     * works again when the line saying so goes in. */
    if (failed &&
        (err = mf_flashlog_write(log, "at least one line before this one is missing from %s: %s",
                                 MF_FLASHLOG_NAME, mf_strerror(failed))) != 0) {
        snprintf(message, MF_FLASHLOG_MESSAGE_MAX, "%s cannot be written: %s", MF_FLASHLOG_NAME,
                 mf_strerror(err));
        return err;
    }
    return 0;
}

int mf_flashlog_write(struct mf_flashlog *log, const char *fmt, ...)
{
    char line[MF_FLASHLOG_LINE_MAX];
    int64_t now = log->clock ? log->clock(log->clock_context) : 0;
    mf_time_format(now, line);
    line[19] = ' ';
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + 20, sizeof line - 22, fmt, ap);
    va_end(ap);
    size_t len = strlen(line);
    /* No control character from what a line quotes (a file name read from the volume): C0 and
     * DEL, and C1 written as UTF-8 (NEL ends a line for some viewers), become blanks. */
    for (size_t i = 20, n; i < len; i += n ? n : 1) {
        unsigned code;
        n = mf_utf8_control(line + i, len - i, &code);
        memset(line + i, ' ', n);
    }
    line[len++] = '\r';
    line[len++] = '\n';
    mf_lock_take(&log->lock);
    int err = append(log, line, (uint32_t)len);
    log->last_error = err;
    mf_lock_give(&log->lock);
    return err;
}

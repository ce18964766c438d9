/* FLASHER.LOG (see mf_flashlog.h). */
#include "mf_flashlog.h"

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

/* Moves FLASHER.LOG to FLASHER.OLD. A cut in between leaves both names or one: never a lost
 * current log. */
static int rotate(struct mf_fat *fs)
{
    int err = mf_fat_remove(fs, MF_FLASHLOG_OLD_NAME);
    if (err && err != MF_ENOENT)
        return err;
    return mf_fat_rename(fs, MF_FLASHLOG_NAME, MF_FLASHLOG_OLD_NAME);
}

/* A cut during rotate's rename can leave FLASHER.LOG and FLASHER.OLD naming the same clusters:
 * the rename is finished (the clusters stay FLASHER.OLD's) before anything else, else the next
 * rotation would free them under FLASHER.OLD's name and lose the log. */
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
                      MF_FAT_O_WRONLY | MF_FAT_O_CREAT | MF_FAT_O_APPEND);
    if (err)
        return err;
    int n = mf_fat_write(log->fs, &file, line, len);
    int cerr = mf_fat_close(log->fs, &file);
    return n < 0 ? n : cerr;
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
    for (size_t i = 20; i < len; i++) {
        if ((unsigned char)line[i] < 0x20)
            line[i] = ' ';
    }
    line[len++] = '\r';
    line[len++] = '\n';
    mf_lock_take(&log->lock);
    int err = append(log, line, (uint32_t)len);
    log->last_error = err;
    mf_lock_give(&log->lock);
    return err;
}

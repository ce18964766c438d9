/* The programmer's production records (see mf_reclog.h). */
#include "mf_reclog.h"

#include "mf_err.h"

#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TAIL_MAX (2u * MF_RECORD_LINE_MAX)

static void say(char *message, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void say(char *message, const char *fmt, ...)
{
    if (!message)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, MF_RECLOG_MESSAGE_MAX, fmt, ap);
    va_end(ap);
}

static void file_name(unsigned number, char name[16])
{
    snprintf(name, 16, MF_RECLOG_PREFIX "%03u", number % 1000u);
}

bool mf_reclog_is_name(const char *name)
{
    size_t n = strlen(MF_RECLOG_PREFIX);
    if (strlen(name) != n + 3)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (c >= 'a' && c <= 'z')
            c = (char)(c - 'a' + 'A');
        if (c != MF_RECLOG_PREFIX[i])
            return false;
    }
    for (size_t i = n; i < n + 3; i++) {
        if (name[i] < '0' || name[i] > '9')
            return false;
    }
    return true;
}

/* The highest RECORDS number at the root; *found false when there is none. */
static int find_current(struct mf_fat *fs, unsigned *current, bool *found)
{
    struct mf_fat_dir dir;
    struct mf_fat_stat st;
    *found = false;
    *current = 0;
    int err = mf_fat_opendir(fs, &dir, "");
    int r;
    while (!err && (r = mf_fat_readdir(fs, &dir, &st)) == 1) {
        if (st.is_dir || !mf_reclog_is_name(st.name))
            continue;
        unsigned n = (unsigned)atoi(st.name + strlen(MF_RECLOG_PREFIX));
        if (!*found || n > *current)
            *current = n;
        *found = true;
    }
    if (!err && r < 0)
        err = r;
    return err;
}

/* The newest record in the files that is ours, and where it ends. The chain is the
 * programmer's, across setups: a new setup's records go on from the old one's. */
struct newest {
    bool any_line;   /* the files hold a complete line */
    bool found;      /* a record signed by us was found (any setup) */
    bool same_setup; /* ... and it is for the installed setup */
    bool ours;       /* found, or the files hold no record at all:
                        `file`/`end` say where the last good line ends */
    struct mf_record record;
    uint8_t hash[32];
    unsigned file;  /* the RECORDS file it is in */
    uint32_t start; /* its first byte in that file (when found) */
    uint32_t end;   /* the byte after its LF in that file */
    bool trailing;  /* bytes follow it (in its file or a newer one) */
};

/* Is this line a record signed by this programmer? (*same_setup: for the installed setup.) */
static bool our_record(struct mf_reclog *log, const char *line, size_t length, struct newest *out,
                       bool *same_setup)
{
    size_t body;
    char message[MF_RECORD_MESSAGE_MAX];
    if (mf_record_parse(line, length, &out->record, &body, message) != 0)
        return false;
    const struct mf_owner_identity *id = log->config.identity;
    if (!mf_record_signature_ok(line, body, out->record.signature, id->pub.ed25519) ||
        strcmp(out->record.programmer, id->pub.fingerprint) != 0)
        return false;
    *same_setup = sodium_memcmp(out->record.setup, log->config.secure->fingerprint, 32) == 0;
    mf_record_hash(line, body, out->hash);
    return true;
}

/* Looks through the last complete lines of file `number` (newest first) for a record of ours.
 * *size gets the file's size (0 when it does not exist). */
static int scan_file(struct mf_reclog *log, unsigned number, struct newest *out, uint32_t *size)
{
    struct mf_fat *fs = log->config.fs;
    char name[16];
    file_name(number, name);
    *size = 0;
    struct mf_fat_file f;
    int err = mf_fat_open(fs, &f, name, MF_FAT_O_RDONLY);
    if (err == MF_ENOENT)
        return 0;
    if (err)
        return err;
    *size = mf_fat_size(&f);
    uint32_t take = *size < TAIL_MAX ? *size : TAIL_MAX;
    char *tail = malloc(TAIL_MAX);
    if (!tail) {
        mf_fat_close(fs, &f);
        return MF_ENOMEM;
    }
    err = mf_fat_seek(fs, &f, *size - take);
    int n = err ? err : mf_fat_read(fs, &f, tail, take);
    mf_fat_close(fs, &f);
    if (n >= 0 && (uint32_t)n != take)
        n = MF_EIO;
    if (n < 0) {
        free(tail);
        return n;
    }
    /* Complete lines from the newest back; a line torn by a power cut has no LF, or carries the
     * unwritten bytes of an append that never finished: it is not a record of ours. Up to 8
     * lines are judged; a whole RECORDS.000 without a record of ours is read to its start, for
     * the newest complete line that is anyone's record. */
    bool whole_first = take == *size && number == 0;
    size_t end = take, record_end = 0;
    bool record_seen = false;
    while (end > 0 && tail[end - 1] != '\n')
        end--;
    for (unsigned lines = 0; end > 0 && (lines < 8 || (whole_first && !record_seen)); lines++) {
        size_t start = end - 1;
        while (start > 0 && tail[start - 1] != '\n')
            start--;
        if (start == 0 && take < *size)
            break; /* the line may begin before the tail: not judged */
        out->any_line = true;
        bool same = false;
        if (lines < 8 && end - start <= MF_RECORD_LINE_MAX &&
            our_record(log, tail + start, end - start, out, &same)) {
            out->ours = true;
            out->found = true;
            out->same_setup = same;
            out->file = number;
            out->start = *size - take + (uint32_t)start;
            out->end = *size - take + (uint32_t)end;
            break;
        }
        if (!record_seen && end - start <= MF_RECORD_LINE_MAX) {
            struct mf_record r;
            size_t body;
            char message[MF_RECORD_MESSAGE_MAX];
            if (mf_record_parse(tail + start, end - start, &r, &body, message) == 0) {
                record_seen = true;
                record_end = end;
            }
        }
        end = start;
    }
    if (!out->ours && whole_first) {
        /* No record of ours at all: the good part ends after the newest complete record (another
         * programmer's, or this one's before its identity changed: no append of ours wrote it),
         * at the file's start when there is none. What follows it is the remains of an append. */
        out->ours = true;
        out->file = 0;
        out->end = record_seen ? (uint32_t)record_end : 0;
    }
    free(tail);
    return 0;
}

static int newest_record(struct mf_reclog *log, bool any_file, struct newest *out)
{
    memset(out, 0, sizeof *out);
    if (!any_file)
        return 0;
    uint32_t size;
    int err = scan_file(log, log->current, out, &size);
    if (!err && out->ours) {
        out->trailing = out->end < size;
        return 0;
    }
    bool newer_bytes = size > 0;
    if (!err && log->current > 0) {
        /* A new file whose first append was cut: the newest record is in the one before. */
        err = scan_file(log, log->current - 1, out, &size);
        if (!err && out->ours)
            out->trailing = out->end < size || newer_bytes;
    }
    return err;
}

/* Writes the newest record's line again where it is, then syncs it. A line read back after an
 * append whose sync failed may be in the host's cache only (a failed fdatasync may even have
 * marked it clean, so that a later one succeeds without writing it): it becomes the chain's head
 * only once it is surely on the medium. */
static int make_durable(struct mf_reclog *log, const struct newest *n)
{
    struct mf_fat *fs = log->config.fs;
    char name[16];
    char line[MF_RECORD_LINE_MAX + 1];
    uint32_t length = n->end - n->start;
    if (length > sizeof line)
        return MF_EFORMAT;
    file_name(n->file, name);
    struct mf_fat_file f;
    int err = mf_fat_open(fs, &f, name, MF_FAT_O_RDWR);
    if (err)
        return err;
    err = mf_fat_seek(fs, &f, n->start);
    int r = err ? err : mf_fat_read(fs, &f, line, length);
    if (r >= 0 && (uint32_t)r != length)
        r = MF_EIO;
    if (r >= 0)
        r = mf_fat_seek(fs, &f, n->start);
    if (r >= 0)
        r = mf_fat_write(fs, &f, line, length);
    if (r >= 0 && (uint32_t)r != length)
        r = MF_EIO;
    if (r >= 0)
        r = mf_fat_file_sync(fs, &f);
    int cerr = mf_fat_close(fs, &f);
    return r < 0 ? r : cerr;
}

/* Cuts what an unfinished append left after the newest record: a torn line, and a newer file
 * that holds nothing else. */
static int cut_trailing(struct mf_reclog *log, const struct newest *n)
{
    struct mf_fat *fs = log->config.fs;
    char name[16];
    struct mf_fat_file f;
    file_name(n->file, name);
    int err = mf_fat_open(fs, &f, name, MF_FAT_O_RDWR);
    if (err)
        return err;
    if (mf_fat_size(&f) > n->end)
        err = mf_fat_truncate(fs, &f, n->end);
    int cerr = mf_fat_close(fs, &f);
    if (!err && cerr)
        err = cerr;
    if (!err && n->file != log->current) {
        file_name(log->current, name);
        err = mf_fat_remove(fs, name);
        if (!err)
            log->current = n->file;
    }
    return err;
}

/* Why `length` bytes could not be appended to `name`. "No space" from below may come from
 * elsewhere than the volume's free space (the storage device: an image on a full host file
 * system; a full FAT12/16 root folder): the advice to delete RECORDS files is only given when the
 * volume lacks the room. (The daemon names the device's own error when there was one.) Under
 * fs_lock. */
static void say_append_error(struct mf_reclog *log, const char *name, size_t length, int err,
                             char *message)
{
    struct mf_fat *fs = log->config.fs;
    if (err != MF_ENOSPC) {
        say(message, "production records: cannot append to %s: %s", name, mf_strerror(err));
        return;
    }
    uint64_t free_bytes = 0, total = 0;
    uint64_t cluster = (uint64_t)fs->geo.bytes_per_sector * fs->geo.sectors_per_cluster;
    if (mf_fat_space(fs, &free_bytes, &total) == 0 && free_bytes >= length + 2 * cluster)
        say(message,
            "production records: cannot append to %s: no room although the public area has "
            "%llu bytes free (its root folder is full, or the storage refused the write)",
            name, (unsigned long long)free_bytes);
    else
        say(message,
            "production records: cannot append to %s: the public area is full (export RECORDS "
            "files and delete old ones, or free space)",
            name);
}

/* Does file `name` of `size` bytes end a line (an LF last, or no byte at all)? A line that is not
 * ours, or an append of ours torn right after it (the start cuts back only to a record of ours),
 * may end the file without its LF. */
static int ends_a_line(struct mf_fat *fs, const char *name, uint32_t size, bool *ends)
{
    *ends = true;
    if (size == 0)
        return 0;
    struct mf_fat_file f;
    int err = mf_fat_open(fs, &f, name, MF_FAT_O_RDONLY);
    if (err)
        return err;
    char last = '\n';
    err = mf_fat_seek(fs, &f, size - 1);
    int n = err ? err : mf_fat_read(fs, &f, &last, 1);
    mf_fat_close(fs, &f);
    if (n >= 0 && n != 1)
        n = MF_EIO;
    if (n < 0)
        return n;
    *ends = last == '\n';
    return 0;
}

/* Appends one formatted line, moving to the next file when this one would pass its limit. A
 * record is never glued to a line before it: when the file does not end in an LF, the append
 * begins with one. (A cut during that append leaves the line before it ended, and at most a torn
 * line of ours after it, which the next append ends the same way.) */
static int write_line(struct mf_reclog *log, const char *line, size_t length, char *message)
{
    struct mf_fat *fs = log->config.fs;
    uint32_t file_max = log->config.file_max ? log->config.file_max : MF_RECORD_FILE_MAX;
    char name[16];
    struct mf_fat_stat st;
    bool ends;
    for (;;) {
        file_name(log->current, name);
        int err = mf_fat_stat(fs, name, &st);
        if (err == MF_ENOENT) {
            st.size = 0;
            err = 0;
        }
        if (!err)
            err = ends_a_line(fs, name, st.size, &ends);
        if (err) {
            say(message, "production records: %s: %s", name, mf_strerror(err));
            return err;
        }
        if (st.size == 0 || st.size + (ends ? 0u : 1u) + length <= file_max)
            break;
        if (log->current + 1 >= MF_RECLOG_FILES_MAX) {
            say(message,
                "production records: %u RECORDS files are full (export them and delete "
                "the old ones)",
                MF_RECLOG_FILES_MAX);
            return MF_ENOSPC;
        }
        log->current++;
    }
    char text[MF_RECORD_LINE_MAX + 2];
    size_t lf = ends ? 0 : 1;
    if (length > MF_RECORD_LINE_MAX) { /* mf_record_format makes none longer */
        say(message, "production records: a line of %zu bytes", length);
        return MF_EINVAL;
    }
    text[0] = '\n';
    memcpy(text + lf, line, length);
    length += lf;
    struct mf_fat_file f;
    int err = mf_fat_open(fs, &f, name, MF_FAT_O_WRONLY | MF_FAT_O_CREAT | MF_FAT_O_APPEND);
    if (err) {
        say_append_error(log, name, length, err, message);
        return err;
    }
    int n = mf_fat_write(fs, &f, text, (uint32_t)length);
    if (n >= 0 && (size_t)n != length)
        n = MF_ENOSPC;
    if (n < 0)
        mf_fat_truncate(fs, &f, st.size); /* no half record is left behind */
    int cerr = mf_fat_close(fs, &f);
    err = n < 0 ? n : cerr;
    if (err)
        say_append_error(log, name, length, err, message);
    return err;
}

/* Signs, chains and appends `record` (seq and prev are filled here), then moves the head;
 * `cycles` is how many consumed cycles it accounts for. Under log->config.lock. */
/* Appends `record` and moves the chain head to it; `cycles`: the consumed cycles it records. A
 * "run-end" record (mf_record_run_end) also notes in the same state write that the counter step
 * of the run's end has its record. */
static int append_record(struct mf_reclog *log, struct mf_record *record, uint64_t cycles,
                         char *message)
{
    struct mf_secure *secure = log->config.secure;
    const struct mf_owner_identity *id = log->config.identity;
    record->seq = secure->state.record_seq + 1;
    memcpy(record->prev, secure->state.record_hash, 32);
    record->time = log->config.utc ? log->config.utc(log->config.utc_context) : 0;
    memcpy(record->programmer, id->pub.fingerprint, sizeof record->programmer);
    memcpy(record->setup, secure->fingerprint, 32);
    struct mf_anchor *a = log->config.anchor;
    int err = a->counter_read(a, &record->counter);
    if (err) {
        say(message, "production records: trust anchor: %s", a->error);
        return err;
    }
    char line[MF_RECORD_LINE_MAX + 1];
    size_t length;
    uint8_t hash[32];
    err = mf_record_format(record, id->ed25519_secret, line, sizeof line, &length, hash);
    if (err) {
        say(message, "production records: cannot format a record: %s", mf_strerror(err));
        return err;
    }
    mf_lock_take(&log->config.fs_lock);
    err = write_line(log, line, length, message);
    mf_lock_give(&log->config.fs_lock);
    if (err)
        return err;
    char smessage[MF_SECURE_MESSAGE_MAX];
    if (mf_record_run_end(record))
        err = mf_secure_run_end_recorded(secure, record->seq, hash, smessage);
    else
        err = mf_secure_record_head(secure, record->seq, hash, secure->state.recorded + cycles,
                                    smessage);
    if (err)
        say(message, "production records: %s", smessage);
    return err;
}

static void note_add(char *notes, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void note_add(char *notes, const char *fmt, ...)
{
    if (!notes)
        return;
    size_t used = strlen(notes);
    if (used + 3 >= MF_RECLOG_MESSAGE_MAX)
        return;
    if (used)
        strcat(notes, "; ");
    used = strlen(notes);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(notes + used, MF_RECLOG_MESSAGE_MAX - used, fmt, ap);
    va_end(ap);
}

int mf_reclog_open(struct mf_reclog *log, const struct mf_reclog_config *config, char *notes,
                   char *message)
{
    memset(log, 0, sizeof *log);
    log->config = *config;
    if (notes)
        notes[0] = '\0';
    struct mf_secure *secure = config->secure;
    if (!secure->present) {
        say(message, "production records: no setup is installed");
        return MF_ENOENT;
    }
    mf_lock_take(&config->lock);
    bool any_file;
    mf_lock_take(&config->fs_lock);
    int err = find_current(config->fs, &log->current, &any_file);
    struct newest newest;
    if (!err)
        err = newest_record(log, any_file, &newest);
    mf_lock_give(&config->fs_lock);
    if (err) {
        say(message, "production records: cannot read the RECORDS files: %s", mf_strerror(err));
        goto out;
    }
    log->open = true;
    const struct mf_secure_state *st = &secure->state;
    char smessage[MF_SECURE_MESSAGE_MAX];
    bool is_head = newest.found && newest.record.seq == st->record_seq &&
                   sodium_memcmp(newest.hash, st->record_hash, 32) == 0;
    /* Also a record of the setup this one replaced (installed at the start after the cut): the
     * chain goes on from it, and the cycle it accounts for is that setup's, not this one's.
     * Without a head (record_seq 0) any chain's first record names no previous one: a seq 1
     * record follows that head only when a cycle of this install wrote it (its counter is past
     * the one at install; every cycle of an install takes a count beyond it). An older chain's
     * first record, the files cut to it, is judged below as any newest record: continued only
     * when it shows the counter as it is. The one record of this install that may show the
     * counter at install is a count-unknown one (the anchor's write lost): its counter is
     * behind as soon as another slot takes a count before its head is recorded, which is no
     * record missing. Of this setup, it follows that head too: continued, it hides no more than
     * an adopted record showing the counter at install would (records of no count). */
    bool own_unknown = newest.same_setup && mf_record_count_unknown(&newest.record) &&
                       newest.record.counter == secure->counter_base;
    bool after_head =
        newest.found && newest.record.seq == st->record_seq + 1 &&
        sodium_memcmp(newest.record.prev, st->record_hash, 32) == 0 &&
        (st->record_seq > 0 || newest.record.counter > secure->counter_base || own_unknown);
    /* No record of this setup yet and none of ours in the files: a chain starts at 1. */
    bool fresh = st->record_seq == 0 && newest.ours && !newest.found;
    /* The anchor's counter now: no record after the newest one took a count if it shows it. */
    uint64_t v;
    err = config->anchor->counter_read(config->anchor, &v);
    if (err) {
        say(message, "production records: trust anchor: %s", config->anchor->error);
        goto out;
    }
    /* No record of this setup yet, but the files end with one of ours (an earlier setup's, when
     * the install could not carry the chain's head over: a cut during it): the chain goes on
     * from that record, if it is the newest the counter shows. A record behind the counter had
     * records after it (deleted: the files cut, the secure area removed and created, the cut
     * files put back), or a cycle after it that went unrecorded: its chain is not taken up, and
     * this setup's starts afresh, which the owner's verifier reports as a second chain. (Within
     * one reservation of K > 1 cycles the counter does not show a cut: docs/security.md.) */
    bool behind = st->record_seq == 0 && newest.found && !after_head && newest.record.counter < v;
    bool adopt = st->record_seq == 0 && newest.found && !after_head && !behind;
    if ((is_head || after_head || fresh || adopt || behind) && newest.trailing) {
        /* The remains of an append the power cut short: never a record, so they go. */
        mf_lock_take(&config->fs_lock);
        err = cut_trailing(log, &newest);
        mf_lock_give(&config->fs_lock);
        if (err && log->current + 1 < MF_RECLOG_FILES_MAX) {
            /* The file itself is damaged (a cut that left its FAT entries behind its size):
             * it stays as it is, for the record, and the chain goes on in a new file. */
            note_add(notes,
                     "RECORDS.%03u ends in a torn line that cannot be cut (%s): the records "
                     "go on in RECORDS.%03u",
                     log->current % 1000u, mf_strerror(err), (log->current + 1) % 1000u);
            log->current++;
            err = 0;
        }
        if (err) {
            say(message, "production records: cannot cut a torn line: %s", mf_strerror(err));
            goto out;
        }
    }
    if (adopt || after_head) {
        mf_lock_take(&config->fs_lock);
        err = make_durable(log, &newest);
        mf_lock_give(&config->fs_lock);
        if (err) {
            say(message, "production records: RECORDS.%03u: cannot write record %llu again: %s",
                newest.file % 1000u, (unsigned long long)newest.record.seq, mf_strerror(err));
            goto out;
        }
    }
    if (behind) {
        note_add(notes,
                 "the newest production record in the files (seq %llu) shows the trust anchor's "
                 "counter at %llu, which is now %llu: records after it are missing, so its chain "
                 "is not continued and a new one starts",
                 (unsigned long long)newest.record.seq, (unsigned long long)newest.record.counter,
                 (unsigned long long)v);
    } else if (adopt) {
        err = mf_secure_record_head(secure, newest.record.seq, newest.hash, st->recorded, smessage);
        if (err) {
            say(message, "production records: %s", smessage);
            goto out;
        }
    } else if (after_head) {
        /* Appended, but the power went before its head was recorded: it is the head now. A
         * "run-end" record is of no cycle; of this setup, it is the one of the step its state
         * shows unrecorded (the clean end's last write before the records'). */
        bool run_end = newest.same_setup && mf_record_run_end(&newest.record);
        uint64_t cycles = newest.same_setup && !run_end ? mf_record_cycles(&newest.record) : 0;
        if (run_end && st->run_end_unrecorded)
            err = mf_secure_run_end_recorded(secure, newest.record.seq, newest.hash, smessage);
        else
            err = mf_secure_record_head(secure, newest.record.seq, newest.hash,
                                        st->recorded + cycles, smessage);
        if (err) {
            say(message, "production records: %s", smessage);
            goto out;
        }
    } else if (st->record_seq > 0 && !is_head) {
        /* The newest records are gone or changed: say so in the chain itself. */
        struct mf_record gap;
        memset(&gap, 0, sizeof gap);
        gap.result = MF_RECORD_GAP;
        gap.gap_last = st->record_seq;
        /* From the newest record still there; everything when no line is left; only the
         * newest when the last line is not a record of ours (edited or forged). */
        if (newest.found && newest.record.seq < st->record_seq)
            gap.gap_first = newest.record.seq + 1;
        else if (newest.any_line)
            gap.gap_first = st->record_seq;
        else
            gap.gap_first = 1;
        err = append_record(log, &gap, 0, message);
        if (err)
            goto out;
        note_add(notes,
                 "production records %llu to %llu are missing or changed (gap record written)",
                 (unsigned long long)gap.gap_first, (unsigned long long)gap.gap_last);
    }
    /* What the anchor's counter proves beyond the state: a restored older storage image, or a
     * cut between the counter and the state. Charged at the next cycle. */
    uint64_t missing = mf_secure_missing(secure, v);
    /* Records account for at most the cycles the state shows and the counter proves beyond it
     * (a record written for a cycle whose state write failed). More is a count of records for
     * counts never taken (earlier versions recorded a failed count's write as taken): it would
     * hide as many later cycles without a record, so it goes. */
    if (st->recorded > st->total_used + missing) {
        uint64_t excess = st->recorded - st->total_used - missing;
        err = mf_secure_record_head(secure, st->record_seq, st->record_hash,
                                    st->total_used + missing, smessage);
        if (err) {
            say(message, "production records: %s", smessage);
            goto out;
        }
        note_add(notes,
                 "%llu production record(s) were counted for cycles that took no count "
                 "(corrected)",
                 (unsigned long long)excess);
    }
    /* Cycles that consumed a count but have no record: a power cut during a cycle, or a record
     * that could not be written. */
    if (st->total_used > st->recorded) {
        uint64_t n = st->total_used - st->recorded;
        struct mf_record r;
        memset(&r, 0, sizeof r);
        r.result = MF_RECORD_ERR;
        snprintf(r.note, sizeof r.note, MF_RECORD_NOTE_UNRECORDED "%llu", (unsigned long long)n);
        err = append_record(log, &r, n, message);
        if (err)
            goto out;
        note_add(notes,
                 "%llu cycle(s) took a count but have no record (a power cut, or a record that "
                 "could not be written)",
                 (unsigned long long)n);
    }
    /* The counter's cycles that no record accounts for yet (records beyond the state's cycles
     * account for some of them): recorded now. */
    uint64_t beyond = st->recorded - st->total_used; /* recorded >= total_used from here */
    if (missing > beyond) {
        uint64_t n = missing - beyond;
        struct mf_record r;
        memset(&r, 0, sizeof r);
        r.result = MF_RECORD_ERR;
        snprintf(r.note, sizeof r.note, MF_RECORD_NOTE_COUNTER_AHEAD "%llu", (unsigned long long)n);
        err = append_record(log, &r, n, message);
        if (err)
            goto out;
        note_add(notes,
                 "the trust anchor's counter proves %llu cycle(s) more than the secure area "
                 "shows (a restored storage image, or a power cut while a count was taken)",
                 (unsigned long long)n);
    }
    /* The counter step of the last run's clean end, without its record (a cut just after it, or
     * records that could not be written then): recorded now. */
    if (st->run_end_unrecorded) {
        struct mf_record r;
        memset(&r, 0, sizeof r);
        r.result = MF_RECORD_ERR;
        snprintf(r.note, sizeof r.note, "%s", MF_RECORD_NOTE_RUN_END);
        err = append_record(log, &r, 0, message);
        if (err)
            goto out;
        note_add(notes, "the counter step that ended the last run had no production record "
                        "(recorded now)");
    }
out:
    if (err)
        log->open = false;
    mf_lock_give(&config->lock);
    return err;
}

int mf_reclog_append(struct mf_reclog *log, const struct mf_reclog_entry *entry, char *message)
{
    if (!log->open) {
        say(message, "production records: not open");
        return MF_EBADF;
    }
    struct mf_record r;
    memset(&r, 0, sizeof r);
    if (entry->run_end) {
        r.result = MF_RECORD_ERR;
        snprintf(r.note, sizeof r.note, "%s", MF_RECORD_NOTE_RUN_END);
    } else {
        r.result = entry->ok && !entry->count_unknown ? MF_RECORD_OK : MF_RECORD_ERR;
        snprintf(r.project, sizeof r.project, "%s", entry->project ? entry->project : "");
        r.slot = entry->slot;
        if (entry->uid_length) {
            r.uid_length =
                entry->uid_length < MF_RECORD_UID_MAX ? entry->uid_length : MF_RECORD_UID_MAX;
            memcpy(r.uid, entry->uid, r.uid_length);
        }
        /* A count that may not have been taken has no serial number of its own: the next cycle
         * may get the same one. */
        r.has_serial = entry->has_serial && !entry->count_unknown;
        r.serial = entry->serial;
        if (entry->count_unknown)
            snprintf(r.note, sizeof r.note, "%s", MF_RECORD_NOTE_COUNT_UNKNOWN);
        else if (entry->note)
            snprintf(r.note, sizeof r.note, "%s", entry->note);
    }
    /* A run-end step and a count perhaps not taken account for no cycle. */
    uint64_t cycles = entry->run_end || entry->count_unknown ? 0 : 1;
    mf_lock_take(&log->config.lock);
    int err = MF_EBADF;
    if (!log->open) /* an append failed meanwhile */
        say(message, "production records: not open");
    else
        err = append_record(log, &r, cycles, message);
    if (err)
        log->open = false; /* half-written, or without its head: mf_reclog_open sorts it out */
    mf_lock_give(&log->config.lock);
    return err;
}

int mf_reclog_head(struct mf_reclog *log, const uint8_t nonce[MF_RECORD_HEAD_NONCE_SIZE],
                   char *line, size_t size, size_t *length, char *message)
{
    mf_lock_take(&log->config.lock);
    int err = MF_EBADF;
    if (!log->open) {
        say(message, "production records: not open");
        goto out;
    }
    struct mf_secure *secure = log->config.secure;
    const struct mf_owner_identity *id = log->config.identity;
    struct mf_record_head h;
    memset(&h, 0, sizeof h);
    memcpy(h.nonce, nonce, sizeof h.nonce);
    h.time = log->config.utc ? log->config.utc(log->config.utc_context) : 0;
    memcpy(h.programmer, id->pub.fingerprint, sizeof h.programmer);
    memcpy(h.setup, secure->fingerprint, 32);
    char smessage[MF_SECURE_MESSAGE_MAX];
    err = mf_secure_record_status(secure, &h.seq, h.hash, &h.counter, &h.pending, smessage);
    if (err) {
        say(message, "production records: %s", smessage);
        goto out;
    }
    err = mf_record_head_format(&h, id->ed25519_secret, line, size, length);
    if (err)
        say(message, "production records: cannot sign the head statement: %s", mf_strerror(err));
out:
    mf_lock_give(&log->config.lock);
    return err;
}

/* When `records` more lines at their longest may not fit the newest file, the file after it must
 * exist before a cycle takes its count: free bytes do not show a full FAT12/16 root folder (whose
 * places raw entries that no listing shows can take), and past RECORDS.999 there is none. The
 * next file is made here, empty (a start goes on from the newest record in the file before it),
 * so that the append that rolls over needs no new directory entry. (file_max holds far more than
 * `records` lines: one next file is enough.) Under the log's lock and fs_lock. */
static int next_file_ready(struct mf_reclog *log, unsigned records, char *message)
{
    struct mf_fat *fs = log->config.fs;
    uint32_t file_max = log->config.file_max ? log->config.file_max : MF_RECORD_FILE_MAX;
    char name[16];
    struct mf_fat_stat st;
    file_name(log->current, name);
    int err = mf_fat_stat(fs, name, &st);
    if (err == MF_ENOENT)
        return 0; /* made by the next append, which fits it: room for a directory is counted */
    if (err) {
        say(message, "production records: %s: %s", name, mf_strerror(err));
        return err;
    }
    if (st.size == 0 || (uint64_t)st.size + 1 + (uint64_t)records * MF_RECORD_LINE_MAX <= file_max)
        return 0;
    if (log->current + 1 >= MF_RECLOG_FILES_MAX) {
        say(message,
            "production records: %u RECORDS files are full (export them and delete the old ones)",
            MF_RECLOG_FILES_MAX);
        return MF_ENOSPC;
    }
    file_name(log->current + 1, name);
    struct mf_fat_file f;
    err = mf_fat_open(fs, &f, name, MF_FAT_O_WRONLY | MF_FAT_O_CREAT);
    if (!err)
        err = mf_fat_close(fs, &f);
    if (err)
        say(message,
            "production records: the next records go to %s, which cannot be made: %s (is the "
            "public area's root folder full?): export RECORDS files and delete old ones, or free "
            "space",
            name, mf_strerror(err));
    return err;
}

int mf_reclog_room(struct mf_reclog *log, unsigned records, char *message)
{
    struct mf_fat *fs = log->config.fs;
    uint64_t free_bytes = 0, total = 0;
    mf_lock_take(&log->config.fs_lock);
    int err = mf_fat_space(fs, &free_bytes, &total);
    uint64_t cluster = (uint64_t)fs->geo.bytes_per_sector * fs->geo.sectors_per_cluster;
    mf_lock_give(&log->config.fs_lock);
    if (err) {
        say(message, "production records: cannot read the public area's free space: %s",
            mf_strerror(err));
        return err;
    }
    /* Each record at its longest, a cluster for a new file, and one more for a directory. */
    uint64_t need = (uint64_t)records * MF_RECORD_LINE_MAX + 2 * cluster;
    if (free_bytes < need) {
        say(message,
            "the public area is too full for the production records (%llu bytes free, %llu "
            "needed): export RECORDS files and delete old ones, or free space",
            (unsigned long long)free_bytes, (unsigned long long)need);
        return MF_ENOSPC;
    }
    mf_lock_take(&log->config.lock);
    mf_lock_take(&log->config.fs_lock);
    err = next_file_ready(log, records, message);
    mf_lock_give(&log->config.fs_lock);
    mf_lock_give(&log->config.lock);
    return err;
}

/* The production records of the installed setup, written by the programmer: one signed,
 * hash-chained line per cycle that took a count (mf_record.h has the line format), appended to
 * RECORDS.000, RECORDS.001, ... at the public area's root, each file at most MF_RECORD_FILE_MAX
 * bytes. The chain's head (the newest record's sequence number and hash) is kept in the secure
 * area's state record, so deleting or editing the newest records is noticed at the next start and
 * recorded as a GAP record; so are cycles a power cut left without a record, and cycles the trust
 * anchor's counter proves but the state does not show (a restored older storage image).
 *
 * Locking: appends come from the slot threads; the log takes its own lock, then the public
 * area's lock around every FAT operation, and the secure area takes its own inside. */
#ifndef MF_RECLOG_H
#define MF_RECLOG_H

#include "mf_anchor.h"
#include "mf_area.h"
#include "mf_fat.h"
#include "mf_owner.h"
#include "mf_record.h"
#include "mf_secure.h"

#include <stdbool.h>
#include <stdint.h>

#define MF_RECLOG_PREFIX      "RECORDS."
#define MF_RECLOG_FILES_MAX   1000u /* RECORDS.000 .. RECORDS.999 */
#define MF_RECLOG_MESSAGE_MAX 256u

struct mf_reclog_config {
    struct mf_fat *fs;                        /* the public area */
    struct mf_lock fs_lock;                   /* its lock */
    struct mf_lock lock;                      /* serialises appends */
    struct mf_secure *secure;                 /* the installed setup (present) */
    struct mf_anchor *anchor;                 /* for the counter value of each record */
    const struct mf_owner_identity *identity; /* signs the records */
    int64_t (*utc)(void *context);            /* seconds since 1970, UTC */
    void *utc_context;
    uint32_t file_max; /* bytes per file; 0: MF_RECORD_FILE_MAX */
};

struct mf_reclog {
    struct mf_reclog_config config;
    unsigned current; /* number of the newest RECORDS file */
    bool open;
};

/* One cycle, as the record states it. */
struct mf_reclog_entry {
    const char *project; /* display name */
    unsigned slot;
    const uint8_t *uid;
    size_t uid_length; /* 0: not read */
    bool has_serial;
    uint64_t serial;
    bool ok;
    /* The cycle's count may or may not have been taken (mf_cycle_result.count_unknown): the
     * record says "count-unknown" and accounts for no cycle; ok, serial and note are ignored. */
    bool count_unknown;
    const char *note; /* NULL or a short text without spaces */
    /* The counter step of a run's clean end (mf_secure_end_run): the record notes "run-end",
     * accounts for that step and for no cycle; the other fields are ignored. */
    bool run_end;
};

/* Finds the newest RECORDS file, cuts a line torn by a power cut off its end, and compares the
 * newest record with the head kept in the secure area: a record appended whose head was not yet
 * recorded is taken as the head; missing or edited newest records get a GAP record; consumed
 * cycles without a record and cycles the anchor's counter proves beyond the state get an ERR
 * record that says so. A setup without a record yet goes on from the newest record of ours in
 * the files only when that record shows the anchor's counter as it is now (else a new chain
 * starts, and a note says why). `notes` (may be NULL) gets a sentence for FLASHER.LOG when any of
 * that happened (MF_RECLOG_MESSAGE_MAX), else "". Errors: the public area's or the anchor's, with
 * `message`. */
int mf_reclog_open(struct mf_reclog *log, const struct mf_reclog_config *config, char *notes,
                   char *message);

/* Appends the record of one cycle (signed, chained, synced) and then moves the head in the
 * secure area. MF_ENOSPC when the public area cannot take the line: nothing is written. After any
 * failure the log is closed (MF_EBADF for the next append): the line may be half-written, or
 * written without its head; mf_reclog_open sorts that out, as at a start, and writes the
 * "unrecorded" record the cycle is then owed. */
int mf_reclog_append(struct mf_reclog *log, const struct mf_reclog_entry *entry, char *message);

/* The head statement for the owner's `nonce` (mf_record.h): the chain's newest record, the
 * anchor's counter and the consumed cycles without a record yet, signed with the programmer's
 * key, into `line` (MF_RECORD_LINE_MAX + 1 bytes are enough) with its LF; *length its size.
 * Taken under the log's lock, so no append is half done. MF_EBADF when the log is not open (an
 * append failed: the files may hold a line beyond the head until it opens again). */
int mf_reclog_head(struct mf_reclog *log, const uint8_t nonce[MF_RECORD_HEAD_NONCE_SIZE],
                   char *line, size_t size, size_t *length, char *message);

/* Is there room for `records` more records (each counted at its largest, plus a new file's
 * directory entry and cluster)? MF_ENOSPC with `message` when not. */
int mf_reclog_room(struct mf_reclog *log, unsigned records, char *message);

/* Is `name` a records file name ("RECORDS.000" .. "RECORDS.999", any case)? */
bool mf_reclog_is_name(const char *name);

#endif

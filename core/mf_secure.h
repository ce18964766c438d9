/* The secure area: an encrypted, authenticated store of one production setup in partition 2,
 * whose key, header digest and monotonic counter live in the trust anchor (mf_anchor.h).
 *
 * Installing a setup (the `_SECURE` move) first reserves on the device the room it will write (a
 * sparse image file's holes), then destroys the old setup's key in the anchor (a cryptographic
 * erase: the old setup is unreadable at once and for good), then writes the files
 * as XChaCha20-Poly1305 chunks, the file table, the first state record, and last the header,
 * whose digest then goes to the anchor. A power cut at any point leaves no usable setup (the
 * next start moves `_SECURE` again) or the new one; never a mix of old and new.
 *
 * Counts: the state record (encrypted, two slots) says how many cycles were used; the anchor's
 * counter is advanced once per reservation of K cycles before any of them is used, so a
 * restored older storage image can regain at most the rest of one reservation (none at K=1):
 * what the counter proves was used is charged to every project, and serial numbers skip ahead.
 * docs/security.md has the format and the argument. */
#ifndef MF_SECURE_H
#define MF_SECURE_H

#include "mf_anchor.h"
#include "mf_worker.h"
#include "mf_area.h"
#include "mf_bd.h"

#include <stdbool.h>
#include <stdint.h>

#define MF_SECURE_VERSION      1u
#define MF_SECURE_CHUNK        (16u << 10) /* plaintext bytes per chunk */
#define MF_SECURE_FILES_MAX    4096u
#define MF_SECURE_PROJECTS_MAX 64u
#define MF_SECURE_MESSAGE_MAX  256u
#define MF_SECURE_FOLDER       "_SECURE"

struct mf_secure_file;

struct mf_secure_project {
    char folder[MF_AREA_NAME_MAX]; /* "01_Widget" */
};

/* The mutable state of an installed setup (kept encrypted in the secure area). */
struct mf_secure_counts {
    uint64_t used;        /* cycles this project took */
    uint64_t serial_next; /* as Serial.txt would say */
    uint64_t limit;       /* Cntdown.txt as installed (or as a top-up set it) */
    bool limited;
    bool has_serial;
};

struct mf_secure_state {
    uint64_t seq;
    /* The production records' chain head (docs/owner-guide.md): the newest record written, its
     * hash, and how many consumed cycles have a record. */
    uint64_t record_seq;
    uint8_t record_hash[32];
    uint64_t recorded;
    uint64_t total_used; /* cycles of all projects */
    /* Cycles of reservations left unused by earlier runs (see forfeit in mf_secure.c): they count
     * against the anchor's counter, never against a limit, and are no device. */
    uint64_t forfeited;
    /* mf_secure_end_run took a counter step that no production record accounts for yet (a cut
     * before its "run-end" record, or records that could not be written): the next
     * mf_reclog_open appends it. */
    bool run_end_unrecorded;
    bool root_limited;
    uint64_t root_limit;
    bool folder_removed; /* the `_SECURE` folder this setup came from is gone (and wiped) */
    int32_t selected;    /* project index chosen with #SELECT, -1: FLASHER.INI decides */
    uint32_t project_count;
    struct mf_secure_counts projects[MF_SECURE_PROJECTS_MAX];
};

/* Where a setup comes from when it is not a plain `_SECURE` folder: a sealed package. */
struct mf_secure_origin {
    uint8_t owner[32];     /* the owner's Ed25519 public key that signed the package */
    uint64_t package_mark; /* its not-before time: must be later than the anchor's mark */
};

struct mf_secure_config {
    const struct mf_bd *bd; /* partition 2 */
    struct mf_anchor *anchor;
    /* Fills `length` random bytes (the platform's entropy source). */
    void (*random)(void *context, void *buffer, size_t length);
    void *random_context;
    uint32_t reservation; /* K when FLASHER.INI does not set [CONFIG] Reservation (>= 1) */
    struct mf_lock lock;  /* guards the state record: its own lock, taken inside the job
                             engine's authorization lock, never around it */
    /* Optional: a helper thread that decrypts half of a long read while the reader decrypts the
     * other half (reads from several slots share it; one that finds it busy does it all). */
    const struct mf_worker *worker;
};

/* An open secure area. Treat as opaque. */
struct mf_secure {
    struct mf_secure_config config;
    bool present;        /* a setup is installed and verified */
    uint8_t header[512]; /* the current header block */
    uint8_t digest[32];  /* SHA-256 of it */
    uint8_t file_key[32], state_key[32], mac_key[32];
    uint64_t counter_base;
    bool counter_known; /* counter_value holds the anchor's counter (see counter()) */
    uint64_t counter_value;
    uint32_t reservation;
    uint8_t fingerprint[32];
    bool has_owner; /* installed from a sealed package signed by `owner` */
    uint8_t owner[32];
    uint64_t package_mark;        /* that package's not-before time */
    struct mf_secure_file *files; /* the file table, sorted by path */
    uint32_t file_count;
    struct mf_secure_project projects[MF_SECURE_PROJECTS_MAX];
    uint32_t project_count;
    struct mf_secure_state state;
    unsigned state_slot; /* slot of the newest state record */
    bool run_reserved;   /* this run took the reservation in progress (secure_take, end_run) */
    bool installed_here; /* installed by this open (mf_secure_install): see just_installed */
    struct mf_area area; /* the files, for mf_setup and the job engine */
};

/* Opens the secure area: reads the anchor, verifies the header (its MAC under the anchor's key,
 * its digest against the anchor's, the anchor's binding and counter), loads the file table and
 * the newest valid state record. secure->present tells whether a setup is installed.
 * Refusals, with `message` (MF_SECURE_MESSAGE_MAX) saying what: MF_EAUTH (a tampered, older or
 * foreign header, a damaged state record, another counter, a counter below the installed one),
 * MF_EVERSION (written by a newer programmer), device and anchor errors. An install that was
 * interrupted is not a refusal: no setup is present. */
int mf_secure_open(struct mf_secure *secure, const struct mf_secure_config *config, char *message);

/* Releases the table; wipes the keys from memory. */
void mf_secure_close(struct mf_secure *secure);

/* The bytes a setup of `files` files totalling `bytes` needs, and what the partition holds. */
uint64_t mf_secure_capacity(const struct mf_secure *secure);
uint64_t mf_secure_needed(uint64_t files, uint64_t bytes, uint64_t path_bytes);

typedef void (*mf_secure_progress_fn)(void *context, uint64_t done, uint64_t total);

/* The `_SECURE` move: installs the files under `folder` of `source` (the public area) as the new
 * setup. Everything that can refuse it is checked first, before anything is erased: the size
 * (MF_ENOSPC when it does not fit, with both figures in `message`), the number of files, the
 * names, Cntdown.txt and Serial.txt; and the device must give the room the setup will write
 * (mf_bd_reserve: MF_ENOSPC, say, when an image file's host file system is full; `message` then
 * says so and the caller adds the device's own words). Then: the old key is destroyed in the
 * anchor, the files are encrypted and written, the state and the header are written, the anchor
 * gets the header's digest. The folder itself is left for the caller to delete (then
 * mf_secure_folder_removed). */
int mf_secure_install(struct mf_secure *secure, struct mf_area *source, const char *folder,
                      mf_secure_progress_fn progress, void *progress_context, char *message);

/* The same for the files of a sealed package (`source` its area, `folder` ""), already opened
 * and checked by mf_package_open. Refused before anything is erased, with MF_EPERM and
 * `message`: a plain folder (origin NULL) or another owner's package while the anchor pins an
 * owner; a package whose not-before time is not later than the anchor's package mark (a
 * replay, or an older package). Afterwards the anchor's mark is the package's. */
int mf_secure_install_from(struct mf_secure *secure, struct mf_area *source, const char *folder,
                           const struct mf_secure_origin *origin, mf_secure_progress_fn progress,
                           void *progress_context, char *message);

/* Sets the total limit of project `project` (-1: the root Cntdown.txt), as an owner's top-up
 * token says; the count then exists even if the setup had none. */
int mf_secure_set_limit(struct mf_secure *secure, int project, uint64_t limit, char *message);

/* Moves the production records' chain head (after a record was appended; `recorded` counts the
 * consumed cycles that have one). */
int mf_secure_record_head(struct mf_secure *secure, uint64_t seq, const uint8_t hash[32],
                          uint64_t recorded, char *message);

/* mf_secure_record_head for the "run-end" record of mf_secure_end_run's counter step: moves the
 * head (no cycle) and, in the same write, notes that the step has its record. */
int mf_secure_run_end_recorded(struct mf_secure *secure, uint64_t seq, const uint8_t hash[32],
                               char *message);

/* The production records' chain head as it stands, for a head statement (mf_record.h): the
 * newest record's sequence number and hash, the trust anchor's counter, and the consumed cycles
 * without a record yet (a cycle between its count and its record; or a cut, whose cycles the next
 * start records as "unrecorded" or "counter-ahead"). Read under the state's lock, so that they
 * belong together. MF_ENOENT without a setup; the anchor's errors with `message`. */
int mf_secure_record_status(struct mf_secure *secure, uint64_t *seq, uint8_t hash[32],
                            uint64_t *counter, uint64_t *pending, char *message);

/* Is the removal of the folder this setup came from still pending (installed, and
 * mf_secure_folder_removed not yet recorded)? Then whatever `_SECURE` holds is what is left of
 * that folder (a cut during its removal may have erased or garbled any part of it): the caller
 * finishes removing it and wiping the free space, and never moves it again. */
bool mf_secure_removal_pending(const struct mf_secure *secure);

/* Records that the folder is gone and wiped. */
int mf_secure_folder_removed(struct mf_secure *secure);

/* Destroys the setup: the anchor forgets the key and the digest (securearea create/remove). */
int mf_secure_erase(struct mf_anchor *anchor, char *message);

/* The selected project recorded with #SELECT, or -1. */
int mf_secure_selected(const struct mf_secure *secure);
int mf_secure_select(struct mf_secure *secure, int project, char *message);

/* Cycles the anchor's counter stands for beyond what the state record says (its devices and
 * forfeited cycles), charged to every project at the next cycle: after a restored older image,
 * a cut between the counter and the state, and, until this run has taken a reservation of its
 * own, the rest of the reservation in progress (docs/security.md). */
uint64_t mf_secure_missing(const struct mf_secure *secure, uint64_t counter);

/* Ends a run cleanly (a stop, a restart), before mf_secure_close: when this run took the
 * reservation in progress and left part of it unused, one counter step makes every copy of the
 * storage made during the run stale, and the rest is forfeited (no device, no limit) instead of
 * charged at the next start. Nothing to do at K = 1 or with the reservation used up. *stepped
 * tells whether the counter took the step (the production records then get a "run-end" record
 * for it: mf_reclog_entry.run_end). Returns 0, or an anchor or storage error with `message`
 * (MF_SECURE_MESSAGE_MAX): the next start then charges the rest. */
int mf_secure_end_run(struct mf_secure *secure, bool *stepped, char *message);

#endif

/* The programmer at run time (the heart of mintflashd): the storage image, the public area, the
 * loaded production setup, FLASHER.LOG, one worker thread per slot, and the two modes. Channels
 * (host/mf_server) call into it; it reports back through a sink. All functions are thread-safe. */
#ifndef MF_PROGRAMMER_H
#define MF_PROGRAMMER_H

#include "mf_anchor.h"
#include "mf_area.h"
#include "mf_cycle.h"
#include "mf_fat.h"
#include "mf_filebd.h"
#include "mf_flashlog.h"
#include "mf_keystore.h"
#include "mf_owner.h"
#include "mf_patch.h"
#include "mf_reclog.h"
#include "mf_tpm.h"
#include "mf_worker_thread.h"
#include "mf_nbdserver.h"
#include "mf_secure.h"
#include "mf_setup.h"
#include "mf_storage.h"
#include "mf_target.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define MF_SLOTS_MAX           64u
#define MF_PROGRAMMER_TEXT_MAX 320u

enum mf_mode { MF_MODE_STANDALONE, MF_MODE_FILEACCESS };

struct mf_programmer_config {
    const char *storage;               /* image path (created when missing) */
    uint64_t storage_size;             /* size of a new image; 0: 128 MiB */
    const char *keystore;              /* trust anchor file (with tpm: base of its state file) */
    const char *tpm;                   /* TPM 2.0 TCTI ("device:/dev/tpmrm0"); NULL: keystore */
    unsigned slots;                    /* 1..MF_SLOTS_MAX */
    const char *targets[MF_SLOTS_MAX]; /* per slot, or one for all: "sim" */
    unsigned target_count;             /* 0: "sim" for every slot */
    const char *sim_dir;               /* folder of the sim devices */
    double sim_speed;                  /* sim time scale: 0 none, 1 realistic */
    uint64_t hold;                     /* bytes of public-area data files kept in memory, when */
    bool hold_set;                     /* set; else MF_AREA_HOLD_DEFAULT (mf_area.hold_max) */
    enum mf_mode mode;                 /* at start */
    const char *nbd_listen;            /* file access mode: "HOST:PORT" of the NBD export */
    int verbose;                       /* 0 normal, 1 more, 2 debug */
};

/* How the programmer reports to the channels; called from worker threads. */
struct mf_programmer_sink {
    /* Progress of a command started by `origin` on a slot. */
    void (*event)(void *context, uint64_t origin, const struct mf_cycle_event *event);
    /* A slot finished the command `origin` started. */
    void (*done)(void *context, uint64_t origin, unsigned slot, enum mf_cycle_action action,
                 const struct mf_cycle_result *result);
    void *context;
};

struct mf_programmer;

struct mf_slot_worker {
    struct mf_programmer *owner;
    unsigned number;
    struct mf_target target;
    bool target_open;
    struct mf_slot *slot; /* working memory, allocated */
    pthread_t thread;
    bool thread_started;
    /* Under owner->records_mutex: the running cycle passed its preflight, so it may hold a count
     * whose record is not written yet (the production records are not reopened meanwhile). */
    bool admitted;
    /* Under owner->state_lock: */
    bool busy;
    bool has_job;
    enum mf_phase phase;
    uint64_t done, total;
    uint64_t origin;
    struct mf_cycle_request request;
    char patch_line[MF_TEXT_LINE_MAX + 2]; /* one more than a line holds: core refuses it */
    bool has_result;
    enum mf_cycle_action last_action;
    struct mf_cycle_result result;
};

struct mf_programmer {
    struct mf_programmer_config config;
    struct mf_programmer_sink sink;
    pthread_mutex_t state_lock; /* modes, slot states */
    pthread_cond_t state_cond;
    pthread_mutex_t public_mutex;    /* the public FAT volume */
    pthread_mutex_t authorize_mutex; /* counts and serial numbers */
    pthread_mutex_t secure_mutex;    /* the secure area's state record (inside authorize) */
    pthread_mutex_t records_mutex;   /* production records (outside public and secure) */
    pthread_mutex_t tokens_mutex;    /* top-up tokens (outside public and secure) */
    struct mf_lock public_lock, authorize_lock, secure_lock, records_lock;
    bool stopping;

    struct mf_filebd file;
    struct mf_storage storage;
    bool storage_open;
    struct mf_fat fat;
    bool fat_mounted;
    struct mf_area_fat area;
    struct mf_keystore keystore;
    struct mf_tpm tpm;
    struct mf_anchor anchor;
    bool anchor_open;
    struct mf_secure secure;
    bool secure_open;
    struct mf_worker_thread decrypt_worker; /* shares long secure-area reads (mf_secure.h) */
    bool decrypt_worker_started;
    struct mf_owner_identity identity; /* made at the first start, kept in the trust anchor */
    bool has_identity;
    char pinned[MF_OWNER_FINGERPRINT_SIZE];  /* the pinned owner's fingerprint, "" */
    uint8_t pinned_owner[32];                /* and its public key, when pinned */
    char move_error[MF_PROGRAMMER_TEXT_MAX]; /* why the last start refused `_SECURE`, "" */
    struct mf_reclog records;                /* production records of the installed setup */
    bool records_open;
    char records_problem[MF_RECLOG_MESSAGE_MAX]; /* why records cannot be written, "": production
                                                    stops, each cycle tries them again */
    bool from_secure;                            /* the setup runs from the secure area */
    struct mf_setup setup;
    bool setup_loaded;
    int setup_error;
    char setup_message[MF_SETUP_ERROR_MAX];
    struct mf_flashlog log;
    struct mf_cycle_reserved reserved; /* counts promised to connecting slots (env.reserved) */
    struct mf_cycle_env env;
    uint8_t *load_buffer;

    enum mf_mode mode;
    bool initializing;
    unsigned pushing; /* #TOPUP pushes being applied: a restart or a secure-area command waits for
                         them (under state_lock) */
    bool files_changed;
    bool reload_setup; /* with files_changed: load the setup afresh, also in the secure area (its
                          data kept in memory no longer matches its load) */
    char state_message[MF_PROGRAMMER_TEXT_MAX]; /* why the programmer cannot run, "" if it can */
    int state_error; /* its kind: MF_EAUTH for the secure area and the trust anchor, MF_EIO */
    struct mf_nbdserver nbd; /* the export of file access mode */

    struct mf_slot_worker workers[MF_SLOTS_MAX];
    unsigned slot_count;
};

/* Opens (or creates) the storage image, prepares the slots and their targets and starts the slot
 * threads; the programmer is then INITIALIZING until mf_programmer_boot. Errors that stop the
 * daemon (no storage, bad target spec) return non-zero with `error` (MF_PROGRAMMER_TEXT_MAX bytes)
 * filled. */
int mf_programmer_start(struct mf_programmer *p, const struct mf_programmer_config *config,
                        const struct mf_programmer_sink *sink, char *error);

/* Boots in config->mode (may take a while: run it off the thread that serves the channels).
 * Problems of the setup do not fail it: the programmer then runs and reports them (#INFO,
 * #ERR204). */
void mf_programmer_boot(struct mf_programmer *p);

/* A file of the public area changed (file commands): the setup is reloaded before the next
 * command that needs it. */
void mf_programmer_files_changed(struct mf_programmer *p);

/* Whether a sealed package put into `_SECURE` now could replace an installed setup with one signed
 * by anyone at the next start: the storage has a secure area, no owner is pinned, and that area
 * holds a setup (or could not be read, or the programmer is starting up: it may). A pinned
 * programmer installs only its owner's packages; a secure area holding nothing has nothing to
 * lose. Over TCP and serial no package is taken where this is true (only the local connection
 * may destroy the setup). */
bool mf_programmer_package_replaces(struct mf_programmer *p);

/* Stops: cancels running cycles and waits for them (a count consumed stays consumed), stops the
 * threads and the NBD server, unmounts and closes the storage. */
void mf_programmer_stop(struct mf_programmer *p);

/* Restarts in `mode` as a power cycle would. MF_EBUSY while a slot runs. */
int mf_programmer_reboot(struct mf_programmer *p, enum mf_mode mode, char *error);

/* Starts `request` on `slot` (1-based) on behalf of session `origin`. MF_EBUSY when the slot runs
 * a command, MF_EPERM in file access mode or while initializing (error says which). */
int mf_programmer_submit(struct mf_programmer *p, unsigned slot,
                         const struct mf_cycle_request *request, uint64_t origin, char *error);

/* Asks the command running on `slot` to stop. */
void mf_programmer_cancel(struct mf_programmer *p, unsigned slot);

struct mf_slot_state {
    enum mf_phase phase;
    bool busy;
    bool has_result;
    enum mf_cycle_action last_action;
    struct mf_cycle_result result;
};

void mf_programmer_slot_state(struct mf_programmer *p, unsigned slot, struct mf_slot_state *state);

/* Mode and whether the programmer is starting up. */
void mf_programmer_mode(struct mf_programmer *p, enum mf_mode *mode, bool *initializing);

/* The public FAT volume, locked: NULL (and unlocked) when it is not mounted (file access mode,
 * starting up, damaged storage). Release with mf_programmer_public_release. */
struct mf_fat *mf_programmer_public(struct mf_programmer *p);
void mf_programmer_public_release(struct mf_programmer *p);

/* Selects a project (with or without its NN_ prefix) and records it in FLASHER.INI. */
int mf_programmer_select(struct mf_programmer *p, const char *name, char *error);

/* What mf_programmer_select does to a public setup's FLASHER.INI on the mounted volume `fs`:
 * [CONFIG] Project = folder, every other line kept; all or nothing against errors and power
 * cuts (written as FLASHER.NEW, then mf_fat_replace). A plain file left under FLASHER.NEW or
 * FLASHER.N1 ... FLASHER.N9 (a cut's leftover) is removed first; a folder or a read-only, hidden
 * or system file there is the user's: kept, and the next of these names used (MF_EEXIST when
 * none is left). Not locked: the caller holds the public area (not thread-safe, unlike the
 * rest). MF_EFBIG when the file is too long. */
int mf_programmer_write_selection(struct mf_fat *fs, const char *folder);

struct mf_programmer_info {
    enum mf_mode mode;
    bool initializing;
    bool secure; /* the setup runs from the secure area */
    char project[MF_SETUP_NAME_MAX];
    unsigned slots;
    bool limited;
    uint64_t cycles_left;
    bool has_serial;
    uint64_t next_serial;
    char setup_id[65];                          /* fingerprint of the setup, "" when none */
    char programmer[MF_OWNER_FINGERPRINT_SIZE]; /* identity fingerprint, "" when none */
    char owner[MF_OWNER_FINGERPRINT_SIZE];      /* the installed package's owner, "" */
    char package[MF_OWNER_TIME_SIZE]; /* its not-before time, YYYY-MM-DDThh:mm:ssZ (what names the
                                       * installation to a top-up token: topup --package-time) */
    char pinned[MF_OWNER_FINGERPRINT_SIZE];  /* the pinned owner, "" when not pinned */
    char move_error[MF_PROGRAMMER_TEXT_MAX]; /* why the last start refused `_SECURE`, "" */
    char problem[MF_PROGRAMMER_TEXT_MAX];    /* why it cannot program, "" when it can */
    int log_error;
};

void mf_programmer_info(struct mf_programmer *p, struct mf_programmer_info *info);

/* Creates or removes the secure area (every file is lost either way). MF_EBUSY while a slot runs.
 */
int mf_programmer_secure_area(struct mf_programmer *p, bool create, const uint8_t *owner,
                              char *error);

/* The programmer's public identity (its PROGRAMMER.pub). MF_ENOENT (with `error`) while the
 * trust anchor cannot be read. */
int mf_programmer_identity(struct mf_programmer *p, struct mf_owner_programmer *identity,
                           char *error);

/* Applies one top-up token (its bytes); `text` gets the decision as a sentence. MF_EPERM for a
 * token that does not apply here (wrong programmer, setup or owner, stale), MF_EFORMAT /
 * MF_EAUTH for a malformed or forged one, MF_ENOENT without an installed setup. */
int mf_programmer_topup(struct mf_programmer *p, const uint8_t *token, size_t size, char *text);

/* The production records' head statement for the owner's `nonce` (mf_record.h), one line
 * without its LF in `line` (MF_RECORD_LINE_MAX + 1 bytes). MF_ENOENT when no setup runs from the
 * secure area (no records are kept), MF_EIO while the records are stopped (their head is not
 * known: the files may hold a line beyond it), MF_EBUSY while starting up; `text` says why. */
int mf_programmer_record_head(struct mf_programmer *p,
                              const uint8_t nonce[MF_RECORD_HEAD_NONCE_SIZE], char *line,
                              size_t size, char *text);

/* Default paths for a user: storage image, keystore, sim folder, UNIX socket. */
void mf_programmer_default_paths(char *storage, char *keystore, char *sim_dir, size_t size);

#endif

/* A programming cycle on one slot: connect, authorize (take the count and the serial number,
 * durably, before the target is first modified), then for every job of the selected project in
 * order: erase, program, verify, protect, start; then disconnect and log. Data is streamed from the
 * area through a window buffer in the slot; per-device bytes (serial number, UID signature,
 * patches) are laid over the data in flight. Slots run in parallel threads; what they share (the
 * counts and serial numbers) is taken under env->authorize. No allocation: the slot struct holds
 * the working memory.
 */
#ifndef MF_CYCLE_H
#define MF_CYCLE_H

#include "mf_area.h"
#include "mf_flashlog.h"
#include "mf_patch.h"
#include "mf_setup.h"
#include "mf_target.h"

#include <stdbool.h>
#include <stdint.h>

#define MF_WINDOW_SIZE       (64u << 10)  /* bytes collected before they are programmed */
#define MF_SLOT_IO_SIZE      (256u << 10) /* bytes read from a data file at a time */
#define MF_OVERLAYS_MAX      (MF_PATCHES_MAX + 2u * MF_PROJECT_JOBS_MAX) /* + serial, signature */
#define MF_CYCLE_MESSAGE_MAX 256u
#define MF_ERASE_LIST_MAX    (MF_WINDOW_SIZE / 16u)

/* What the slot is doing; the protocol shows these as #STATUS:<name>. */
enum mf_phase {
    MF_PHASE_READY,
    MF_PHASE_INITIALIZING,
    MF_PHASE_CONNECTING,
    MF_PHASE_UNLOCKING,
    MF_PHASE_ERASING,
    MF_PHASE_PROGRAMMING,
    MF_PHASE_VERIFYING,
    MF_PHASE_PROTECTING,
    MF_PHASE_STARTING,
};

/* "READY", "INITIALIZING", "CONNECTING", ... */
const char *mf_phase_name(enum mf_phase phase);

struct mf_cycle_event {
    unsigned slot;
    enum mf_phase phase;
    const char *job;      /* name of the current job, or NULL */
    uint64_t done, total; /* progress of the phase in bytes (0/0 when not measured) */
};

enum mf_cycle_action {
    MF_ACTION_AUTO,    /* the start button: everything, one count */
    MF_ACTION_ERASE,   /* erase only (no count: no device is made) */
    MF_ACTION_PROGRAM, /* erase and program, no verify (one count) */
    MF_ACTION_VERIFY,  /* verify only (no count; per-device bytes are not compared) */
    MF_ACTION_START,   /* start the application only */
};

/* Counts promised to cycles that are connecting and have not taken theirs yet: in all (the
 * root's Cntdown.txt counts every project's cycles) and per project of the setup (its own
 * Cntdown.txt), so that two slots running different projects (a #SELECT between their starts)
 * each hold only what is theirs. */
struct mf_cycle_reserved {
    unsigned total;
    unsigned project[MF_SETUP_PROJECTS_MAX];
};

struct mf_cycle_request {
    enum mf_cycle_action action;
    bool no_patch;          /* #AUTO NOPATCH: do not apply Patches.txt */
    const char *patch_line; /* #AUTO PATCH: this line instead of Patches.txt (NULL: none) */
    /* The project to run, one of the setup's (NULL: the setup's selected one when the cycle
     * begins). A caller that records the cycle afterwards names this project, so a #SELECT
     * while the cycle runs changes neither what runs nor what is recorded. */
    const struct mf_project *project;
};

/* Where a cycle failed, for the protocol's error numbers. */
enum mf_cycle_failure {
    MF_FAIL_NONE = 0,
    MF_FAIL_NO_SETUP,    /* no project selected, or no setup */
    MF_FAIL_SETUP,       /* the project cannot run (job.ini, data files, ...) */
    MF_FAIL_EXHAUSTED,   /* no programming cycles left */
    MF_FAIL_STORAGE,     /* reading or updating the counts, serial numbers or files failed */
    MF_FAIL_DEVICE_DATA, /* Serial.txt, SNList.txt, Patches.txt or the inline patch */
    MF_FAIL_DATA_FILE,   /* a data file of a job could not be read or parsed */
    MF_FAIL_CONNECT,     /* connecting to the target (or reading its UID) */
    MF_FAIL_TARGET,      /* unlock, erase, program, protect or start */
    MF_FAIL_VERIFY,      /* the device does not hold what was programmed */
    MF_FAIL_TIMEOUT,     /* the target did not answer in time */
    MF_FAIL_PROTECTED,   /* the target refused a read: readout protection */
    MF_FAIL_CANCELED,    /* #CANCEL */
    MF_FAIL_CONFLICT,    /* the public area holds files while the secure area holds the setup */
    MF_FAIL_SECURE,      /* a secure-area file failed authentication (damaged or tampered) */
};

struct mf_cycle_result {
    int error;                          /* 0 or the MF_E* code of the failure */
    enum mf_cycle_failure failure;      /* where it failed */
    char message[MF_CYCLE_MESSAGE_MAX]; /* what failed, for the log and the protocol */
    int failed_job;                     /* index of the job the failure came in, -1 when it came
                                           outside the jobs (setup, count, connect) or none */
    bool consumed;                      /* a count was taken (the target was to be modified) */
    bool count_unknown; /* the count's write failed in a way that may have taken it (consumed
                           false): the area goes on as if not, the next start knows */
    bool has_serial;
    uint64_t serial; /* the Serial.txt number this device took */
    uint8_t uid[MF_PROFILE_UID_MAX];
    uint32_t uid_length; /* 0 when the UID was not read */
    bool has_remaining;
    uint64_t remaining; /* cycles left afterwards (the smallest applicable count) */
    uint32_t total_ms, erase_ms, program_ms, verify_ms;
    int log_error; /* 0, or why the cycle's FLASHER.LOG line could not be written */
};

/* What every slot shares. */
struct mf_cycle_env {
    const struct mf_setup *setup;
    struct mf_area *area; /* the area the setup lives in */
    bool sealed; /* the setup's data must not be learnt through a cycle (it runs from the secure
                    area): a verify failure names no address or byte and the device sees the
                    same requests either way; #AUTO PATCH only where job.ini allows it */
    const struct mf_lock *authorize;    /* serialises taking counts and serial numbers */
    struct mf_cycle_reserved *reserved; /* counts promised to slots that are connecting (shared,
                                           under `authorize`); NULL for a single slot */
    struct mf_flashlog *log;            /* FLASHER.LOG, or NULL */
    uint64_t (*now_ms)(void *context);  /* monotonic milliseconds */
    void *clock_context;
    void (*event)(void *context, const struct mf_cycle_event *event); /* may be NULL */
    void *event_context;
    /* Checked before anything else of a cycle; an error refuses the cycle with `message`
     * (MF_CYCLE_MESSAGE_MAX) as a conflict (the daemon's public-area rule, room for the
     * production records and the FLASHER.LOG line). May be NULL. */
    int (*preflight)(void *context, char *message);
    void *preflight_context;
};

enum mf_overlay_kind { MF_OVERLAY_SERIAL, MF_OVERLAY_SIGNATURE, MF_OVERLAY_PATCH };

/* Per-device bytes laid over the job data. */
struct mf_overlay {
    uint64_t address;
    uint32_t length; /* at most 64 */
    uint8_t bytes[MF_PATCH_BYTES_MAX];
    uint64_t done; /* bit per byte: programmed by an earlier job of this cycle */
    uint64_t pass; /* bit per byte: placed in the current pass */
    int job;       /* the job that lays it down (for a patch: chosen per device) */
    enum mf_overlay_kind kind;
    unsigned patch; /* 1-based number of the patch in its line (MF_OVERLAY_PATCH) */
};

/* One slot's state and working memory (about 330 KiB); the caller owns it. */
struct mf_slot {
    unsigned number; /* 1-based */
    struct mf_target *target;
    /* Working memory of a cycle. */
    uint64_t window_start;
    bool window_open;
    uint32_t window_placed;
    uint8_t window[MF_WINDOW_SIZE];
    uint8_t touched[MF_WINDOW_SIZE / 8];
    uint8_t io[MF_SLOT_IO_SIZE];
    struct mf_overlay overlays[MF_OVERLAYS_MAX];
    unsigned overlay_count;
};

/* Prepares a slot for `target`. */
void mf_slot_init(struct mf_slot *slot, unsigned number, struct mf_target *target);

/* Runs one cycle of the selected project. Returns result->error. Never leaves the target
 * connected. The count is consumed (result->consumed) before the first change to the target and
 * stays consumed whatever happens next. */
int mf_cycle_run(const struct mf_cycle_env *env, struct mf_slot *slot,
                 const struct mf_cycle_request *request, struct mf_cycle_result *result);

/* Cycles left for the selected project: the smallest of its Cntdown.txt and the root one.
 * `*limited` is false when neither exists. */
int mf_cycle_remaining(const struct mf_cycle_env *env, bool *limited, uint64_t *remaining);

#endif

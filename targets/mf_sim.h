/* The simulated target back end `sim`: a NOR-flash device per slot, kept in files so that tests and
 * users can inspect what was programmed (<sim-dir>/slot<N>/flash.bin: the raw flash from its base,
 * several regions one after the other in profile order; device.ini: profile, UID, protection,
 * counters, faults; see docs/targets.md). It implements struct mf_target_ops, with a scalable
 * timing model and fault knobs for tests of the job engine. No global mutable state: one thread per
 * slot, any number of slots at once. */
#ifndef MF_SIM_H
#define MF_SIM_H

#include "mf_profile.h"
#include "mf_target.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MF_SIM_SLOT_MAX      999u   /* slots are numbered 1..MF_SIM_SLOT_MAX */
#define MF_SIM_SCALE_MAX     1000.0 /* largest time scale mf_sim_open accepts */
#define MF_SIM_INI_MAX       16384u /* bytes of device.ini that are read at most */
#define MF_SIM_TIME_TEXT_MAX 32u    /* "2024-05-01T12:00:00Z" and a margin */

/* How often a fault fires. "once" faults set in device.ini are removed from it when they fire (so
 * that they fire once across processes); set in the options, once per mf_sim_open. */
enum mf_sim_fault_mode {
    MF_SIM_FAULT_OFF = 0,
    MF_SIM_FAULT_ONCE,
    MF_SIM_FAULT_ALWAYS,
};

/* The operations a timeout fault can hit (device.ini: the lower-case name after MF_SIM_PHASE_). */
enum mf_sim_phase {
    MF_SIM_PHASE_CONNECT = 1,
    MF_SIM_PHASE_UID,
    MF_SIM_PHASE_UNLOCK,
    MF_SIM_PHASE_ERASE, /* erase and erase_chip */
    MF_SIM_PHASE_PROGRAM,
    MF_SIM_PHASE_READ,
    MF_SIM_PHASE_CRC,
    MF_SIM_PHASE_PROTECT,
    MF_SIM_PHASE_START,
};

struct mf_sim_fault {
    enum mf_sim_fault_mode mode;
    uint64_t arg; /* see the knob */
};

/* Fault knobs, all off when zeroed. device.ini spells them in its [faults] section as `knob = [ARG]
 * once|always` (or `off`). */
struct mf_sim_faults {
    struct mf_sim_fault connect; /* connect fails with MF_EIO */
    struct mf_sim_fault erase;   /* erase / erase_chip fail with MF_EIO, flash unchanged */
    struct mf_sim_fault program; /* arg = N: MF_EIO once N bytes were programmed since connect
                                    (the bytes before N, rounded down to the write size, are
                                    written) */
    struct mf_sim_fault flip;    /* arg = address: after a program call that wrote it, bit 0 of
                                    that byte is inverted (so verify fails) */
    struct mf_sim_fault timeout; /* arg = enum mf_sim_phase: that operation gives MF_ETIMEOUT */
};

/* Fills `uid` with `length` bytes for a new device in `slot`; returns 0 or a negative MF_E*
 * code. */
typedef int (*mf_sim_uid_fn)(void *context, unsigned slot, uint8_t *uid, uint32_t length);

/* Options of mf_sim_open; all zero is the default (no delays, random UIDs, no faults). */
struct mf_sim_options {
    double time_scale;        /* 0: no delays at all; 1.0: the profile's timing */
    mf_sim_uid_fn uid_source; /* NULL: mf_sim_uid_random */
    void *uid_context;
    struct mf_sim_faults faults; /* a knob that is not off replaces device.ini's */
};

/* Counters kept in device.ini [counters]; a new device starts at zero. */
struct mf_sim_counters {
    uint64_t connects;
    uint64_t programs;         /* connections that programmed at least one byte */
    uint64_t programmed_bytes; /* every byte of every successful program call */
    uint64_t sector_erases;
    uint64_t chip_erases;
    uint64_t unlocks; /* unlocks that found the device protected (and mass-erased it) */
    uint64_t protects;
    uint64_t starts;
};

/* What mf_sim_inspect reports about one slot's device. */
struct mf_sim_info {
    unsigned slot;
    const struct mf_profile *profile;
    uint8_t uid[MF_PROFILE_UID_MAX]; /* profile->uid_length bytes */
    unsigned protection;
    bool running;                  /* started since its last connect */
    enum mf_start_mode start_mode; /* of the last start, 0 when never started */
    struct mf_sim_counters counters;
    char last_program[MF_SIM_TIME_TEXT_MAX]; /* UTC, ISO 8601, "" when never */
    char last_start[MF_SIM_TIME_TEXT_MAX];
    struct mf_sim_faults faults; /* as set in device.ini */
    uint64_t flash_size;         /* bytes of flash.bin */
    uint64_t not_erased;         /* bytes that differ from their region's erased value */
};

/* Makes `target` a sim device in `<sim_dir>/slot<slot>/`: sets target->ops and target->context
 * (allocated here; release with mf_sim_close). No file is touched before connect, which creates the
 * folders and a blank device of target->profile when the slot has none. `options` may be NULL
 * (defaults); it is copied. Errors: MF_EINVAL (slot out of 1..MF_SIM_SLOT_MAX, scale negative or
 * above MF_SIM_SCALE_MAX, path too long), MF_ENOMEM; the text is in target->error. */
int mf_sim_open(struct mf_target *target, const char *sim_dir, unsigned slot,
                const struct mf_sim_options *options);

/* Disconnects if needed and frees the context; target->ops and ->context become NULL. Safe on a
 * target that mf_sim_open failed on or that is already closed. */
void mf_sim_close(struct mf_target *target);

/* The default UID source: host random bytes (getrandom). */
int mf_sim_uid_random(void *context, unsigned slot, uint8_t *uid, uint32_t length);

/* Puts a fresh blank device (all erased, protection 0, counters and faults cleared) with a new UID
 * into the slot, creating the folders as needed. `profile` NULL keeps the old device's profile
 * (MF_ENOENT, and no folder is created, when the slot holds no device). `uid` (profile->uid_length
 * bytes) may be NULL: then `options`'s UID source (NULL options: random). MF_EBUSY while a
 * programmer holds the slot; a text for every error in `error` (may be NULL). */
int mf_sim_replace(const char *sim_dir, unsigned slot, const struct mf_profile *profile,
                   const uint8_t *uid, const struct mf_sim_options *options, char *error,
                   size_t error_size);

/* Reads a slot's device without changing it (and without the slot lock, so it works while a
 * programmer is connected). MF_ENOENT when the slot holds no device; MF_EFORMAT for a malformed
 * device.ini, MF_ECORRUPT for a flash.bin of the wrong size, with a text naming the file. */
int mf_sim_inspect(const char *sim_dir, unsigned slot, struct mf_sim_info *info, char *error,
                   size_t error_size);

/* mf_sim_replace and mf_sim_inspect for a slot whose part may be one a setup describes in its
 * DEVICES.INI (`devices`, may be NULL) besides the built-in profiles. */
struct mf_devices;
int mf_sim_replace_in(const struct mf_devices *devices, const char *sim_dir, unsigned slot,
                      const struct mf_profile *profile, const uint8_t *uid,
                      const struct mf_sim_options *options, char *error, size_t error_size);
int mf_sim_inspect_in(const struct mf_devices *devices, const char *sim_dir, unsigned slot,
                      struct mf_sim_info *info, char *error, size_t error_size);

/* The slot numbers that have a folder slot<N> under `sim_dir`, ascending, at most `max` of them
 * (*count tells how many were found, also beyond `max`). MF_ENOENT when sim_dir is missing. */
int mf_sim_slots(const char *sim_dir, unsigned *slots, size_t max, size_t *count, char *error,
                 size_t error_size);

/* Parses one fault knob as device.ini writes it (`key` connect|erase|program|flip|timeout, `value`
 * e.g. "4096 once") into `faults`. MF_EINVAL for an unknown key, MF_EFORMAT for a bad value;
 * `error` (may be NULL) then says why. */
int mf_sim_fault_parse(const char *key, const char *value, struct mf_sim_faults *faults,
                       char *error, size_t error_size);

/* Writes the knob `fault` of kind `key` as device.ini spells it ("4096 once", "off"). */
void mf_sim_fault_format(const char *key, const struct mf_sim_fault *fault, char *text,
                         size_t size);

/* "connect", "erase", ... for an enum mf_sim_phase; NULL for other values. */
const char *mf_sim_phase_name(unsigned phase);

#endif

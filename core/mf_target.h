/* Target driver interface: what a programming cycle needs from one device. Every back end (the
 * simulator `sim`, the GDB remote protocol `gdb`) implements these operations, in the manner of
 * Black Magic Probe's target drivers: the job engine never knows which one it drives.
 * Every operation returns 0 or a negative MF_E* code and, on error, may leave a short text in
 * target->error for the log and the protocol. Operations may block; each back end bounds every wait
 * with a timeout (MF_ETIMEOUT) and checks target->cancel between steps (MF_ECANCELED). */
#ifndef MF_TARGET_H
#define MF_TARGET_H

#include "mf_profile.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define MF_TARGET_ERROR_MAX 128u

enum mf_start_mode {
    MF_START_RESET = 1,  /* reset and run */
    MF_START_VECTOR = 2, /* load SP and PC from the vector table at the flash start, then run */
};

struct mf_target;

struct mf_target_ops {
    const char *name; /* "sim", "gdb" */

    /* Attaches to the device described by target->profile and halts it. */
    int (*connect)(struct mf_target *target);

    /* Reads the device's unique ID (profile->uid_length bytes from profile->uid_address). Works
     * under readout protection, as on real parts. */
    int (*read_uid)(struct mf_target *target, uint8_t *uid, uint32_t length);

    /* Removes readout protection (which erases the device, as on real parts); a no-op when the
     * device is not protected. */
    int (*unlock)(struct mf_target *target);

    /* Erases the sectors that hold [address, address + length); both are sector-aligned. */
    int (*erase)(struct mf_target *target, uint64_t address, uint64_t length);

    /* Erases every flash region. */
    int (*erase_chip)(struct mf_target *target);

    /* Programs `length` bytes at `address` (aligned to the region's write size, inside one
     * region). Like NOR flash: programming can only clear bits; bytes that are not erased and
     * would need bits set give MF_EVERIFY. */
    int (*program)(struct mf_target *target, uint64_t address, const void *data, uint32_t length);

    /* Reads device memory. MF_EACCES under readout protection. */
    int (*read)(struct mf_target *target, uint64_t address, void *buffer, uint32_t length);

    /* CRC of device memory as GDB's qCRC computes it (mf_target_crc). NULL when the back end
     * cannot; the engine then reads back. */
    int (*crc)(struct mf_target *target, uint64_t address, uint64_t length, uint32_t *crc);

    /* Sets readout protection to `level` (1..profile->protect_levels). */
    int (*protect)(struct mf_target *target, unsigned level);

    /* Starts the application. */
    int (*start)(struct mf_target *target, enum mf_start_mode mode);

    /* Detaches (the device keeps running if started). Always safe to call. */
    int (*disconnect)(struct mf_target *target);
};

struct mf_target {
    const struct mf_target_ops *ops;
    void *context;                    /* the back end's */
    const struct mf_profile *profile; /* set before connect */
    atomic_int cancel;                /* set by another thread to stop at the next step */
    char error[MF_TARGET_ERROR_MAX];  /* last error text, "" when none */
};

/* The CRC targets report, as GDB's qCRC packet defines it: CRC-32 with polynomial 0x04C11DB7,
 * most significant bit first, starting from MF_TARGET_CRC_INIT, no final inversion. Feed the bytes
 * in address order, in as many calls as convenient. */
#define MF_TARGET_CRC_INIT 0xFFFFFFFFu
uint32_t mf_target_crc(uint32_t crc, const void *data, size_t length);

#endif

/* Per-device UID signatures (clone protection): the programmer signs, with a key that lives only
 * inside the sealed setup, a message binding the setup, the device's unique ID and its serial
 * number; the owner's firmware checks it at boot with the public key built into it. The message
 * layout is a published contract (docs/owner-guide.md):
 *   "MFSIG1" (6 bytes) || setup id (32) || UID length (1) || UID || serial number (u64 LE) */
#ifndef MF_UIDSIG_H
#define MF_UIDSIG_H

#include <stddef.h>
#include <stdint.h>

#define MF_UIDSIG_UID_MAX     255u
#define MF_UIDSIG_MESSAGE_MAX (6u + 32u + 1u + MF_UIDSIG_UID_MAX + 8u)
#define MF_UIDSIG_SIZE        64u

/* Builds the signed message into `out` (MF_UIDSIG_MESSAGE_MAX bytes); *length gets its size.
 * `serial` is 0 when the project has no serial numbers. MF_EINVAL when the UID is longer than
 * MF_UIDSIG_UID_MAX. */
int mf_uidsig_message(const uint8_t setup_id[32], const uint8_t *uid, size_t uid_length,
                      uint64_t serial, uint8_t *out, size_t *length);

/* Signs the message with the job's Ed25519 seed (crypto_sign_detached). MF_EINVAL as above. */
int mf_uidsig_sign(const uint8_t setup_id[32], const uint8_t *uid, size_t uid_length,
                   uint64_t serial, const uint8_t seed[32], uint8_t signature[MF_UIDSIG_SIZE]);

/* Checks a signature with the owner's Ed25519 public key: 0, or MF_EAUTH when it does not hold
 * (MF_EINVAL as above). */
int mf_uidsig_verify(const uint8_t setup_id[32], const uint8_t *uid, size_t uid_length,
                     uint64_t serial, const uint8_t public_key[32],
                     const uint8_t signature[MF_UIDSIG_SIZE]);

#endif

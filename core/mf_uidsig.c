/* UID signatures: the message layout, signing and checking (see mf_uidsig.h). */
#include "mf_uidsig.h"

#include "mf_err.h"

#include <sodium.h>
#include <string.h>

int mf_uidsig_message(const uint8_t setup_id[32], const uint8_t *uid, size_t uid_length,
                      uint64_t serial, uint8_t *out, size_t *length)
{
    if (uid_length > MF_UIDSIG_UID_MAX)
        return MF_EINVAL;
    memcpy(out, "MFSIG1", 6);
    memcpy(out + 6, setup_id, 32);
    out[38] = (uint8_t)uid_length;
    if (uid_length)
        memcpy(out + 39, uid, uid_length);
    for (int i = 0; i < 8; i++)
        out[39 + uid_length + (size_t)i] = (uint8_t)(serial >> (8 * i));
    *length = 39 + uid_length + 8;
    return 0;
}

int mf_uidsig_sign(const uint8_t setup_id[32], const uint8_t *uid, size_t uid_length,
                   uint64_t serial, const uint8_t seed[32], uint8_t signature[MF_UIDSIG_SIZE])
{
    uint8_t message[MF_UIDSIG_MESSAGE_MAX], pk[32], sk[64];
    size_t length;
    int err = mf_uidsig_message(setup_id, uid, uid_length, serial, message, &length);
    if (err)
        return err;
    crypto_sign_seed_keypair(pk, sk, seed);
    crypto_sign_detached(signature, NULL, message, length, sk);
    sodium_memzero(sk, sizeof sk);
    return 0;
}

int mf_uidsig_verify(const uint8_t setup_id[32], const uint8_t *uid, size_t uid_length,
                     uint64_t serial, const uint8_t public_key[32],
                     const uint8_t signature[MF_UIDSIG_SIZE])
{
    uint8_t message[MF_UIDSIG_MESSAGE_MAX];
    size_t length;
    int err = mf_uidsig_message(setup_id, uid, uid_length, serial, message, &length);
    if (err)
        return err;
    return crypto_sign_verify_detached(signature, message, length, public_key) ? MF_EAUTH : 0;
}

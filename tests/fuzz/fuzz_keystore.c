/* Fuzz target: the keystore file decoder (host/mf_keystore) on hostile bytes. The first input
 * byte is a mode: bit 0 / bit 1 recompute the checksum of slot 0 / slot 1 before decoding, so
 * that the fuzzer reaches the checks behind the CRC; the rest is the file. Properties: a slot
 * that decodes re-encodes to the very same bytes, and a decoded file's state is one of its valid
 * slots, the one with the higher sequence, never with a lower counter than the other. */
#include "mf_crc32.h"
#include "mf_err.h"
#include "mf_keystore.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fix_checksum(uint8_t *slot)
{
    uint32_t crc = mf_crc32_update(0, slot, MF_KEYSTORE_SLOT_SIZE - 4);
    for (unsigned i = 0; i < 4; i++)
        slot[MF_KEYSTORE_SLOT_SIZE - 4 + i] = (uint8_t)(crc >> (8 * i));
}

static bool same_slot(const struct mf_keystore_slot *a, const struct mf_keystore_slot *b)
{
    return a->sequence == b->sequence && a->counter == b->counter &&
           memcmp(a->id, b->id, sizeof a->id) == 0 && a->has_key == b->has_key &&
           memcmp(a->key, b->key, sizeof a->key) == 0 && a->has_digest == b->has_digest &&
           memcmp(a->digest, b->digest, sizeof a->digest) == 0 &&
           a->has_identity == b->has_identity &&
           memcmp(a->identity, b->identity, sizeof a->identity) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    data++;
    size--;
    uint8_t *file = malloc(size + 1);
    if (!file)
        return 0;
    memcpy(file, data, size);
    if (size == MF_KEYSTORE_FILE_SIZE) {
        if (mode & 1)
            fix_checksum(file);
        if (mode & 2)
            fix_checksum(file + MF_KEYSTORE_SLOT_SIZE);
    }

    struct mf_keystore_slot slots[2];
    int rc[2] = {MF_EFORMAT, MF_EFORMAT};
    if (size == MF_KEYSTORE_FILE_SIZE) {
        for (unsigned i = 0; i < 2; i++) {
            const uint8_t *raw = file + i * MF_KEYSTORE_SLOT_SIZE;
            rc[i] = mf_keystore_decode_slot(raw, &slots[i]);
            if (rc[i] == 0) {
                uint8_t again[MF_KEYSTORE_SLOT_SIZE];
                mf_keystore_encode_slot(&slots[i], again);
                if (memcmp(again, raw, sizeof again) != 0)
                    abort();
            }
        }
    }

    struct mf_keystore_slot state;
    unsigned current = 2;
    bool damaged = false;
    char error[128];
    int err = mf_keystore_decode(file, size, &state, &current, &damaged, error, sizeof error);
    if (err == 0) {
        if (current > 1 || rc[current] != 0)
            abort();
        if (!same_slot(&state, &slots[current]))
            abort();
        unsigned other = 1u - current;
        if (damaged != (rc[other] != 0))
            abort();
        if (rc[other] == 0 &&
            (slots[other].sequence >= state.sequence || slots[other].counter > state.counter))
            abort();
    } else if (memchr(error, '\0', sizeof error) == NULL || error[0] == '\0') {
        abort(); /* every refusal says why */
    }
    free(file);
    return 0;
}

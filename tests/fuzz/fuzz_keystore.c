/* Fuzz target: the keystore file decoder (host/mf_keystore) on hostile bytes. The first input
 * byte is a mode: bit 0 / bit 1 recompute the checksum of slot 0 / slot 1 before decoding, bit 2
 * / bit 3 first put the CRC of the slot's note area (as much as the slot says) into slot 0 / 1,
 * so that the fuzzer reaches the checks behind the CRCs; the rest is the file. Properties: a
 * slot that decodes re-encodes to the very same bytes; a slot with a note counts as valid only
 * in a file with note areas and with its note's CRC; a decoded file's state is one of its valid
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

/* The note area of slot `i` (a file of MF_KEYSTORE_FILE_SIZE bytes). */
static uint8_t *note_of(uint8_t *file, unsigned i)
{
    return file + MF_KEYSTORE_FILE_SIZE_V1 + (size_t)i * MF_KEYSTORE_NOTE_SIZE;
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Slot `i`'s note CRC field (byte 220) set to its note area's CRC, for the size at byte 216. */
static void fix_note(uint8_t *file, unsigned i)
{
    uint8_t *slot = file + (size_t)i * MF_KEYSTORE_SLOT_SIZE;
    uint32_t n = le32(slot + 216);
    if (n == 0 || n > MF_KEYSTORE_NOTE_SIZE)
        return;
    uint32_t crc = mf_crc32_update(0, note_of(file, i), n);
    for (unsigned k = 0; k < 4; k++)
        slot[220 + k] = (uint8_t)(crc >> (8 * k));
}

static bool same_slot(const struct mf_keystore_slot *a, const struct mf_keystore_slot *b)
{
    return a->sequence == b->sequence && a->counter == b->counter &&
           memcmp(a->id, b->id, sizeof a->id) == 0 && a->has_key == b->has_key &&
           memcmp(a->key, b->key, sizeof a->key) == 0 && a->has_digest == b->has_digest &&
           memcmp(a->digest, b->digest, sizeof a->digest) == 0 &&
           a->has_identity == b->has_identity &&
           memcmp(a->identity, b->identity, sizeof a->identity) == 0 &&
           a->has_note == b->has_note && a->note_size == b->note_size && a->note_crc == b->note_crc;
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
    bool sized = size == MF_KEYSTORE_FILE_SIZE || size == MF_KEYSTORE_FILE_SIZE_V1;
    if (sized) {
        if ((mode & 4) && size == MF_KEYSTORE_FILE_SIZE)
            fix_note(file, 0);
        if ((mode & 8) && size == MF_KEYSTORE_FILE_SIZE)
            fix_note(file, 1);
        if (mode & 1)
            fix_checksum(file);
        if (mode & 2)
            fix_checksum(file + MF_KEYSTORE_SLOT_SIZE);
    }

    struct mf_keystore_slot slots[2];
    int rc[2] = {MF_EFORMAT, MF_EFORMAT};
    if (sized) {
        for (unsigned i = 0; i < 2; i++) {
            const uint8_t *raw = file + i * MF_KEYSTORE_SLOT_SIZE;
            rc[i] = mf_keystore_decode_slot(raw, &slots[i]);
            if (rc[i] == 0) {
                uint8_t again[MF_KEYSTORE_SLOT_SIZE];
                mf_keystore_encode_slot(&slots[i], again);
                if (memcmp(again, raw, sizeof again) != 0)
                    abort();
                /* A note must be there, whole. */
                if (slots[i].has_note &&
                    (size != MF_KEYSTORE_FILE_SIZE ||
                     mf_crc32_update(0, note_of(file, i), slots[i].note_size) != slots[i].note_crc))
                    rc[i] = MF_ECORRUPT;
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

/* The `keystore` trust anchor: a small file of mode 0600 outside the storage image, the stand-in
 * for an MCU's internal flash. Two fixed-size slots, each a complete copy of the state with a
 * sequence number and a checksum, then one note area per slot (the anchor's note, written with
 * its slot and covered by a CRC in it); an update rewrites the older slot (and its note area)
 * with one fdatasync, so a torn write always leaves the other one. Format and crash-consistency
 * argument: docs/internals/anchor.md. */
#ifndef MF_KEYSTORE_H
#define MF_KEYSTORE_H

#include "mf_anchor.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MF_KEYSTORE_SLOT_SIZE    512u
#define MF_KEYSTORE_NOTE_SIZE    MF_ANCHOR_NOTE_MAX /* one note area per slot, after both slots */
#define MF_KEYSTORE_FILE_SIZE_V1 (2u * MF_KEYSTORE_SLOT_SIZE) /* version 1: slots only */
#define MF_KEYSTORE_FILE_SIZE    (2u * MF_KEYSTORE_SLOT_SIZE + 2u * MF_KEYSTORE_NOTE_SIZE)
#define MF_KEYSTORE_ID_SIZE      16u
#define MF_KEYSTORE_VERSION      2u /* format version written in every slot (1 is read too) */

/* What one slot holds. Secrets that are absent are all zero, in memory and in the file. */
struct mf_keystore_slot {
    uint64_t sequence;               /* higher wins; never 0 in a written slot */
    uint64_t counter;                /* the monotonic counter */
    uint8_t id[MF_KEYSTORE_ID_SIZE]; /* random, made at creation: the binding's source */
    bool has_key;
    uint8_t key[MF_ANCHOR_KEY_SIZE];
    bool has_digest;
    uint8_t digest[MF_ANCHOR_DIGEST_SIZE];
    bool has_owner;
    uint8_t owner[MF_ANCHOR_OWNER_SIZE];
    uint64_t package_mark;
    bool has_identity;
    uint8_t identity[MF_ANCHOR_IDENTITY_SIZE];
    bool has_note;      /* the slot's note area holds a note of note_size bytes ... */
    uint32_t note_size; /* ... 1 .. MF_KEYSTORE_NOTE_SIZE */
    uint32_t note_crc;  /* ... whose CRC-32 is this (a torn note makes the slot invalid) */
};

struct mf_keystore {
    int fd;                              /* -1 when closed; holds an exclusive flock while open */
    unsigned current;                    /* index (0 or 1) of the slot that holds `state` */
    struct mf_keystore_slot state;       /* the newest valid slot: what the anchor answers from */
    uint8_t note[MF_KEYSTORE_NOTE_SIZE]; /* its note (state.has_note) */
    struct mf_anchor *anchor;            /* the anchor filled by open; its `error` gets the texts */
    char path[96];                       /* for messages, shortened ("...tail") when longer */
};

/* Opens the keystore at `path` and fills `anchor` (name "keystore", context = ks) with its
 * callbacks; both structs must outlive the anchor's use, and anchor->close() releases the file.
 * With `create`, a missing file is made (mode 0600, a fresh random id, counter 0, nothing else):
 * it is written in full under a temporary name and linked into place, so a crash never leaves a
 * half-made keystore; the folder must exist. An exclusive lock is held until close: a second
 * program gets MF_EBUSY. At open, a damaged slot, or a slot still holding an older key or
 * identity than the newest one (a crash between the two writes of a key change), is rewritten
 * from the newest one, so that a crypto-erase is complete after any crash. A version 1 file
 * (slots only) is extended with empty note areas, synced, before anything else.
 * Errors, with the reason and the path in anchor->error: MF_ENOENT (no file and !create, or no
 * such folder), MF_EACCES (permissions wider than 0600, another owner, a symbolic link, not a
 * regular file), MF_EBUSY, MF_EFORMAT (not a keystore: wrong size), MF_ECORRUPT (no valid slot,
 * or slots that contradict each other), MF_EVERSION (written by a newer format), MF_EIO. */
int mf_keystore_open(struct mf_keystore *ks, const char *path, bool create,
                     struct mf_anchor *anchor);

/* Releases the lock and the file and wipes the secrets held in memory. Safe when closed. */
void mf_keystore_close(struct mf_keystore *ks);

/* Encodes one slot as the MF_KEYSTORE_SLOT_SIZE bytes of the file format (with the magic, the
 * format version and the checksum). */
void mf_keystore_encode_slot(const struct mf_keystore_slot *slot,
                             uint8_t raw[MF_KEYSTORE_SLOT_SIZE]);

/* Decodes one slot from hostile bytes. Returns 0, MF_EFORMAT (no magic: never a slot),
 * MF_EVERSION (another format version), or MF_ECORRUPT (checksum, flags, reserved bytes or an
 * absent secret that is not zero). `slot` is zeroed on failure. */
int mf_keystore_decode_slot(const uint8_t raw[MF_KEYSTORE_SLOT_SIZE],
                            struct mf_keystore_slot *slot);

/* Chooses the state from a whole keystore file's bytes (MF_KEYSTORE_FILE_SIZE, or the
 * MF_KEYSTORE_FILE_SIZE_V1 of a version 1 file, which has no notes): the valid slot with the
 * higher sequence, where a slot whose note does not match its CRC is not valid; `*current` gets
 * its index and `*damaged` (may be NULL) whether the other slot is invalid. Errors as
 * mf_keystore_open (MF_EFORMAT, MF_ECORRUPT, MF_EVERSION), with a text in `error` (error_size
 * bytes, may be 0). No I/O: this is what the fuzz target exercises. */
int mf_keystore_decode(const uint8_t *file, size_t size, struct mf_keystore_slot *state,
                       unsigned *current, bool *damaged, char *error, size_t error_size);

/* Private files, shared with the TPM back end's state file. Both return a descriptor that holds
 * an exclusive flock (MF_EBUSY when another program holds it) and write a text with the path
 * into `error` on failure. */

/* Opens an existing file for reading and writing after checking that it is a regular file (not
 * a symbolic link) owned by the effective user with no permission for group or others
 * (MF_EACCES otherwise). `what` names the file in messages ("keystore"). */
int mf_keystore_open_private(const char *path, const char *what, int *fd, char *error,
                             size_t error_size);

/* Makes `path` hold exactly `size` bytes of `data`, mode 0600, durably: written to a temporary
 * file in the same folder, synced, then linked into place (`replace` false: MF_EEXIST when
 * `path` exists) or renamed over it (`replace` true), and the folder synced. The returned
 * descriptor is the new file, locked before it became visible. MF_ENOENT when the folder does
 * not exist. */
int mf_keystore_create_private(const char *path, const char *what, const void *data, size_t size,
                               bool replace, int *fd, char *error, size_t error_size);

#endif

/* The trust anchor: what an attacker holding the storage medium cannot reach (an MCU's internal
 * flash, or a TPM 2.0). It holds the installed setup's storage key, the digest of the current
 * secure-area header, and a monotonic counter; later also the programmer's identity keys.
 * Back ends: `keystore` (a file outside the storage image, host/mf_keystore) and `tpm` (tpm2-tss,
 * host/mf_tpm). Every write is durable when it returns; a power cut during a write leaves the old
 * value or the new one. All calls return 0 or a negative MF_E* code, with a text in `error`. */
#ifndef MF_ANCHOR_H
#define MF_ANCHOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MF_ANCHOR_KEY_SIZE      32u
#define MF_ANCHOR_DIGEST_SIZE   32u
#define MF_ANCHOR_BINDING_SIZE  32u
#define MF_ANCHOR_IDENTITY_SIZE 64u /* X25519 secret key, then Ed25519 seed */
#define MF_ANCHOR_OWNER_SIZE    32u /* an owner's Ed25519 public key */
#define MF_ANCHOR_ERROR_MAX     192u
#define MF_ANCHOR_NOTE_MAX      4096u /* the largest note an anchor keeps with its counter */

struct mf_anchor_state {
    bool has_key;
    uint8_t key[MF_ANCHOR_KEY_SIZE]; /* the installed setup's storage key */
    bool has_digest;
    uint8_t digest[MF_ANCHOR_DIGEST_SIZE]; /* of the current secure-area header */
    bool has_owner;
    uint8_t owner[MF_ANCHOR_OWNER_SIZE]; /* the pinned owner (securearea create --owner) */
    uint64_t package_mark; /* the not-before time of the newest sealed package installed */
};

struct mf_anchor {
    void *context;
    const char *name; /* "keystore", "tpm" */

    /* Reads the key and the digest. */
    int (*read_state)(struct mf_anchor *anchor, struct mf_anchor_state *state);

    /* Replaces the setup key (NULL: no key). When this returns, the old key cannot be read
     * back from the anchor by any means: this is how a secure-area setup is erased. */
    int (*write_key)(struct mf_anchor *anchor, const uint8_t *key);

    /* Replaces the header digest (NULL: none). */
    int (*write_digest)(struct mf_anchor *anchor, const uint8_t *digest);

    /* Sets the pinned owner whose sealed packages alone may be installed (NULL: none) and the
     * package mark (a package whose not-before time is not later is a replay). Not secret, but
     * out of the storage medium's reach, so that no cut power and no restored image undoes it. */
    int (*write_owner)(struct mf_anchor *anchor, const uint8_t *owner, uint64_t package_mark);

    /* The monotonic counter: it never goes down, whatever happens to the storage. */
    int (*counter_read)(struct mf_anchor *anchor, uint64_t *value);
    /* Adds one; the new value is durable and returned. A TPM that rate-limits its NV writes
     * answers MF_EBUSY ("retry later"), never a false success. On a failure `unchanged` says
     * what is known (see below). */
    int (*counter_increment)(struct mf_anchor *anchor, uint64_t *value);

    /* Optional (NULL, with note_max 0, when the back end cannot: the TPM). A note is opaque
     * bytes (the secure area's newest state record, sealed) kept together with the counter:
     * counter_increment_note adds one to the counter and replaces the note in one durable,
     * atomic write (after a power cut both are old or both new); read_note gives the note kept
     * with the counter's current value (*size 0: none). Any other write may drop the note. */
    size_t note_max;
    int (*counter_increment_note)(struct mf_anchor *anchor, const uint8_t *note, size_t size,
                                  uint64_t *value);
    int (*read_note)(struct mf_anchor *anchor, uint8_t *note, size_t *size);

    /* A digest that identifies this anchor's counter (TPM: the NV index's name; keystore: the
     * file's random id). The secure area records it when a setup is installed and refuses to run
     * with another counter, e.g. a counter index deleted and defined again. */
    int (*binding)(struct mf_anchor *anchor, uint8_t binding[MF_ANCHOR_BINDING_SIZE]);

    /* The programmer's identity: its secret keys, made once at first start and never changed
     * (docs/owner-guide.md). `present` false when none was written yet. */
    int (*read_identity)(struct mf_anchor *anchor, uint8_t secret[MF_ANCHOR_IDENTITY_SIZE],
                         bool *present);
    int (*write_identity)(struct mf_anchor *anchor, const uint8_t secret[MF_ANCHOR_IDENTITY_SIZE]);

    /* Releases the back end. */
    void (*close)(struct mf_anchor *anchor);

    char error[MF_ANCHOR_ERROR_MAX]; /* text of the last failure */
    /* Set by a failed counter_increment or counter_increment_note: true when the back end knows
     * that nothing it keeps changed (the TPM refused the command, e.g. NV_RATE; the keystore's
     * write never completed, and a torn slot is never valid), so the counter, the note and the
     * secure area's count are as before; false when the write may have taken effect (a failed
     * sync, a TPM answer lost on the way): then only the next start knows. */
    bool unchanged;
};

#endif

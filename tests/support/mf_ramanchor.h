/* A trust anchor in memory, for tests of the secure area: the same contract as the keystore and
 * TPM back ends (every write atomic; notes as the keystore keeps them, unless switched off), plus
 * knobs to fail or cut the power at a chosen anchor write (together with a fault-injecting block
 * device, so that a sweep can cut between a storage write and an anchor write) and to roll the
 * counter back, as no real anchor allows. */
#ifndef MF_RAMANCHOR_H
#define MF_RAMANCHOR_H

#include "mf_anchor.h"
#include "mf_faultbd.h"

#include <stdbool.h>
#include <stdint.h>

/* How the write chosen by fail_at fails: what it leaves, and what the anchor says it left. */
enum mf_ramanchor_fail {
    MF_RAMANCHOR_REFUSED, /* not written, and the anchor says so (unchanged: a TPM's NV_RATE) */
    MF_RAMANCHOR_LOST,    /* not written, but the anchor cannot tell (unchanged false) */
    MF_RAMANCHOR_LANDED,  /* written all the same, and the anchor cannot tell (a failed sync) */
};

struct mf_ramanchor {
    struct mf_anchor anchor; /* hand &x.anchor to the code under test */
    struct mf_anchor_state state;
    uint64_t counter;
    uint8_t id[16];
    bool has_identity;
    uint8_t identity[MF_ANCHOR_IDENTITY_SIZE];
    uint8_t note[MF_ANCHOR_NOTE_MAX]; /* kept with the counter (as the keystore does) */
    size_t note_size;
    /* Knobs. */
    struct mf_faultbd *power; /* when set: powered off -> every call fails MF_EPOWERLOSS */
    uint64_t writes;          /* anchor writes so far (key, digest, counter, identity) */
    uint64_t cut_at;          /* cut the power at this write (1-based; 0 = never) */
    bool cut_after;           /* the write lands before the cut (else it does not) */
    unsigned cut_mode;        /* MF_FAULTBD_CUT_* for the storage at that moment */
    uint64_t fail_at;         /* fail this write with MF_EIO, the power on (1-based; 0 = never) */
    enum mf_ramanchor_fail fail_mode;
};

/* A fresh anchor: no key, no digest, counter 0, a random id; it keeps notes. */
void mf_ramanchor_init(struct mf_ramanchor *ram);

/* From here on the anchor keeps no notes (as the TPM back end): note_max 0, no note calls. */
void mf_ramanchor_no_notes(struct mf_ramanchor *ram);

#endif

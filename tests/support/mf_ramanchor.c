/* A trust anchor in memory (see mf_ramanchor.h). */
#include "mf_ramanchor.h"

#include "mf_err.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

static struct mf_ramanchor *of(struct mf_anchor *a)
{
    return a->context;
}

static bool off(struct mf_ramanchor *r)
{
    return r->power && mf_faultbd_powered_off(r->power);
}

/* Counts a write; returns MF_EPOWERLOSS (and cuts the storage too) at the chosen one, or MF_EIO
 * at the one chosen to fail. */
static int write_point(struct mf_ramanchor *r, bool *apply)
{
    *apply = true;
    r->anchor.unchanged = false;
    if (off(r))
        return MF_EPOWERLOSS;
    r->writes++;
    if (r->fail_at && r->writes == r->fail_at) {
        *apply = r->fail_mode == MF_RAMANCHOR_LANDED;
        r->anchor.unchanged = r->fail_mode == MF_RAMANCHOR_REFUSED;
        snprintf(r->anchor.error, sizeof r->anchor.error, "ram anchor: write %llu fails (%s)",
                 (unsigned long long)r->writes,
                 r->fail_mode == MF_RAMANCHOR_REFUSED ? "refused"
                 : r->fail_mode == MF_RAMANCHOR_LOST  ? "lost"
                                                      : "landed");
        return MF_EIO;
    }
    if (r->cut_at && r->writes == r->cut_at) {
        *apply = r->cut_after;
        if (r->power)
            mf_faultbd_cut_now(r->power, r->cut_mode ? r->cut_mode : MF_FAULTBD_CUT_DROP);
        return MF_EPOWERLOSS;
    }
    return 0;
}

static int read_state(struct mf_anchor *a, struct mf_anchor_state *state)
{
    if (off(of(a)))
        return MF_EPOWERLOSS;
    *state = of(a)->state;
    return 0;
}

static int write_key(struct mf_anchor *a, const uint8_t *key)
{
    struct mf_ramanchor *r = of(a);
    bool apply;
    int err = write_point(r, &apply);
    if (apply) {
        r->state.has_key = key != NULL;
        r->note_size = 0; /* a new key is a new setup (as the keystore does) */
        if (key)
            memcpy(r->state.key, key, MF_ANCHOR_KEY_SIZE);
        else
            sodium_memzero(r->state.key, MF_ANCHOR_KEY_SIZE);
    }
    return err;
}

static int write_digest(struct mf_anchor *a, const uint8_t *digest)
{
    struct mf_ramanchor *r = of(a);
    bool apply;
    int err = write_point(r, &apply);
    if (apply) {
        r->state.has_digest = digest != NULL;
        if (digest)
            memcpy(r->state.digest, digest, MF_ANCHOR_DIGEST_SIZE);
        else
            memset(r->state.digest, 0, MF_ANCHOR_DIGEST_SIZE);
    }
    return err;
}

static int write_owner(struct mf_anchor *a, const uint8_t *owner, uint64_t package_mark)
{
    struct mf_ramanchor *r = of(a);
    bool apply;
    int err = write_point(r, &apply);
    if (apply) {
        r->state.has_owner = owner != NULL;
        if (owner)
            memcpy(r->state.owner, owner, MF_ANCHOR_OWNER_SIZE);
        else
            memset(r->state.owner, 0, MF_ANCHOR_OWNER_SIZE);
        r->state.package_mark = package_mark;
    }
    return err;
}

static int counter_read(struct mf_anchor *a, uint64_t *value)
{
    if (off(of(a)))
        return MF_EPOWERLOSS;
    *value = of(a)->counter;
    return 0;
}

static int counter_increment(struct mf_anchor *a, uint64_t *value)
{
    struct mf_ramanchor *r = of(a);
    bool apply;
    int err = write_point(r, &apply);
    if (apply)
        r->counter++;
    *value = r->counter;
    return err;
}

static int counter_increment_note(struct mf_anchor *a, const uint8_t *note, size_t size,
                                  uint64_t *value)
{
    struct mf_ramanchor *r = of(a);
    if (size == 0 || size > sizeof r->note)
        return MF_EINVAL;
    bool apply;
    int err = write_point(r, &apply);
    if (apply) {
        r->counter++;
        memcpy(r->note, note, size);
        r->note_size = size;
    }
    *value = r->counter;
    return err;
}

static int read_note(struct mf_anchor *a, uint8_t *note, size_t *size)
{
    struct mf_ramanchor *r = of(a);
    *size = 0;
    if (off(r))
        return MF_EPOWERLOSS;
    memcpy(note, r->note, r->note_size);
    *size = r->note_size;
    return 0;
}

static int binding(struct mf_anchor *a, uint8_t out[MF_ANCHOR_BINDING_SIZE])
{
    crypto_hash_sha256(out, of(a)->id, sizeof of(a)->id);
    return 0;
}

static int read_identity(struct mf_anchor *a, uint8_t secret[MF_ANCHOR_IDENTITY_SIZE],
                         bool *present)
{
    struct mf_ramanchor *r = of(a);
    *present = r->has_identity;
    if (r->has_identity)
        memcpy(secret, r->identity, MF_ANCHOR_IDENTITY_SIZE);
    return off(r) ? MF_EPOWERLOSS : 0;
}

static int write_identity(struct mf_anchor *a, const uint8_t secret[MF_ANCHOR_IDENTITY_SIZE])
{
    struct mf_ramanchor *r = of(a);
    bool apply;
    int err = write_point(r, &apply);
    if (apply) {
        memcpy(r->identity, secret, MF_ANCHOR_IDENTITY_SIZE);
        r->has_identity = true;
    }
    return err;
}

static void close_anchor(struct mf_anchor *a)
{
    (void)a;
}

void mf_ramanchor_no_notes(struct mf_ramanchor *r)
{
    r->anchor.note_max = 0;
    r->anchor.counter_increment_note = NULL;
    r->anchor.read_note = NULL;
    r->note_size = 0;
}

void mf_ramanchor_init(struct mf_ramanchor *r)
{
    memset(r, 0, sizeof *r);
    randombytes_buf(r->id, sizeof r->id);
    r->anchor = (struct mf_anchor){
        .context = r,
        .name = "ram",
        .read_state = read_state,
        .write_key = write_key,
        .write_digest = write_digest,
        .write_owner = write_owner,
        .counter_read = counter_read,
        .counter_increment = counter_increment,
        .note_max = sizeof r->note,
        .counter_increment_note = counter_increment_note,
        .read_note = read_note,
        .binding = binding,
        .read_identity = read_identity,
        .write_identity = write_identity,
        .close = close_anchor,
    };
}

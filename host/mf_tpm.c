/* The `tpm` trust anchor over tpm2-tss ESAPI (see mf_tpm.h, docs/internals/anchor.md). Every
 * authorized command runs in one unsalted HMAC session keyed by the indices' random authValue,
 * with parameter encryption, so neither the authValue nor the key crosses the TPM bus in clear
 * after provisioning. Without tpm2-tss only the error mapping and an MF_ENOTSUP open remain. */
#include "mf_tpm.h"

#include "mf_crc32.h"
#include "mf_err.h"
#include "mf_keystore.h"

#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* TPM 2.0 response codes (TPM 2.0 Part 2, TPM_RC), numerically, so that the mapping is the same
 * with or without the tpm2-tss headers. */
#define RC_LAYER_MASK       0xFFFF0000u
#define RC_FMT1             0x080u
#define RC_FMT1_ERROR_MASK  0x03Fu
#define RC_VER1             0x100u
#define RC_WARN             0x900u
#define RC_HANDLE           (RC_FMT1 + 0x00Bu)
#define RC_AUTH_FAIL        (RC_FMT1 + 0x00Eu)
#define RC_BAD_AUTH         (RC_FMT1 + 0x022u)
#define RC_NV_AUTHORIZATION (RC_VER1 + 0x049u)
#define RC_NV_UNINITIALIZED (RC_VER1 + 0x04Au)
#define RC_YIELDED          (RC_WARN + 0x008u)
#define RC_TESTING          (RC_WARN + 0x00Au)
#define RC_NV_RATE          (RC_WARN + 0x020u)
#define RC_RETRY            (RC_WARN + 0x022u)
#define RC_NV_UNAVAILABLE   (RC_WARN + 0x023u)

int mf_tpm_error_code(uint32_t rc)
{
    if (rc == 0)
        return 0;
    if ((rc & RC_LAYER_MASK) != 0)
        return MF_EIO; /* from tpm2-tss itself (TCTI, ESAPI): no TPM verdict */
    if (rc & RC_FMT1) {
        uint32_t error = RC_FMT1 + (rc & RC_FMT1_ERROR_MASK);
        if (error == RC_AUTH_FAIL || error == RC_BAD_AUTH)
            return MF_EAUTH;
        if (error == RC_HANDLE)
            return MF_ECORRUPT;
        return MF_EIO;
    }
    switch (rc) {
    case RC_NV_RATE:
    case RC_NV_UNAVAILABLE:
    case RC_RETRY:
    case RC_YIELDED:
    case RC_TESTING:
        return MF_EBUSY;
    case RC_NV_AUTHORIZATION:
        return MF_EAUTH;
    case RC_NV_UNINITIALIZED:
        return MF_ECORRUPT;
    default:
        return MF_EIO;
    }
}

#ifndef MF_HAVE_TSS2

int mf_tpm_open(struct mf_tpm *tpm, const char *tcti, const char *state_path, bool create,
                struct mf_anchor *anchor)
{
    (void)tcti;
    (void)state_path;
    (void)create;
    memset(tpm, 0, sizeof *tpm);
    memset(anchor, 0, sizeof *anchor);
    tpm->state_fd = -1;
    anchor->name = "tpm";
    snprintf(anchor->error, sizeof anchor->error,
             "TPM support is not built in (this mintflash was built without tpm2-tss)");
    return MF_ENOTSUP;
}

void mf_tpm_close(struct mf_tpm *tpm)
{
    tpm->state_fd = -1;
}

#else

#include <tss2/tss2_esys.h>
#include <tss2/tss2_rc.h>
#include <tss2/tss2_tctildr.h>

/* State file layout (little-endian), docs/internals/anchor.md. */
#define SF_MAGIC              "MFTPMSTA"
#define SF_VERSION            1u
#define SF_OFF_VERSION        8u
#define SF_OFF_PHASE          12u
#define SF_OFF_HANDLES        16u /* counter, state, identity, 0 */
#define SF_OFF_AUTH           32u
#define SF_OFF_POLICY         64u
#define SF_OFF_RESERVED       96u
#define SF_OFF_CHECKSUM       (MF_TPM_STATE_FILE_SIZE - 4u)
#define SF_PHASE_PROVISIONING 1u
#define SF_PHASE_READY        2u

/* The state index's content. */
#define ST_VERSION            1u
#define ST_FLAG_KEY           0x1u
#define ST_FLAG_DIGEST        0x2u
#define ST_FLAG_OWNER         0x4u
#define ST_OFF_KEY            8u
#define ST_OFF_DIGEST         40u
#define ST_OFF_OWNER          72u
#define ST_OFF_MARK           104u

#define NV_BASE_ATTRIBUTES (TPMA_NV_AUTHREAD | TPMA_NV_AUTHWRITE | TPMA_NV_NO_DA)
#define NV_STATE_BITS      (TPMA_NV_WRITTEN | TPMA_NV_WRITELOCKED)

_Static_assert(ST_OFF_DIGEST + MF_ANCHOR_DIGEST_SIZE == ST_OFF_OWNER, "state layout");
_Static_assert(ST_OFF_OWNER + MF_ANCHOR_OWNER_SIZE == ST_OFF_MARK, "state layout");
_Static_assert(ST_OFF_MARK + 8u == MF_TPM_STATE_SIZE, "state layout");
_Static_assert(MF_ANCHOR_IDENTITY_SIZE <= sizeof(((TPM2B_MAX_NV_BUFFER *)0)->buffer), "nv");

struct nv_spec {
    TPM2_HANDLE handle;
    const char *what;
    TPMA_NV attributes;
    uint16_t size;
};

static const struct nv_spec nv_specs[3] = {
    {MF_TPM_NV_STATE, "state", NV_BASE_ATTRIBUTES | TPMA_NV_WRITEALL, MF_TPM_STATE_SIZE},
    {MF_TPM_NV_IDENTITY, "identity", NV_BASE_ATTRIBUTES | TPMA_NV_WRITEALL | TPMA_NV_WRITEDEFINE,
     MF_ANCHOR_IDENTITY_SIZE},
    /* The counter comes last: provisioning is finished when it has been written. */
    {MF_TPM_NV_COUNTER, "counter",
     NV_BASE_ATTRIBUTES | ((TPMA_NV)TPM2_NT_COUNTER << TPMA_NV_TPM2_NT_SHIFT), 8},
};

static void put_u32(uint8_t *p, uint32_t v)
{
    for (unsigned i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p)
{
    uint32_t v = 0;
    for (unsigned i = 0; i < 4; i++)
        v |= (uint32_t)p[i] << (8 * i);
    return v;
}

static int tpm_fail(struct mf_tpm *tpm, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int tpm_fail(struct mf_tpm *tpm, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tpm->anchor->error, sizeof tpm->anchor->error, fmt, ap);
    va_end(ap);
    return err;
}

/* Turns a failed tpm2-tss call into an MF_E* code with "what: decoded text". */
static int tpm_rc(struct mf_tpm *tpm, TSS2_RC rc, const char *what)
{
    int err = mf_tpm_error_code(rc);
    if (err == MF_EBUSY)
        return tpm_fail(tpm, err, "TPM: %s: the TPM asks to retry later (%s)", what,
                        Tss2_RC_Decode(rc));
    if (err == MF_EAUTH)
        return tpm_fail(tpm, err,
                        "TPM: %s: the TPM refuses our authorization (%s): the index was "
                        "replaced, or the state file belongs to another TPM",
                        what, Tss2_RC_Decode(rc));
    return tpm_fail(tpm, err, "TPM: %s: %s", what, Tss2_RC_Decode(rc));
}

static ESYS_CONTEXT *ctx(struct mf_tpm *tpm)
{
    return tpm->esys;
}

/* Session attributes for the next command: `extra` adds parameter encryption where the command
 * has a parameter that can carry it. */
static int tpm_session(struct mf_tpm *tpm, TPMA_SESSION extra)
{
    TSS2_RC rc = Esys_TRSess_SetAttributes(ctx(tpm), tpm->session,
                                           TPMA_SESSION_CONTINUESESSION | extra, 0xff);
    return rc ? tpm_rc(tpm, rc, "session attributes") : 0;
}

static int nv_read(struct mf_tpm *tpm, ESYS_TR index, uint16_t size, uint8_t *out, const char *what)
{
    int err = tpm_session(tpm, TPMA_SESSION_ENCRYPT);
    if (err)
        return err;
    TPM2B_MAX_NV_BUFFER *data = NULL;
    TSS2_RC rc = Esys_NV_Read(ctx(tpm), index, index, tpm->session, ESYS_TR_NONE, ESYS_TR_NONE,
                              size, 0, &data);
    if (rc)
        return tpm_rc(tpm, rc, what);
    if (data->size != size) {
        unsigned got = data->size;
        sodium_memzero(data, sizeof *data);
        Esys_Free(data);
        return tpm_fail(tpm, MF_EIO, "TPM: %s: %u bytes instead of %u", what, got, (unsigned)size);
    }
    memcpy(out, data->buffer, size);
    sodium_memzero(data, sizeof *data);
    Esys_Free(data);
    return 0;
}

static int nv_write(struct mf_tpm *tpm, ESYS_TR index, const uint8_t *in, uint16_t size,
                    const char *what)
{
    int err = tpm_session(tpm, TPMA_SESSION_DECRYPT);
    if (err)
        return err;
    TPM2B_MAX_NV_BUFFER data;
    memset(&data, 0, sizeof data);
    data.size = size;
    memcpy(data.buffer, in, size);
    TSS2_RC rc =
        Esys_NV_Write(ctx(tpm), index, index, tpm->session, ESYS_TR_NONE, ESYS_TR_NONE, &data, 0);
    sodium_memzero(&data, sizeof data);
    return rc ? tpm_rc(tpm, rc, what) : 0;
}

/* ---- state file ---- */

static void sf_encode(const struct mf_tpm *tpm, uint32_t phase, uint8_t raw[MF_TPM_STATE_FILE_SIZE])
{
    memset(raw, 0, MF_TPM_STATE_FILE_SIZE);
    memcpy(raw, SF_MAGIC, 8);
    put_u32(raw + SF_OFF_VERSION, SF_VERSION);
    put_u32(raw + SF_OFF_PHASE, phase);
    put_u32(raw + SF_OFF_HANDLES, MF_TPM_NV_COUNTER);
    put_u32(raw + SF_OFF_HANDLES + 4, MF_TPM_NV_STATE);
    put_u32(raw + SF_OFF_HANDLES + 8, MF_TPM_NV_IDENTITY);
    memcpy(raw + SF_OFF_AUTH, tpm->auth, MF_TPM_AUTH_SIZE);
    memcpy(raw + SF_OFF_POLICY, tpm->policy, MF_TPM_AUTH_SIZE);
    put_u32(raw + SF_OFF_CHECKSUM, mf_crc32_update(0, raw, SF_OFF_CHECKSUM));
}

static int sf_decode(struct mf_tpm *tpm, const uint8_t *raw, size_t size, uint32_t *phase)
{
    if (size != MF_TPM_STATE_FILE_SIZE || memcmp(raw, SF_MAGIC, 8) != 0)
        return tpm_fail(tpm, MF_EFORMAT, "%s: not a mintflash TPM state file", tpm->path);
    if (get_u32(raw + SF_OFF_CHECKSUM) != mf_crc32_update(0, raw, SF_OFF_CHECKSUM))
        return tpm_fail(tpm, MF_ECORRUPT, "%s: TPM state file damaged (checksum)", tpm->path);
    if (get_u32(raw + SF_OFF_VERSION) != SF_VERSION)
        return tpm_fail(tpm, MF_EVERSION, "%s: TPM state file of another version (%u)", tpm->path,
                        (unsigned)get_u32(raw + SF_OFF_VERSION));
    *phase = get_u32(raw + SF_OFF_PHASE);
    if ((*phase != SF_PHASE_PROVISIONING && *phase != SF_PHASE_READY) ||
        get_u32(raw + SF_OFF_HANDLES) != MF_TPM_NV_COUNTER ||
        get_u32(raw + SF_OFF_HANDLES + 4) != MF_TPM_NV_STATE ||
        get_u32(raw + SF_OFF_HANDLES + 8) != MF_TPM_NV_IDENTITY)
        return tpm_fail(tpm, MF_ECORRUPT, "%s: TPM state file names other NV handles", tpm->path);
    memcpy(tpm->auth, raw + SF_OFF_AUTH, MF_TPM_AUTH_SIZE);
    memcpy(tpm->policy, raw + SF_OFF_POLICY, MF_TPM_AUTH_SIZE);
    return 0;
}

static int sf_read(struct mf_tpm *tpm, uint32_t *phase)
{
    uint8_t raw[MF_TPM_STATE_FILE_SIZE + 1];
    ssize_t n = pread(tpm->state_fd, raw, sizeof raw, 0);
    if (n < 0)
        return tpm_fail(tpm, MF_EIO, "%s: cannot read the TPM state file", tpm->path);
    int err = sf_decode(tpm, raw, (size_t)n, phase);
    sodium_memzero(raw, sizeof raw);
    return err;
}

/* Writes the state file with `phase`: created (never over an existing one) or replaced. */
static int sf_write(struct mf_tpm *tpm, const char *path, uint32_t phase, bool replace)
{
    uint8_t raw[MF_TPM_STATE_FILE_SIZE];
    sf_encode(tpm, phase, raw);
    int fd = -1;
    int err = mf_keystore_create_private(path, "TPM state file", raw, sizeof raw, replace, &fd,
                                         tpm->anchor->error, sizeof tpm->anchor->error);
    sodium_memzero(raw, sizeof raw);
    if (err)
        return err;
    /* The new file was locked before it got the name; the old one's lock can go. */
    if (tpm->state_fd >= 0)
        close(tpm->state_fd);
    tpm->state_fd = fd;
    return 0;
}

/* ---- NV indices ---- */

/* Looks up the index: *tr is ESYS_TR_NONE when it does not exist. */
static int nv_lookup(struct mf_tpm *tpm, const struct nv_spec *spec, ESYS_TR *tr)
{
    *tr = ESYS_TR_NONE;
    TSS2_RC rc =
        Esys_TR_FromTPMPublic(ctx(tpm), spec->handle, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, tr);
    if (rc == 0)
        return 0;
    *tr = ESYS_TR_NONE;
    if ((rc & RC_LAYER_MASK) == 0 && (rc & RC_FMT1) &&
        RC_FMT1 + (rc & RC_FMT1_ERROR_MASK) == RC_HANDLE)
        return 0;
    char what[64];
    snprintf(what, sizeof what, "look-up of NV index 0x%08x (%s)", (unsigned)spec->handle,
             spec->what);
    return tpm_rc(tpm, rc, what);
}

/* Checks that an existing index is the one we define: same type, attributes, size, name
 * algorithm and policy nonce. `*written` gets TPMA_NV_WRITTEN, `*locked` TPMA_NV_WRITELOCKED. */
static int nv_verify(struct mf_tpm *tpm, const struct nv_spec *spec, ESYS_TR tr, bool *written,
                     bool *locked)
{
    TPM2B_NV_PUBLIC *pub = NULL;
    TSS2_RC rc =
        Esys_NV_ReadPublic(ctx(tpm), tr, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &pub, NULL);
    if (rc) {
        char what[64];
        snprintf(what, sizeof what, "public area of NV index 0x%08x", (unsigned)spec->handle);
        return tpm_rc(tpm, rc, what);
    }
    const TPMS_NV_PUBLIC *p = &pub->nvPublic;
    bool ours = p->nameAlg == TPM2_ALG_SHA256 && p->dataSize == spec->size &&
                (p->attributes & ~NV_STATE_BITS) == spec->attributes &&
                p->authPolicy.size == MF_TPM_AUTH_SIZE &&
                memcmp(p->authPolicy.buffer, tpm->policy, MF_TPM_AUTH_SIZE) == 0;
    *written = (p->attributes & TPMA_NV_WRITTEN) != 0;
    *locked = (p->attributes & TPMA_NV_WRITELOCKED) != 0;
    unsigned attributes = (unsigned)p->attributes;
    Esys_Free(pub);
    if (!ours)
        return tpm_fail(tpm, MF_ECORRUPT,
                        "TPM: NV index 0x%08x (%s) is not ours (attributes 0x%08x, other size "
                        "or policy): it was replaced",
                        (unsigned)spec->handle, spec->what, attributes);
    return 0;
}

static int nv_define(struct mf_tpm *tpm, const struct nv_spec *spec, ESYS_TR *tr)
{
    TPM2B_AUTH auth;
    memset(&auth, 0, sizeof auth);
    auth.size = MF_TPM_AUTH_SIZE;
    memcpy(auth.buffer, tpm->auth, MF_TPM_AUTH_SIZE);
    TPM2B_NV_PUBLIC pub;
    memset(&pub, 0, sizeof pub);
    pub.nvPublic.nvIndex = spec->handle;
    pub.nvPublic.nameAlg = TPM2_ALG_SHA256;
    pub.nvPublic.attributes = spec->attributes;
    pub.nvPublic.authPolicy.size = MF_TPM_AUTH_SIZE;
    memcpy(pub.nvPublic.authPolicy.buffer, tpm->policy, MF_TPM_AUTH_SIZE);
    pub.nvPublic.dataSize = spec->size;
    TSS2_RC rc = Esys_NV_DefineSpace(ctx(tpm), ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                                     ESYS_TR_NONE, &auth, &pub, tr);
    sodium_memzero(&auth, sizeof auth);
    if (rc) {
        *tr = ESYS_TR_NONE;
        char what[96];
        snprintf(what, sizeof what,
                 "definition of NV index 0x%08x (%s) with the empty owner password",
                 (unsigned)spec->handle, spec->what);
        return tpm_rc(tpm, rc, what);
    }
    return 0;
}

static int nv_set_auth(struct mf_tpm *tpm, ESYS_TR tr)
{
    TPM2B_AUTH auth;
    memset(&auth, 0, sizeof auth);
    auth.size = MF_TPM_AUTH_SIZE;
    memcpy(auth.buffer, tpm->auth, MF_TPM_AUTH_SIZE);
    TSS2_RC rc = Esys_TR_SetAuth(ctx(tpm), tr, &auth);
    sodium_memzero(&auth, sizeof auth);
    return rc ? tpm_rc(tpm, rc, "set authorization") : 0;
}

static uint32_t *spec_tr(struct mf_tpm *tpm, const struct nv_spec *spec)
{
    if (spec->handle == MF_TPM_NV_COUNTER)
        return &tpm->counter_index;
    if (spec->handle == MF_TPM_NV_STATE)
        return &tpm->state_index;
    return &tpm->identity_index;
}

/* ---- the anchor ---- */

static int tpm_check_open(struct mf_tpm *tpm)
{
    return tpm->esys ? 0 : tpm_fail(tpm, MF_EBADF, "TPM anchor is closed");
}

static int tpm_read_state(struct mf_anchor *anchor, struct mf_anchor_state *state)
{
    struct mf_tpm *tpm = anchor->context;
    memset(state, 0, sizeof *state);
    int err = tpm_check_open(tpm);
    if (err)
        return err;
    uint8_t raw[MF_TPM_STATE_SIZE];
    err = nv_read(tpm, tpm->state_index, sizeof raw, raw, "read of the state index");
    if (!err &&
        (raw[0] != ST_VERSION || (raw[1] & ~(ST_FLAG_KEY | ST_FLAG_DIGEST | ST_FLAG_OWNER)) != 0))
        err = tpm_fail(tpm, MF_ECORRUPT, "TPM: state index 0x%08x holds an unknown format",
                       (unsigned)MF_TPM_NV_STATE);
    if (!err) {
        state->has_key = (raw[1] & ST_FLAG_KEY) != 0;
        if (state->has_key)
            memcpy(state->key, raw + ST_OFF_KEY, MF_ANCHOR_KEY_SIZE);
        state->has_digest = (raw[1] & ST_FLAG_DIGEST) != 0;
        if (state->has_digest)
            memcpy(state->digest, raw + ST_OFF_DIGEST, MF_ANCHOR_DIGEST_SIZE);
        state->has_owner = (raw[1] & ST_FLAG_OWNER) != 0;
        if (state->has_owner)
            memcpy(state->owner, raw + ST_OFF_OWNER, MF_ANCHOR_OWNER_SIZE);
        for (unsigned i = 0; i < 8; i++)
            state->package_mark |= (uint64_t)raw[ST_OFF_MARK + i] << (8 * i);
    }
    sodium_memzero(raw, sizeof raw);
    return err;
}

/* Rewrites the whole state index (one NV write: the TPM makes it atomic). */
static int tpm_write_state(struct mf_tpm *tpm, const struct mf_anchor_state *state)
{
    uint8_t raw[MF_TPM_STATE_SIZE];
    memset(raw, 0, sizeof raw);
    raw[0] = ST_VERSION;
    raw[1] =
        (uint8_t)((state->has_key ? ST_FLAG_KEY : 0) | (state->has_digest ? ST_FLAG_DIGEST : 0) |
                  (state->has_owner ? ST_FLAG_OWNER : 0));
    if (state->has_key)
        memcpy(raw + ST_OFF_KEY, state->key, MF_ANCHOR_KEY_SIZE);
    if (state->has_digest)
        memcpy(raw + ST_OFF_DIGEST, state->digest, MF_ANCHOR_DIGEST_SIZE);
    if (state->has_owner)
        memcpy(raw + ST_OFF_OWNER, state->owner, MF_ANCHOR_OWNER_SIZE);
    for (unsigned i = 0; i < 8; i++)
        raw[ST_OFF_MARK + i] = (uint8_t)(state->package_mark >> (8 * i));
    int err = nv_write(tpm, tpm->state_index, raw, sizeof raw, "write of the state index");
    sodium_memzero(raw, sizeof raw);
    return err;
}

static int tpm_write_key(struct mf_anchor *anchor, const uint8_t *key)
{
    struct mf_tpm *tpm = anchor->context;
    struct mf_anchor_state state;
    int err = tpm_read_state(anchor, &state);
    if (!err) {
        state.has_key = key != NULL;
        if (key)
            memcpy(state.key, key, MF_ANCHOR_KEY_SIZE);
        else
            sodium_memzero(state.key, sizeof state.key);
        err = tpm_write_state(tpm, &state);
    }
    sodium_memzero(&state, sizeof state);
    return err;
}

static int tpm_write_digest(struct mf_anchor *anchor, const uint8_t *digest)
{
    struct mf_tpm *tpm = anchor->context;
    struct mf_anchor_state state;
    int err = tpm_read_state(anchor, &state);
    if (!err) {
        state.has_digest = digest != NULL;
        if (digest)
            memcpy(state.digest, digest, MF_ANCHOR_DIGEST_SIZE);
        else
            memset(state.digest, 0, sizeof state.digest);
        err = tpm_write_state(tpm, &state);
    }
    sodium_memzero(&state, sizeof state);
    return err;
}

static int tpm_write_owner(struct mf_anchor *anchor, const uint8_t *owner, uint64_t package_mark)
{
    struct mf_tpm *tpm = anchor->context;
    struct mf_anchor_state state;
    int err = tpm_read_state(anchor, &state);
    if (!err) {
        state.has_owner = owner != NULL;
        if (owner)
            memcpy(state.owner, owner, MF_ANCHOR_OWNER_SIZE);
        else
            memset(state.owner, 0, sizeof state.owner);
        state.package_mark = package_mark;
        err = tpm_write_state(tpm, &state);
    }
    sodium_memzero(&state, sizeof state);
    return err;
}

static int tpm_counter_read(struct mf_anchor *anchor, uint64_t *value)
{
    struct mf_tpm *tpm = anchor->context;
    *value = 0;
    int err = tpm_check_open(tpm);
    if (err)
        return err;
    uint8_t raw[8];
    err = nv_read(tpm, tpm->counter_index, sizeof raw, raw, "read of the counter");
    if (err)
        return err;
    uint64_t v = 0;
    for (unsigned i = 0; i < 8; i++)
        v = (v << 8) | raw[i]; /* the TPM stores counters big-endian */
    *value = v;
    return 0;
}

static int tpm_counter_increment(struct mf_anchor *anchor, uint64_t *value)
{
    struct mf_tpm *tpm = anchor->context;
    *value = 0;
    anchor->unchanged = true; /* nothing reached the TPM's NV yet */
    int err = tpm_check_open(tpm);
    if (!err)
        err = tpm_session(tpm, 0);
    if (err)
        return err;
    TSS2_RC rc = Esys_NV_Increment(ctx(tpm), tpm->counter_index, tpm->counter_index, tpm->session,
                                   ESYS_TR_NONE, ESYS_TR_NONE);
    /* An answer of the TPM itself (NV_RATE included) means the command did not run: a TPM changes
     * nothing on an error. An error of tpm2-tss (the TCTI, the response's HMAC) may come after the
     * TPM counted. */
    anchor->unchanged = rc != 0 && (rc & RC_LAYER_MASK) == 0;
    if (rc)
        return tpm_rc(tpm, rc, "increment of the counter");
    return tpm_counter_read(anchor, value);
}

static int tpm_binding(struct mf_anchor *anchor, uint8_t binding[MF_ANCHOR_BINDING_SIZE])
{
    struct mf_tpm *tpm = anchor->context;
    memset(binding, 0, MF_ANCHOR_BINDING_SIZE);
    int err = tpm_check_open(tpm);
    if (err)
        return err;
    /* Asked afresh each time: the TPM's view, not what ESAPI remembers. */
    TPM2B_NV_PUBLIC *pub = NULL;
    TPM2B_NAME *name = NULL;
    TSS2_RC rc = Esys_NV_ReadPublic(ctx(tpm), tpm->counter_index, ESYS_TR_NONE, ESYS_TR_NONE,
                                    ESYS_TR_NONE, &pub, &name);
    if (rc)
        return tpm_rc(tpm, rc, "public area of the counter");
    crypto_hash_sha256(binding, name->name, name->size);
    Esys_Free(pub);
    Esys_Free(name);
    return 0;
}

static int tpm_read_identity(struct mf_anchor *anchor, uint8_t secret[MF_ANCHOR_IDENTITY_SIZE],
                             bool *present)
{
    struct mf_tpm *tpm = anchor->context;
    *present = false;
    memset(secret, 0, MF_ANCHOR_IDENTITY_SIZE);
    int err = tpm_check_open(tpm);
    if (err)
        return err;
    bool written = false, locked = false;
    err = nv_verify(tpm, &nv_specs[1], tpm->identity_index, &written, &locked);
    if (err || !written)
        return err;
    err = nv_read(tpm, tpm->identity_index, MF_ANCHOR_IDENTITY_SIZE, secret,
                  "read of the identity index");
    if (err) {
        sodium_memzero(secret, MF_ANCHOR_IDENTITY_SIZE);
        return err;
    }
    *present = true;
    return 0;
}

static int tpm_lock_identity(struct mf_tpm *tpm)
{
    int err = tpm_session(tpm, 0);
    if (err)
        return err;
    TSS2_RC rc = Esys_NV_WriteLock(ctx(tpm), tpm->identity_index, tpm->identity_index, tpm->session,
                                   ESYS_TR_NONE, ESYS_TR_NONE);
    return rc ? tpm_rc(tpm, rc, "write lock of the identity index") : 0;
}

static int tpm_write_identity(struct mf_anchor *anchor,
                              const uint8_t secret[MF_ANCHOR_IDENTITY_SIZE])
{
    struct mf_tpm *tpm = anchor->context;
    uint8_t current[MF_ANCHOR_IDENTITY_SIZE];
    bool present = false;
    int err = tpm_read_identity(anchor, current, &present);
    if (!err && present) {
        bool same = sodium_memcmp(current, secret, MF_ANCHOR_IDENTITY_SIZE) == 0;
        sodium_memzero(current, sizeof current);
        if (!same)
            return tpm_fail(tpm, MF_EEXIST,
                            "TPM: an identity exists already; it is never replaced");
        bool written = false, locked = false;
        err = nv_verify(tpm, &nv_specs[1], tpm->identity_index, &written, &locked);
        if (!err && !locked) /* a cut between the write and the lock */
            err = tpm_lock_identity(tpm);
        return err;
    }
    sodium_memzero(current, sizeof current);
    if (err)
        return err;
    err = nv_write(tpm, tpm->identity_index, secret, MF_ANCHOR_IDENTITY_SIZE,
                   "write of the identity index");
    if (!err)
        err = tpm_lock_identity(tpm);
    return err;
}

void mf_tpm_close(struct mf_tpm *tpm)
{
    if (tpm->esys) {
        ESYS_CONTEXT *esys = tpm->esys;
        if (tpm->session != ESYS_TR_NONE)
            Esys_FlushContext(esys, tpm->session);
        Esys_Finalize(&esys);
    }
    tpm->esys = NULL;
    if (tpm->tcti) {
        TSS2_TCTI_CONTEXT *tcti = tpm->tcti;
        Tss2_TctiLdr_Finalize(&tcti);
    }
    tpm->tcti = NULL;
    if (tpm->state_fd >= 0)
        close(tpm->state_fd);
    tpm->state_fd = -1;
    tpm->session = tpm->counter_index = tpm->state_index = tpm->identity_index = ESYS_TR_NONE;
    sodium_memzero(tpm->auth, sizeof tpm->auth);
    sodium_memzero(tpm->policy, sizeof tpm->policy);
}

static void tpm_close(struct mf_anchor *anchor)
{
    mf_tpm_close(anchor->context);
}

static int tpm_connect(struct mf_tpm *tpm, const char *conf)
{
    /* tpm2-tss logs every failed call on stderr, also those we expect (an index that does not
     * exist yet); our messages say what matters. TSS2_LOG set by the user wins. */
    setenv("TSS2_LOG", "all+NONE", 0);
    TSS2_TCTI_CONTEXT *tcti = NULL;
    TSS2_RC rc = Tss2_TctiLdr_Initialize(conf && *conf ? conf : NULL, &tcti);
    if (rc)
        return tpm_fail(tpm, MF_EIO,
                        "TPM: cannot reach a TPM through TCTI \"%s\" (%s): is the TCTI library "
                        "installed (e.g. libtss2-tcti-swtpm0) and a TPM listening?",
                        conf ? conf : "", Tss2_RC_Decode(rc));
    tpm->tcti = tcti;
    ESYS_CONTEXT *esys = NULL;
    rc = Esys_Initialize(&esys, tcti, NULL);
    if (rc)
        return tpm_rc(tpm, rc, "ESAPI initialization");
    tpm->esys = esys;
    rc = Esys_Startup(esys, TPM2_SU_CLEAR);
    if (rc && rc != TPM2_RC_INITIALIZE) /* already started: the usual case */
        return tpm_rc(tpm, rc, "startup (is a TPM 2.0 listening?)");

    TPMT_SYM_DEF symmetric;
    memset(&symmetric, 0, sizeof symmetric);
    symmetric.algorithm = TPM2_ALG_AES;
    symmetric.keyBits.aes = 128;
    symmetric.mode.aes = TPM2_ALG_CFB;
    ESYS_TR session = ESYS_TR_NONE;
    rc = Esys_StartAuthSession(esys, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                               ESYS_TR_NONE, NULL, TPM2_SE_HMAC, &symmetric, TPM2_ALG_SHA256,
                               &session);
    if (rc)
        return tpm_rc(tpm, rc, "start of an HMAC session");
    tpm->session = session;
    return 0;
}

/* Defines what is missing and writes the counter once; then the state file says READY. */
static int tpm_provision(struct mf_tpm *tpm, const char *state_path)
{
    for (unsigned i = 0; i < 3; i++) {
        const struct nv_spec *spec = &nv_specs[i];
        uint32_t *tr = spec_tr(tpm, spec);
        int err = *tr == ESYS_TR_NONE ? nv_define(tpm, spec, tr) : 0;
        if (!err)
            err = nv_set_auth(tpm, *tr);
        if (err)
            return err;
    }
    bool written = false, locked = false;
    int err = nv_verify(tpm, &nv_specs[0], tpm->state_index, &written, &locked);
    if (!err && !written) { /* an empty state, so that reads work from the start */
        struct mf_anchor_state empty;
        memset(&empty, 0, sizeof empty);
        err = tpm_write_state(tpm, &empty);
    }
    if (!err)
        err = nv_verify(tpm, &nv_specs[2], tpm->counter_index, &written, &locked);
    if (!err && !written) {
        /* The first increment sets TPMA_NV_WRITTEN (part of the binding) and starts the counter
         * at the highest value any counter of this TPM ever had. */
        err = tpm_session(tpm, 0);
        TSS2_RC rc = err ? 0
                         : Esys_NV_Increment(ctx(tpm), tpm->counter_index, tpm->counter_index,
                                             tpm->session, ESYS_TR_NONE, ESYS_TR_NONE);
        if (rc)
            err = tpm_rc(tpm, rc, "first increment of the counter");
    }
    if (!err)
        err = sf_write(tpm, state_path, SF_PHASE_READY, true);
    return err;
}

static void tpm_fill_anchor(struct mf_tpm *tpm, struct mf_anchor *anchor)
{
    anchor->context = tpm;
    anchor->name = "tpm";
    anchor->read_state = tpm_read_state;
    anchor->write_key = tpm_write_key;
    anchor->write_digest = tpm_write_digest;
    anchor->write_owner = tpm_write_owner;
    anchor->counter_read = tpm_counter_read;
    anchor->counter_increment = tpm_counter_increment;
    anchor->binding = tpm_binding;
    anchor->read_identity = tpm_read_identity;
    anchor->write_identity = tpm_write_identity;
    anchor->close = tpm_close;
}

static int tpm_open(struct mf_tpm *tpm, const char *conf, const char *state_path, bool create)
{
    int err = tpm_connect(tpm, conf);
    if (err)
        return err;

    uint32_t phase = 0;
    err = mf_keystore_open_private(state_path, "TPM state file", &tpm->state_fd, tpm->anchor->error,
                                   sizeof tpm->anchor->error);
    bool fresh = false;
    if (err == MF_ENOENT && create) {
        randombytes_buf(tpm->auth, sizeof tpm->auth);
        randombytes_buf(tpm->policy, sizeof tpm->policy);
        fresh = true;
        phase = SF_PHASE_PROVISIONING;
    } else if (err == MF_ENOENT) {
        return tpm_fail(tpm, err,
                        "%s: no TPM anchor provisioned here (it is set up at the first start)",
                        tpm->path);
    } else if (err) {
        return err;
    } else {
        err = sf_read(tpm, &phase);
        if (err)
            return err;
    }

    bool any = false;
    for (unsigned i = 0; i < 3; i++) {
        uint32_t *tr = spec_tr(tpm, &nv_specs[i]);
        err = nv_lookup(tpm, &nv_specs[i], tr);
        if (err)
            return err;
        any = any || *tr != ESYS_TR_NONE;
    }
    if (fresh) {
        if (any)
            return tpm_fail(tpm, MF_EEXIST,
                            "TPM: NV indices at 0x%08x..0x%08x exist but %s does not: another "
                            "programmer uses this TPM, or its state file was lost (then remove "
                            "them with tpm2_nvundefine)",
                            (unsigned)MF_TPM_NV_COUNTER, (unsigned)MF_TPM_NV_IDENTITY, tpm->path);
        /* The authorization value is on disk before any index uses it, so that a cut in
         * provisioning never leaves indices nobody can open. */
        err = sf_write(tpm, state_path, SF_PHASE_PROVISIONING, false);
        if (err)
            return err;
    }
    for (unsigned i = 0; i < 3; i++) {
        uint32_t *tr = spec_tr(tpm, &nv_specs[i]);
        if (*tr == ESYS_TR_NONE) {
            if (phase == SF_PHASE_READY)
                return tpm_fail(tpm, MF_ECORRUPT,
                                "TPM: NV index 0x%08x (%s) is missing: it was deleted or the TPM "
                                "was cleared; what it held is lost, and it is never re-created "
                                "silently",
                                (unsigned)nv_specs[i].handle, nv_specs[i].what);
            continue;
        }
        bool written = false, locked = false;
        err = nv_verify(tpm, &nv_specs[i], *tr, &written, &locked);
        if (!err)
            err = nv_set_auth(tpm, *tr);
        if (err)
            return err;
        if (phase == SF_PHASE_READY && nv_specs[i].handle != MF_TPM_NV_IDENTITY && !written)
            return tpm_fail(tpm, MF_ECORRUPT,
                            "TPM: %s index 0x%08x was never written: it was deleted and defined "
                            "again",
                            nv_specs[i].what, (unsigned)nv_specs[i].handle);
        if (phase == SF_PHASE_READY && nv_specs[i].handle == MF_TPM_NV_IDENTITY && written &&
            !locked) {
            err = tpm_lock_identity(tpm); /* a cut between the identity's write and lock */
            if (err)
                return err;
        }
    }
    if (phase == SF_PHASE_PROVISIONING) {
        if (!create)
            return tpm_fail(tpm, MF_ENOENT,
                            "%s: TPM provisioning was interrupted; it is finished at the next "
                            "start that may provision",
                            tpm->path);
        err = tpm_provision(tpm, state_path);
    }
    if (!err) {
        /* An index defined again with our attributes and policy has our name once written; only
         * the authorization tells it apart, so try it now rather than at the first cycle. */
        uint64_t value = 0;
        err = tpm_counter_read(tpm->anchor, &value);
    }
    return err;
}

int mf_tpm_open(struct mf_tpm *tpm, const char *tcti, const char *state_path, bool create,
                struct mf_anchor *anchor)
{
    memset(tpm, 0, sizeof *tpm);
    memset(anchor, 0, sizeof *anchor);
    tpm->state_fd = -1;
    tpm->session = tpm->counter_index = tpm->state_index = tpm->identity_index = ESYS_TR_NONE;
    tpm->anchor = anchor;
    size_t n = strlen(state_path);
    if (n < sizeof tpm->path)
        memcpy(tpm->path, state_path, n + 1);
    else
        snprintf(tpm->path, sizeof tpm->path, "...%s", state_path + n - (sizeof tpm->path - 4));
    tpm_fill_anchor(tpm, anchor);
    if (sodium_init() < 0)
        return tpm_fail(tpm, MF_EIO, "libsodium cannot start");
    int err = tpm_open(tpm, tcti, state_path, create);
    if (err) {
        mf_tpm_close(tpm);
        return err;
    }
    anchor->error[0] = '\0';
    return 0;
}

#endif

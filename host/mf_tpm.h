/* The `tpm` trust anchor: a TPM 2.0 through tpm2-tss ESAPI. Three NV indices in the owner
 * range hold the counter, the setup key with the header digest, and the identity; a small state
 * file beside the keystore path holds the random authorization value that reading and writing
 * them needs. Handles, attributes and what an attacker can still do: docs/internals/anchor.md.
 * Built without tpm2-tss (MF_HAVE_TSS2 undefined), mf_tpm_open() fails with MF_ENOTSUP. */
#ifndef MF_TPM_H
#define MF_TPM_H

#include "mf_anchor.h"

#include <stdbool.h>
#include <stdint.h>

/* Fixed NV handles in the TCG's owner range 0x01800000-0x01BFFFFF (chosen by us, not
 * registered: the registry assigns ranges by convention only). */
#define MF_TPM_NV_COUNTER  0x018F4D00u /* TPM_NT_COUNTER, 8 bytes */
#define MF_TPM_NV_STATE    0x018F4D01u /* ordinary, MF_TPM_STATE_SIZE bytes: key + digest */
#define MF_TPM_NV_IDENTITY 0x018F4D02u /* ordinary, 64 bytes, locked for good once written */

#define MF_TPM_STATE_SIZE      112u /* version, flags, reserved, key, digest, owner, mark */
#define MF_TPM_STATE_FILE_SIZE 128u /* the state file beside the keystore path */
#define MF_TPM_AUTH_SIZE       32u

struct mf_tpm {
    void *esys;                       /* ESYS_CONTEXT *, NULL when closed */
    void *tcti;                       /* TSS2_TCTI_CONTEXT * */
    uint32_t session;                 /* ESYS_TR of the HMAC session (parameter encryption on) */
    uint32_t counter_index;           /* ESYS_TR of MF_TPM_NV_COUNTER */
    uint32_t state_index;             /* ESYS_TR of MF_TPM_NV_STATE */
    uint32_t identity_index;          /* ESYS_TR of MF_TPM_NV_IDENTITY */
    int state_fd;                     /* the state file, locked; -1 when closed */
    uint8_t auth[MF_TPM_AUTH_SIZE];   /* the indices' authValue, from the state file */
    uint8_t policy[MF_TPM_AUTH_SIZE]; /* the indices' authPolicy: a random nonce, see docs */
    struct mf_anchor *anchor;
    char path[96]; /* the state file, for messages */
};

/* Connects to the TPM through the TCTI configuration `tcti` (tpm2-tss syntax, for example
 * "swtpm:host=127.0.0.1,port=2321" or "device:/dev/tpmrm0"; "" lets tpm2-tss choose), reads the
 * state file `state_path` and fills `anchor` (name "tpm", context = tpm); both structs must
 * outlive the anchor's use, and anchor->close() releases everything.
 * Provisioning happens only with `create`: when the state file does not exist, a new random
 * authorization value is written to it (mode 0600) and the three NV indices are defined under
 * the owner hierarchy (empty owner password) and the counter is incremented once. A cut during
 * provisioning is finished by the next open with `create`. Once provisioned, a missing or
 * foreign index is an error, never re-created, with or without `create`.
 * Errors, with the reason in anchor->error: MF_ENOTSUP (built without tpm2-tss), MF_EIO (TCTI
 * library missing, no TPM answering, other TPM errors, with tpm2-tss's decoded text),
 * MF_ENOENT (no state file and !create, or provisioning unfinished), MF_EEXIST (with create: an
 * index at our handles exists but the state file does not), MF_ECORRUPT (an index is missing,
 * has other attributes or policy, or the counter was never written: deleted and defined again),
 * MF_EAUTH (the TPM refuses the state file's authorization), MF_EBUSY (state file locked by
 * another program, or the TPM asks to retry later), MF_EACCES and the other errors of
 * mf_keystore_open_private() for the state file. */
int mf_tpm_open(struct mf_tpm *tpm, const char *tcti, const char *state_path, bool create,
                struct mf_anchor *anchor);

/* Flushes the session, disconnects, releases the state file's lock and wipes the
 * authorization value. Safe when closed. */
void mf_tpm_close(struct mf_tpm *tpm);

/* Maps a tpm2-tss response code to MF_E*: the TPM's "retry later" answers (TPM_RC_NV_RATE,
 * TPM_RC_NV_UNAVAILABLE, TPM_RC_RETRY, TPM_RC_YIELDED, TPM_RC_TESTING) to MF_EBUSY, refused
 * authorizations to MF_EAUTH, a missing handle or an unwritten index to MF_ECORRUPT, 0 to 0, and
 * everything else to MF_EIO. Never turns an error into success. */
int mf_tpm_error_code(uint32_t rc);

#endif

/* A software TPM 2.0 (swtpm, Debian package `swtpm`) for tests: started on free loopback ports
 * with its own state folder, and always stopped: by mf_swtpm_stop(), at exit for any instance a
 * test left running, and by the kernel (parent-death signal) when the test process dies without
 * running its exit handlers, e.g. killed by a sanitizer. No test framework inside. */
#ifndef MF_SWTPM_H
#define MF_SWTPM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define MF_SWTPM_TCTI_MAX 64u /* "swtpm:host=127.0.0.1,port=65535" fits with room */

struct mf_swtpm {
    pid_t pid;         /* 0 when not running */
    uint16_t port;     /* TPM command port; the control channel is port + 1 (the TCTI's rule) */
    char dir[256];     /* state folder, owned by this instance; "" when none */
    char message[512]; /* why the last call failed */
};

/* Starts a fresh TPM (empty state, TPM2_Startup done) in a new private state folder and writes
 * its tpm2-tss TCTI configuration ("swtpm:host=127.0.0.1,port=P") into `tcti`. The control
 * channel has answered before this returns, so the TPM is ready. `tpm` is overwritten. Returns 0,
 * MF_ENOTSUP when swtpm is not installed (skip the test), or MF_EIO / MF_ETIMEOUT / MF_ERANGE
 * (tcti too small) with the reason (and swtpm's own output) in tpm->message. On failure nothing
 * is left running and the folder is removed. $MF_SWTPM overrides the program's path. */
int mf_swtpm_start(struct mf_swtpm *tpm, char *tcti, size_t tcti_size);

/* Kills the TPM abruptly (SIGKILL, like a power cut) and starts it again on the same state
 * folder, on new ports: `tcti` gets the new configuration. What the TPM had committed to NV
 * survives; sessions and loaded objects do not. Errors as mf_swtpm_start (the folder is kept). */
int mf_swtpm_restart(struct mf_swtpm *tpm, char *tcti, size_t tcti_size);

/* Stops the TPM (SIGTERM, then SIGKILL after a few seconds), waits for it and removes its state
 * folder. Safe to call twice and on a zeroed struct. Returns 0, or MF_EIO when the folder could
 * not be removed. */
int mf_swtpm_stop(struct mf_swtpm *tpm);

/* True when the swtpm program can be found (in $MF_SWTPM or on PATH). */
bool mf_swtpm_available(void);

#endif

/* The TPM trust anchor against a real swtpm started on free loopback ports (and always stopped):
 * provisioning, round trips, the counter across reopen and across a TPM restart, the binding,
 * the counter index deleted and defined again (done here with our own ESAPI calls), missing
 * indices, interrupted provisioning, the state file's checks, and no TPM at all. Without swtpm
 * the test exits 77 (skipped); built without tpm2-tss only the stub and the error mapping run. */
#include "mf_anchor.h"
#include "mf_crc32.h"
#include "mf_err.h"
#include "mf_swtpm.h"
#include "mf_testutil.h"
#include "mf_tpm.h"

#include <fcntl.h>
#include <setjmp.h>
#include <sodium.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#ifdef MF_HAVE_TSS2
#include <tss2/tss2_esys.h>
#include <tss2/tss2_rc.h>
#include <tss2/tss2_tctildr.h>
#endif

static void expect_error(const struct mf_anchor *anchor, const char *needle)
{
    if (!strstr(anchor->error, needle))
        fail_msg("error \"%s\" does not contain \"%s\"", anchor->error, needle);
}

static void test_error_codes(void **state)
{
    (void)state;
    assert_int_equal(mf_tpm_error_code(0), 0);
    assert_int_equal(mf_tpm_error_code(0x920), MF_EBUSY);    /* TPM_RC_NV_RATE */
    assert_int_equal(mf_tpm_error_code(0x923), MF_EBUSY);    /* TPM_RC_NV_UNAVAILABLE */
    assert_int_equal(mf_tpm_error_code(0x922), MF_EBUSY);    /* TPM_RC_RETRY */
    assert_int_equal(mf_tpm_error_code(0x908), MF_EBUSY);    /* TPM_RC_YIELDED */
    assert_int_equal(mf_tpm_error_code(0x90A), MF_EBUSY);    /* TPM_RC_TESTING */
    assert_int_equal(mf_tpm_error_code(0x98E), MF_EAUTH);    /* TPM_RC_AUTH_FAIL, session 1 */
    assert_int_equal(mf_tpm_error_code(0x9A2), MF_EAUTH);    /* TPM_RC_BAD_AUTH, session 1 */
    assert_int_equal(mf_tpm_error_code(0x149), MF_EAUTH);    /* TPM_RC_NV_AUTHORIZATION */
    assert_int_equal(mf_tpm_error_code(0x18B), MF_ECORRUPT); /* TPM_RC_HANDLE, handle 1 */
    assert_int_equal(mf_tpm_error_code(0x14A), MF_ECORRUPT); /* TPM_RC_NV_UNINITIALIZED */
    assert_int_equal(mf_tpm_error_code(0x101), MF_EIO);      /* TPM_RC_FAILURE */
    assert_int_equal(mf_tpm_error_code(0x921), MF_EIO);      /* TPM_RC_LOCKOUT: not "later" */
    assert_int_equal(mf_tpm_error_code(0xA000A), MF_EIO);    /* TCTI layer: I/O error */
    assert_int_equal(mf_tpm_error_code(0x70920), MF_EIO);    /* NV_RATE bits in the ESAPI layer */
    /* No response code is ever success but 0. */
    for (uint32_t rc = 1; rc < 0x1000; rc++)
        assert_int_not_equal(mf_tpm_error_code(rc), 0);
}

#ifndef MF_HAVE_TSS2

static void test_stub(void **state)
{
    (void)state;
    struct mf_tpm tpm;
    struct mf_anchor a;
    assert_int_equal(mf_tpm_open(&tpm, "swtpm:port=1", "/nonexistent/tpm", true, &a), MF_ENOTSUP);
    expect_error(&a, "without tpm2-tss");
    mf_tpm_close(&tpm);
}

int main(void)
{
    printf("tpm: built without tpm2-tss: only the stub and the error mapping are tested\n");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_error_codes),
        cmocka_unit_test(test_stub),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

#else

struct fixture {
    struct mf_swtpm swtpm;
    char tcti[MF_SWTPM_TCTI_MAX];
    char *dir;
    char *state_path;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    f->dir = mf_test_tmpdir("tpm");
    if (!f->dir) {
        free(f);
        return -1;
    }
    f->state_path = mf_test_path(f->dir, "anchor.tpm");
    if (mf_swtpm_start(&f->swtpm, f->tcti, sizeof f->tcti) != 0) {
        /* cmocka runs no teardown after a failed setup: clean here */
        fprintf(stderr, "swtpm: %s\n", f->swtpm.message);
        mf_test_rmtree(f->dir);
        free(f->state_path);
        free(f->dir);
        free(f);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    int rc = mf_swtpm_stop(&f->swtpm);
    if (f->dir && mf_test_rmtree(f->dir) != 0)
        rc = -1;
    free(f->state_path);
    free(f->dir);
    free(f);
    return rc ? -1 : 0;
}

static void fill_pattern(uint8_t *p, size_t n, uint8_t seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(seed * 29u + i * 5u + 3u);
}

static void open_ok(struct fixture *f, struct mf_tpm *tpm, struct mf_anchor *a, bool create)
{
    int rc = mf_tpm_open(tpm, f->tcti, f->state_path, create, a);
    if (rc != 0)
        fail_msg("mf_tpm_open: %d: %s", rc, a->error);
}

static uint64_t counter_of(struct mf_anchor *a)
{
    uint64_t value = 0;
    int rc = a->counter_read(a, &value);
    if (rc != 0)
        fail_msg("counter_read: %d: %s", rc, a->error);
    return value;
}

/* ---- our own ESAPI connection, playing the attacker with the owner password ---- */

struct esys {
    TSS2_TCTI_CONTEXT *tcti;
    ESYS_CONTEXT *ctx;
};

static void esys_open(struct esys *e, const char *conf)
{
    TSS2_RC rc = Tss2_TctiLdr_Initialize(conf, &e->tcti);
    if (rc)
        fail_msg("TCTI %s: %s", conf, Tss2_RC_Decode(rc));
    rc = Esys_Initialize(&e->ctx, e->tcti, NULL);
    if (rc)
        fail_msg("Esys_Initialize: %s", Tss2_RC_Decode(rc));
}

static void esys_close(struct esys *e)
{
    Esys_Finalize(&e->ctx);
    Tss2_TctiLdr_Finalize(&e->tcti);
}

/* ESYS_TR_NONE when the index does not exist. */
static ESYS_TR esys_index(struct esys *e, TPM2_HANDLE handle)
{
    ESYS_TR tr = ESYS_TR_NONE;
    TSS2_RC rc =
        Esys_TR_FromTPMPublic(e->ctx, handle, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &tr);
    if (rc == 0x18B)
        return ESYS_TR_NONE;
    if (rc)
        fail_msg("FromTPMPublic 0x%08x: %s", (unsigned)handle, Tss2_RC_Decode(rc));
    return tr;
}

static TPMS_NV_PUBLIC esys_public(struct esys *e, ESYS_TR tr)
{
    TPM2B_NV_PUBLIC *pub = NULL;
    TSS2_RC rc =
        Esys_NV_ReadPublic(e->ctx, tr, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &pub, NULL);
    if (rc)
        fail_msg("NV_ReadPublic: %s", Tss2_RC_Decode(rc));
    TPMS_NV_PUBLIC p = pub->nvPublic;
    Esys_Free(pub);
    return p;
}

static void esys_undefine(struct esys *e, TPM2_HANDLE handle)
{
    ESYS_TR tr = esys_index(e, handle);
    assert_int_not_equal(tr, ESYS_TR_NONE);
    TSS2_RC rc = Esys_NV_UndefineSpace(e->ctx, ESYS_TR_RH_OWNER, tr, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                                       ESYS_TR_NONE);
    if (rc)
        fail_msg("NV_UndefineSpace 0x%08x: %s", (unsigned)handle, Tss2_RC_Decode(rc));
}

/* Defines an index with `public` (its WRITTEN bit cleared) and the given auth; returns it. */
static ESYS_TR esys_define(struct esys *e, TPMS_NV_PUBLIC public, const uint8_t *auth,
                           size_t auth_size)
{
    TPM2B_AUTH a;
    memset(&a, 0, sizeof a);
    a.size = (uint16_t)auth_size;
    if (auth_size)
        memcpy(a.buffer, auth, auth_size);
    TPM2B_NV_PUBLIC pub;
    memset(&pub, 0, sizeof pub);
    public.attributes &= ~(TPMA_NV_WRITTEN | TPMA_NV_WRITELOCKED);
    pub.nvPublic = public;
    ESYS_TR tr = ESYS_TR_NONE;
    TSS2_RC rc = Esys_NV_DefineSpace(e->ctx, ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                                     ESYS_TR_NONE, &a, &pub, &tr);
    if (rc)
        fail_msg("NV_DefineSpace 0x%08x: %s", (unsigned)public.nvIndex, Tss2_RC_Decode(rc));
    return tr;
}

static uint64_t esys_counter(struct esys *e, ESYS_TR tr)
{
    TPM2B_MAX_NV_BUFFER *data = NULL;
    TSS2_RC rc =
        Esys_NV_Read(e->ctx, tr, tr, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, 8, 0, &data);
    if (rc)
        fail_msg("NV_Read: %s", Tss2_RC_Decode(rc));
    uint64_t v = 0;
    for (unsigned i = 0; i < 8; i++)
        v = (v << 8) | data->buffer[i];
    Esys_Free(data);
    return v;
}

/* ---- tests ---- */

static void test_provision_and_round_trips(void **state)
{
    struct fixture *f = *state;
    struct mf_tpm tpm;
    struct mf_anchor a;

    assert_int_equal(mf_tpm_open(&tpm, f->tcti, f->state_path, false, &a), MF_ENOENT);
    expect_error(&a, "no TPM anchor provisioned");
    assert_int_equal(access(f->state_path, F_OK), -1);

    open_ok(f, &tpm, &a, true);
    assert_string_equal(a.name, "tpm");
    struct stat st;
    assert_int_equal(stat(f->state_path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(st.st_size, MF_TPM_STATE_FILE_SIZE);
    uint64_t first = counter_of(&a);
    assert_true(first >= 1); /* provisioning writes the counter once */

    struct mf_anchor_state s;
    assert_int_equal(a.read_state(&a, &s), 0);
    assert_false(s.has_key);
    assert_false(s.has_digest);
    uint8_t secret[MF_ANCHOR_IDENTITY_SIZE];
    bool present = true;
    assert_int_equal(a.read_identity(&a, secret, &present), 0);
    assert_false(present);

    uint8_t key[MF_ANCHOR_KEY_SIZE], digest[MF_ANCHOR_DIGEST_SIZE];
    uint8_t identity[MF_ANCHOR_IDENTITY_SIZE], other[MF_ANCHOR_IDENTITY_SIZE];
    fill_pattern(key, sizeof key, 1);
    fill_pattern(digest, sizeof digest, 2);
    fill_pattern(identity, sizeof identity, 3);
    fill_pattern(other, sizeof other, 4);
    assert_int_equal(a.write_key(&a, key), 0);
    assert_int_equal(a.write_digest(&a, digest), 0);
    assert_int_equal(a.write_identity(&a, identity), 0);
    assert_int_equal(a.write_identity(&a, identity), 0);
    assert_int_equal(a.write_identity(&a, other), MF_EEXIST);
    expect_error(&a, "never replaced");
    uint8_t owner[MF_ANCHOR_OWNER_SIZE];
    fill_pattern(owner, sizeof owner, 5);
    assert_int_equal(a.write_owner(&a, owner, 77), 0);
    uint8_t binding[MF_ANCHOR_BINDING_SIZE], again[MF_ANCHOR_BINDING_SIZE];
    assert_int_equal(a.binding(&a, binding), 0);
    a.close(&a);

    /* Nothing secret is on disk: the state file holds the authorization, not the key. */
    char *raw = NULL;
    size_t size = 0;
    assert_int_equal(mf_test_read_file(f->state_path, &raw, &size), 0);
    assert_null(memmem(raw, size, key, sizeof key));
    assert_null(memmem(raw, size, identity, sizeof identity));
    free(raw);

    open_ok(f, &tpm, &a, false);
    assert_int_equal(a.read_state(&a, &s), 0);
    assert_true(s.has_key);
    assert_memory_equal(s.key, key, sizeof key);
    assert_true(s.has_digest);
    assert_memory_equal(s.digest, digest, sizeof digest);
    assert_true(s.has_owner);
    assert_memory_equal(s.owner, owner, sizeof owner);
    assert_int_equal(s.package_mark, 77);
    assert_int_equal(a.read_identity(&a, secret, &present), 0);
    assert_true(present);
    assert_memory_equal(secret, identity, sizeof identity);
    assert_int_equal(a.binding(&a, again), 0);
    assert_memory_equal(binding, again, sizeof binding);
    assert_int_equal(counter_of(&a), first);

    /* Crypto-erase: the key is gone from the TPM, the digest and the identity stay. */
    assert_int_equal(a.write_key(&a, NULL), 0);
    assert_int_equal(a.read_state(&a, &s), 0);
    assert_false(s.has_key);
    assert_true(sodium_is_zero(s.key, sizeof s.key));
    assert_true(s.has_digest);
    assert_true(s.has_owner);
    assert_memory_equal(s.owner, owner, sizeof owner);
    assert_int_equal(s.package_mark, 77);
    assert_int_equal(a.write_digest(&a, NULL), 0);
    assert_int_equal(a.write_owner(&a, NULL, 78), 0);
    assert_int_equal(a.read_state(&a, &s), 0);
    assert_false(s.has_owner);
    assert_int_equal(s.package_mark, 78);
    a.close(&a);
    open_ok(f, &tpm, &a, true); /* create on a provisioned TPM changes nothing */
    assert_int_equal(a.read_state(&a, &s), 0);
    assert_false(s.has_key);
    assert_false(s.has_digest);
    assert_int_equal(a.read_identity(&a, secret, &present), 0);
    assert_true(present);
    assert_int_equal(a.binding(&a, again), 0);
    assert_memory_equal(binding, again, sizeof binding);
    a.close(&a);

    /* The identity index is locked for good: even with the authorization it takes no write. */
    struct esys e;
    esys_open(&e, f->tcti);
    ESYS_TR tr = esys_index(&e, MF_TPM_NV_IDENTITY);
    TPMS_NV_PUBLIC pub = esys_public(&e, tr);
    assert_true(pub.attributes & TPMA_NV_WRITELOCKED);
    assert_true(pub.attributes & TPMA_NV_NO_DA);
    assert_false(pub.attributes & (TPMA_NV_OWNERREAD | TPMA_NV_PPREAD | TPMA_NV_POLICYREAD));
    /* Reading needs the authorization: the owner (empty password) is refused. */
    TPM2B_MAX_NV_BUFFER *data = NULL;
    TSS2_RC rc = Esys_NV_Read(e.ctx, ESYS_TR_RH_OWNER, tr, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                              ESYS_TR_NONE, 8, 0, &data);
    assert_int_not_equal(rc, 0);
    rc = Esys_NV_Read(e.ctx, tr, tr, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, 8, 0, &data);
    assert_int_not_equal(rc, 0); /* empty auth */
    esys_close(&e);
}

static double elapsed_ms(const struct timespec *t0, const struct timespec *t1)
{
    return (double)(t1->tv_sec - t0->tv_sec) * 1e3 + (double)(t1->tv_nsec - t0->tv_nsec) / 1e6;
}

static void test_counter(void **state)
{
    struct fixture *f = *state;
    struct mf_tpm tpm;
    struct mf_anchor a;
    open_ok(f, &tpm, &a, true);
    uint64_t start = counter_of(&a), value = 0;
    uint8_t binding[MF_ANCHOR_BINDING_SIZE], again[MF_ANCHOR_BINDING_SIZE];
    assert_int_equal(a.binding(&a, binding), 0);
    for (uint64_t i = 1; i <= 20; i++) {
        assert_int_equal(a.counter_increment(&a, &value), 0);
        assert_int_equal(value, start + i);
    }
    a.close(&a);

    open_ok(f, &tpm, &a, false);
    assert_int_equal(counter_of(&a), start + 20);
    assert_int_equal(a.counter_increment(&a, &value), 0);
    assert_int_equal(value, start + 21);
    a.close(&a);

    /* A power cut of the TPM: what was incremented stays. */
    assert_int_equal(mf_swtpm_restart(&f->swtpm, f->tcti, sizeof f->tcti), 0);
    open_ok(f, &tpm, &a, false);
    assert_int_equal(counter_of(&a), start + 21);
    assert_int_equal(a.binding(&a, again), 0);
    assert_memory_equal(binding, again, sizeof binding);

    /* Measured, not asserted: one increment is TPM2_NV_Increment + TPM2_NV_Read. */
    struct timespec t0, t1;
    const int n = 100;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < n; i++)
        assert_int_equal(a.counter_increment(&a, &value), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("tpm (swtpm): counter increment: %.3f ms each (mean of %d: NV_Increment + NV_Read "
           "in an HMAC session)\n",
           elapsed_ms(&t0, &t1) / n, n);
    assert_int_equal(value, start + 21 + (uint64_t)n);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < n; i++)
        assert_int_equal(counter_of(&a), value);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    printf("tpm (swtpm): counter read: %.3f ms each (mean of %d)\n", elapsed_ms(&t0, &t1) / n, n);
    a.close(&a);

    /* A TPM that went away mid-run: errors, never a false success. */
    open_ok(f, &tpm, &a, false);
    assert_int_equal(mf_swtpm_stop(&f->swtpm), 0);
    assert_int_not_equal(a.counter_increment(&a, &value), 0);
    assert_true(strstr(a.error, "TPM") != NULL);
    a.close(&a);
}

static void test_redefined_counter(void **state)
{
    struct fixture *f = *state;
    struct mf_tpm tpm;
    struct mf_anchor a;
    open_ok(f, &tpm, &a, true);
    uint64_t value = 0;
    for (int i = 0; i < 5; i++)
        assert_int_equal(a.counter_increment(&a, &value), 0);
    uint8_t binding[MF_ANCHOR_BINDING_SIZE], now[MF_ANCHOR_BINDING_SIZE];
    assert_int_equal(a.binding(&a, binding), 0);

    struct esys e;
    esys_open(&e, f->tcti);
    TPMS_NV_PUBLIC ours = esys_public(&e, esys_index(&e, MF_TPM_NV_COUNTER));
    assert_true(ours.attributes & TPMA_NV_WRITTEN);
    assert_int_equal((ours.attributes & TPMA_NV_TPM2_NT_MASK) >> TPMA_NV_TPM2_NT_SHIFT,
                     TPM2_NT_COUNTER);

    /* Deleted under a running anchor: every use fails, the increment never succeeds. */
    esys_undefine(&e, MF_TPM_NV_COUNTER);
    assert_int_not_equal(a.binding(&a, now), 0);
    assert_int_not_equal(a.counter_increment(&a, &value), 0);

    /* Defined again with our very attributes and policy, not written yet: another name. */
    ESYS_TR tr = esys_define(&e, ours, NULL, 0);
    assert_int_equal(a.binding(&a, now), 0);
    assert_memory_not_equal(binding, now, sizeof binding);
    a.close(&a);
    assert_int_equal(mf_tpm_open(&tpm, f->tcti, f->state_path, false, &a), MF_ECORRUPT);
    expect_error(&a, "never written");
    assert_int_equal(mf_tpm_open(&tpm, f->tcti, f->state_path, true, &a), MF_ECORRUPT);

    /* Written by the attacker: the same name again, but our authorization no longer opens it,
     * and the TPM started the new counter at or above the old one's value. */
    TSS2_RC rc = Esys_NV_Increment(e.ctx, tr, tr, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE);
    assert_int_equal(rc, 0);
    assert_true(esys_counter(&e, tr) > value);
    assert_int_equal(mf_tpm_open(&tpm, f->tcti, f->state_path, false, &a), MF_EAUTH);
    expect_error(&a, "refuses our authorization");

    /* Defined again with other attributes: not ours. */
    esys_undefine(&e, MF_TPM_NV_COUNTER);
    TPMS_NV_PUBLIC changed = ours;
    changed.attributes |= TPMA_NV_OWNERREAD;
    esys_define(&e, changed, NULL, 0);
    assert_int_equal(mf_tpm_open(&tpm, f->tcti, f->state_path, false, &a), MF_ECORRUPT);
    expect_error(&a, "not ours");

    /* Missing: an error, with or without create, and nothing is re-created. */
    esys_undefine(&e, MF_TPM_NV_COUNTER);
    assert_int_equal(mf_tpm_open(&tpm, f->tcti, f->state_path, false, &a), MF_ECORRUPT);
    expect_error(&a, "missing");
    assert_int_equal(mf_tpm_open(&tpm, f->tcti, f->state_path, true, &a), MF_ECORRUPT);
    expect_error(&a, "never re-created");
    assert_int_equal(esys_index(&e, MF_TPM_NV_COUNTER), ESYS_TR_NONE);

    /* The state index missing is the same error. */
    esys_define(&e, ours, NULL, 0);
    TPMS_NV_PUBLIC state_public = esys_public(&e, esys_index(&e, MF_TPM_NV_STATE));
    esys_undefine(&e, MF_TPM_NV_STATE);
    assert_int_equal(mf_tpm_open(&tpm, f->tcti, f->state_path, true, &a), MF_ECORRUPT);
    expect_error(&a, "0x018f4d01");
    /* ... and defined again like ours: never written, refused before any read. */
    esys_define(&e, state_public, NULL, 0);
    assert_int_equal(mf_tpm_open(&tpm, f->tcti, f->state_path, true, &a), MF_ECORRUPT);
    expect_error(&a, "state index 0x018f4d01 was never written");
    esys_close(&e);
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (unsigned i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void test_interrupted_provisioning(void **state)
{
    struct fixture *f = *state;
    struct mf_tpm tpm;
    struct mf_anchor a;

    /* What a cut leaves after the state file was written and the first index defined: the file
     * in its documented layout, phase 1 (provisioning). */
    uint8_t auth[32], policy[32];
    randombytes_buf(auth, sizeof auth);
    randombytes_buf(policy, sizeof policy);
    uint8_t file[MF_TPM_STATE_FILE_SIZE];
    memset(file, 0, sizeof file);
    memcpy(file, "MFTPMSTA", 8);
    put_u32(file + 8, 1);
    put_u32(file + 12, 1);
    put_u32(file + 16, MF_TPM_NV_COUNTER);
    put_u32(file + 20, MF_TPM_NV_STATE);
    put_u32(file + 24, MF_TPM_NV_IDENTITY);
    memcpy(file + 32, auth, sizeof auth);
    memcpy(file + 64, policy, sizeof policy);
    put_u32(file + 124, mf_crc32_update(0, file, 124));
    int fd = open(f->state_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, file, sizeof file), (ssize_t)sizeof file);
    close(fd);

    struct esys e;
    esys_open(&e, f->tcti);
    TPMS_NV_PUBLIC pub;
    memset(&pub, 0, sizeof pub);
    pub.nvIndex = MF_TPM_NV_STATE;
    pub.nameAlg = TPM2_ALG_SHA256;
    pub.attributes = TPMA_NV_AUTHREAD | TPMA_NV_AUTHWRITE | TPMA_NV_NO_DA | TPMA_NV_WRITEALL;
    pub.authPolicy.size = sizeof policy;
    memcpy(pub.authPolicy.buffer, policy, sizeof policy);
    pub.dataSize = MF_TPM_STATE_SIZE;
    esys_define(&e, pub, auth, sizeof auth);

    assert_int_equal(mf_tpm_open(&tpm, f->tcti, f->state_path, false, &a), MF_ENOENT);
    expect_error(&a, "interrupted");
    open_ok(f, &tpm, &a, true);
    assert_true(counter_of(&a) >= 1);
    struct mf_anchor_state s;
    assert_int_equal(a.read_state(&a, &s), 0);
    assert_false(s.has_key);
    a.close(&a);
    open_ok(f, &tpm, &a, false); /* finished: phase 2 now */
    a.close(&a);
    char *raw = NULL;
    size_t size = 0;
    assert_int_equal(mf_test_read_file(f->state_path, &raw, &size), 0);
    assert_int_equal(size, MF_TPM_STATE_FILE_SIZE);
    assert_int_equal((uint8_t)raw[12], 2);
    assert_memory_equal(raw + 32, auth, sizeof auth);
    free(raw);
    assert_int_not_equal(esys_index(&e, MF_TPM_NV_IDENTITY), ESYS_TR_NONE);
    esys_close(&e);
}

/* The key, the identity and the authorization never cross the TPM's bus in clear after
 * provisioning: everything is recorded with tpm2-tss's pcap TCTI and searched. */
static void test_bus_encryption(void **state)
{
    struct fixture *f = *state;
    struct mf_tpm tpm;
    struct mf_anchor a;
    open_ok(f, &tpm, &a, true);
    a.close(&a);

    char *pcap = mf_test_path(f->dir, "bus.pcap");
    char tcti[MF_SWTPM_TCTI_MAX + 8];
    snprintf(tcti, sizeof tcti, "pcap:%s", f->tcti);
    setenv("TCTI_PCAP_FILE", pcap, 1);
    int rc = mf_tpm_open(&tpm, tcti, f->state_path, false, &a);
    if (rc == MF_EIO && strstr(a.error, "cannot reach")) {
        printf("tpm: the pcap TCTI is not installed: bus encryption not checked (%s)\n", a.error);
        unsetenv("TCTI_PCAP_FILE");
        free(pcap);
        return;
    }
    if (rc != 0)
        fail_msg("open through pcap: %s", a.error);
    uint8_t key[MF_ANCHOR_KEY_SIZE], identity[MF_ANCHOR_IDENTITY_SIZE];
    fill_pattern(key, sizeof key, 41);
    fill_pattern(identity, sizeof identity, 42);
    assert_int_equal(a.write_key(&a, key), 0);
    assert_int_equal(a.write_identity(&a, identity), 0);
    struct mf_anchor_state s;
    assert_int_equal(a.read_state(&a, &s), 0);
    assert_memory_equal(s.key, key, sizeof key);
    uint8_t secret[MF_ANCHOR_IDENTITY_SIZE];
    bool present = false;
    assert_int_equal(a.read_identity(&a, secret, &present), 0);
    assert_memory_equal(secret, identity, sizeof identity);
    uint64_t value;
    assert_int_equal(a.counter_increment(&a, &value), 0);
    a.close(&a);
    unsetenv("TCTI_PCAP_FILE");

    char *bus = NULL, *file = NULL;
    size_t bus_size = 0, file_size = 0;
    assert_int_equal(mf_test_read_file(pcap, &bus, &bus_size), 0);
    assert_int_equal(mf_test_read_file(f->state_path, &file, &file_size), 0);
    const uint8_t handle[4] = {0x01, 0x8f, 0x4d, 0x01}; /* handles travel in clear: the control */
    assert_non_null(memmem(bus, bus_size, handle, sizeof handle));
    assert_null(memmem(bus, bus_size, key, 16));
    assert_null(memmem(bus, bus_size, key + 16, 16));
    assert_null(memmem(bus, bus_size, identity, 16));
    assert_null(memmem(bus, bus_size, identity + 48, 16));
    assert_null(memmem(bus, bus_size, file + 32, 16)); /* the authorization value */
    free(bus);
    free(file);
    free(pcap);
}

static void test_state_file(void **state)
{
    struct fixture *f = *state;
    struct mf_tpm tpm, tpm2;
    struct mf_anchor a, a2;
    open_ok(f, &tpm, &a, true);
    assert_int_equal(mf_tpm_open(&tpm2, f->tcti, f->state_path, false, &a2), MF_EBUSY);
    expect_error(&a2, "in use by another program");
    a.close(&a);

    assert_int_equal(chmod(f->state_path, 0640), 0);
    assert_int_equal(mf_tpm_open(&tpm, f->tcti, f->state_path, false, &a), MF_EACCES);
    expect_error(&a, "chmod 600");
    assert_int_equal(chmod(f->state_path, 0600), 0);

    /* A state file of another provisioning: its authorization is refused. */
    char *raw = NULL;
    size_t size = 0;
    assert_int_equal(mf_test_read_file(f->state_path, &raw, &size), 0);
    raw[40] ^= 1;
    put_u32((uint8_t *)raw + 124, mf_crc32_update(0, raw, 124));
    char *forged = mf_test_path(f->dir, "forged.tpm");
    int fd = open(forged, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, raw, size), (ssize_t)size);
    close(fd);
    assert_int_equal(mf_tpm_open(&tpm, f->tcti, forged, false, &a), MF_EAUTH);
    raw[41] ^= 1; /* and a damaged one */
    fd = open(forged, O_WRONLY | O_TRUNC | O_CLOEXEC);
    assert_int_equal(write(fd, raw, size), (ssize_t)size);
    close(fd);
    assert_int_equal(mf_tpm_open(&tpm, f->tcti, forged, false, &a), MF_ECORRUPT);
    expect_error(&a, "checksum");
    free(forged);
    free(raw);

    /* The state file lost while the indices stay: provisioning refuses to touch them. */
    assert_int_equal(unlink(f->state_path), 0);
    assert_int_equal(mf_tpm_open(&tpm, f->tcti, f->state_path, true, &a), MF_EEXIST);
    expect_error(&a, "tpm2_nvundefine");
    assert_int_equal(access(f->state_path, F_OK), -1);
}

static void test_no_tpm(void **state)
{
    struct fixture *f = *state;
    struct mf_tpm tpm;
    struct mf_anchor a;
    /* A port where nothing listens: the stopped swtpm's. */
    char tcti[MF_SWTPM_TCTI_MAX];
    snprintf(tcti, sizeof tcti, "%s", f->tcti);
    assert_int_equal(mf_swtpm_stop(&f->swtpm), 0);
    assert_int_equal(mf_tpm_open(&tpm, tcti, f->state_path, true, &a), MF_EIO);
    expect_error(&a, "cannot reach a TPM");
    assert_int_equal(access(f->state_path, F_OK), -1); /* nothing was provisioned */

    assert_int_equal(mf_tpm_open(&tpm, "nosuchtcti:x", f->state_path, true, &a), MF_EIO);
    expect_error(&a, "nosuchtcti");
    assert_int_equal(access(f->state_path, F_OK), -1);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    if (!mf_swtpm_available()) {
        printf("tpm: skipped: swtpm is not installed (Debian package swtpm)\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_error_codes),
        cmocka_unit_test_setup_teardown(test_provision_and_round_trips, setup, teardown),
        cmocka_unit_test_setup_teardown(test_counter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redefined_counter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_interrupted_provisioning, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bus_encryption, setup, teardown),
        cmocka_unit_test_setup_teardown(test_state_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_tpm, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

#endif

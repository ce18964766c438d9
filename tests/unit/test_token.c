/* Top-up tokens (mf_token): the byte layout (version 2), every flipped byte and every truncation
 * refused, version 1 refused with what to do, and each decision (apply, replay, stale, another
 * programmer, setup, owner or installation, an unknown project) from the programmer's current
 * values. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "mf_err.h"
#include "mf_owner.h"
#include "mf_token.h"

#include <sodium.h>

struct fixture {
    uint8_t seed[32], owner[32];
    uint8_t other_seed[32], other[32];
    struct mf_token token;
    uint8_t data[MF_TOKEN_SIZE_MAX];
    size_t size;
    char message[MF_TOKEN_MESSAGE_MAX];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    uint8_t sk[64];
    randombytes_buf(f->seed, 32);
    mf_owner_keypair_from_seed(f->seed, f->owner, sk);
    randombytes_buf(f->other_seed, 32);
    mf_owner_keypair_from_seed(f->other_seed, f->other, sk);
    memset(f->token.programmer_id, 0x11, 32);
    memset(f->token.setup_id, 0x22, 32);
    f->token.package_time = 1767222000; /* 2025-12-31T23:00:00Z */
    f->token.limit = 1500;
    f->token.issued = 1767225600;
    strcpy(f->token.project, "Widget");
    assert_int_equal(mf_token_encode(&f->token, f->seed, f->data, sizeof f->data, &f->size), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    free(*state);
    return 0;
}

static void test_layout(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(f->size, 97 + 6 + 32 + 64);
    assert_memory_equal(f->data, "MFTOPUP\2", 8);
    uint8_t x[32];
    memset(x, 0x11, 32);
    assert_memory_equal(f->data + 8, x, 32);
    memset(x, 0x22, 32);
    assert_memory_equal(f->data + 40, x, 32);
    static const uint8_t package[8] = {0xF0, 0xAA, 0x55, 0x69, 0, 0, 0, 0}; /* 0x6955AAF0 */
    assert_memory_equal(f->data + 72, package, 8);
    static const uint8_t limit[8] = {0xDC, 0x05, 0, 0, 0, 0, 0, 0};
    assert_memory_equal(f->data + 80, limit, 8);
    static const uint8_t issued[8] = {0x00, 0xB9, 0x55, 0x69, 0, 0, 0, 0}; /* 0x6955B900 */
    assert_memory_equal(f->data + 88, issued, 8);
    assert_int_equal(f->data[96], 6);
    assert_memory_equal(f->data + 97, "Widget", 6);
    assert_memory_equal(f->data + 103, f->owner, 32);
    /* A plain Ed25519 signature over everything before it. */
    assert_int_equal(crypto_sign_verify_detached(f->data + 135, f->data, 135, f->owner), 0);
    assert_int_equal(MF_TOKEN_SIZE_MIN, 193);
    assert_int_equal(MF_TOKEN_SIZE_MAX, 448);

    struct mf_token t;
    assert_int_equal(mf_token_decode(f->data, f->size, &t, f->message), 0);
    assert_memory_equal(t.programmer_id, f->token.programmer_id, 32);
    assert_memory_equal(t.setup_id, f->token.setup_id, 32);
    assert_int_equal(t.package_time, 1767222000);
    assert_int_equal(t.limit, 1500);
    assert_int_equal(t.issued, 1767225600);
    assert_string_equal(t.project, "Widget");
    assert_memory_equal(t.owner, f->owner, 32);

    /* The root count: no name. */
    struct mf_token root = f->token;
    root.project[0] = '\0';
    uint8_t data[MF_TOKEN_SIZE_MAX];
    size_t size;
    assert_int_equal(mf_token_encode(&root, f->seed, data, sizeof data, &size), 0);
    assert_int_equal(size, MF_TOKEN_SIZE_MIN);
    assert_int_equal(mf_token_decode(data, size, &t, f->message), 0);
    assert_string_equal(t.project, "");
    /* A name of 255 bytes is the longest. */
    memset(root.project, 'n', 255);
    root.project[255] = '\0';
    assert_int_equal(mf_token_encode(&root, f->seed, data, sizeof data, &size), 0);
    assert_int_equal(size, MF_TOKEN_SIZE_MAX);
    assert_int_equal(mf_token_decode(data, size, &t, f->message), 0);
    assert_int_equal(mf_token_encode(&root, f->seed, data, size - 1, &size), MF_EINVAL);
}

static void test_encode_refuses(void **state)
{
    struct fixture *f = *state;
    struct mf_token t = f->token;
    uint8_t data[MF_TOKEN_SIZE_MAX];
    size_t size;
    static const char *const bad[] = {"Projects/Widget", "a\\b", "tab\t", "\xC3"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        strcpy(t.project, bad[i]);
        assert_int_equal(mf_token_encode(&t, f->seed, data, sizeof data, &size), MF_EINVAL);
    }
    memset(t.project, 'x', sizeof t.project); /* no NUL */
    assert_int_equal(mf_token_encode(&t, f->seed, data, sizeof data, &size), MF_EINVAL);
    /* A token names the package of an installation: a programmer installs none without a
     * not-before time. */
    t = f->token;
    t.package_time = 0;
    assert_int_equal(mf_token_encode(&t, f->seed, data, sizeof data, &size), MF_EINVAL);
    t.package_time = -1;
    assert_int_equal(mf_token_encode(&t, f->seed, data, sizeof data, &size), MF_EINVAL);
}

/* Signs `length` bytes in `data` as the owner `seed` would; the signature goes after them. */
static void sign(uint8_t *data, size_t length, const uint8_t seed[32])
{
    uint8_t pk[32], sk[64];
    mf_owner_keypair_from_seed(seed, pk, sk);
    crypto_sign_detached(data + length, NULL, data, length, sk);
}

/* Version 1 (programmer, setup, limit, issued, project, owner, signature: no installation) could
 * raise the limit of any later installation of its setup: refused, however well signed, with what
 * to do instead. */
static void test_version_1_refused(void **state)
{
    struct fixture *f = *state;
    uint8_t data[MF_TOKEN_SIZE_MAX];
    memcpy(data, "MFTOPUP\1", 8);
    memset(data + 8, 0x11, 32);
    memset(data + 40, 0x22, 32);
    memcpy(data + 72, f->data + 80, 16); /* limit, issued */
    data[88] = 6;
    memcpy(data + 89, "Widget", 6);
    memcpy(data + 95, f->owner, 32);
    sign(data, 127, f->seed);
    struct mf_token t;
    assert_int_equal(mf_token_decode(data, 127 + 64, &t, f->message), MF_EVERSION);
    assert_string_equal(f->message,
                        "top-up token of format version 1 (it names no installation): refused; "
                        "make a new one with mintflash topup --package for the installed package");
    /* Whatever its size: the version is read first. */
    assert_int_equal(mf_token_decode(data, 8, &t, f->message), MF_EVERSION);
    assert_non_null(strstr(f->message, "version 1"));
    data[7] = 3;
    assert_int_equal(mf_token_decode(data, 127 + 64, &t, f->message), MF_EVERSION);
    assert_string_equal(f->message,
                        "top-up token of format version 3: this programmer reads version 2");
}

static void test_every_flip_and_cut(void **state)
{
    struct fixture *f = *state;
    struct mf_token t;
    uint8_t data[MF_TOKEN_SIZE_MAX];
    for (size_t at = 0; at < f->size; at++) {
        for (int bit = 0; bit < 8; bit++) {
            memcpy(data, f->data, f->size);
            data[at] ^= (uint8_t)(1u << bit);
            int err = mf_token_decode(data, f->size, &t, f->message);
            if (err == 0 || !f->message[0])
                fail_msg("flip of bit %d at %zu accepted", bit, at);
        }
    }
    for (size_t len = 0; len < f->size; len++) {
        if (mf_token_decode(f->data, len, &t, f->message) == 0)
            fail_msg("truncated to %zu accepted", len);
    }
    /* A flip in the signature at the start says what the file is not, before any key is tried. */
    for (size_t at = 0; at < 7; at++) {
        memcpy(data, f->data, f->size);
        data[at] ^= 0x20;
        assert_int_equal(mf_token_decode(data, f->size, &t, f->message), MF_EFORMAT);
        assert_string_equal(f->message, "not a top-up token (no MFTOPUP signature at its start)");
    }
    memcpy(data, f->data, f->size);
    data[f->size] = 0;
    assert_int_equal(mf_token_decode(data, f->size + 1, &t, f->message), MF_EFORMAT);
    data[7] = 1;
    assert_int_equal(mf_token_decode(data, f->size, &t, f->message), MF_EVERSION);
    data[7] = 2;
    data[110] ^= 1; /* in the owner key: the signature no longer holds */
    assert_int_equal(mf_token_decode(data, f->size, &t, f->message), MF_EAUTH);
    assert_non_null(strstr(f->message, "bad signature"));
    assert_int_equal(mf_token_decode((const uint8_t *)"MFPKG", 5, &t, f->message), MF_EFORMAT);
    assert_non_null(strstr(f->message, "not a top-up token"));

    /* Validly signed by someone, but with a bad name: still refused. */
    memcpy(data, f->data, f->size);
    data[97] = '/';
    sign(data, 135, f->seed);
    assert_int_equal(mf_token_decode(data, f->size, &t, f->message), MF_EFORMAT);
    assert_non_null(strstr(f->message, "project name"));
    /* Or with no package time (0, or negative): no installation has one. */
    static const uint8_t times[][8] = {{0}, {0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}};
    for (size_t i = 0; i < 2; i++) {
        memcpy(data, f->data, f->size);
        memcpy(data + 72, times[i], 8);
        sign(data, 135, f->seed);
        assert_int_equal(mf_token_decode(data, f->size, &t, f->message), MF_EFORMAT);
        assert_non_null(strstr(f->message, "names no package"));
    }
}

/* The programmer's side: one installed setup with projects, owned by `owner`. */
struct current {
    struct mf_token_current c;
    struct mf_token_project projects[3];
};

static void current_init(struct current *k, const struct fixture *f)
{
    memset(k, 0, sizeof *k);
    memset(k->c.programmer_id, 0x11, 32);
    k->c.installed = true;
    memset(k->c.setup_id, 0x22, 32);
    k->c.has_owner = true;
    memcpy(k->c.owner, f->owner, 32);
    k->c.package_time = f->token.package_time;
    k->c.root_limited = true;
    k->c.root_limit = 10000;
    k->projects[0] = (struct mf_token_project){"01_Gadget", true, 100};
    k->projects[1] = (struct mf_token_project){"02_Widget", true, 1000};
    k->projects[2] = (struct mf_token_project){"Projects/03_Thing", false, 0};
    k->c.projects = k->projects;
    k->c.project_count = 3;
}

static enum mf_token_decision decide(struct fixture *f, const struct mf_token *t,
                                     const struct current *k, int *project)
{
    enum mf_token_decision d = mf_token_decide(t, &k->c, project, f->message);
    assert_true(f->message[0] != '\0');
    return d;
}

static void test_decisions(void **state)
{
    struct fixture *f = *state;
    struct mf_token t;
    assert_int_equal(mf_token_decode(f->data, f->size, &t, f->message), 0);
    struct current k;
    int project;
    current_init(&k, f);

    assert_int_equal(decide(f, &t, &k, &project), MF_TOKEN_APPLY);
    assert_int_equal(project, 1);
    assert_non_null(strstr(f->message, "from 1000 to 1500"));
    /* After applying, the same token again is a replay; an older one is stale. */
    k.projects[1].limit = 1500;
    assert_int_equal(decide(f, &t, &k, &project), MF_TOKEN_REPLAY);
    assert_int_equal(project, 1);
    k.projects[1].limit = 2000;
    assert_int_equal(decide(f, &t, &k, &project), MF_TOKEN_STALE);
    assert_non_null(strstr(f->message, "stale"));
    k.projects[1].limit = 1000;

    /* Names: folder or display name, any case. */
    static const char *const names[] = {"widget", "02_WIDGET", "Widget"};
    for (int i = 0; i < 3; i++) {
        strcpy(t.project, names[i]);
        assert_int_equal(decide(f, &t, &k, &project), MF_TOKEN_APPLY);
        assert_int_equal(project, 1);
    }
    strcpy(t.project, "03_thing");
    assert_int_equal(decide(f, &t, &k, &project), MF_TOKEN_APPLY);
    assert_int_equal(project, 2);
    assert_non_null(strstr(f->message, "no count"));
    /* Beyond ASCII, any case, as #SELECT and the FAT match names (docs/owner-tools.md: "any
     * case"); of two projects with one display name, the first, as #SELECT picks it. */
    struct current u = k;
    u.c.projects = u.projects;
    u.projects[0].folder = "01_Café";
    u.projects[2] = (struct mf_token_project){"03_Widget", true, 5};
    static const struct {
        const char *name;
        int project;
    } wanted[] = {{"café", 0}, {"CAFÉ", 0}, {"01_CAFÉ", 0}, {"WIDGET", 1}, {"03_widget", 2}};
    for (size_t i = 0; i < sizeof wanted / sizeof wanted[0]; i++) {
        strcpy(t.project, wanted[i].name);
        if (decide(f, &t, &u, &project) != MF_TOKEN_APPLY || project != wanted[i].project)
            fail_msg("'%s': %s (project %d)", wanted[i].name, f->message, project);
    }
    assert_string_equal(f->message, "top-up for 03_Widget: the limit goes from 5 to 1500");
    strcpy(t.project, "Cafe");
    assert_int_equal(decide(f, &t, &u, &project), MF_TOKEN_UNKNOWN_PROJECT);
    strcpy(t.project, "Widge");
    assert_int_equal(decide(f, &t, &k, &project), MF_TOKEN_UNKNOWN_PROJECT);
    assert_int_equal(project, -1);
    assert_non_null(strstr(f->message, "'Widge'"));
    strcpy(t.project, "02_");
    assert_int_equal(decide(f, &t, &k, &project), MF_TOKEN_UNKNOWN_PROJECT);

    /* The root count. */
    t.project[0] = '\0';
    t.limit = 10000;
    assert_int_equal(decide(f, &t, &k, &project), MF_TOKEN_REPLAY);
    assert_int_equal(project, -1);
    t.limit = 9999;
    assert_int_equal(decide(f, &t, &k, &project), MF_TOKEN_STALE);
    t.limit = 10001;
    assert_int_equal(decide(f, &t, &k, &project), MF_TOKEN_APPLY);
    assert_int_equal(project, -1);
    k.c.root_limited = false;
    t.limit = 0;
    assert_int_equal(decide(f, &t, &k, &project), MF_TOKEN_APPLY);
    k.c.root_limited = true;
    strcpy(t.project, "Widget");
    t.limit = 1500;

    /* Not ours to apply. */
    struct current w = k;
    w.c.programmer_id[31] ^= 1;
    assert_int_equal(decide(f, &t, &w, &project), MF_TOKEN_WRONG_PROGRAMMER);
    assert_non_null(strstr(f->message, "programmer"));
    w = k;
    w.c.setup_id[0] ^= 1;
    assert_int_equal(decide(f, &t, &w, &project), MF_TOKEN_WRONG_SETUP);
    assert_non_null(strstr(f->message, "2222222222222222"));
    w = k;
    w.c.installed = false;
    assert_int_equal(decide(f, &t, &w, &project), MF_TOKEN_WRONG_SETUP);
    assert_non_null(strstr(f->message, "no setup is installed"));
    w = k;
    memcpy(w.c.owner, f->other, 32);
    assert_int_equal(decide(f, &t, &w, &project), MF_TOKEN_WRONG_OWNER);
    struct mf_owner_key theirs;
    mf_owner_key_from_public(f->other, &theirs);
    assert_non_null(strstr(f->message, theirs.fingerprint));
    w = k;
    w.c.has_owner = false;
    w.c.package_time = 0; /* a plain setup has no package */
    assert_int_equal(decide(f, &t, &w, &project), MF_TOKEN_WRONG_OWNER);
    assert_non_null(strstr(f->message, "plain _SECURE"));

    /* The same setup installed from a later package (or an earlier one): another installation,
     * whose counts only a token made for it may raise, even where this one would raise them. */
    w = k;
    w.c.package_time = f->token.package_time + 1;
    w.projects[1].limit = 5;
    w.c.projects = w.projects;
    assert_int_equal(decide(f, &t, &w, &project), MF_TOKEN_WRONG_INSTALLATION);
    assert_int_equal(project, -1);
    assert_string_equal(f->message,
                        "top-up token for the installation of setup 2222222222222222... from the "
                        "package of 2025-12-31T23:00:00Z, but the package installed is of "
                        "2025-12-31T23:00:01Z: a token tops up one installation only; make one "
                        "for it (mintflash topup --package)");
    w.c.package_time = f->token.package_time - 3600;
    assert_int_equal(decide(f, &t, &w, &project), MF_TOKEN_WRONG_INSTALLATION);
    assert_non_null(strstr(f->message, "installed is of 2025-12-31T22:00:00Z"));
    /* A replay or a stale limit there is still another installation's token. */
    w.projects[1].limit = 1500;
    assert_int_equal(decide(f, &t, &w, &project), MF_TOKEN_WRONG_INSTALLATION);
    w.projects[1].limit = 2000;
    assert_int_equal(decide(f, &t, &w, &project), MF_TOKEN_WRONG_INSTALLATION);
    /* ... and so is a token for a project it does not have. */
    struct mf_token nowhere = t;
    strcpy(nowhere.project, "Nowhere");
    assert_int_equal(decide(f, &nowhere, &w, &project), MF_TOKEN_WRONG_INSTALLATION);
    /* Made for that installation, it applies. */
    struct mf_token later = f->token;
    later.package_time = w.c.package_time;
    uint8_t later_data[MF_TOKEN_SIZE_MAX];
    size_t later_size;
    assert_int_equal(mf_token_encode(&later, f->seed, later_data, sizeof later_data, &later_size),
                     0);
    assert_int_equal(mf_token_decode(later_data, later_size, &later, f->message), 0);
    w.projects[1].limit = 5;
    assert_int_equal(decide(f, &later, &w, &project), MF_TOKEN_APPLY);
    assert_int_equal(project, 1);
    assert_string_equal(f->message, "top-up for 02_Widget: the limit goes from 5 to 1500");

    /* A token signed by another owner for our programmer and setup. */
    struct mf_token forged = f->token;
    uint8_t data[MF_TOKEN_SIZE_MAX];
    size_t size;
    assert_int_equal(mf_token_encode(&forged, f->other_seed, data, sizeof data, &size), 0);
    assert_int_equal(mf_token_decode(data, size, &forged, f->message), 0);
    assert_int_equal(decide(f, &forged, &k, &project), MF_TOKEN_WRONG_OWNER);

    /* The order of the checks: the programmer first. */
    w = k;
    w.c.programmer_id[0] ^= 1;
    w.c.setup_id[0] ^= 1;
    w.c.has_owner = false;
    assert_int_equal(decide(f, &t, &w, &project), MF_TOKEN_WRONG_PROGRAMMER);
    /* The owner before the installation (another owner's package is another installation too),
     * the installation before the project. */
    w = k;
    memcpy(w.c.owner, f->other, 32);
    w.c.package_time++;
    assert_int_equal(decide(f, &t, &w, &project), MF_TOKEN_WRONG_OWNER);
    w = k;
    w.c.package_time++;
    w.c.project_count = 0;
    assert_int_equal(decide(f, &t, &w, &project), MF_TOKEN_WRONG_INSTALLATION);

    assert_string_equal(mf_token_decision_name(MF_TOKEN_APPLY), "apply");
    assert_string_equal(mf_token_decision_name(MF_TOKEN_WRONG_INSTALLATION), "wrong-installation");
    assert_string_equal(mf_token_decision_name(MF_TOKEN_UNKNOWN_PROJECT), "unknown-project");
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_layout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_encode_refuses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_version_1_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_every_flip_and_cut, setup, teardown),
        cmocka_unit_test_setup_teardown(test_decisions, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

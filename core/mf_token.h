/* Top-up tokens (.mft, version 2): the owner's signed word that one project of one installation
 * on one programmer may make N devices in total. An installation is named by its setup id and its
 * package's not-before time (each package a programmer installs has a later one than the last), so
 * a token never raises the limit of a later installation of the same setup. The limit is
 * absolute, so a replayed token adds nothing and an older (lower) one is refused. The decision is
 * a pure function of the token and the programmer's current values, so the daemon only supplies
 * them and applies the result. Layout in docs/internals/owner.md. */
#ifndef MF_TOKEN_H
#define MF_TOKEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MF_TOKEN_NAME_MAX    255u              /* bytes of the project name */
#define MF_TOKEN_SIZE_MIN    (97u + 32u + 64u) /* without a project name */
#define MF_TOKEN_SIZE_MAX    (MF_TOKEN_SIZE_MIN + MF_TOKEN_NAME_MAX)
#define MF_TOKEN_MESSAGE_MAX 256u

struct mf_token {
    uint8_t programmer_id[32]; /* mf_owner_programmer.id of the programmer it is for */
    uint8_t setup_id[32];
    int64_t package_time; /* the not-before time (unix seconds, > 0) of the package whose
                             installation it tops up */
    uint64_t limit;       /* the project's new total limit */
    int64_t issued;       /* unix seconds; informative */
    char project[MF_TOKEN_NAME_MAX + 1]; /* folder or display name; "" = the root Cntdown.txt */
    uint8_t owner[32]; /* the owner's Ed25519 public key (set by encode, checked by decode) */
};

/* Signs `token` with the owner's Ed25519 seed (token->owner is ignored: the key comes from the
 * seed) and writes it into `out` (MF_TOKEN_SIZE_MAX bytes are always enough); *length gets its
 * size. MF_EINVAL for a project name that is too long, has a '/', control characters or bad
 * UTF-8, a package_time not above 0, or a too small `out`. */
int mf_token_encode(const struct mf_token *token, const uint8_t owner_seed[32], uint8_t *out,
                    size_t size, size_t *length);

/* Decodes `size` bytes of hostile input and checks the signature against the owner key the token
 * carries (whether that owner may top up is mf_token_decide's question). MF_EFORMAT (not a token,
 * wrong size, a bad project name, no package time), MF_EVERSION (version 1, which named no
 * installation, or another version: the message says to make a new token), MF_EAUTH (bad
 * signature), with `message` (MF_TOKEN_MESSAGE_MAX). */
int mf_token_decode(const uint8_t *data, size_t size, struct mf_token *token, char *message);

/* A project of the installed setup as the decision needs it. */
struct mf_token_project {
    const char *folder; /* "01_Widget": matches "01_Widget" and "Widget", ignoring case */
    bool limited;       /* it has a count */
    uint64_t limit;     /* its current total limit */
};

/* The programmer's current values. */
struct mf_token_current {
    uint8_t programmer_id[32];
    bool installed; /* a setup is installed */
    uint8_t setup_id[32];
    bool has_owner; /* it came from a signed package (a plain _SECURE setup has no owner) */
    uint8_t owner[32];
    int64_t package_time; /* that package's not-before time (mf_secure.package_mark) */
    bool root_limited;    /* the root Cntdown.txt */
    uint64_t root_limit;
    const struct mf_token_project *projects;
    unsigned project_count;
};

enum mf_token_decision {
    MF_TOKEN_APPLY,              /* set the limit to token->limit */
    MF_TOKEN_REPLAY,             /* the limit is already that: nothing to do */
    MF_TOKEN_STALE,              /* lower than the current limit: refused */
    MF_TOKEN_WRONG_PROGRAMMER,   /* made for another programmer */
    MF_TOKEN_WRONG_SETUP,        /* for another setup (or none is installed) */
    MF_TOKEN_WRONG_OWNER,        /* not signed by the installed setup's owner, or it has none */
    MF_TOKEN_WRONG_INSTALLATION, /* for another installation of this setup (another package) */
    MF_TOKEN_UNKNOWN_PROJECT,    /* no such project in the installed setup */
};

/* Decides what a decoded token does here. `project` gets the project's index, or -1 for the
 * root count (meaningful for APPLY, REPLAY and STALE). `message` (MF_TOKEN_MESSAGE_MAX) gets a
 * sentence for the log and the protocol. A count that does not exist yet (no Cntdown.txt) is
 * created by APPLY: the owner's signed limit is what counts from then on. Checks in this
 * order: programmer, setup, owner, installation (the package's not-before time), project,
 * limit. */
enum mf_token_decision mf_token_decide(const struct mf_token *token,
                                       const struct mf_token_current *current, int *project,
                                       char *message);

/* "apply", "replay", "stale", "wrong-programmer", "wrong-setup", "wrong-owner",
 * "wrong-installation", "unknown-project". */
const char *mf_token_decision_name(enum mf_token_decision decision);

#endif

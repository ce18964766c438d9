/* Top-up tokens: encoding, checking and the decision (see mf_token.h). */
#include "mf_token.h"
#include "mf_le.h"

#include "mf_err.h"
#include "mf_fat.h"
#include "mf_owner.h"
#include "mf_setup.h"

#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define TOKEN_VERSION 2u

static const uint8_t magic[8] = {'M', 'F', 'T', 'O', 'P', 'U', 'P', TOKEN_VERSION};

static void say(char *message, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void say(char *message, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, MF_TOKEN_MESSAGE_MAX, fmt, ap);
    va_end(ap);
}

static bool name_ok(const char *name, size_t n)
{
    return n <= MF_TOKEN_NAME_MAX && !memchr(name, '/', n) && !memchr(name, '\\', n) &&
           mf_owner_text_ok(name, n);
}

int mf_token_encode(const struct mf_token *token, const uint8_t owner_seed[32], uint8_t *out,
                    size_t size, size_t *length)
{
    const char *nul = memchr(token->project, '\0', sizeof token->project);
    if (!nul)
        return MF_EINVAL;
    size_t n = (size_t)(nul - token->project);
    if (!name_ok(token->project, n))
        return MF_EINVAL;
    size_t body = 97 + n + 32;
    if (token->package_time <= 0 || size < body + 64)
        return MF_EINVAL;
    uint8_t pk[32], sk[64];
    mf_owner_keypair_from_seed(owner_seed, pk, sk);
    memcpy(out, magic, 8);
    memcpy(out + 8, token->programmer_id, 32);
    memcpy(out + 40, token->setup_id, 32);
    mf_put_le64(out + 72, (uint64_t)token->package_time);
    mf_put_le64(out + 80, token->limit);
    mf_put_le64(out + 88, (uint64_t)token->issued);
    out[96] = (uint8_t)n;
    memcpy(out + 97, token->project, n);
    memcpy(out + 97 + n, pk, 32);
    crypto_sign_detached(out + body, NULL, out, body, sk);
    sodium_memzero(sk, sizeof sk);
    *length = body + 64;
    return 0;
}

int mf_token_decode(const uint8_t *data, size_t size, struct mf_token *token, char *message)
{
    memset(token, 0, sizeof *token);
    message[0] = '\0';
    if (size < 8 || memcmp(data, magic, 7) != 0) {
        say(message, "not a top-up token (no MFTOPUP signature at its start)");
        return MF_EFORMAT;
    }
    if (data[7] == 1) {
        /* Version 1 named the setup but not its installation: it could raise the limit of any
         * later installation of the same setup. */
        say(message, "top-up token of format version 1 (it names no installation): refused; make "
                     "a new one with mintflash topup --package for the installed package");
        return MF_EVERSION;
    }
    if (data[7] != TOKEN_VERSION) {
        say(message, "top-up token of format version %u: this programmer reads version %u", data[7],
            TOKEN_VERSION);
        return MF_EVERSION;
    }
    if (size < MF_TOKEN_SIZE_MIN || size != MF_TOKEN_SIZE_MIN + data[96]) {
        say(message, "top-up token of %zu bytes: truncated or damaged", size);
        return MF_EFORMAT;
    }
    size_t n = data[96];
    if (!name_ok((const char *)data + 97, n)) {
        say(message, "top-up token: the project name is not valid");
        return MF_EFORMAT;
    }
    int64_t package_time = (int64_t)mf_le64(data + 72);
    if (package_time <= 0) {
        say(message, "top-up token: it names no package (not-before time %lld)",
            (long long)package_time);
        return MF_EFORMAT;
    }
    memcpy(token->programmer_id, data + 8, 32);
    memcpy(token->setup_id, data + 40, 32);
    token->package_time = package_time;
    token->limit = mf_le64(data + 80);
    token->issued = (int64_t)mf_le64(data + 88);
    memcpy(token->project, data + 97, n);
    token->project[n] = '\0';
    memcpy(token->owner, data + 97 + n, 32);
    if (crypto_sign_verify_detached(data + 97 + n + 32, data, 97 + n + 32, token->owner) != 0) {
        say(message, "top-up token: bad signature (altered, or not made by the owner it names)");
        return MF_EAUTH;
    }
    return 0;
}

/* As #SELECT finds a project (mf_setup_find): the folder's name or its display name, matched as
 * the FAT matches names (without regard to case, beyond ASCII too). */
static bool project_matches(const char *wanted, const char *folder)
{
    const char *slash = strrchr(folder, '/'); /* "Projects/01_Widget" works as well */
    if (slash)
        folder = slash + 1;
    return mf_fat_names_match(wanted, folder) ||
           mf_fat_names_match(wanted, mf_setup_display_name(folder));
}

enum mf_token_decision mf_token_decide(const struct mf_token *t, const struct mf_token_current *c,
                                       int *project, char *message)
{
    *project = -1;
    message[0] = '\0';
    if (memcmp(t->programmer_id, c->programmer_id, 32) != 0) {
        char theirs[MF_OWNER_FINGERPRINT_SIZE], ours[MF_OWNER_FINGERPRINT_SIZE];
        mf_owner_fingerprint(t->programmer_id, theirs);
        mf_owner_fingerprint(c->programmer_id, ours);
        say(message, "top-up token for programmer %s, but this is programmer %s", theirs, ours);
        return MF_TOKEN_WRONG_PROGRAMMER;
    }
    char want[65], have[65];
    mf_owner_hex_encode(t->setup_id, 32, want);
    if (!c->installed) {
        say(message, "top-up token for setup %.16s...: no setup is installed", want);
        return MF_TOKEN_WRONG_SETUP;
    }
    mf_owner_hex_encode(c->setup_id, 32, have);
    if (memcmp(t->setup_id, c->setup_id, 32) != 0) {
        say(message, "top-up token for setup %.16s..., but the installed setup is %.16s...", want,
            have);
        return MF_TOKEN_WRONG_SETUP;
    }
    struct mf_owner_key theirs, ours;
    mf_owner_key_from_public(t->owner, &theirs);
    if (!c->has_owner) {
        say(message,
            "top-up token signed by owner %s, but the installed setup came from a plain "
            "_SECURE folder: it has no owner who could top it up",
            theirs.fingerprint);
        return MF_TOKEN_WRONG_OWNER;
    }
    if (memcmp(t->owner, c->owner, 32) != 0) {
        mf_owner_key_from_public(c->owner, &ours);
        say(message, "top-up token signed by owner %s, but the installed setup's owner is %s",
            theirs.fingerprint, ours.fingerprint);
        return MF_TOKEN_WRONG_OWNER;
    }
    if (t->package_time != c->package_time) {
        /* The same setup, installed from another package: a later installation starts from its
         * own counts, which only a token made for it may raise. */
        char made[MF_OWNER_TIME_SIZE], installed[MF_OWNER_TIME_SIZE];
        mf_owner_time_format(t->package_time, made);
        mf_owner_time_format(c->package_time, installed);
        say(message,
            "top-up token for the installation of setup %.16s... from the package of %s, but the "
            "package installed is of %s: a token tops up one installation only; make one for it "
            "(mintflash topup --package)",
            want, made, installed);
        return MF_TOKEN_WRONG_INSTALLATION;
    }
    bool limited = c->root_limited;
    uint64_t limit = c->root_limit;
    const char *what = "the root count";
    if (t->project[0]) {
        for (unsigned i = 0; i < c->project_count && *project < 0; i++) {
            if (project_matches(t->project, c->projects[i].folder))
                *project = (int)i;
        }
        if (*project < 0) {
            say(message, "top-up token for project '%s': no such project in the installed setup",
                t->project);
            return MF_TOKEN_UNKNOWN_PROJECT;
        }
        limited = c->projects[*project].limited;
        limit = c->projects[*project].limit;
        what = c->projects[*project].folder;
    }
    unsigned long long next = (unsigned long long)t->limit, now = (unsigned long long)limit;
    if (limited && t->limit == limit) {
        say(message, "top-up token for %.200s: the limit is %llu already (a replay): nothing to do",
            what, now);
        return MF_TOKEN_REPLAY;
    }
    if (limited && t->limit < limit) {
        say(message,
            "top-up token for %.200s: limit %llu is below the current limit %llu: refused as "
            "stale",
            what, next, now);
        return MF_TOKEN_STALE;
    }
    if (limited)
        say(message, "top-up for %.200s: the limit goes from %llu to %llu", what, now, next);
    else
        say(message, "top-up for %.200s: it had no count; the limit is now %llu", what, next);
    return MF_TOKEN_APPLY;
}

const char *mf_token_decision_name(enum mf_token_decision d)
{
    switch (d) {
    case MF_TOKEN_APPLY:
        return "apply";
    case MF_TOKEN_REPLAY:
        return "replay";
    case MF_TOKEN_STALE:
        return "stale";
    case MF_TOKEN_WRONG_PROGRAMMER:
        return "wrong-programmer";
    case MF_TOKEN_WRONG_SETUP:
        return "wrong-setup";
    case MF_TOKEN_WRONG_OWNER:
        return "wrong-owner";
    case MF_TOKEN_WRONG_INSTALLATION:
        return "wrong-installation";
    case MF_TOKEN_UNKNOWN_PROJECT:
        return "unknown-project";
    }
    return "unknown";
}

/* Fuzz target: the owner-side inputs that are not packages or records: top-up tokens (decode,
 * then the decision against fixed current values) and the three key files (PROGRAMMER.pub,
 * OWNER.pub, OWNER.key). Every input goes to every parser. Properties: what decodes re-encodes
 * to a token that decodes to the same fields; a token never applies to another installation (its
 * package's not-before time one off); a parsed key file formats to text that parses to the same
 * keys. */
#include "mf_err.h"
#include "mf_owner.h"
#include "mf_token.h"

#include <sodium.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void token(const uint8_t *data, size_t size)
{
    struct mf_token t;
    char message[MF_TOKEN_MESSAGE_MAX];
    if (mf_token_decode(data, size, &t, message) != 0) {
        if (!message[0])
            abort();
        return;
    }
    static const struct mf_token_project projects[] = {
        {"01_Widget", true, 100}, {"02_Gadget", false, 0}, {"Projects/03_x", true, 5}};
    struct mf_token_current c;
    memset(&c, 0, sizeof c);
    memcpy(c.programmer_id, t.programmer_id, 32);
    c.installed = true;
    memcpy(c.setup_id, t.setup_id, 32);
    c.has_owner = true;
    memcpy(c.owner, t.owner, 32);
    c.package_time = t.package_time;
    c.root_limited = true;
    c.root_limit = 1000;
    c.projects = projects;
    c.project_count = 3;
    int project;
    enum mf_token_decision d = mf_token_decide(&t, &c, &project, message);
    if (!message[0] || project < -1 || project > 2 ||
        (d == MF_TOKEN_APPLY && t.project[0] && project < 0))
        abort();
    c.package_time = t.package_time == INT64_MAX ? t.package_time - 1 : t.package_time + 1;
    if (mf_token_decide(&t, &c, &project, message) != MF_TOKEN_WRONG_INSTALLATION ||
        project != -1 || !message[0])
        abort();
    /* Re-encoded with some key, it decodes to the same fields. */
    uint8_t seed[32] = {1}, out[MF_TOKEN_SIZE_MAX];
    size_t n;
    struct mf_token back;
    if (mf_token_encode(&t, seed, out, sizeof out, &n) != 0 ||
        mf_token_decode(out, n, &back, message) != 0 || back.limit != t.limit ||
        back.package_time != t.package_time || back.issued != t.issued ||
        strcmp(back.project, t.project) != 0 || memcmp(back.setup_id, t.setup_id, 32) != 0)
        abort();
}

static void key_files(const char *text, size_t size)
{
    char message[MF_OWNER_MESSAGE_MAX], out[MF_OWNER_FILE_MAX];
    struct mf_owner_programmer p, p2;
    if (mf_owner_parse_programmer(text, size, &p, message) == 0) {
        if (mf_owner_format_programmer(&p, out, sizeof out) != 0 ||
            mf_owner_parse_programmer(out, strlen(out), &p2, message) != 0 ||
            memcmp(p.id, p2.id, 32) != 0)
            abort();
    } else if (!message[0]) {
        abort();
    }
    struct mf_owner_key k, k2;
    if (mf_owner_parse_public(text, size, &k, message) == 0) {
        if (mf_owner_format_public(&k, out, sizeof out) != 0 ||
            mf_owner_parse_public(out, strlen(out), &k2, message) != 0 ||
            memcmp(k.ed25519, k2.ed25519, 32) != 0)
            abort();
    }
    uint8_t seed[32], seed2[32];
    if (mf_owner_parse_secret(text, size, seed, message) == 0) {
        if (mf_owner_format_secret(seed, out, sizeof out) != 0 ||
            mf_owner_parse_secret(out, strlen(out), seed2, message) != 0 ||
            memcmp(seed, seed2, 32) != 0)
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (sodium_init() < 0)
        abort();
    token(data, size);
    key_files((const char *)data, size);
    int64_t t;
    mf_owner_time_parse((const char *)data, size < 20 ? size : 20, true, &t);
    return 0;
}

/* Fuzz target: production records on hostile text. The input is split into lines, each parsed
 * alone and all fed to one verifier (for the programmer with identity secret 00 01 .. 3f, as the
 * unit tests); the first line also as a head statement. Properties: a line that parses formats back
 * (signed anew) to a line that parses to the same fields; the verifier's counters add up; a
 * verdict of intact leaves no count unaccounted and no record missing. */
#include "mf_err.h"
#include "mf_owner.h"
#include "mf_record.h"

#include <sodium.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct mf_owner_identity id;

static bool same(const struct mf_record *a, const struct mf_record *b)
{
    return a->seq == b->seq && memcmp(a->prev, b->prev, 32) == 0 && a->time == b->time &&
           strcmp(a->programmer, b->programmer) == 0 && memcmp(a->setup, b->setup, 32) == 0 &&
           strcmp(a->project, b->project) == 0 && a->slot == b->slot &&
           a->uid_length == b->uid_length && memcmp(a->uid, b->uid, a->uid_length) == 0 &&
           a->has_serial == b->has_serial && a->serial == b->serial && a->result == b->result &&
           a->counter == b->counter && strcmp(a->note, b->note) == 0 &&
           a->gap_first == b->gap_first && a->gap_last == b->gap_last;
}

static void round_trip(const char *line, size_t length)
{
    struct mf_record r, back;
    size_t body;
    char message[MF_RECORD_MESSAGE_MAX], out[MF_RECORD_LINE_MAX + 1];
    if (mf_record_parse(line, length, &r, &body, message) != 0) {
        if (!message[0])
            abort();
        return;
    }
    if (body >= length)
        abort();
    size_t n;
    uint8_t hash[32];
    if (mf_record_format(&r, id.ed25519_secret, out, sizeof out, &n, hash) != 0 ||
        mf_record_parse(out, n, &back, &body, message) != 0 || !same(&r, &back) ||
        !mf_record_signature_ok(out, body, back.signature, id.pub.ed25519))
        abort();
}

static void head_round_trip(const char *line, size_t length)
{
    struct mf_record_head h, back;
    size_t body;
    char message[MF_RECORD_MESSAGE_MAX], out[MF_RECORD_LINE_MAX + 1];
    if (mf_record_head_parse(line, length, &h, &body, message) != 0) {
        if (!message[0])
            abort();
        return;
    }
    size_t n;
    if (mf_record_head_format(&h, id.ed25519_secret, out, sizeof out, &n) != 0 ||
        mf_record_head_parse(out, n, &back, &body, message) != 0 ||
        memcmp(h.nonce, back.nonce, sizeof h.nonce) != 0 || h.time != back.time ||
        strcmp(h.programmer, back.programmer) != 0 || memcmp(h.setup, back.setup, 32) != 0 ||
        h.seq != back.seq || memcmp(h.hash, back.hash, 32) != 0 || h.counter != back.counter ||
        h.pending != back.pending ||
        !mf_record_signature_ok(out, body, back.signature, id.pub.ed25519))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool ready;
    if (!ready) {
        if (sodium_init() < 0)
            abort();
        uint8_t secret[64];
        for (int i = 0; i < 64; i++)
            secret[i] = (uint8_t)i;
        mf_owner_identity_derive(secret, &id);
        ready = true;
    }
    struct mf_record_verifier v;
    mf_record_verifier_init(&v, &id.pub, NULL, NULL);
    const char *text = (const char *)data;
    uint64_t lines = 0;
    for (size_t pos = 0; pos < size;) {
        const char *nl = memchr(text + pos, '\n', size - pos);
        size_t n = nl ? (size_t)(nl - (text + pos)) + 1 : size - pos;
        round_trip(text + pos, n);
        if (mf_record_verifier_line(&v, "fuzz", ++lines, text + pos, n) == MF_EFBIG)
            break;
        pos += n;
    }
    if (v.lines != lines || v.records + v.malformed + v.torn_lines > v.lines ||
        v.verified > v.records || v.verified + v.bad_signatures + v.foreign != v.records)
        abort();
    /* The input's first line as a head statement, too: it parses and formats back, or it is
     * refused with a message; the end's accounting holds either way. */
    size_t first = size;
    const char *nl = memchr(text, '\n', size);
    if (nl)
        first = (size_t)(nl - text) + 1;
    head_round_trip(text, first);
    mf_record_verifier_head(&v, "fuzz.head", 1, text, first, NULL);
    mf_record_verifier_end(&v);
    /* Every line is a record, or reported: malformed, or a torn line between two that chain
     * (held back until the next record shows which, all reported by the end). */
    if (v.records + v.malformed + v.torn_lines != v.lines ||
        v.torn_lines > (uint64_t)MF_RECORD_TORN_MAX * v.verified)
        abort();
    if (v.has_head && strcmp(v.head.programmer, id.pub.fingerprint) != 0)
        abort();
    if (mf_record_verifier_intact(&v) && (v.unaccounted || v.missing_after))
        abort();
    mf_record_verifier_free(&v);
    return 0;
}

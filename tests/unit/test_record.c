/* Production records (mf_record): a line against a known answer (its signature made with
 * Python's `cryptography` 38 from the identity secret 00 01 .. 3f), the parser on hostile text,
 * and the verifier on every kind of tampering: an edited line, a deleted record in the middle, the
 * newest records deleted (invisible until the programmer's gap record, which is reported), records
 * reordered or repeated, records forged with another key or of another programmer. */
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
#include "mf_record.h"

#include <sodium.h>

static const char known_line[] =
    "MFR1 seq=1 prev=0000000000000000000000000000000000000000000000000000000000000000 "
    "time=2026-01-01T00:00:00Z programmer=210C-AB05-A738-5EF0-447C "
    "setup=2222222222222222222222222222222222222222222222222222222222222222 "
    "project=01%20Widget%20%25 slot=2 uid=0102030405060708090a0b0c serial=1000 result=OK "
    "counter=7 sig=HRmpJ3oF6yb0ys+CfVe789yfm8aq4JfeXdSGCfBLadMtF7xJ7gPSjLOq9EIYJOurUwc0n6LiYOlD+"
    "MWmc65HBg==\n";
static const char known_hash[] = "217260d951db22622deabbc6e4c420a9a5caa9f6c2ea587215ca860274404f9b";

struct fixture {
    struct mf_owner_identity id, other;
    char message[MF_RECORD_MESSAGE_MAX];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof *f);
    uint8_t secret[64];
    for (int i = 0; i < 64; i++)
        secret[i] = (uint8_t)i;
    mf_owner_identity_derive(secret, &f->id);
    randombytes_buf(secret, sizeof secret);
    mf_owner_identity_derive(secret, &f->other);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    free(*state);
    return 0;
}

static struct mf_record base_record(const struct mf_owner_identity *id)
{
    struct mf_record r;
    memset(&r, 0, sizeof r);
    r.seq = 1;
    r.time = 1767225600;
    strcpy(r.programmer, id->pub.fingerprint);
    memset(r.setup, 0x22, 32);
    strcpy(r.project, "01 Widget %");
    r.slot = 2;
    for (int i = 0; i < 12; i++)
        r.uid[i] = (uint8_t)(i + 1);
    r.uid_length = 12;
    r.has_serial = true;
    r.serial = 1000;
    r.result = MF_RECORD_OK;
    r.counter = 7;
    return r;
}

static void test_known_line(void **state)
{
    struct fixture *f = *state;
    struct mf_record r = base_record(&f->id);
    char line[MF_RECORD_LINE_MAX + 1];
    size_t length;
    uint8_t hash[32];
    assert_int_equal(mf_record_format(&r, f->id.ed25519_secret, line, sizeof line, &length, hash),
                     0);
    assert_string_equal(line, known_line);
    assert_int_equal(length, strlen(known_line));
    char hex[65];
    mf_owner_hex_encode(hash, 32, hex);
    assert_string_equal(hex, known_hash);

    struct mf_record back;
    size_t body;
    assert_int_equal(mf_record_parse(line, length, &back, &body, f->message), 0);
    assert_int_equal(body, strstr(line, " sig=") - line);
    assert_int_equal(back.seq, 1);
    assert_int_equal(back.time, 1767225600);
    assert_string_equal(back.programmer, "210C-AB05-A738-5EF0-447C");
    assert_memory_equal(back.setup, r.setup, 32);
    assert_string_equal(back.project, "01 Widget %");
    assert_int_equal(back.slot, 2);
    assert_int_equal(back.uid_length, 12);
    assert_memory_equal(back.uid, r.uid, 12);
    assert_true(back.has_serial);
    assert_int_equal(back.serial, 1000);
    assert_int_equal(back.result, MF_RECORD_OK);
    assert_int_equal(back.counter, 7);
    assert_string_equal(back.note, "");
    assert_true(mf_record_signature_ok(line, body, back.signature, f->id.pub.ed25519));
    assert_false(mf_record_signature_ok(line, body, back.signature, f->other.pub.ed25519));
    /* CRLF, and no line end at all. */
    char crlf[MF_RECORD_LINE_MAX + 2];
    memcpy(crlf, line, length - 1);
    memcpy(crlf + length - 1, "\r\n", 2);
    assert_int_equal(mf_record_parse(crlf, length + 1, &back, &body, f->message), 0);
    assert_int_equal(mf_record_parse(line, length - 1, &back, &body, f->message), 0);
}

static void test_fields_round_trip(void **state)
{
    struct fixture *f = *state;
    static const char *const names[] = {
        "", "-", "--", "a b", "%", "%20", "tab\there", "x\x7Fy", "Gr\xC3\xBC\xC3\x9F", "new\nline"};
    char line[MF_RECORD_LINE_MAX + 1];
    size_t length, body;
    uint8_t hash[32];
    struct mf_record back;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        struct mf_record r = base_record(&f->id);
        strcpy(r.project, names[i]);
        strcpy(r.note, names[i]);
        r.uid_length = 0;
        r.has_serial = false;
        r.result = MF_RECORD_ERR;
        r.seq = UINT64_MAX;
        r.counter = UINT64_MAX;
        r.slot = UINT32_MAX;
        assert_int_equal(
            mf_record_format(&r, f->id.ed25519_secret, line, sizeof line, &length, hash), 0);
        assert_null(memchr(line, '\n', length - 1));
        assert_int_equal(mf_record_parse(line, length, &back, &body, f->message), 0);
        assert_string_equal(back.project, names[i]);
        assert_string_equal(back.note, names[i]);
        assert_int_equal(back.uid_length, 0);
        assert_false(back.has_serial);
        assert_int_equal(back.result, MF_RECORD_ERR);
        assert_int_equal(back.seq, UINT64_MAX);
        assert_int_equal(back.counter, UINT64_MAX);
        assert_int_equal(back.slot, UINT32_MAX);
        assert_true(mf_record_signature_ok(line, body, back.signature, f->id.pub.ed25519));
    }
    assert_non_null(strstr(line, " project=new%0Aline "));

    /* A gap record writes its note itself. */
    struct mf_record g = base_record(&f->id);
    g.result = MF_RECORD_GAP;
    g.gap_first = 5;
    g.gap_last = 9;
    strcpy(g.note, "ignored");
    assert_int_equal(mf_record_format(&g, f->id.ed25519_secret, line, sizeof line, &length, hash),
                     0);
    assert_non_null(strstr(line, " result=GAP counter=7 note=gap:5-9 sig="));
    assert_int_equal(mf_record_parse(line, length, &back, &body, f->message), 0);
    assert_int_equal(back.gap_first, 5);
    assert_int_equal(back.gap_last, 9);

    /* The longest line fits the limit. */
    struct mf_record big = base_record(&f->id);
    memset(big.project, ' ', MF_RECORD_PROJECT_MAX);
    big.project[MF_RECORD_PROJECT_MAX] = '\0';
    memset(big.note, '%', MF_RECORD_NOTE_MAX);
    big.note[MF_RECORD_NOTE_MAX] = '\0';
    big.uid_length = MF_RECORD_UID_MAX;
    big.seq = big.serial = big.counter = UINT64_MAX;
    assert_int_equal(mf_record_format(&big, f->id.ed25519_secret, line, sizeof line, &length, hash),
                     0);
    assert_true(length <= MF_RECORD_LINE_MAX);
    assert_int_equal(mf_record_parse(line, length, &back, &body, f->message), 0);
    assert_string_equal(back.project, big.project);
}

static void test_encode_text(void **state)
{
    (void)state;
    char out[32];
    assert_int_equal(mf_record_encode_text("02 Big%Gadget", out, sizeof out), 0);
    assert_string_equal(out, "02%20Big%25Gadget");
    assert_int_equal(mf_record_encode_text("", out, sizeof out), 0);
    assert_string_equal(out, "-");
    assert_int_equal(mf_record_encode_text("-", out, sizeof out), 0);
    assert_string_equal(out, "%2D");
    assert_int_equal(mf_record_encode_text("a\nb", out, sizeof out), 0);
    assert_string_equal(out, "a%0Ab");
    assert_int_equal(mf_record_encode_text("    ", out, 12), MF_EINVAL);
    assert_int_equal(mf_record_encode_text("    ", out, 13), 0);
}

static void test_format_refuses(void **state)
{
    struct fixture *f = *state;
    char line[MF_RECORD_LINE_MAX + 1];
    size_t length;
    uint8_t hash[32];
    struct mf_record r = base_record(&f->id);
    r.seq = 0;
    assert_int_equal(mf_record_format(&r, f->id.ed25519_secret, line, sizeof line, &length, hash),
                     MF_EINVAL);
    r = base_record(&f->id);
    strcpy(r.programmer, "210c-AB05-A738-5EF0-447C");
    assert_int_equal(mf_record_format(&r, f->id.ed25519_secret, line, sizeof line, &length, hash),
                     MF_EINVAL);
    r = base_record(&f->id);
    r.uid_length = MF_RECORD_UID_MAX + 1;
    assert_int_equal(mf_record_format(&r, f->id.ed25519_secret, line, sizeof line, &length, hash),
                     MF_EINVAL);
    r = base_record(&f->id);
    r.result = MF_RECORD_GAP;
    r.gap_first = 3;
    r.gap_last = 2;
    assert_int_equal(mf_record_format(&r, f->id.ed25519_secret, line, sizeof line, &length, hash),
                     MF_EINVAL);
    r = base_record(&f->id);
    r.time = INT64_MAX;
    assert_int_equal(mf_record_format(&r, f->id.ed25519_secret, line, sizeof line, &length, hash),
                     MF_EINVAL);
    r = base_record(&f->id);
    assert_int_equal(mf_record_format(&r, f->id.ed25519_secret, line, 100, &length, hash),
                     MF_EINVAL);
}

/* Replaces the first `from` in the known line by `to` and expects the parser's refusal. */
static void expect_bad(struct fixture *f, const char *from, const char *to, int err,
                       const char *fragment)
{
    char line[3 * MF_RECORD_LINE_MAX];
    const char *at = strstr(known_line, from);
    assert_non_null(at);
    size_t head = (size_t)(at - known_line);
    memcpy(line, known_line, head);
    strcpy(line + head, to);
    strcat(line, at + strlen(from));
    struct mf_record r;
    size_t body;
    int got = mf_record_parse(line, strlen(line), &r, &body, f->message);
    if (got != err || !strstr(f->message, fragment))
        fail_msg("'%s' -> '%s': got %d '%s', want %d '%s'", from, to, got, f->message, err,
                 fragment);
}

static void test_parse_hostile(void **state)
{
    struct fixture *f = *state;
    expect_bad(f, "MFR1 ", "MFR2 ", MF_EVERSION, "version 2");
    expect_bad(f, "MFR1 ", "MFRX ", MF_EFORMAT, "must start with");
    expect_bad(f, "seq=1 ", "seq=0 ", MF_EFORMAT, "seq");
    expect_bad(f, "seq=1 ", "seq=01 ", MF_EFORMAT, "seq");
    expect_bad(f, "seq=1 ", "seq=+1 ", MF_EFORMAT, "seq");
    expect_bad(f, "seq=1 ", "seq=18446744073709551616 ", MF_EFORMAT, "seq");
    expect_bad(f, "seq=1 ", "seq= ", MF_EFORMAT, "seq");
    expect_bad(f, "seq=1 ", "seq=1  ", MF_EFORMAT, "'prev=' expected");
    expect_bad(f, "seq=1 ", "", MF_EFORMAT, "'seq=' expected");
    expect_bad(f, "prev=00", "prev=0", MF_EFORMAT, "prev");
    expect_bad(f, "prev=00", "prev=0g", MF_EFORMAT, "prev");
    expect_bad(f, "T00:00:00Z", "T24:00:00Z", MF_EFORMAT, "time");
    expect_bad(f, "2026-01-01", "2026-02-30", MF_EFORMAT, "time");
    expect_bad(f, "210C-AB05", "210C_AB05", MF_EFORMAT, "programmer");
    expect_bad(f, "210C-AB05", "210c-AB05", MF_EFORMAT, "programmer");
    expect_bad(f, "setup=22", "setup=2", MF_EFORMAT, "setup");
    expect_bad(f, "Widget%20%25", "Widget%2", MF_EFORMAT, "project");
    expect_bad(f, "Widget%20%25", "Widget%00", MF_EFORMAT, "project");
    expect_bad(f, "Widget%20%25", "Widget%zz", MF_EFORMAT, "project");
    expect_bad(f, "slot=2", "slot=4294967296", MF_EFORMAT, "slot");
    expect_bad(f, "slot=2", "slot=-1", MF_EFORMAT, "slot");
    expect_bad(f, "uid=01", "uid=1", MF_EFORMAT, "uid");
    expect_bad(f, "uid=0102030405060708090a0b0c", "uid=", MF_EFORMAT, "uid");
    expect_bad(f, "serial=1000", "serial=1e3", MF_EFORMAT, "serial");
    expect_bad(f, "result=OK", "result=ok", MF_EFORMAT, "result");
    expect_bad(f, "result=OK", "result=GAP", MF_EFORMAT, "gap:FIRST-LAST");
    expect_bad(f, "counter=7", "counter=", MF_EFORMAT, "counter");
    expect_bad(f, "counter=7 ", "counter=7 note=a note=b ", MF_EFORMAT, "'sig=' expected");
    expect_bad(f, "counter=7 ", "counter=7 note= ", MF_EFORMAT, "'sig=' expected");
    expect_bad(f, "counter=7 ", "counter=7 extra=1 ", MF_EFORMAT, "'sig=' expected");
    expect_bad(f, "sig=HRmp", "sig=HRm", MF_EFORMAT, "sig");
    expect_bad(f, "65HBg==", "65HBg== x", MF_EFORMAT, "after the signature");
    expect_bad(f, "65HBg==", "65HBg==\r\r", MF_EFORMAT, "control character");
    expect_bad(f, "slot=2", "slot=\x01", MF_EFORMAT, "control character");
    expect_bad(f, "project=", "project=\t", MF_EFORMAT, "control character");
    expect_bad(f,
               " sig=HRmpJ3oF6yb0ys+CfVe789yfm8aq4JfeXdSGCfBLadMtF7xJ7gPSjLOq9EIYJOurUwc0n6LiYOlD+"
               "MWmc65HBg==",
               "", MF_EFORMAT, "'sig=' missing");
    expect_bad(f, "counter=7 ", "counter=7 note=x", MF_EFORMAT, "'sig=' missing");
    expect_bad(f, "counter=7 ", "counter=7 note=- ", MF_EFORMAT, "note: a bad value"); /* "" */

    struct mf_record r;
    size_t body;
    assert_int_equal(mf_record_parse("", 0, &r, &body, f->message), MF_EFORMAT);
    assert_int_equal(mf_record_parse("\n", 1, &r, &body, f->message), MF_EFORMAT);
    char *huge = malloc(MF_RECORD_LINE_MAX + 10);
    memset(huge, 'a', MF_RECORD_LINE_MAX + 10);
    assert_int_equal(mf_record_parse(huge, MF_RECORD_LINE_MAX + 10, &r, &body, f->message),
                     MF_EFORMAT);
    assert_non_null(strstr(f->message, "longer than"));
    free(huge);
    static const char gap_line[] =
        "MFR1 seq=9 prev=0000000000000000000000000000000000000000000000000000000000000000 "
        "time=2026-01-01T00:00:00Z programmer=210C-AB05-A738-5EF0-447C "
        "setup=2222222222222222222222222222222222222222222222222222222222222222 project=- slot=0 "
        "uid=- serial=- result=GAP counter=1 note=gap:9-5 "
        "sig=HRmpJ3oF6yb0ys+CfVe789yfm8aq4JfeXdSGCfBLadMtF7xJ7gPSjLOq9EIYJOurUwc0n6LiYOlD+"
        "MWmc65HBg==";
    assert_int_equal(mf_record_parse(gap_line, strlen(gap_line), &r, &body, f->message),
                     MF_EFORMAT);
    assert_non_null(strstr(f->message, "gap:FIRST-LAST"));
    /* Records count from 1: a gap from 0 names none. */
    char from_zero[sizeof gap_line];
    strcpy(from_zero, gap_line);
    memcpy(strstr(from_zero, "gap:9-5"), "gap:0-5", 7);
    assert_int_equal(mf_record_parse(from_zero, strlen(from_zero), &r, &body, f->message),
                     MF_EFORMAT);
    assert_string_equal(f->message, "note: a GAP record needs note=gap:FIRST-LAST");
    memcpy(strstr(from_zero, "gap:0-5"), "gap:1-5", 7);
    assert_int_equal(mf_record_parse(from_zero, strlen(from_zero), &r, &body, f->message), 0);
    assert_int_equal(r.gap_first, 1);
    assert_int_equal(r.gap_last, 5);
}

/* ---- the verifier ---- */

#define CHAIN_MAX 16

struct chain {
    char lines[CHAIN_MAX][MF_RECORD_LINE_MAX + 1];
    size_t lengths[CHAIN_MAX];
    unsigned count;
    uint8_t head[32];
};

/* Appends a record (OK, serial 1000 + seq) to `chain` for `setup_byte`. */
static void append(struct chain *c, const struct mf_owner_identity *id, const char *fingerprint,
                   uint8_t setup_byte, enum mf_record_result result)
{
    assert_true(c->count < CHAIN_MAX);
    struct mf_record r = base_record(id);
    strcpy(r.programmer, fingerprint);
    r.seq = c->count ? c->count + 1 : 1;
    memcpy(r.prev, c->head, 32);
    memset(r.setup, setup_byte, 32);
    strcpy(r.project, "01_Widget");
    r.time = 1767225600 + 60 * (int64_t)c->count;
    r.serial = 1000 + r.seq;
    r.result = result;
    if (result == MF_RECORD_GAP) {
        r.gap_first = r.seq - 2;
        r.gap_last = r.seq - 1;
        r.has_serial = false;
    }
    assert_int_equal(mf_record_format(&r, id->ed25519_secret, c->lines[c->count],
                                      sizeof c->lines[0], &c->lengths[c->count], c->head),
                     0);
    c->count++;
}

static void build(struct chain *c, const struct mf_owner_identity *id, unsigned n)
{
    memset(c, 0, sizeof *c);
    for (unsigned i = 0; i < n; i++)
        append(c, id, id->pub.fingerprint, 0x22, i == 3 ? MF_RECORD_ERR : MF_RECORD_OK);
}

struct reports {
    unsigned count[5];
    uint64_t last_line;
    char last[MF_RECORD_MESSAGE_MAX];
};

static void on_problem(void *context, enum mf_record_problem problem, const char *where,
                       uint64_t line, const char *message)
{
    struct reports *r = context;
    assert_string_equal(where, "RECORDS.000");
    r->count[problem]++;
    r->last_line = line;
    snprintf(r->last, sizeof r->last, "%s", message);
}

/* Runs the verifier over `order` (line indices of `c`, -1 terminated). */
static void verify(struct fixture *f, const struct chain *c, const int *order,
                   struct mf_record_verifier *v, struct reports *rep)
{
    memset(rep, 0, sizeof *rep);
    mf_record_verifier_init(v, &f->id.pub, on_problem, rep);
    for (uint64_t n = 0; order[n] >= 0; n++)
        assert_int_equal(mf_record_verifier_line(v, "RECORDS.000", n + 1, c->lines[order[n]],
                                                 c->lengths[order[n]]),
                         0);
}

static void test_verify_intact(void **state)
{
    struct fixture *f = *state;
    struct chain c;
    build(&c, &f->id, 8);
    const int order[] = {0, 1, 2, 3, 4, 5, 6, 7, -1};
    struct mf_record_verifier v;
    struct reports rep;
    verify(f, &c, order, &v, &rep);
    assert_true(mf_record_verifier_intact(&v));
    assert_int_equal(v.records, 8);
    assert_int_equal(v.verified, 8);
    assert_int_equal(v.chains, 1);
    assert_int_equal(v.first_time, 1767225600);
    assert_int_equal(v.last_time, 1767225600 + 7 * 60);
    assert_int_equal(v.total_count, 1);
    assert_string_equal(v.totals[0].project, "01_Widget");
    assert_int_equal(v.totals[0].ok, 7);
    assert_int_equal(v.totals[0].failed, 1);
    assert_int_equal(v.totals[0].serials, 8);
    assert_int_equal(v.totals[0].serial_min, 1001);
    assert_int_equal(v.totals[0].serial_max, 1008);
    mf_record_verifier_free(&v);

    /* The newest records deleted: the chain that is left is intact, as it must look... */
    const int shorter[] = {0, 1, 2, 3, 4, 5, -1};
    verify(f, &c, shorter, &v, &rep);
    assert_true(mf_record_verifier_intact(&v));
    mf_record_verifier_free(&v);
    /* ...until the programmer notices (its chain head is ahead) and writes a gap record. */
    /* The programmer appends seq 9 after the deleted 7 and 8: its prev is the hash it kept. */
    struct chain d;
    memcpy(&d, &c, sizeof d);
    append(&d, &f->id, f->id.pub.fingerprint, 0x22, MF_RECORD_GAP);
    const int with_gap[] = {0, 1, 2, 3, 4, 5, 8, -1};
    verify(f, &d, with_gap, &v, &rep);
    assert_false(mf_record_verifier_intact(&v));
    assert_int_equal(v.gaps, 1);
    assert_int_equal(rep.count[MF_RECORD_GAP_FOUND], 1);
    assert_non_null(strstr(rep.last, "records 7 to 8 missing"));
    assert_int_equal(rep.count[MF_RECORD_CHAIN_BREAK], 1); /* 9 after 6 shows as well */
    mf_record_verifier_free(&v);
    /* The deleted records put back (from a copy): the chain holds again, but the gap record
     * says they were gone once. */
    const int restored[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, -1};
    verify(f, &d, restored, &v, &rep);
    assert_int_equal(v.chain_breaks, 0);
    assert_int_equal(v.gaps, 1);
    assert_false(mf_record_verifier_intact(&v));
    mf_record_verifier_free(&v);
}

static void test_verify_tampering(void **state)
{
    struct fixture *f = *state;
    struct chain c;
    build(&c, &f->id, 8);
    struct mf_record_verifier v;
    struct reports rep;

    /* Deleted in the middle. */
    const int deleted[] = {0, 1, 2, 4, 5, 6, 7, -1};
    verify(f, &c, deleted, &v, &rep);
    assert_false(mf_record_verifier_intact(&v));
    assert_int_equal(v.chain_breaks, 1);
    assert_int_equal(rep.last_line, 4);
    assert_non_null(strstr(rep.last, "record 4 is missing"));
    mf_record_verifier_free(&v);
    const int deleted_more[] = {0, 1, 5, 6, 7, -1};
    verify(f, &c, deleted_more, &v, &rep);
    assert_int_equal(v.chain_breaks, 1);
    assert_non_null(strstr(rep.last, "records 3 to 5 are missing"));
    mf_record_verifier_free(&v);
    /* The oldest deleted. */
    const int no_start[] = {2, 3, 4, -1};
    verify(f, &c, no_start, &v, &rep);
    assert_int_equal(v.chain_breaks, 1);
    assert_non_null(strstr(rep.last, "records 1 to 2 are missing"));
    mf_record_verifier_free(&v);

    /* Reordered, and repeated. */
    const int swapped[] = {0, 1, 3, 2, 4, 5, 6, 7, -1};
    verify(f, &c, swapped, &v, &rep);
    assert_false(mf_record_verifier_intact(&v));
    assert_true(v.chain_breaks >= 2);
    assert_int_equal(v.bad_signatures, 0);
    mf_record_verifier_free(&v);
    const int repeated[] = {0, 1, 2, 2, 3, -1};
    verify(f, &c, repeated, &v, &rep);
    assert_int_equal(v.chain_breaks, 1); /* seq 4 chains to the copy of seq 3 */
    assert_int_equal(rep.last_line, 4);
    assert_string_equal(rep.last, "seq 3 follows seq 3: records out of order or repeated");
    mf_record_verifier_free(&v);

    /* Edited: one field, one character. */
    struct chain e;
    memcpy(&e, &c, sizeof e);
    char *result = strstr(e.lines[3], "result=ERR");
    memcpy(result, "result=OK ", 10); /* keep the length: "ERR" -> "OK " breaks the syntax */
    memmove(result + 9, result + 10, strlen(result + 10) + 1);
    e.lengths[3]--;
    const int all[] = {0, 1, 2, 3, 4, 5, 6, 7, -1};
    verify(f, &e, all, &v, &rep);
    assert_false(mf_record_verifier_intact(&v));
    assert_int_equal(v.bad_signatures, 1);
    assert_int_equal(v.chain_breaks, 0); /* explained by the bad signature before it */
    assert_int_equal(v.verified, 7);
    assert_int_equal(v.totals[0].failed, 0); /* the edit does not count: not proven */
    assert_int_equal(v.totals[0].ok, 7);
    mf_record_verifier_free(&v);
    memcpy(&e, &c, sizeof e);
    char *serial = strstr(e.lines[5], "serial=1006");
    serial[10] = '9';
    verify(f, &e, all, &v, &rep);
    assert_int_equal(v.bad_signatures, 1);
    assert_int_equal(rep.count[MF_RECORD_BAD_SIGNATURE], 1);
    assert_non_null(strstr(rep.last, "seq 6: the signature does not hold"));
    mf_record_verifier_free(&v);

    /* Edited and re-chained by someone without the key: every later record's prev shows it. */
    memcpy(&e, &c, sizeof e);
    e.lines[2][e.lengths[2] - 4] ^= 1; /* a signature character */
    verify(f, &e, all, &v, &rep);
    assert_true(v.bad_signatures + v.malformed == 1);
    mf_record_verifier_free(&v);

    /* Forged with another key, under our fingerprint. */
    struct chain g;
    memset(&g, 0, sizeof g);
    for (unsigned i = 0; i < 3; i++)
        append(&g, &f->other, f->id.pub.fingerprint, 0x22, MF_RECORD_OK);
    const int three[] = {0, 1, 2, -1};
    verify(f, &g, three, &v, &rep);
    assert_int_equal(v.bad_signatures, 3);
    assert_int_equal(v.verified, 0);
    assert_int_equal(v.total_count, 0);
    assert_false(v.has_time);
    mf_record_verifier_free(&v);
    /* A forged record spliced into a real chain. */
    memcpy(&e, &c, sizeof e);
    memcpy(e.lines[4], g.lines[1], sizeof e.lines[4]);
    e.lengths[4] = g.lengths[1];
    verify(f, &e, all, &v, &rep);
    assert_false(mf_record_verifier_intact(&v));
    assert_true(v.bad_signatures >= 1);
    mf_record_verifier_free(&v);

    /* Records of another programmer. */
    memset(&g, 0, sizeof g);
    for (unsigned i = 0; i < 2; i++)
        append(&g, &f->other, f->other.pub.fingerprint, 0x22, MF_RECORD_OK);
    const int two[] = {0, 1, -1};
    verify(f, &g, two, &v, &rep);
    assert_int_equal(v.foreign, 2);
    assert_non_null(strstr(rep.last, f->other.pub.fingerprint));
    mf_record_verifier_free(&v);

    /* A malformed line in the middle (a torn write). */
    memcpy(&e, &c, sizeof e);
    e.lengths[4] = 40;
    verify(f, &e, all, &v, &rep);
    assert_int_equal(v.malformed, 1);
    assert_int_equal(v.chain_breaks, 0);
    assert_false(mf_record_verifier_intact(&v));
    mf_record_verifier_free(&v);

    /* seq 1 that names a previous record. */
    memset(&g, 0, sizeof g);
    memset(g.head, 1, 32);
    g.count = 0;
    append(&g, &f->id, f->id.pub.fingerprint, 0x22, MF_RECORD_OK);
    const int one[] = {0, -1};
    verify(f, &g, one, &v, &rep);
    assert_int_equal(v.chain_breaks, 1);
    mf_record_verifier_free(&v);

    /* Nothing at all is not intact either. */
    const int none[] = {-1};
    verify(f, &c, none, &v, &rep);
    assert_false(mf_record_verifier_intact(&v));
    mf_record_verifier_free(&v);
}

static void test_verify_two_setups(void **state)
{
    struct fixture *f = *state;
    struct chain a, b, both;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    for (int i = 0; i < 3; i++)
        append(&a, &f->id, f->id.pub.fingerprint, 0x22, MF_RECORD_OK);
    for (int i = 0; i < 2; i++)
        append(&b, &f->id, f->id.pub.fingerprint, 0x33, i ? MF_RECORD_ERR : MF_RECORD_OK);
    memset(&both, 0, sizeof both);
    for (unsigned i = 0; i < 3; i++) {
        memcpy(both.lines[i], a.lines[i], sizeof both.lines[i]);
        both.lengths[i] = a.lengths[i];
    }
    for (unsigned i = 0; i < 2; i++) {
        memcpy(both.lines[3 + i], b.lines[i], sizeof both.lines[i]);
        both.lengths[3 + i] = b.lengths[i];
    }
    const int order[] = {0, 1, 2, 3, 4, -1};
    struct mf_record_verifier v;
    struct reports rep;
    verify(f, &both, order, &v, &rep);
    assert_true(mf_record_verifier_intact(&v));
    assert_int_equal(v.chains, 2);
    assert_int_equal(v.total_count, 2);
    assert_int_equal(v.totals[0].setup[0], 0x22);
    assert_int_equal(v.totals[0].ok, 3);
    assert_int_equal(v.totals[1].setup[0], 0x33);
    assert_int_equal(v.totals[1].ok, 1);
    assert_int_equal(v.totals[1].failed, 1);
    mf_record_verifier_free(&v);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_line),       cmocka_unit_test(test_fields_round_trip),
        cmocka_unit_test(test_encode_text),      cmocka_unit_test(test_format_refuses),
        cmocka_unit_test(test_parse_hostile),    cmocka_unit_test(test_verify_intact),
        cmocka_unit_test(test_verify_tampering), cmocka_unit_test(test_verify_two_setups),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

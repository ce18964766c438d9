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
    /* Records count from 1: a gap from 0 would be a line the parser refuses. */
    r = base_record(&f->id);
    r.result = MF_RECORD_GAP;
    r.gap_first = 0;
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

/* Appends a record (serial 1000 + seq, `counter`, `note`: NULL for none) to `chain` for
 * `setup_byte`. */
static void append_counted(struct chain *c, const struct mf_owner_identity *id,
                           const char *fingerprint, uint8_t setup_byte,
                           enum mf_record_result result, uint64_t counter, const char *note)
{
    assert_true(c->count < CHAIN_MAX);
    struct mf_record r = base_record(id);
    r.counter = counter;
    if (note)
        snprintf(r.note, sizeof r.note, "%s", note);
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

/* Appends a record (OK, serial 1000 + seq, counter 7) to `chain` for `setup_byte`. */
static void append(struct chain *c, const struct mf_owner_identity *id, const char *fingerprint,
                   uint8_t setup_byte, enum mf_record_result result)
{
    append_counted(c, id, fingerprint, setup_byte, result, 7, NULL);
}

static void build(struct chain *c, const struct mf_owner_identity *id, unsigned n)
{
    memset(c, 0, sizeof *c);
    for (unsigned i = 0; i < n; i++)
        append(c, id, id->pub.fingerprint, 0x22, i == 3 ? MF_RECORD_ERR : MF_RECORD_OK);
}

struct reports {
    unsigned count[MF_RECORD_PROBLEM_KINDS];
    uint64_t last_line;
    char last[MF_RECORD_MESSAGE_MAX];
    char last_of[MF_RECORD_PROBLEM_KINDS][MF_RECORD_MESSAGE_MAX]; /* per kind */
};

static void on_problem(void *context, enum mf_record_problem problem, const char *where,
                       uint64_t line, const char *message)
{
    struct reports *r = context;
    assert_string_equal(where, "RECORDS.000");
    r->count[problem]++;
    r->last_line = line;
    snprintf(r->last, sizeof r->last, "%s", message);
    snprintf(r->last_of[problem], sizeof r->last_of[problem], "%s", message);
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
    mf_record_verifier_end(v);
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

/* Lines [0, a_count) of `a`, then every line of `b`, into `out`. */
static void join(struct chain *out, const struct chain *a, unsigned a_count, const struct chain *b)
{
    memset(out, 0, sizeof *out);
    assert_true(a_count + b->count <= CHAIN_MAX);
    for (unsigned i = 0; i < a_count; i++) {
        memcpy(out->lines[i], a->lines[i], sizeof out->lines[i]);
        out->lengths[i] = a->lengths[i];
    }
    for (unsigned i = 0; i < b->count; i++) {
        memcpy(out->lines[a_count + i], b->lines[i], sizeof out->lines[i]);
        out->lengths[a_count + i] = b->lengths[i];
    }
    out->count = a_count + b->count;
}

/* 0 .. n-1, -1. */
static const int *in_order(unsigned n)
{
    static int order[CHAIN_MAX + 1];
    assert_true(n <= CHAIN_MAX);
    for (unsigned i = 0; i < n; i++)
        order[i] = (int)i;
    order[n] = -1;
    return order;
}

/* A chain of `n` records with the counters given (result OK unless a note is given, then ERR). */
static void counted(struct fixture *f, struct chain *c, uint8_t setup_byte, unsigned n,
                    const uint64_t *counters, const char *const *notes)
{
    memset(c, 0, sizeof *c);
    for (unsigned i = 0; i < n; i++) {
        const char *note = notes ? notes[i] : NULL;
        append_counted(c, &f->id, f->id.pub.fingerprint, setup_byte,
                       note ? MF_RECORD_ERR : MF_RECORD_OK, counters[i], note);
    }
}

/* Runs the verifier over the whole chain; true when it says intact. */
static bool intact_with(struct fixture *f, const struct chain *c, struct mf_record_verifier *v,
                        struct reports *rep)
{
    verify(f, c, in_order(c->count), v, rep);
    return mf_record_verifier_intact(v);
}

/* One chain goes on across the setups installed one after the other: intact, totals per setup.
 * A second chain (seq 1 again) after the first is a chain break: the programmer's chain starts
 * afresh only when its secure area was removed, and the first chain's newest records may be gone
 * (F4b: A's five records cut to three, then B's own chain). */
static void test_verify_two_setups(void **state)
{
    struct fixture *f = *state;
    struct chain one, a, b, both;
    memset(&one, 0, sizeof one);
    for (int i = 0; i < 3; i++)
        append_counted(&one, &f->id, f->id.pub.fingerprint, 0x22, MF_RECORD_OK, 1 + (uint64_t)i,
                       NULL);
    for (int i = 0; i < 2; i++)
        append_counted(&one, &f->id, f->id.pub.fingerprint, 0x33, i ? MF_RECORD_ERR : MF_RECORD_OK,
                       4 + (uint64_t)i, NULL);
    struct mf_record_verifier v;
    struct reports rep;
    assert_true(intact_with(f, &one, &v, &rep));
    assert_int_equal(v.chains, 1);
    assert_int_equal(v.total_count, 2);
    assert_int_equal(v.totals[0].setup[0], 0x22);
    assert_int_equal(v.totals[0].ok, 3);
    assert_int_equal(v.totals[1].setup[0], 0x33);
    assert_int_equal(v.totals[1].ok, 1);
    assert_int_equal(v.totals[1].failed, 1);
    mf_record_verifier_free(&v);

    static const uint64_t a_counters[] = {1, 2, 3, 4, 5}, b_counters[] = {6, 7};
    counted(f, &a, 0x22, 5, a_counters, NULL);
    counted(f, &b, 0x33, 2, b_counters, NULL);
    join(&both, &a, 3, &b);
    assert_false(intact_with(f, &both, &v, &rep));
    assert_int_equal(v.chains, 2);
    assert_int_equal(v.chain_breaks, 1);
    assert_int_equal(rep.count[MF_RECORD_CHAIN_BREAK], 1);
    /* ...and the counter shows what the cut hid: 3 to 7 with two cycles after seq 3. */
    assert_int_equal(v.unaccounted, 2);
    assert_int_equal(rep.count[MF_RECORD_COUNTER], 1);
    assert_int_equal(rep.last_line, 4);
    if (!strstr(rep.last, "2 count(s) of the trust anchor unaccounted"))
        fail_msg("report: %s", rep.last);
    mf_record_verifier_free(&v);
    /* A second chain with nothing hidden is still reported. */
    join(&both, &a, 5, &b);
    assert_false(intact_with(f, &both, &v, &rep));
    assert_int_equal(v.chain_breaks, 1);
    assert_int_equal(v.unaccounted, 0);
    mf_record_verifier_free(&v);
}

/* Every count of the trust anchor's counter is accounted for by a record: at K = 1 one step per
 * cycle; records cut before the next setup's (F4: the cut chain adopted) leave steps no record
 * accounts for, reported with their number. */
static void test_verify_counter_k1(void **state)
{
    struct fixture *f = *state;
    struct chain c;
    struct mf_record_verifier v;
    struct reports rep;
    static const uint64_t steady[] = {1, 2, 3, 4, 5};
    counted(f, &c, 0x22, 5, steady, NULL);
    assert_true(intact_with(f, &c, &v, &rep));
    assert_int_equal(v.unaccounted, 0);
    assert_int_equal(v.counter_problems, 0);
    mf_record_verifier_free(&v);
    /* Records 4 and 5 cut, the chain continued from 3 by the next setup's records. */
    static const uint64_t cut[] = {1, 2, 3, 6, 7};
    counted(f, &c, 0x22, 5, cut, NULL);
    assert_false(intact_with(f, &c, &v, &rep));
    assert_int_equal(v.chain_breaks, 0);
    assert_int_equal(v.unaccounted, 2);
    assert_int_equal(v.counter_problems, 1);
    assert_int_equal(rep.last_line, 4);
    if (!strstr(rep.last, "biggest jump: 3 to 6 from seq 3 to seq 4"))
        fail_msg("report: %s", rep.last);
    mf_record_verifier_free(&v);
    /* The counter going down. */
    static const uint64_t down[] = {1, 2, 3, 2, 4};
    counted(f, &c, 0x22, 5, down, NULL);
    assert_false(intact_with(f, &c, &v, &rep));
    assert_int_equal(v.counter_problems, 1);
    assert_int_equal(rep.count[MF_RECORD_COUNTER], 1);
    assert_non_null(strstr(rep.last, "lower than 3"));
    mf_record_verifier_free(&v);
    /* The set starting anywhere: the first record's counter is the base. */
    static const uint64_t late[] = {1000, 1001, 1002};
    counted(f, &c, 0x22, 3, late, NULL);
    const int tail[] = {1, 2, -1};
    verify(f, &c, tail, &v, &rep);
    assert_int_equal(v.counter_problems, 0);
    assert_int_equal(v.chain_breaks, 1); /* records 1 to 1 missing: the start is gone */
    mf_record_verifier_free(&v);
}

/* The flows that verify intact: slots recording out of step with their counts, reservations of
 * K > 1 (one step per reservation, a restart forfeiting the rest and taking a new one), the
 * programmer's unrecorded:N and counter-ahead:N records, a count-unknown record whose count
 * landed (an unrecorded:1 at the next start accounts for it). And the same without the records
 * that account for the steps. */
static void test_verify_counter_flows(void **state)
{
    struct fixture *f = *state;
    struct chain c;
    struct mf_record_verifier v;
    struct reports rep;
    /* Two slots: slot 2 takes count 3 after slot 1 took 2, and records first. */
    static const uint64_t slots[] = {1, 3, 3, 4};
    counted(f, &c, 0x22, 4, slots, NULL);
    assert_true(intact_with(f, &c, &v, &rep));
    mf_record_verifier_free(&v);
    /* K = 100: four devices, a restart, two, a restart, one; a top-up changes nothing here. */
    static const uint64_t reserved[] = {1, 1, 1, 1, 2, 2, 3};
    counted(f, &c, 0x22, 7, reserved, NULL);
    assert_true(intact_with(f, &c, &v, &rep));
    mf_record_verifier_free(&v);
    /* Cycles without their record (a cut), recorded as unrecorded:2 at the next start; a
     * restored storage image, its counter's cycles recorded as counter-ahead:3. */
    static const uint64_t notes_counters[] = {1, 2, 4, 7, 8};
    static const char *const notes[] = {NULL, NULL, MF_RECORD_NOTE_UNRECORDED "2",
                                        MF_RECORD_NOTE_COUNTER_AHEAD "3", NULL};
    counted(f, &c, 0x22, 5, notes_counters, notes);
    assert_true(intact_with(f, &c, &v, &rep));
    assert_int_equal(v.totals[0].unrecorded, 5);
    mf_record_verifier_free(&v);
    /* Without the notes, the same counters are counts unaccounted for. */
    counted(f, &c, 0x22, 5, notes_counters, NULL);
    assert_false(intact_with(f, &c, &v, &rep));
    assert_int_equal(v.unaccounted, 3);
    mf_record_verifier_free(&v);
    /* A count-unknown that landed: its record accounts for nothing, the next cycle's counter
     * shows both steps, and the next start's unrecorded:1 accounts for the first. */
    static const uint64_t unknown_counters[] = {1, 2, 3, 3};
    static const char *const unknown_notes[] = {NULL, MF_RECORD_NOTE_COUNT_UNKNOWN, NULL,
                                                MF_RECORD_NOTE_UNRECORDED "1"};
    counted(f, &c, 0x22, 4, unknown_counters, unknown_notes);
    assert_true(intact_with(f, &c, &v, &rep));
    mf_record_verifier_free(&v);
    /* Before that start the count is not accounted for by the records alone. */
    counted(f, &c, 0x22, 3, unknown_counters, unknown_notes);
    assert_false(intact_with(f, &c, &v, &rep));
    assert_int_equal(v.unaccounted, 1);
    mf_record_verifier_free(&v);
    /* A gap record steps nothing. */
    static const uint64_t gap_counters[] = {1, 2, 3};
    counted(f, &c, 0x22, 2, gap_counters, NULL);
    append_counted(&c, &f->id, f->id.pub.fingerprint, 0x22, MF_RECORD_GAP, 2, NULL);
    verify(f, &c, in_order(3), &v, &rep);
    assert_int_equal(v.counter_problems, 0);
    assert_int_equal(v.gaps, 1);
    mf_record_verifier_free(&v);
}

/* A head statement the programmer signed for `nonce` about `c`'s newest record (or the given
 * seq/hash when `c` is NULL), its counter and pending cycles, into `line`. */
static size_t head_line(struct fixture *f, const struct mf_owner_identity *id,
                        const uint8_t nonce[32], uint64_t seq, const uint8_t hash[32],
                        uint64_t counter, uint64_t pending, char *line)
{
    struct mf_record_head h;
    memset(&h, 0, sizeof h);
    memcpy(h.nonce, nonce, 32);
    h.time = 1767225600;
    strcpy(h.programmer, f->id.pub.fingerprint);
    memset(h.setup, 0x22, 32);
    h.seq = seq;
    if (hash)
        memcpy(h.hash, hash, 32);
    h.counter = counter;
    h.pending = pending;
    size_t length;
    assert_int_equal(
        mf_record_head_format(&h, id->ed25519_secret, line, MF_RECORD_LINE_MAX + 1, &length), 0);
    return length;
}

static void verify_with_head(struct fixture *f, const struct chain *c, unsigned n, const char *head,
                             size_t head_length, const uint8_t *nonce, struct mf_record_verifier *v,
                             struct reports *rep)
{
    memset(rep, 0, sizeof *rep);
    mf_record_verifier_init(v, &f->id.pub, on_problem, rep);
    for (unsigned i = 0; i < n; i++)
        assert_int_equal(
            mf_record_verifier_line(v, "RECORDS.000", i + 1, c->lines[i], c->lengths[i]), 0);
    mf_record_verifier_head(v, "RECORDS.000", 1, head, head_length, nonce);
    mf_record_verifier_end(v);
}

/* The head statement: the format round trip, no record parses as one nor the other way round;
 * records that reach the head are intact, a cut tail (F3) shows as records missing after the
 * last one, and a head that does not hold (another nonce, forged, edited, of another programmer)
 * is reported and not used. */
static void test_verify_head(void **state)
{
    struct fixture *f = *state;
    static const uint64_t counters[] = {1, 2, 3, 4, 5};
    struct chain c;
    counted(f, &c, 0x22, 5, counters, NULL);
    uint8_t nonce[32], other[32];
    memset(nonce, 0xA5, sizeof nonce);
    memset(other, 0x5A, sizeof other);
    char line[MF_RECORD_LINE_MAX + 1];
    size_t n = head_line(f, &f->id, nonce, 5, c.head, 5, 0, line);
    assert_non_null(strstr(line, "MFH1 nonce=a5a5"));
    assert_non_null(strstr(line, " seq=5 head="));
    assert_non_null(strstr(line, " counter=5 pending=0 sig="));
    struct mf_record_head h;
    struct mf_record r;
    size_t body;
    assert_int_equal(mf_record_head_parse(line, n, &h, &body, f->message), 0);
    assert_int_equal(h.seq, 5);
    assert_memory_equal(h.hash, c.head, 32);
    assert_true(mf_record_signature_ok(line, body, h.signature, f->id.pub.ed25519));
    assert_int_equal(mf_record_parse(line, n, &r, &body, f->message), MF_EFORMAT);
    assert_int_equal(mf_record_head_parse(c.lines[0], c.lengths[0], &h, &body, f->message),
                     MF_EFORMAT);
    assert_non_null(strstr(f->message, "'MFH1 '"));

    struct mf_record_verifier v;
    struct reports rep;
    verify_with_head(f, &c, 5, line, n, nonce, &v, &rep);
    assert_true(mf_record_verifier_intact(&v));
    assert_true(v.has_head);
    assert_int_equal(v.missing_after, 0);
    mf_record_verifier_free(&v);

    /* The newest two deleted while the programmer ran: invisible without the head. */
    verify(f, &c, in_order(3), &v, &rep);
    assert_true(mf_record_verifier_intact(&v));
    mf_record_verifier_free(&v);
    verify_with_head(f, &c, 3, line, n, nonce, &v, &rep);
    assert_false(mf_record_verifier_intact(&v));
    assert_int_equal(v.missing_after, 2);
    assert_int_equal(rep.count[MF_RECORD_HEAD], 1);
    if (!strstr(rep.last_of[MF_RECORD_HEAD],
                "2 record(s) missing after the last one given (4 to 5"))
        fail_msg("report: %s", rep.last_of[MF_RECORD_HEAD]);
    assert_int_equal(v.unaccounted, 2); /* the head's counter shows them too */
    mf_record_verifier_free(&v);

    /* Another nonce (an old statement replayed): reported, not used; without a nonce to compare
     * it is used. */
    verify_with_head(f, &c, 5, line, n, other, &v, &rep);
    assert_false(mf_record_verifier_intact(&v));
    assert_false(v.has_head);
    assert_non_null(strstr(rep.last_of[MF_RECORD_HEAD], "another nonce"));
    mf_record_verifier_free(&v);
    verify_with_head(f, &c, 5, line, n, NULL, &v, &rep);
    assert_true(mf_record_verifier_intact(&v));
    mf_record_verifier_free(&v);

    /* Forged with another key; edited; torn. */
    char forged[MF_RECORD_LINE_MAX + 1];
    size_t fn = head_line(f, &f->other, nonce, 3, NULL, 3, 0, forged);
    verify_with_head(f, &c, 3, forged, fn, nonce, &v, &rep);
    assert_false(mf_record_verifier_intact(&v));
    assert_non_null(strstr(rep.last_of[MF_RECORD_HEAD], "signature does not hold"));
    mf_record_verifier_free(&v);
    char edited[MF_RECORD_LINE_MAX + 1];
    memcpy(edited, line, n + 1);
    *strstr(edited, " seq=5 ") = '\0';
    strcat(edited, " seq=3 ");
    strcat(edited, strstr(line, " seq=5 ") + 7);
    verify_with_head(f, &c, 3, edited, strlen(edited), nonce, &v, &rep);
    assert_false(mf_record_verifier_intact(&v));
    assert_int_equal(v.head_problems, 1);
    mf_record_verifier_free(&v);
    verify_with_head(f, &c, 5, line, 40, nonce, &v, &rep);
    assert_false(mf_record_verifier_intact(&v));
    assert_non_null(strstr(rep.last_of[MF_RECORD_HEAD], "not a valid head statement"));
    mf_record_verifier_free(&v);

    /* Records beyond the head, a replaced newest record, a head with no record yet. */
    uint8_t hash3[32];
    struct chain three;
    counted(f, &three, 0x22, 3, counters, NULL);
    memcpy(hash3, three.head, 32);
    n = head_line(f, &f->id, nonce, 3, hash3, 3, 0, line);
    verify_with_head(f, &c, 5, line, n, nonce, &v, &rep);
    assert_false(mf_record_verifier_intact(&v));
    assert_non_null(strstr(rep.last_of[MF_RECORD_HEAD], "beyond the programmer's newest"));
    mf_record_verifier_free(&v);
    n = head_line(f, &f->id, nonce, 5, hash3, 5, 0, line);
    verify_with_head(f, &c, 5, line, n, nonce, &v, &rep);
    assert_false(mf_record_verifier_intact(&v));
    assert_non_null(strstr(rep.last_of[MF_RECORD_HEAD], "replaced"));
    mf_record_verifier_free(&v);
    n = head_line(f, &f->id, nonce, 0, NULL, 5, 0, line);
    verify_with_head(f, &c, 5, line, n, nonce, &v, &rep);
    assert_false(mf_record_verifier_intact(&v));
    assert_non_null(strstr(rep.last_of[MF_RECORD_HEAD], "holds no record yet"));
    mf_record_verifier_free(&v);

    /* The head's counter: a count taken by a running cycle is pending; one no record and no
     * pending cycle accounts for is not. */
    n = head_line(f, &f->id, nonce, 5, c.head, 6, 1, line);
    verify_with_head(f, &c, 5, line, n, nonce, &v, &rep);
    assert_true(mf_record_verifier_intact(&v));
    mf_record_verifier_free(&v);
    n = head_line(f, &f->id, nonce, 5, c.head, 7, 1, line);
    verify_with_head(f, &c, 5, line, n, nonce, &v, &rep);
    assert_false(mf_record_verifier_intact(&v));
    assert_int_equal(v.unaccounted, 1);
    assert_non_null(strstr(rep.last, "the head's"));
    mf_record_verifier_free(&v);
    n = head_line(f, &f->id, nonce, 5, c.head, 4, 0, line);
    verify_with_head(f, &c, 5, line, n, nonce, &v, &rep);
    assert_false(mf_record_verifier_intact(&v));
    assert_int_equal(v.counter_problems, 1);
    mf_record_verifier_free(&v);
}

/* Feeds `spec` to a verifier: "g" a line that is no record (a torn or damaged one), "N" the line
 * of seq N of `c`. Returns the chain breaks; the last one's message in `message`. */
static uint64_t breaks_of(struct fixture *f, const struct chain *c, const char *const *spec,
                          char *message)
{
    struct reports rep;
    memset(&rep, 0, sizeof rep);
    struct mf_record_verifier v;
    mf_record_verifier_init(&v, &f->id.pub, on_problem, &rep);
    for (uint64_t n = 0; spec[n]; n++) {
        const char *text = "MFR1 seq=4 prev=00";
        size_t length = strlen(text);
        if (strcmp(spec[n], "g") != 0) {
            unsigned seq = (unsigned)atoi(spec[n]);
            text = c->lines[seq - 1];
            length = c->lengths[seq - 1];
        }
        assert_int_equal(mf_record_verifier_line(&v, "RECORDS.000", n + 1, text, length), 0);
    }
    mf_record_verifier_end(&v);
    snprintf(message, MF_RECORD_MESSAGE_MAX, "%s", rep.last_of[MF_RECORD_CHAIN_BREAK]);
    uint64_t breaks = v.chain_breaks;
    mf_record_verifier_free(&v);
    return breaks;
}

/* A line that is no record (torn, damaged) stands for at most one record: records deleted beside
 * it are still named. (A torn line the programmer could not cut stays in its file, and the chain
 * goes on with the seq the torn record would have had: the next record follows the one before.) */
static void test_verify_malformed_hides_no_deletion(void **state)
{
    struct fixture *f = *state;
    struct chain c;
    build(&c, &f->id, 8);
    char message[MF_RECORD_MESSAGE_MAX];
    static const char *const torn[] = {"1", "2", "3", "g", "4", "5", NULL};
    assert_int_equal(breaks_of(f, &c, torn, message), 0);
    static const char *const damaged[] = {"1", "2", "3", "g", "5", "6", NULL};
    assert_int_equal(breaks_of(f, &c, damaged, message), 0);
    static const char *const deleted[] = {"1", "2", "3", "g", "7", "8", NULL};
    assert_int_equal(breaks_of(f, &c, deleted, message), 1);
    if (!strstr(message, "seq 7 follows seq 3 and 1 line(s) that are no record: at least 2 of "
                         "records 4 to 6 are missing (deleted)"))
        fail_msg("message: %s", message);
    static const char *const two[] = {"1", "g", "g", "4", "5", NULL};
    assert_int_equal(breaks_of(f, &c, two, message), 0);
    static const char *const start[] = {"g", "4", "5", NULL};
    assert_int_equal(breaks_of(f, &c, start, message), 1);
    if (!strstr(message, "the records start at seq 4 after 1 line(s) that are no record: at least "
                         "2 of records 1 to 3 are missing"))
        fail_msg("message: %s", message);
    static const char *const start_damaged[] = {"g", "2", "3", NULL};
    assert_int_equal(breaks_of(f, &c, start_damaged, message), 0);
    /* The record after a torn line must still chain to the one before it: record 4 of another
     * chain (another setup's records 1-3 before it) does not. */
    struct chain other;
    memset(&other, 0, sizeof other);
    for (unsigned i = 0; i < 4; i++)
        append(&other, &f->id, f->id.pub.fingerprint, 0x33, MF_RECORD_OK);
    memcpy(c.lines[3], other.lines[3], sizeof c.lines[3]);
    c.lengths[3] = other.lengths[3];
    static const char *const replaced[] = {"1", "2", "3", "g", "4", NULL};
    assert_int_equal(breaks_of(f, &c, replaced, message), 1);
    if (!strstr(message, "seq 4 does not chain to seq 3 before it"))
        fail_msg("message: %s", message);
}

/* Feeds `spec` (as breaks_of) to a verifier and ends it; reports into `rep`. */
static void verify_spec(struct fixture *f, const struct chain *c, const char *const *spec,
                        struct mf_record_verifier *v, struct reports *rep)
{
    memset(rep, 0, sizeof *rep);
    mf_record_verifier_init(v, &f->id.pub, on_problem, rep);
    for (uint64_t n = 0; spec[n]; n++) {
        const char *text = "MFR1 seq=4 prev=00";
        size_t length = strlen(text);
        if (strcmp(spec[n], "g") != 0) {
            unsigned seq = (unsigned)atoi(spec[n]);
            text = c->lines[seq - 1];
            length = c->lengths[seq - 1];
        }
        assert_int_equal(mf_record_verifier_line(v, "RECORDS.000", n + 1, text, length), 0);
    }
    mf_record_verifier_end(v);
}

/* A torn line the programmer could not cut, between two records that chain (the record after it
 * names the one before it as its previous, at the next seq): it provably hides no record, so it is
 * a note, and the records are intact. Not so for a line that is no record anywhere else: before
 * the first record, after the last one, between records that do not chain (a record damaged in
 * place, or deleted beside it), after a record whose signature does not hold, or more than
 * MF_RECORD_TORN_MAX of them in a row. */
static void test_verify_torn_line_between_chained_records(void **state)
{
    struct fixture *f = *state;
    struct chain c;
    build(&c, &f->id, 8);
    struct mf_record_verifier v;
    struct reports rep;
    static const char *const torn[] = {"1", "2", "3", "g", "4", "5", NULL};
    verify_spec(f, &c, torn, &v, &rep);
    assert_true(mf_record_verifier_intact(&v));
    assert_int_equal(v.malformed, 0);
    assert_int_equal(v.torn_lines, 1);
    assert_int_equal(v.lines, 6);
    assert_int_equal(v.verified, 5);
    assert_int_equal(rep.count[MF_RECORD_TORN_LINE], 1);
    assert_int_equal(rep.count[MF_RECORD_MALFORMED], 0);
    assert_int_equal(rep.last_line, 4);
    if (!strstr(rep.last_of[MF_RECORD_TORN_LINE],
                "between seq 3 and seq 4, which chain: no record is missing there"))
        fail_msg("message: %s", rep.last_of[MF_RECORD_TORN_LINE]);
    mf_record_verifier_free(&v);
    static const char *const two[] = {"1", "2", "g", "g", "3", NULL};
    verify_spec(f, &c, two, &v, &rep);
    assert_true(mf_record_verifier_intact(&v));
    assert_int_equal(v.torn_lines, 2);
    mf_record_verifier_free(&v);

    static const char *const not_bridged[][8] = {
        {"1", "2", "g", "g", "g", "3", NULL}, /* more than MF_RECORD_TORN_MAX */
        {"g", "1", "2", NULL},                /* before the first record */
        {"1", "2", "g", NULL},                /* after the last one */
        {"1", "2", "3", "g", "5", "6", NULL}, /* record 4 damaged in place */
        {"1", "2", "g", "5", NULL},           /* records 3 and 4 deleted beside it */
        {"1", "2", "g", "2", "3", NULL},      /* a record repeated after it */
    };
    for (size_t i = 0; i < sizeof not_bridged / sizeof not_bridged[0]; i++) {
        verify_spec(f, &c, not_bridged[i], &v, &rep);
        if (mf_record_verifier_intact(&v) || v.torn_lines != 0 || v.malformed == 0)
            fail_msg("case %zu: intact %d, %llu torn, %llu malformed", i,
                     mf_record_verifier_intact(&v), (unsigned long long)v.torn_lines,
                     (unsigned long long)v.malformed);
        mf_record_verifier_free(&v);
    }
    /* The record before it edited (its signature does not hold): nothing is proven across. */
    struct chain e;
    memcpy(&e, &c, sizeof e);
    char *serial = strstr(e.lines[1], "serial=1002");
    serial[10] = '9';
    static const char *const after_edit[] = {"1", "2", "g", "3", NULL};
    verify_spec(f, &e, after_edit, &v, &rep);
    assert_false(mf_record_verifier_intact(&v));
    assert_int_equal(v.torn_lines, 0);
    assert_int_equal(v.malformed, 1);
    mf_record_verifier_free(&v);
}

/* Where a head problem is reported: at the file and line of the statement concerned. */
struct head_reports {
    unsigned count;
    char where[64];
    uint64_t line;
    char message[MF_RECORD_MESSAGE_MAX];
    char head_where[64];                      /* of the last MF_RECORD_HEAD problem */
    char head_message[MF_RECORD_MESSAGE_MAX]; /* ... */
};

static void on_head_problem(void *context, enum mf_record_problem problem, const char *where,
                            uint64_t line, const char *message)
{
    struct head_reports *r = context;
    if (problem != MF_RECORD_HEAD && problem != MF_RECORD_COUNTER)
        fail_msg("%s:%llu: unexpected problem %d: %s", where, (unsigned long long)line,
                 (int)problem, message);
    r->count++;
    snprintf(r->where, sizeof r->where, "%s", where);
    r->line = line;
    snprintf(r->message, sizeof r->message, "%s", message);
    if (problem == MF_RECORD_HEAD) {
        snprintf(r->head_where, sizeof r->head_where, "%s:%llu", where, (unsigned long long)line);
        snprintf(r->head_message, sizeof r->head_message, "%s", message);
    }
}

/* A head statement given among the files is reported at its own line; a second one (another
 * statement) is reported where it is, and the first one's problems are still reported at the
 * first; the same statement given twice (--head HEAD, and HEAD among the files) is one. */
static void test_verify_head_where(void **state)
{
    struct fixture *f = *state;
    static const uint64_t counters[] = {1, 2, 3, 4, 5};
    struct chain c;
    counted(f, &c, 0x22, 5, counters, NULL);
    uint8_t nonce[32];
    memset(nonce, 0xA5, sizeof nonce);
    char line[MF_RECORD_LINE_MAX + 1], other[MF_RECORD_LINE_MAX + 1];
    size_t n = head_line(f, &f->id, nonce, 5, c.head, 5, 0, line);
    size_t on = head_line(f, &f->id, nonce, 5, c.head, 6, 1, other);
    struct mf_record_verifier v;
    struct head_reports rep;

    /* Records 1-3 given, the head at line 4 of the same file: 2 records missing after it. */
    memset(&rep, 0, sizeof rep);
    mf_record_verifier_init(&v, &f->id.pub, on_head_problem, &rep);
    for (unsigned i = 0; i < 3; i++)
        assert_int_equal(mf_record_verifier_line(&v, "all.txt", i + 1, c.lines[i], c.lengths[i]),
                         0);
    mf_record_verifier_head(&v, "all.txt", 4, line, n, nonce);
    mf_record_verifier_end(&v);
    assert_int_equal(v.missing_after, 2);
    assert_string_equal(rep.where, "all.txt");
    assert_int_equal(rep.line, 4);
    mf_record_verifier_free(&v);

    /* The head in HEAD, another one at line 9 of other.txt: that one is refused there; the first
     * one's finding (records missing after the last one) is reported at HEAD:1. */
    memset(&rep, 0, sizeof rep);
    mf_record_verifier_init(&v, &f->id.pub, on_head_problem, &rep);
    mf_record_verifier_head(&v, "HEAD", 1, line, n, nonce);
    mf_record_verifier_head(&v, "other.txt", 9, other, on, nonce);
    assert_int_equal(rep.count, 1);
    assert_string_equal(rep.where, "other.txt");
    assert_int_equal(rep.line, 9);
    assert_non_null(strstr(rep.message, "a second head statement"));
    for (unsigned i = 0; i < 3; i++)
        assert_int_equal(mf_record_verifier_line(&v, "all.txt", i + 1, c.lines[i], c.lengths[i]),
                         0);
    mf_record_verifier_end(&v);
    assert_int_equal(v.head.counter, 5); /* the first one */
    assert_non_null(strstr(rep.head_message, "missing after the last one"));
    assert_string_equal(rep.head_where, "HEAD:1");
    assert_non_null(strstr(rep.message, "unaccounted")); /* the head's counter, too */
    assert_string_equal(rep.where, "HEAD");
    assert_int_equal(rep.line, 1);
    mf_record_verifier_free(&v);

    /* The same statement twice (its line end or not): one head, intact. */
    memset(&rep, 0, sizeof rep);
    mf_record_verifier_init(&v, &f->id.pub, on_head_problem, &rep);
    mf_record_verifier_head(&v, "HEAD", 1, line, n, nonce);
    for (unsigned i = 0; i < 5; i++)
        assert_int_equal(mf_record_verifier_line(&v, "all.txt", i + 1, c.lines[i], c.lengths[i]),
                         0);
    mf_record_verifier_head(&v, "HEAD", 1, line, n - 1, nonce);
    mf_record_verifier_end(&v);
    assert_int_equal(rep.count, 0);
    assert_true(mf_record_verifier_intact(&v));
    mf_record_verifier_free(&v);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_line),
        cmocka_unit_test(test_fields_round_trip),
        cmocka_unit_test(test_encode_text),
        cmocka_unit_test(test_format_refuses),
        cmocka_unit_test(test_parse_hostile),
        cmocka_unit_test(test_verify_intact),
        cmocka_unit_test(test_verify_tampering),
        cmocka_unit_test(test_verify_two_setups),
        cmocka_unit_test(test_verify_counter_k1),
        cmocka_unit_test(test_verify_counter_flows),
        cmocka_unit_test(test_verify_head),
        cmocka_unit_test(test_verify_head_where),
        cmocka_unit_test(test_verify_malformed_hides_no_deletion),
        cmocka_unit_test(test_verify_torn_line_between_chained_records),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

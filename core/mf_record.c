/* Production records: formatting, parsing and chain verification (see mf_record.h). */
#include "mf_record.h"

#include "mf_err.h"

#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SIG_B64 88u /* base64 of 64 bytes */

static void say(char *message, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void say(char *message, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, MF_RECORD_MESSAGE_MAX, fmt, ap);
    va_end(ap);
}

const char *mf_record_result_name(enum mf_record_result result)
{
    switch (result) {
    case MF_RECORD_OK:
        return "OK";
    case MF_RECORD_ERR:
        return "ERR";
    case MF_RECORD_GAP:
        return "GAP";
    }
    return "?";
}

static bool fingerprint_ok(const char *f, size_t n)
{
    if (n != MF_OWNER_FINGERPRINT_SIZE - 1)
        return false;
    for (size_t i = 0; i < n; i++) {
        bool dash = i % 5 == 4;
        char c = f[i];
        if (dash ? c != '-' : !((c >= '0' && c <= '9') || (c >= 'A' && c <= 'F')))
            return false;
    }
    return true;
}

/* ---- formatting ---- */

struct out {
    char *buf;
    size_t size, pos;
    bool overflow;
};

static void put(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(struct out *o, const char *fmt, ...)
{
    if (o->overflow)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->buf + o->pos, o->size - o->pos, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= o->size - o->pos)
        o->overflow = true;
    else
        o->pos += (size_t)n;
}

/* Writes `text` with space, '%', control bytes and DEL as %XX; "" as "-" and "-" as "%2D". */
static void put_text(struct out *o, const char *text)
{
    if (!text[0]) {
        put(o, "-");
        return;
    }
    if (strcmp(text, "-") == 0) {
        put(o, "%%2D");
        return;
    }
    for (const unsigned char *c = (const unsigned char *)text; *c; c++) {
        if (*c <= 0x20 || *c == '%' || *c == 0x7F)
            put(o, "%%%02X", *c);
        else
            put(o, "%c", *c);
    }
}

int mf_record_encode_text(const char *text, char *out, size_t size)
{
    struct out o = {out, size, 0, false};
    if (size)
        out[0] = '\0';
    put_text(&o, text);
    return o.overflow ? MF_EINVAL : 0;
}

int mf_record_format(const struct mf_record *r, const uint8_t ed25519_secret[64], char *line,
                     size_t size, size_t *length, uint8_t hash[32])
{
    if (r->seq == 0 || !fingerprint_ok(r->programmer, strlen(r->programmer)) ||
        r->uid_length > MF_RECORD_UID_MAX || !memchr(r->project, '\0', sizeof r->project) ||
        !memchr(r->note, '\0', sizeof r->note) ||
        (r->result == MF_RECORD_GAP && r->gap_first > r->gap_last) ||
        (r->result != MF_RECORD_OK && r->result != MF_RECORD_ERR && r->result != MF_RECORD_GAP))
        return MF_EINVAL;
    struct out o = {line, size, 0, false};
    char hex[2 * MF_RECORD_UID_MAX + 1], when[MF_OWNER_TIME_SIZE];
    mf_owner_hex_encode(r->prev, 32, hex);
    mf_owner_time_format(r->time, when);
    if (when[0] == '@')
        return MF_EINVAL;
    put(&o, "MFR1 seq=%llu prev=%s time=%s programmer=%s", (unsigned long long)r->seq, hex, when,
        r->programmer);
    mf_owner_hex_encode(r->setup, 32, hex);
    put(&o, " setup=%s project=", hex);
    put_text(&o, r->project);
    put(&o, " slot=%u uid=", (unsigned)r->slot);
    if (r->uid_length) {
        mf_owner_hex_encode(r->uid, r->uid_length, hex);
        put(&o, "%s", hex);
    } else {
        put(&o, "-");
    }
    if (r->has_serial)
        put(&o, " serial=%llu", (unsigned long long)r->serial);
    else
        put(&o, " serial=-");
    put(&o, " result=%s counter=%llu", mf_record_result_name(r->result),
        (unsigned long long)r->counter);
    if (r->result == MF_RECORD_GAP) {
        put(&o, " note=gap:%llu-%llu", (unsigned long long)r->gap_first,
            (unsigned long long)r->gap_last);
    } else if (r->note[0]) {
        put(&o, " note=");
        put_text(&o, r->note);
    }
    if (o.overflow)
        return MF_EINVAL;
    size_t body = o.pos;
    uint8_t sig[64];
    char b64[SIG_B64 + 1];
    crypto_sign_detached(sig, NULL, (const uint8_t *)line, body, ed25519_secret);
    mf_owner_b64_encode(sig, sizeof sig, b64, sizeof b64);
    put(&o, " sig=%s\n", b64);
    if (o.overflow || o.pos > MF_RECORD_LINE_MAX)
        return MF_EINVAL;
    mf_record_hash(line, body, hash);
    *length = o.pos;
    return 0;
}

void mf_record_hash(const char *line, size_t body_length, uint8_t hash[32])
{
    crypto_hash_sha256(hash, (const uint8_t *)line, body_length);
}

bool mf_record_signature_ok(const char *line, size_t body_length, const uint8_t signature[64],
                            const uint8_t ed25519_public[32])
{
    return crypto_sign_verify_detached(signature, (const uint8_t *)line, body_length,
                                       ed25519_public) == 0;
}

/* ---- parsing ---- */

/* A canonical decimal number (no sign, no leading zeros) of at most 20 digits. */
static bool parse_decimal(const char *s, size_t n, uint64_t max, uint64_t *value)
{
    if (n == 0 || n > 20 || (n > 1 && s[0] == '0'))
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (max - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *value = v;
    return true;
}

/* Undoes put_text: "-" is "", %XX any byte. At most `max` decoded bytes. */
static bool parse_text(const char *s, size_t n, char *out, size_t max)
{
    if (n == 1 && s[0] == '-') {
        out[0] = '\0';
        return true;
    }
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (o == max)
            return false;
        if (s[i] != '%') {
            out[o++] = s[i];
            continue;
        }
        uint8_t byte;
        if (n - i < 3 || mf_owner_hex_decode(s + i + 1, 2, &byte, 1))
            return false;
        if (byte == 0)
            return false;
        out[o++] = (char)byte;
        i += 2;
    }
    out[o] = '\0';
    return o > 0;
}

static bool parse_gap(const char *note, uint64_t *first, uint64_t *last)
{
    if (strncmp(note, "gap:", 4) != 0)
        return false;
    const char *a = note + 4, *dash = strchr(a, '-');
    if (!dash)
        return false;
    return parse_decimal(a, (size_t)(dash - a), UINT64_MAX, first) &&
           parse_decimal(dash + 1, strlen(dash + 1), UINT64_MAX, last) && *first >= 1 &&
           *first <= *last;
}

/* N of a note "<prefix>N", or false. */
static bool note_count(const char *note, const char *prefix, uint64_t *n)
{
    size_t k = strlen(prefix);
    return strncmp(note, prefix, k) == 0 &&
           parse_decimal(note + k, strlen(note + k), UINT64_MAX, n);
}

bool mf_record_count_unknown(const struct mf_record *r)
{
    return r->result == MF_RECORD_ERR && strcmp(r->note, MF_RECORD_NOTE_COUNT_UNKNOWN) == 0;
}

uint64_t mf_record_cycles(const struct mf_record *r)
{
    uint64_t n;
    if (r->result == MF_RECORD_GAP || mf_record_count_unknown(r))
        return 0;
    if (r->result == MF_RECORD_ERR && (note_count(r->note, MF_RECORD_NOTE_UNRECORDED, &n) ||
                                       note_count(r->note, MF_RECORD_NOTE_COUNTER_AHEAD, &n)))
        return n;
    return 1;
}

enum field {
    F_SEQ,
    F_PREV,
    F_TIME,
    F_PROGRAMMER,
    F_SETUP,
    F_PROJECT,
    F_SLOT,
    F_UID,
    F_SERIAL,
    F_RESULT,
    F_COUNTER,
    F_NOTE,
    F_SIG,
    F_COUNT
};

static const char *const field_names[F_COUNT] = {"seq",     "prev", "time", "programmer", "setup",
                                                 "project", "slot", "uid",  "serial",     "result",
                                                 "counter", "note", "sig"};

static bool parse_value(struct mf_record *r, enum field f, const char *v, size_t n)
{
    uint64_t x;
    switch (f) {
    case F_SEQ:
        return parse_decimal(v, n, UINT64_MAX, &r->seq) && r->seq >= 1;
    case F_PREV:
        return mf_owner_hex_decode(v, n, r->prev, 32) == 0;
    case F_TIME:
        return mf_owner_time_parse(v, n, false, &r->time) == 0;
    case F_PROGRAMMER:
        if (!fingerprint_ok(v, n))
            return false;
        memcpy(r->programmer, v, n);
        r->programmer[n] = '\0';
        return true;
    case F_SETUP:
        return mf_owner_hex_decode(v, n, r->setup, 32) == 0;
    case F_PROJECT:
        return parse_text(v, n, r->project, MF_RECORD_PROJECT_MAX);
    case F_SLOT:
        if (!parse_decimal(v, n, UINT32_MAX, &x))
            return false;
        r->slot = (uint32_t)x;
        return true;
    case F_UID:
        if (n == 1 && v[0] == '-')
            return true;
        if (n % 2 || n / 2 > MF_RECORD_UID_MAX || mf_owner_hex_decode(v, n, r->uid, n / 2))
            return false;
        r->uid_length = n / 2;
        return true;
    case F_SERIAL:
        if (n == 1 && v[0] == '-')
            return true;
        r->has_serial = true;
        return parse_decimal(v, n, UINT64_MAX, &r->serial);
    case F_RESULT:
        for (int k = MF_RECORD_OK; k <= MF_RECORD_GAP; k++) {
            const char *name = mf_record_result_name((enum mf_record_result)k);
            if (strlen(name) == n && memcmp(name, v, n) == 0) {
                r->result = (enum mf_record_result)k;
                return true;
            }
        }
        return false;
    case F_COUNTER:
        return parse_decimal(v, n, UINT64_MAX, &r->counter);
    case F_NOTE:
        return parse_text(v, n, r->note, MF_RECORD_NOTE_MAX) && r->note[0];
    case F_SIG:
        return mf_owner_b64_decode(v, n, r->signature, 64) == 0;
    case F_COUNT:
        break;
    }
    return false;
}

int mf_record_parse(const char *line, size_t length, struct mf_record *r, size_t *body_length,
                    char *message)
{
    memset(r, 0, sizeof *r);
    message[0] = '\0';
    if (length && line[length - 1] == '\n')
        length--;
    if (length && line[length - 1] == '\r')
        length--;
    if (length == 0) {
        say(message, "an empty line");
        return MF_EFORMAT;
    }
    if (length >= MF_RECORD_LINE_MAX) {
        say(message, "longer than %u bytes: not a record", MF_RECORD_LINE_MAX - 1);
        return MF_EFORMAT;
    }
    for (size_t i = 0; i < length; i++) {
        unsigned char c = (unsigned char)line[i];
        if (c < 0x20 || c == 0x7F) {
            say(message, "a control character at column %zu", i + 1);
            return MF_EFORMAT;
        }
    }
    if (length >= 5 && memcmp(line, "MFR", 3) == 0 && line[3] >= '0' && line[3] <= '9' &&
        line[3] != '1' && line[4] == ' ') {
        say(message, "a record of format version %c: this tool reads version 1", line[3]);
        return MF_EVERSION;
    }
    if (length < 5 || memcmp(line, "MFR1 ", 5) != 0) {
        say(message, "not a record (it must start with 'MFR1 ')");
        return MF_EFORMAT;
    }
    size_t pos = 5;
    for (int f = F_SEQ; f < F_COUNT; f++) {
        const char *token = line + pos;
        const char *space = pos < length ? memchr(token, ' ', length - pos) : NULL;
        size_t n = pos >= length ? 0 : space ? (size_t)(space - token) : length - pos;
        if (f == F_NOTE && !(n > 5 && memcmp(token, "note=", 5) == 0))
            continue; /* the note is optional */
        if (pos >= length) {
            say(message, "'%s=' missing", field_names[f]);
            return MF_EFORMAT;
        }
        size_t name_len = strlen(field_names[f]);
        if (n <= name_len || memcmp(token, field_names[f], name_len) != 0 ||
            token[name_len] != '=') {
            say(message, "'%s=' expected at column %zu", field_names[f], pos + 1);
            return MF_EFORMAT;
        }
        if (f == F_SIG) {
            *body_length = pos - 1;
            if (space) {
                say(message, "text after the signature");
                return MF_EFORMAT;
            }
        }
        if (n == name_len + 1 ||
            !parse_value(r, (enum field)f, token + name_len + 1, n - name_len - 1)) {
            say(message, "%s: a bad value", field_names[f]);
            return MF_EFORMAT;
        }
        pos += n + 1;
    }
    if (r->result == MF_RECORD_GAP && !parse_gap(r->note, &r->gap_first, &r->gap_last)) {
        say(message, "note: a GAP record needs note=gap:FIRST-LAST");
        return MF_EFORMAT;
    }
    return 0;
}

/* ---- verification ---- */

void mf_record_verifier_init(struct mf_record_verifier *v,
                             const struct mf_owner_programmer *programmer,
                             mf_record_report_fn report, void *report_context)
{
    memset(v, 0, sizeof *v);
    v->programmer = *programmer;
    v->report = report;
    v->report_context = report_context;
}

void mf_record_verifier_free(struct mf_record_verifier *v)
{
    free(v->totals);
    v->totals = NULL;
    v->total_count = v->total_capacity = 0;
}

static void problem(struct mf_record_verifier *v, enum mf_record_problem kind, const char *where,
                    uint64_t line, const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void problem(struct mf_record_verifier *v, enum mf_record_problem kind, const char *where,
                    uint64_t line, const char *fmt, ...)
{
    uint64_t *counters[] = {&v->malformed, &v->bad_signatures, &v->foreign, &v->chain_breaks,
                            &v->gaps};
    (*counters[kind])++;
    if (!v->report)
        return;
    char text[MF_RECORD_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    v->report(v->report_context, kind, where, line, text);
}

static uint64_t add_saturated(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static int add_total(struct mf_record_verifier *v, const struct mf_record *r)
{
    uint64_t n;
    struct mf_record_total *t = NULL;
    for (size_t i = 0; i < v->total_count && !t; i++) {
        if (memcmp(v->totals[i].setup, r->setup, 32) == 0 &&
            strcmp(v->totals[i].project, r->project) == 0)
            t = &v->totals[i];
    }
    if (!t) {
        if (v->total_count == MF_RECORD_TOTALS_MAX)
            return MF_EFBIG;
        if (v->total_count == v->total_capacity) {
            size_t cap = v->total_capacity ? v->total_capacity * 2 : 8;
            void *p = realloc(v->totals, cap * sizeof *v->totals);
            if (!p)
                return MF_ENOMEM;
            v->totals = p;
            v->total_capacity = cap;
        }
        t = &v->totals[v->total_count++];
        memset(t, 0, sizeof *t);
        memcpy(t->setup, r->setup, 32);
        memcpy(t->project, r->project, sizeof t->project);
    }
    if (r->result == MF_RECORD_OK)
        t->ok++;
    else if (mf_record_count_unknown(r))
        t->unknown++;
    else if (r->result == MF_RECORD_ERR && (note_count(r->note, MF_RECORD_NOTE_UNRECORDED, &n) ||
                                            note_count(r->note, MF_RECORD_NOTE_COUNTER_AHEAD, &n)))
        t->unrecorded = add_saturated(t->unrecorded, n);
    else
        t->failed = add_saturated(t->failed, mf_record_cycles(r));
    if (r->has_serial) {
        if (!t->serials || r->serial < t->serial_min)
            t->serial_min = r->serial;
        if (!t->serials || r->serial > t->serial_max)
            t->serial_max = r->serial;
        t->serials++;
    }
    return 0;
}

/* How this record joins the one before it. */
static void check_chain(struct mf_record_verifier *v, const struct mf_record *r, const char *where,
                        uint64_t line)
{
    static const uint8_t zeros[32];
    bool starts = r->seq == 1 && memcmp(r->prev, zeros, 32) == 0;
    if (starts) {
        v->chains++;
        return;
    }
    if (r->seq == 1) {
        problem(v, MF_RECORD_CHAIN_BREAK, where, line,
                "seq 1 names a previous record: the start of its chain was replaced");
        return;
    }
    if (!v->have_last) {
        if (v->lines == 1)
            problem(v, MF_RECORD_CHAIN_BREAK, where, line,
                    "the records start at seq %llu: records 1 to %llu are missing",
                    (unsigned long long)r->seq, (unsigned long long)(r->seq - 1));
        return; /* after a malformed line: that line was reported */
    }
    unsigned long long seq = r->seq, last = v->last_seq;
    if (r->seq == v->last_seq + 1) {
        if (memcmp(r->prev, v->last_hash, 32) != 0 && !v->last_flagged)
            problem(v, MF_RECORD_CHAIN_BREAK, where, line,
                    "seq %llu does not chain to seq %llu before it: one of them was replaced", seq,
                    last);
    } else if (r->seq > v->last_seq) {
        if (seq == last + 2)
            problem(v, MF_RECORD_CHAIN_BREAK, where, line,
                    "seq %llu follows seq %llu: record %llu is missing (deleted)", seq, last,
                    last + 1);
        else
            problem(v, MF_RECORD_CHAIN_BREAK, where, line,
                    "seq %llu follows seq %llu: records %llu to %llu are missing (deleted)", seq,
                    last, last + 1, seq - 1);
    } else {
        problem(v, MF_RECORD_CHAIN_BREAK, where, line,
                "seq %llu follows seq %llu: records out of order or repeated", seq, last);
    }
}

int mf_record_verifier_line(struct mf_record_verifier *v, const char *where, uint64_t line_number,
                            const char *line, size_t length)
{
    v->lines++;
    struct mf_record r;
    size_t body;
    char message[MF_RECORD_MESSAGE_MAX];
    if (mf_record_parse(line, length, &r, &body, message)) {
        problem(v, MF_RECORD_MALFORMED, where, line_number, "not a valid record: %s", message);
        v->have_last = false;
        return 0;
    }
    v->records++;
    bool ours = strcmp(r.programmer, v->programmer.fingerprint) == 0;
    bool signed_ok = ours && mf_record_signature_ok(line, body, r.signature, v->programmer.ed25519);
    if (!ours)
        problem(v, MF_RECORD_FOREIGN, where, line_number,
                "seq %llu: a record of programmer %s, not of %s", (unsigned long long)r.seq,
                r.programmer, v->programmer.fingerprint);
    else if (!signed_ok)
        problem(v, MF_RECORD_BAD_SIGNATURE, where, line_number,
                "seq %llu: the signature does not hold: the record was edited, or forged",
                (unsigned long long)r.seq);
    check_chain(v, &r, where, line_number);
    v->have_last = true;
    v->last_flagged = !signed_ok;
    v->last_seq = r.seq;
    mf_record_hash(line, body, v->last_hash);
    if (!signed_ok)
        return 0;
    v->verified++;
    if (!v->has_time || r.time < v->first_time)
        v->first_time = r.time;
    if (!v->has_time || r.time > v->last_time)
        v->last_time = r.time;
    v->has_time = true;
    if (r.result == MF_RECORD_GAP) {
        problem(v, MF_RECORD_GAP_FOUND, where, line_number,
                "seq %llu: the programmer found records %llu to %llu missing (the newest records "
                "had been deleted)",
                (unsigned long long)r.seq, (unsigned long long)r.gap_first,
                (unsigned long long)r.gap_last);
        return 0;
    }
    return add_total(v, &r);
}

bool mf_record_verifier_intact(const struct mf_record_verifier *v)
{
    return v->records > 0 && v->verified == v->records && v->malformed == 0 &&
           v->bad_signatures == 0 && v->foreign == 0 && v->chain_breaks == 0 && v->gaps == 0;
}

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

/* Ends the body written so far with " sig=<its signature>" and an LF. -1 when the body or the
 * line did not fit (the body's bytes are all in the buffer when it returns 0). */
static int sign_line(struct out *o, const uint8_t ed25519_secret[64])
{
    if (o->overflow)
        return -1;
    uint8_t sig[64];
    char b64[SIG_B64 + 1];
    crypto_sign_detached(sig, NULL, (const uint8_t *)o->buf, o->pos, ed25519_secret);
    mf_owner_b64_encode(sig, sizeof sig, b64, sizeof b64);
    put(o, " sig=%s\n", b64);
    return o->overflow || o->pos > MF_RECORD_LINE_MAX ? -1 : 0;
}

int mf_record_format(const struct mf_record *r, const uint8_t ed25519_secret[64], char *line,
                     size_t size, size_t *length, uint8_t hash[32])
{
    if (r->seq == 0 || !fingerprint_ok(r->programmer, strlen(r->programmer)) ||
        r->uid_length > MF_RECORD_UID_MAX || !memchr(r->project, '\0', sizeof r->project) ||
        !memchr(r->note, '\0', sizeof r->note) ||
        (r->result == MF_RECORD_GAP && (r->gap_first == 0 || r->gap_first > r->gap_last)) ||
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
    size_t body = o.pos;
    if (sign_line(&o, ed25519_secret))
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

bool mf_record_run_end(const struct mf_record *r)
{
    return r->result == MF_RECORD_ERR && strcmp(r->note, MF_RECORD_NOTE_RUN_END) == 0;
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

static bool parse_fingerprint(const char *v, size_t n, char out[MF_OWNER_FINGERPRINT_SIZE])
{
    if (!fingerprint_ok(v, n))
        return false;
    memcpy(out, v, n);
    out[n] = '\0';
    return true;
}

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
        return parse_fingerprint(v, n, r->programmer);
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

/* What a record and a head statement share before their fields: one line of printable text
 * (its LF or CRLF dropped from *length), starting with "MF<kind>1 ". */
static int line_prelude(const char *line, size_t *length, char kind, const char *what,
                        char *message)
{
    size_t n = *length;
    if (n && line[n - 1] == '\n')
        n--;
    if (n && line[n - 1] == '\r')
        n--;
    *length = n;
    if (n == 0) {
        say(message, "an empty line");
        return MF_EFORMAT;
    }
    if (n >= MF_RECORD_LINE_MAX) {
        say(message, "longer than %u bytes: not a %s", MF_RECORD_LINE_MAX - 1, what);
        return MF_EFORMAT;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)line[i];
        if (c < 0x20 || c == 0x7F) {
            say(message, "a control character at column %zu", i + 1);
            return MF_EFORMAT;
        }
    }
    if (n >= 5 && memcmp(line, "MF", 2) == 0 && line[2] == kind && line[3] >= '0' &&
        line[3] <= '9' && line[3] != '1' && line[4] == ' ') {
        say(message, "a %s of format version %c: this tool reads version 1", what, line[3]);
        return MF_EVERSION;
    }
    if (n < 5 || memcmp(line, "MF", 2) != 0 || line[2] != kind || memcmp(line + 3, "1 ", 2) != 0) {
        say(message, "not a %s (it must start with 'MF%c1 ')", what, kind);
        return MF_EFORMAT;
    }
    return 0;
}

/* The field `name` ("name=value") at *pos; the last field ("sig") ends the line and sets
 * *body_length. 1: an optional field that is not there (*pos unchanged); 0: *value and *n hold
 * its value and *pos is past it; MF_EFORMAT with `message`. */
static int take_field(const char *line, size_t length, size_t *pos, const char *name, bool optional,
                      bool last, size_t *body_length, const char **value, size_t *n, char *message)
{
    const char *token = line + *pos;
    const char *space = *pos < length ? memchr(token, ' ', length - *pos) : NULL;
    size_t size = *pos >= length ? 0 : space ? (size_t)(space - token) : length - *pos;
    size_t name_len = strlen(name);
    if (optional &&
        !(size > name_len + 1 && memcmp(token, name, name_len) == 0 && token[name_len] == '='))
        return 1;
    if (*pos >= length) {
        say(message, "'%s=' missing", name);
        return MF_EFORMAT;
    }
    if (size <= name_len || memcmp(token, name, name_len) != 0 || token[name_len] != '=') {
        say(message, "'%s=' expected at column %zu", name, *pos + 1);
        return MF_EFORMAT;
    }
    if (last) {
        *body_length = *pos - 1;
        if (space) {
            say(message, "text after the signature");
            return MF_EFORMAT;
        }
    }
    *value = token + name_len + 1;
    *n = size - name_len - 1;
    *pos += size + 1;
    if (*n == 0) {
        say(message, "%s: a bad value", name);
        return MF_EFORMAT;
    }
    return 0;
}

int mf_record_parse(const char *line, size_t length, struct mf_record *r, size_t *body_length,
                    char *message)
{
    memset(r, 0, sizeof *r);
    message[0] = '\0';
    int err = line_prelude(line, &length, 'R', "record", message);
    if (err)
        return err;
    size_t pos = 5;
    for (int f = F_SEQ; f < F_COUNT; f++) {
        const char *value;
        size_t n;
        err = take_field(line, length, &pos, field_names[f], f == F_NOTE, f == F_SIG, body_length,
                         &value, &n, message);
        if (err == 1)
            continue; /* the note is optional */
        if (err)
            return err;
        if (!parse_value(r, (enum field)f, value, n)) {
            say(message, "%s: a bad value", field_names[f]);
            return MF_EFORMAT;
        }
    }
    if (r->result == MF_RECORD_GAP && !parse_gap(r->note, &r->gap_first, &r->gap_last)) {
        say(message, "note: a GAP record needs note=gap:FIRST-LAST");
        return MF_EFORMAT;
    }
    return 0;
}

/* ---- the head statement ---- */

int mf_record_head_format(const struct mf_record_head *h, const uint8_t ed25519_secret[64],
                          char *line, size_t size, size_t *length)
{
    if (!memchr(h->programmer, '\0', sizeof h->programmer) ||
        !fingerprint_ok(h->programmer, strlen(h->programmer)))
        return MF_EINVAL;
    struct out o = {line, size, 0, false};
    char nonce[2 * MF_RECORD_HEAD_NONCE_SIZE + 1], setup[65], hash[65], when[MF_OWNER_TIME_SIZE];
    mf_owner_hex_encode(h->nonce, sizeof h->nonce, nonce);
    mf_owner_hex_encode(h->setup, 32, setup);
    mf_owner_hex_encode(h->hash, 32, hash);
    mf_owner_time_format(h->time, when);
    if (when[0] == '@')
        return MF_EINVAL;
    put(&o,
        "MFH1 nonce=%s time=%s programmer=%s setup=%s seq=%llu head=%s counter=%llu pending=%llu",
        nonce, when, h->programmer, setup, (unsigned long long)h->seq, hash,
        (unsigned long long)h->counter, (unsigned long long)h->pending);
    if (sign_line(&o, ed25519_secret))
        return MF_EINVAL;
    *length = o.pos;
    return 0;
}

enum head_field {
    H_NONCE,
    H_TIME,
    H_PROGRAMMER,
    H_SETUP,
    H_SEQ,
    H_HEAD,
    H_COUNTER,
    H_PENDING,
    H_SIG,
    H_COUNT
};

static const char *const head_field_names[H_COUNT] = {
    "nonce", "time", "programmer", "setup", "seq", "head", "counter", "pending", "sig"};

static bool parse_head_value(struct mf_record_head *h, enum head_field f, const char *v, size_t n)
{
    switch (f) {
    case H_NONCE:
        return mf_owner_hex_decode(v, n, h->nonce, sizeof h->nonce) == 0;
    case H_TIME:
        return mf_owner_time_parse(v, n, false, &h->time) == 0;
    case H_PROGRAMMER:
        return parse_fingerprint(v, n, h->programmer);
    case H_SETUP:
        return mf_owner_hex_decode(v, n, h->setup, 32) == 0;
    case H_SEQ:
        return parse_decimal(v, n, UINT64_MAX, &h->seq);
    case H_HEAD:
        return mf_owner_hex_decode(v, n, h->hash, 32) == 0;
    case H_COUNTER:
        return parse_decimal(v, n, UINT64_MAX, &h->counter);
    case H_PENDING:
        return parse_decimal(v, n, UINT64_MAX, &h->pending);
    case H_SIG:
        return mf_owner_b64_decode(v, n, h->signature, 64) == 0;
    case H_COUNT:
        break;
    }
    return false;
}

int mf_record_head_parse(const char *line, size_t length, struct mf_record_head *h,
                         size_t *body_length, char *message)
{
    memset(h, 0, sizeof *h);
    message[0] = '\0';
    int err = line_prelude(line, &length, 'H', "head statement", message);
    if (err)
        return err;
    size_t pos = 5;
    for (int f = H_NONCE; f < H_COUNT; f++) {
        const char *value;
        size_t n;
        err = take_field(line, length, &pos, head_field_names[f], false, f == H_SIG, body_length,
                         &value, &n, message);
        if (err)
            return err;
        if (!parse_head_value(h, (enum head_field)f, value, n)) {
            say(message, "%s: a bad value", head_field_names[f]);
            return MF_EFORMAT;
        }
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
    uint64_t *counters[MF_RECORD_PROBLEM_KINDS] = {
        &v->malformed, &v->bad_signatures,   &v->foreign,       &v->chain_breaks,
        &v->gaps,      &v->counter_problems, &v->head_problems, &v->torn_lines};
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
    if (mf_record_run_end(r))
        return 0; /* a counter step of no device and no project */
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

static void keep_where(char out[MF_RECORD_WHERE_MAX], const char *where)
{
    snprintf(out, MF_RECORD_WHERE_MAX, "%s", where);
}

/* The trust anchor's counter of a verified record: it never goes down, and every step of it is
 * a count taken for a cycle, which a record accounts for (its own, or an "unrecorded:N" or
 * "counter-ahead:N" one). Records are appended after their count, reading the counter then, so a
 * record may show steps whose cycles are recorded just after it (slots running at once): the
 * sums are compared at the end, not record by record. */
static void count_counter(struct mf_record_verifier *v, const struct mf_record *r,
                          const char *where, uint64_t line)
{
    if (!v->has_counter) {
        v->has_counter = true;
        v->counter_base = v->counter_top = r->counter;
        v->base_seq = v->top_seq = r->seq;
        return; /* its own cycles account for steps before the records given */
    }
    uint64_t cycles = mf_record_cycles(r);
    v->credits = add_saturated(v->credits, cycles);
    if (r->counter < v->counter_top) {
        problem(v, MF_RECORD_COUNTER, where, line,
                "seq %llu: counter %llu is lower than %llu of seq %llu before it: the trust "
                "anchor's counter never goes down (records of another anchor, or reordered)",
                (unsigned long long)r->seq, (unsigned long long)r->counter,
                (unsigned long long)v->counter_top, (unsigned long long)v->top_seq);
        return;
    }
    uint64_t step = r->counter - v->counter_top;
    if (step > cycles && step - cycles > v->jump) {
        v->jump = step - cycles;
        v->jump_line = line;
        v->jump_seq = r->seq;
        v->jump_from_seq = v->top_seq;
        v->jump_from = v->counter_top;
        v->jump_to = r->counter;
        keep_where(v->jump_where, where);
    }
    v->counter_top = r->counter;
    v->top_seq = r->seq;
}

/* How this record joins the one before it. */
static void check_chain(struct mf_record_verifier *v, const struct mf_record *r, const char *where,
                        uint64_t line)
{
    static const uint8_t zeros[32];
    bool starts = r->seq == 1 && memcmp(r->prev, zeros, 32) == 0;
    if (starts) {
        /* The programmer's chain runs across its setups; it starts afresh only when its secure
         * area was removed (or its head lost): the records of the chain before may have lost
         * their newest ones, which nothing after them can show. */
        if (v->chains++ > 0 || v->records > 1)
            problem(v, MF_RECORD_CHAIN_BREAK, where, line,
                    "seq 1 starts a second chain: the programmer's chain began afresh (its secure "
                    "area was removed), and the newest records of the one before may be missing");
        return;
    }
    if (r->seq == 1) {
        problem(v, MF_RECORD_CHAIN_BREAK, where, line,
                "seq 1 names a previous record: the start of its chain was replaced");
        return;
    }
    /* Lines that are no record since the last record (reported as such) may each be a record
     * damaged in place, never more: records missing beyond them are named. (A torn line the
     * programmer could not cut took no seq: the record after it follows the one before.) */
    unsigned long long seq = r->seq, last = v->have_last ? v->last_seq : 0,
                       other = v->malformed_run;
    if (!v->have_last) {
        if (seq - 1 > other && other == 0)
            problem(v, MF_RECORD_CHAIN_BREAK, where, line,
                    "the records start at seq %llu: records 1 to %llu are missing", seq, seq - 1);
        else if (seq - 1 > other)
            problem(v, MF_RECORD_CHAIN_BREAK, where, line,
                    "the records start at seq %llu after %llu line(s) that are no record: at "
                    "least %llu of records 1 to %llu are missing",
                    seq, other, seq - 1 - other, seq - 1);
        return;
    }
    if (r->seq == v->last_seq + 1) {
        if (memcmp(r->prev, v->last_hash, 32) != 0 && !v->last_flagged)
            problem(v, MF_RECORD_CHAIN_BREAK, where, line,
                    "seq %llu does not chain to seq %llu before it: one of them was replaced", seq,
                    last);
    } else if (r->seq > v->last_seq && other > 0) {
        if (seq - last - 1 > other)
            problem(v, MF_RECORD_CHAIN_BREAK, where, line,
                    "seq %llu follows seq %llu and %llu line(s) that are no record: at least %llu "
                    "of records %llu to %llu are missing (deleted)",
                    seq, last, other, seq - last - 1 - other, last + 1, seq - 1);
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

/* The lines that are no record held back since the last record, reported now: as torn lines
 * when `torn` (the record after them chains to the one before), else as malformed. */
static void report_pending(struct mf_record_verifier *v, bool torn)
{
    for (unsigned i = 0; i < v->pending_count; i++) {
        if (torn)
            problem(v, MF_RECORD_TORN_LINE, v->pending[i].where, v->pending[i].line,
                    "a line that is no record (%s) between seq %llu and seq %llu, which chain: no "
                    "record is missing there (a line torn by a power cut)",
                    v->pending[i].message, (unsigned long long)v->last_seq,
                    (unsigned long long)v->last_seq + 1);
        else
            problem(v, MF_RECORD_MALFORMED, v->pending[i].where, v->pending[i].line,
                    "not a valid record: %s", v->pending[i].message);
    }
    v->pending_count = 0;
}

int mf_record_verifier_line(struct mf_record_verifier *v, const char *where, uint64_t line_number,
                            const char *line, size_t length)
{
    v->lines++;
    struct mf_record r;
    size_t body;
    char message[MF_RECORD_MESSAGE_MAX];
    if (mf_record_parse(line, length, &r, &body, message)) {
        /* After a verified record, a few such lines are held back: the next record shows whether
         * they hide one. */
        if (v->have_last && !v->last_flagged && v->pending_count == v->malformed_run &&
            v->pending_count < MF_RECORD_TORN_MAX) {
            keep_where(v->pending[v->pending_count].where, where);
            v->pending[v->pending_count].line = line_number;
            snprintf(v->pending[v->pending_count].message, MF_RECORD_MESSAGE_MAX, "%s", message);
            v->pending_count++;
        } else {
            report_pending(v, false);
            problem(v, MF_RECORD_MALFORMED, where, line_number, "not a valid record: %s", message);
        }
        v->malformed_run++;
        return 0;
    }
    v->records++;
    bool ours = strcmp(r.programmer, v->programmer.fingerprint) == 0;
    bool signed_ok = ours && mf_record_signature_ok(line, body, r.signature, v->programmer.ed25519);
    /* Held-back lines hide no record when this one follows the last one directly: its prev is
     * the hash of that verified record, its seq the next (both under the programmer's key). */
    if (v->pending_count)
        report_pending(v, signed_ok && r.seq == v->last_seq + 1 &&
                              memcmp(r.prev, v->last_hash, 32) == 0);
    if (!ours)
        problem(v, MF_RECORD_FOREIGN, where, line_number,
                "seq %llu: a record of programmer %s, not of %s", (unsigned long long)r.seq,
                r.programmer, v->programmer.fingerprint);
    else if (!signed_ok)
        problem(v, MF_RECORD_BAD_SIGNATURE, where, line_number,
                "seq %llu: the signature does not hold: the record was edited, or forged",
                (unsigned long long)r.seq);
    check_chain(v, &r, where, line_number);
    v->malformed_run = 0;
    v->have_last = true;
    v->last_flagged = !signed_ok;
    v->last_seq = r.seq;
    mf_record_hash(line, body, v->last_hash);
    if (!signed_ok)
        return 0;
    v->verified++;
    count_counter(v, &r, where, line_number);
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

void mf_record_verifier_head(struct mf_record_verifier *v, const char *where, uint64_t line_number,
                             const char *line, size_t length, const uint8_t *nonce)
{
    struct mf_record_head h;
    size_t body;
    char message[MF_RECORD_MESSAGE_MAX];
    uint64_t at = line_number;
    if (mf_record_head_parse(line, length, &h, &body, message) != 0) {
        problem(v, MF_RECORD_HEAD, where, at, "not a valid head statement: %s", message);
        return;
    }
    if (strcmp(h.programmer, v->programmer.fingerprint) != 0) {
        problem(v, MF_RECORD_HEAD, where, at, "the head statement of programmer %s, not of %s",
                h.programmer, v->programmer.fingerprint);
        return;
    }
    if (!mf_record_signature_ok(line, body, h.signature, v->programmer.ed25519)) {
        problem(v, MF_RECORD_HEAD, where, at,
                "the head statement's signature does not hold: it was edited, or forged");
        return;
    }
    if (nonce && sodium_memcmp(nonce, h.nonce, sizeof h.nonce) != 0) {
        problem(v, MF_RECORD_HEAD, where, at,
                "the head statement answers another nonce: it is not the answer to yours (an "
                "older one, replayed)");
        return;
    }
    /* The same statement again (--head HEAD, and HEAD among the files) is the one taken; another
     * one is refused where it is, and the first one's findings stay at the first. */
    uint8_t hash[32];
    mf_record_hash(line, body, hash);
    if (v->has_head) {
        if (sodium_memcmp(hash, v->head_hash, 32) != 0)
            problem(v, MF_RECORD_HEAD, where, at, "a second head statement: give one");
        return;
    }
    v->head = h;
    v->has_head = true;
    memcpy(v->head_hash, hash, 32);
    keep_where(v->head_where, where);
    v->head_line = at;
}

/* Do the records end where the programmer's head says its chain ends? */
static void check_head(struct mf_record_verifier *v)
{
    const struct mf_record_head *h = &v->head;
    const char *where = v->head_where;
    unsigned long long head = h->seq, last = v->last_seq;
    if (h->seq == 0) {
        if (v->records > 0)
            problem(v, MF_RECORD_HEAD, where, v->head_line,
                    "the programmer's chain holds no record yet, but records were given: they "
                    "are of a chain before (its secure area was removed since)");
        return;
    }
    if (!v->have_last) {
        problem(v, MF_RECORD_HEAD, where, v->head_line,
                "no record was given; the programmer's newest is seq %llu", head);
        return;
    }
    if (v->last_seq + 1 == h->seq) {
        v->missing_after = 1;
        problem(v, MF_RECORD_HEAD, where, v->head_line,
                "the records end at seq %llu, the programmer's newest is seq %llu: 1 record "
                "missing after the last one given (deleted, or not fetched)",
                last, head);
    } else if (v->last_seq < h->seq) {
        v->missing_after = h->seq - v->last_seq;
        problem(v, MF_RECORD_HEAD, where, v->head_line,
                "the records end at seq %llu, the programmer's newest is seq %llu: %llu "
                "record(s) missing after the last one given (%llu to %llu: deleted, or not "
                "fetched)",
                last, head, (unsigned long long)v->missing_after, last + 1, head);
    } else if (v->last_seq > h->seq) {
        problem(v, MF_RECORD_HEAD, where, v->head_line,
                "the records go on to seq %llu beyond the programmer's newest, seq %llu: they are "
                "not of its current chain",
                last, head);
    } else if (memcmp(v->last_hash, h->hash, 32) != 0) {
        problem(v, MF_RECORD_HEAD, where, v->head_line,
                "seq %llu is not the record the programmer holds as its newest: it was replaced",
                head);
    }
}

void mf_record_verifier_end(struct mf_record_verifier *v)
{
    if (v->ended)
        return;
    v->ended = true;
    report_pending(v, false); /* after the last record: nothing shows what they hide */
    if (v->has_head)
        check_head(v);
    if (!v->has_counter)
        return;
    uint64_t top = v->counter_top, explained = v->credits;
    bool to_head = false;
    if (v->has_head) {
        if (v->head.counter < v->counter_top)
            problem(v, MF_RECORD_COUNTER, v->head_where, v->head_line,
                    "the head's counter %llu is lower than %llu of seq %llu: the trust anchor's "
                    "counter never goes down",
                    (unsigned long long)v->head.counter, (unsigned long long)v->counter_top,
                    (unsigned long long)v->top_seq);
        else
            to_head = v->head.counter > top;
        if (to_head)
            top = v->head.counter;
        explained = add_saturated(explained, v->head.pending);
    }
    uint64_t rise = top - v->counter_base;
    if (rise <= explained)
        return;
    v->unaccounted = rise - explained;
    char jump[112] = "";
    if (v->jump)
        snprintf(jump, sizeof jump, "; the biggest jump: %llu to %llu from seq %llu to seq %llu",
                 (unsigned long long)v->jump_from, (unsigned long long)v->jump_to,
                 (unsigned long long)v->jump_from_seq, (unsigned long long)v->jump_seq);
    bool at_jump = v->jump > 0;
    problem(v, MF_RECORD_COUNTER, at_jump ? v->jump_where : v->head_where,
            at_jump ? v->jump_line : v->head_line,
            "%llu count(s) of the trust anchor unaccounted for: its counter rose by %llu after seq "
            "%llu (%llu to %llu%s), the records after it account for %llu%s",
            (unsigned long long)v->unaccounted, (unsigned long long)rise,
            (unsigned long long)v->base_seq, (unsigned long long)v->counter_base,
            (unsigned long long)top, to_head ? ", the head's" : "", (unsigned long long)explained,
            jump);
}

bool mf_record_verifier_intact(const struct mf_record_verifier *v)
{
    return v->ended && v->records > 0 && v->verified == v->records && v->malformed == 0 &&
           v->bad_signatures == 0 && v->foreign == 0 && v->chain_breaks == 0 && v->gaps == 0 &&
           v->counter_problems == 0 && v->head_problems == 0;
}

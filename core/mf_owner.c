/* Keys, key files and text helpers of the owner's side (see mf_owner.h). The key files are tiny,
 * so parsing works on one bounded line at a time and never allocates. */
#include "mf_owner.h"

#include "mf_err.h"
#include "mf_time.h"

#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define LINE_MAX_BYTES 256u /* the longest line a key file may have */

static void say(char *message, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void say(char *message, const char *fmt, ...)
{
    if (!message)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, MF_OWNER_MESSAGE_MAX, fmt, ap);
    va_end(ap);
}

/* ---- identities and fingerprints ---- */

void mf_owner_fingerprint(const uint8_t id[32], char fingerprint[MF_OWNER_FINGERPRINT_SIZE])
{
    static const char digits[] = "0123456789ABCDEF";
    size_t o = 0;
    for (unsigned i = 0; i < 10; i++) {
        if (i && i % 2 == 0)
            fingerprint[o++] = '-';
        fingerprint[o++] = digits[id[i] >> 4];
        fingerprint[o++] = digits[id[i] & 15];
    }
    fingerprint[o] = '\0';
}

void mf_owner_programmer_complete(struct mf_owner_programmer *p)
{
    static const char domain[] = "mintflash programmer"; /* hashed with its NUL */
    crypto_hash_sha256_state st;
    crypto_hash_sha256_init(&st);
    crypto_hash_sha256_update(&st, (const uint8_t *)domain, sizeof domain);
    crypto_hash_sha256_update(&st, p->x25519, 32);
    crypto_hash_sha256_update(&st, p->ed25519, 32);
    crypto_hash_sha256_final(&st, p->id);
    mf_owner_fingerprint(p->id, p->fingerprint);
}

void mf_owner_key_from_public(const uint8_t ed25519[32], struct mf_owner_key *key)
{
    static const char domain[] = "mintflash owner"; /* hashed with its NUL */
    uint8_t id[32];
    crypto_hash_sha256_state st;
    memcpy(key->ed25519, ed25519, 32);
    crypto_hash_sha256_init(&st);
    crypto_hash_sha256_update(&st, (const uint8_t *)domain, sizeof domain);
    crypto_hash_sha256_update(&st, ed25519, 32);
    crypto_hash_sha256_final(&st, id);
    mf_owner_fingerprint(id, key->fingerprint);
}

void mf_owner_keypair_from_seed(const uint8_t seed[32], uint8_t ed25519_public[32],
                                uint8_t ed25519_secret[64])
{
    crypto_sign_seed_keypair(ed25519_public, ed25519_secret, seed);
}

void mf_owner_identity_derive(const uint8_t secret[64], struct mf_owner_identity *identity)
{
    memset(identity, 0, sizeof *identity);
    memcpy(identity->x25519_secret, secret, 32);
    crypto_scalarmult_base(identity->pub.x25519, identity->x25519_secret);
    crypto_sign_seed_keypair(identity->pub.ed25519, identity->ed25519_secret, secret + 32);
    mf_owner_programmer_complete(&identity->pub);
}

void mf_owner_identity_wipe(struct mf_owner_identity *identity)
{
    sodium_memzero(identity->x25519_secret, sizeof identity->x25519_secret);
    sodium_memzero(identity->ed25519_secret, sizeof identity->ed25519_secret);
}

/* ---- text helpers ---- */

size_t mf_owner_b64_size(size_t length)
{
    return sodium_base64_ENCODED_LEN(length, sodium_base64_VARIANT_ORIGINAL);
}

int mf_owner_b64_encode(const uint8_t *data, size_t length, char *out, size_t size)
{
    if (size < mf_owner_b64_size(length))
        return MF_EINVAL;
    sodium_bin2base64(out, size, data, length, sodium_base64_VARIANT_ORIGINAL);
    return 0;
}

int mf_owner_b64_decode(const char *text, size_t length, uint8_t *out, size_t size)
{
    /* Only the exact encoded length can hold exactly `size` bytes. */
    if (length != mf_owner_b64_size(size) - 1)
        return MF_EFORMAT;
    size_t got = 0;
    const char *end = NULL;
    if (sodium_base642bin(out, size, text, length, NULL, &got, &end,
                          sodium_base64_VARIANT_ORIGINAL) != 0 ||
        got != size || end != text + length) {
        sodium_memzero(out, size);
        return MF_EFORMAT;
    }
    return 0;
}

void mf_owner_hex_encode(const uint8_t *data, size_t length, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < length; i++) {
        out[2 * i] = digits[data[i] >> 4];
        out[2 * i + 1] = digits[data[i] & 15];
    }
    out[2 * length] = '\0';
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int mf_owner_hex_decode(const char *text, size_t length, uint8_t *out, size_t size)
{
    if (length != 2 * size)
        return MF_EFORMAT;
    for (size_t i = 0; i < size; i++) {
        int hi = hex_digit(text[2 * i]), lo = hex_digit(text[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return MF_EFORMAT;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

void mf_owner_time_format(int64_t seconds, char out[MF_OWNER_TIME_SIZE])
{
    struct mf_civil_time t;
    /* Beyond +-10^15 s the calendar arithmetic would overflow; no real time is there. */
    if (seconds > 1000000000000000LL || seconds < -1000000000000000LL) {
        snprintf(out, MF_OWNER_TIME_SIZE, "@%lld", (long long)seconds);
        return;
    }
    mf_time_to_civil(seconds, &t);
    if (t.year < 0 || t.year > 9999) {
        snprintf(out, MF_OWNER_TIME_SIZE, "@%lld", (long long)seconds);
        return;
    }
    snprintf(out, MF_OWNER_TIME_SIZE, "%04d-%02u-%02uT%02u:%02u:%02uZ", (int)t.year, t.month % 100,
             t.day % 100, t.hour % 100, t.minute % 100, t.second % 100);
}

/* `count` decimal digits at `text`, or -1. */
static int digits_value(const char *text, unsigned count)
{
    int v = 0;
    for (unsigned i = 0; i < count; i++) {
        if (text[i] < '0' || text[i] > '9')
            return -1;
        v = v * 10 + (text[i] - '0');
    }
    return v;
}

int mf_owner_time_parse(const char *text, size_t length, bool date_alone, int64_t *seconds)
{
    if (length != 20 && !(date_alone && length == 10))
        return MF_EFORMAT;
    if (text[4] != '-' || text[7] != '-')
        return MF_EFORMAT;
    int year = digits_value(text, 4), month = digits_value(text + 5, 2),
        day = digits_value(text + 8, 2), hour = 0, minute = 0, second = 0;
    if (length == 20) {
        if (text[10] != 'T' || text[13] != ':' || text[16] != ':' || text[19] != 'Z')
            return MF_EFORMAT;
        hour = digits_value(text + 11, 2);
        minute = digits_value(text + 14, 2);
        second = digits_value(text + 17, 2);
    }
    if (year < 0 || month < 1 || month > 12 || day < 1 || hour < 0 || hour > 23 || minute < 0 ||
        minute > 59 || second < 0 || second > 59)
        return MF_EFORMAT;
    static const int month_days[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    if (day > month_days[month - 1] || (month == 2 && !leap && day > 28))
        return MF_EFORMAT;
    *seconds = mf_time_days_from_civil(year, (unsigned)month, (unsigned)day) * 86400 + hour * 3600 +
               minute * 60 + second;
    return 0;
}

bool mf_owner_text_ok(const char *text, size_t length)
{
    const uint8_t *s = (const uint8_t *)text;
    for (size_t i = 0; i < length;) {
        uint8_t c = s[i];
        if (c < 0x80) {
            if (c < 0x20 || c == 0x7F)
                return false;
            i++;
            continue;
        }
        /* Lead byte: its length and the smallest code point it may encode (no overlongs). */
        size_t n;
        uint32_t cp, min;
        if (c >= 0xC2 && c <= 0xDF) {
            n = 2;
            cp = c & 0x1Fu;
            min = 0x80;
        } else if (c >= 0xE0 && c <= 0xEF) {
            n = 3;
            cp = c & 0x0Fu;
            min = 0x800;
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 4;
            cp = c & 0x07u;
            min = 0x10000;
        } else {
            return false;
        }
        if (length - i < n)
            return false;
        for (size_t k = 1; k < n; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
            cp = cp << 6 | (s[i + k] & 0x3Fu);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += n;
    }
    return true;
}

/* ---- key files ---- */

struct field {
    const char *name;
    char value[LINE_MAX_BYTES];
    size_t length;
    bool seen;
};

/* UTF-8 without control characters, tabs allowed. */
static bool line_ok(const char *line, size_t n)
{
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && line[i] != '\t')
            continue;
        if (!mf_owner_text_ok(line + start, i - start))
            return false;
        start = i + 1;
    }
    return true;
}

/* Splits `text` into "key: value" lines after the header line "<kind> <version>" (version 1
 * only) and fills `fields`; every field must appear exactly once. */
static int parse_fields(const char *text, size_t length, const char *kind, struct field *fields,
                        size_t field_count, char *message)
{
    if (length > MF_OWNER_FILE_MAX) {
        say(message, "longer than %u bytes: not a %s file", MF_OWNER_FILE_MAX, kind);
        return MF_EFBIG;
    }
    if (length >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) {
        text += 3;
        length -= 3;
    }
    bool header = false;
    unsigned line_no = 0;
    for (size_t pos = 0; pos < length;) {
        line_no++;
        const char *line = text + pos;
        const char *nl = memchr(line, '\n', length - pos);
        size_t n = nl ? (size_t)(nl - line) : length - pos;
        pos += n + (nl ? 1 : 0);
        if (n && line[n - 1] == '\r')
            n--;
        if (n == 0)
            continue;
        if (n >= LINE_MAX_BYTES) {
            say(message, "line %u: longer than %u bytes", line_no, LINE_MAX_BYTES - 1);
            return MF_EFORMAT;
        }
        if (!line_ok(line, n)) {
            say(message, "line %u: control characters or bad UTF-8", line_no);
            return MF_EFORMAT;
        }
        if (!header) {
            size_t k = strlen(kind);
            if (n > k + 1 && memcmp(line, kind, k) == 0 && line[k] == ' ') {
                if (n == k + 2 && line[k + 1] == '1') {
                    header = true;
                    continue;
                }
                say(message, "line %u: %.*s: this version of the format is not supported", line_no,
                    (int)n, line);
                return MF_EVERSION;
            }
            say(message, "line %u: not a %s file (the first line must be '%s 1')", line_no, kind,
                kind);
            return MF_EFORMAT;
        }
        const char *colon = memchr(line, ':', n);
        if (!colon) {
            say(message, "line %u: not 'key: value'", line_no);
            return MF_EFORMAT;
        }
        size_t key_len = (size_t)(colon - line);
        const char *value = colon + 1;
        size_t value_len = n - key_len - 1;
        while (value_len && (*value == ' ' || *value == '\t')) {
            value++;
            value_len--;
        }
        while (value_len && (value[value_len - 1] == ' ' || value[value_len - 1] == '\t'))
            value_len--;
        struct field *f = NULL;
        for (size_t i = 0; i < field_count; i++) {
            if (strlen(fields[i].name) == key_len && memcmp(fields[i].name, line, key_len) == 0)
                f = &fields[i];
        }
        if (!f) {
            say(message, "line %u: unknown key '%.*s' in a %s file", line_no,
                (int)(key_len < 40 ? key_len : 40), line, kind);
            return MF_EFORMAT;
        }
        if (f->seen) {
            say(message, "line %u: '%s' given twice", line_no, f->name);
            return MF_EFORMAT;
        }
        f->seen = true;
        memcpy(f->value, value, value_len);
        f->value[value_len] = '\0';
        f->length = value_len;
    }
    if (!header) {
        say(message, "empty: not a %s file", kind);
        return MF_EFORMAT;
    }
    for (size_t i = 0; i < field_count; i++) {
        if (!fields[i].seen) {
            say(message, "no '%s' line in the %s file", fields[i].name, kind);
            return MF_EFORMAT;
        }
    }
    return 0;
}

static int decode_key(const struct field *f, uint8_t key[32], char *message)
{
    if (mf_owner_b64_decode(f->value, f->length, key, 32)) {
        say(message, "%s: not 32 bytes in base64", f->name);
        return MF_EFORMAT;
    }
    return 0;
}

static int check_fingerprint(const struct field *f, const char *computed, char *message)
{
    if (f->length != MF_OWNER_FINGERPRINT_SIZE - 1 || memcmp(f->value, computed, f->length) != 0) {
        say(message, "fingerprint %.30s does not match the keys (they give %s): damaged file",
            f->value, computed);
        return MF_EFORMAT;
    }
    return 0;
}

static int emit(char *out, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int emit(char *out, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, size, fmt, ap);
    va_end(ap);
    return (n < 0 || (size_t)n >= size) ? MF_EINVAL : 0;
}

int mf_owner_format_programmer(const struct mf_owner_programmer *p, char *out, size_t size)
{
    char x[48], e[48];
    mf_owner_b64_encode(p->x25519, 32, x, sizeof x);
    mf_owner_b64_encode(p->ed25519, 32, e, sizeof e);
    return emit(out, size, "mintflash-programmer 1\nfingerprint: %s\nx25519: %s\ned25519: %s\n",
                p->fingerprint, x, e);
}

int mf_owner_parse_programmer(const char *text, size_t length, struct mf_owner_programmer *p,
                              char *message)
{
    struct field fields[3] = {{.name = "fingerprint"}, {.name = "x25519"}, {.name = "ed25519"}};
    int err = parse_fields(text, length, "mintflash-programmer", fields, 3, message);
    if (!err)
        err = decode_key(&fields[1], p->x25519, message);
    if (!err)
        err = decode_key(&fields[2], p->ed25519, message);
    if (err)
        return err;
    mf_owner_programmer_complete(p);
    return check_fingerprint(&fields[0], p->fingerprint, message);
}

int mf_owner_format_public(const struct mf_owner_key *key, char *out, size_t size)
{
    char e[48];
    mf_owner_b64_encode(key->ed25519, 32, e, sizeof e);
    return emit(out, size, "mintflash-owner 1\nfingerprint: %s\ned25519: %s\n", key->fingerprint,
                e);
}

int mf_owner_parse_public(const char *text, size_t length, struct mf_owner_key *key, char *message)
{
    struct field fields[2] = {{.name = "fingerprint"}, {.name = "ed25519"}};
    uint8_t pk[32];
    int err = parse_fields(text, length, "mintflash-owner", fields, 2, message);
    if (!err)
        err = decode_key(&fields[1], pk, message);
    if (err)
        return err;
    mf_owner_key_from_public(pk, key);
    return check_fingerprint(&fields[0], key->fingerprint, message);
}

int mf_owner_format_secret(const uint8_t seed[32], char *out, size_t size)
{
    char s[48];
    mf_owner_b64_encode(seed, 32, s, sizeof s);
    int err = emit(out, size, "mintflash-owner-secret 1\ned25519-seed: %s\n", s);
    sodium_memzero(s, sizeof s);
    return err;
}

int mf_owner_parse_secret(const char *text, size_t length, uint8_t seed[32], char *message)
{
    struct field fields[1] = {{.name = "ed25519-seed"}};
    int err = parse_fields(text, length, "mintflash-owner-secret", fields, 1, message);
    if (!err)
        err = decode_key(&fields[0], seed, message);
    sodium_memzero(fields, sizeof fields);
    return err;
}

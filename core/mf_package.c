/* Sealed setup packages: the writer, the checking reader and the package's files as an mf_area
 * (see mf_package.h; the byte layout is in docs/internals/owner.md). */
#include "mf_package.h"
#include "mf_le.h"
#include "mf_sha256.h"

#include "mf_err.h"
#include "mf_ini.h"
#include "mf_numfile.h"
#include "mf_owner.h"
#include "mf_setup.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAGIC_SIZE     8u
#define STORED_CHUNK   (MF_PACKAGE_CHUNK + MF_PACKAGE_TAG)
#define RECORD_MIN     (2u + 1u + 8u + 32u) /* one manifest record */
#define RECORD_MAX     (2u + MF_PACKAGE_PATH_MAX + 8u + 32u)
#define MANIFEST_NONCE UINT64_MAX /* its nonce's counter part */
#define CHUNK_AD_SIZE  (32u + 4u + 4u + 1u)
#define PACKAGE_MIN                                                                                \
    (MF_PACKAGE_FIXED + MF_PACKAGE_RECIPIENT + 4u + MF_PACKAGE_TAG + MF_PACKAGE_SIGNATURE)
#define NO_FILE UINT32_MAX

static const uint8_t magic[MAGIC_SIZE] = {'M', 'F', 'P', 'K', 'G', 0, MF_PACKAGE_VERSION, 0};

struct mf_package_file {
    char path[MF_PACKAGE_PATH_MAX + 1];
    uint64_t size;
    uint8_t sha256[32];
    uint64_t offset;      /* of its first stored chunk in the package */
    uint64_t first_chunk; /* global number of its first chunk */
    uint32_t chunks;
};

static void say(char *message, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void say(char *message, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, MF_PACKAGE_MESSAGE_MAX, fmt, ap);
    va_end(ap);
}

static uint64_t chunks_of(uint64_t size)
{
    return size / MF_PACKAGE_CHUNK + (size % MF_PACKAGE_CHUNK != 0);
}

static char upper(char c)
{
    return (c >= 'a' && c <= 'z') ? (char)(c - 32) : c;
}

/* Compares `a` (a_len bytes) with the string `b` as the setup id orders paths: upper-cased
 * ASCII, then bytes as unsigned. */
static int path_order(const char *a, size_t a_len, const char *b)
{
    for (size_t i = 0;; i++) {
        unsigned char x = i < a_len ? (unsigned char)upper(a[i]) : 0;
        unsigned char y = (unsigned char)upper(b[i]);
        if (x != y || !x)
            return (int)x - (int)y;
    }
}

/* Does `path` start with `prefix` (p_len bytes), ignoring ASCII case? */
static bool has_prefix(const char *path, const char *prefix, size_t p_len)
{
    for (size_t i = 0; i < p_len; i++) {
        if (!path[i] || upper(path[i]) != upper(prefix[i]))
            return false;
    }
    return true;
}

static void nonce_of(const uint8_t prefix[16], uint64_t counter, uint8_t nonce[24])
{
    memcpy(nonce, prefix, 16);
    mf_put_le64(nonce + 16, counter);
}

static void chunk_ad(const uint8_t header_hash[32], uint32_t file, uint32_t chunk, bool last,
                     uint8_t ad[CHUNK_AD_SIZE])
{
    memcpy(ad, header_hash, 32);
    mf_put_le32(ad + 32, file);
    mf_put_le32(ad + 36, chunk);
    ad[40] = last;
}

bool mf_package_path_ok(const char *path, size_t length)
{
    if (length == 0 || length > MF_PACKAGE_PATH_MAX || !mf_owner_text_ok(path, length))
        return false;
    size_t start = 0;
    for (size_t i = 0; i <= length; i++) {
        if (i < length && path[i] == '\\')
            return false;
        if (i < length && path[i] != '/')
            continue;
        size_t n = i - start;
        if (n == 0 || (n == 1 && path[start] == '.') ||
            (n == 2 && path[start] == '.' && path[start + 1] == '.'))
            return false;
        start = i + 1;
    }
    return true;
}

bool mf_package_programmer_file(const char *path)
{
    return mf_setup_programmer_file(path); /* the setup id is the setup's fingerprint */
}

/* Feeds one file's name and size to the setup id (mf_setup_fingerprint's layout). */
static void setup_id_file(struct mf_sha256 *st, const char *path, uint64_t size)
{
    char up[MF_PACKAGE_PATH_MAX + 1];
    size_t n = strlen(path);
    for (size_t i = 0; i <= n; i++)
        up[i] = upper(path[i]);
    uint8_t le[8];
    mf_put_le64(le, size);
    mf_sha256_update(st, (const uint8_t *)up, n + 1);
    mf_sha256_update(st, le, 8);
}

/* Index of the file named exactly `name` (n bytes, ignoring case) among `count` sorted paths, or
 * -1. `path_at` gives the i-th path. */
static long find_sorted(const void *table, size_t count,
                        const char *(*path_at)(const void *, size_t), const char *name, size_t n)
{
    size_t lo = 0, hi = count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = path_order(name, n, path_at(table, mid));
        if (c == 0)
            return (long)mid;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return -1;
}

/* First index whose path is not below `key` (k bytes) in path order. */
static size_t lower_bound(const void *table, size_t count,
                          const char *(*path_at)(const void *, size_t), const char *key, size_t k)
{
    size_t lo = 0, hi = count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (path_order(key, k, path_at(table, mid)) > 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Checks sorted paths: strictly ascending (so unique ignoring case), and no file is also a
 * folder of another file ("a" and "A/b"). Returns the index of the first offender, or -1. */
static long check_sorted(const void *table, size_t count,
                         const char *(*path_at)(const void *, size_t), bool *duplicate)
{
    for (size_t i = 0; i < count; i++) {
        const char *path = path_at(table, i);
        if (i && path_order(path_at(table, i - 1), strlen(path_at(table, i - 1)), path) >= 0) {
            *duplicate = true;
            return (long)i;
        }
        for (const char *s = strchr(path, '/'); s; s = strchr(s + 1, '/')) {
            if (find_sorted(table, count, path_at, path, (size_t)(s - path)) >= 0) {
                *duplicate = false;
                return (long)i;
            }
        }
    }
    return -1;
}

/* ---- writing ---- */

struct sorted_input {
    const char *path;
    uint64_t size;
    uint32_t index; /* in spec->files */
};

static const char *input_path_at(const void *table, size_t i)
{
    return ((const struct sorted_input *)table)[i].path;
}

static int input_compare(const void *a, const void *b)
{
    const char *x = ((const struct sorted_input *)a)->path;
    return path_order(x, strlen(x), ((const struct sorted_input *)b)->path);
}

struct writer {
    const struct mf_package_spec *spec;
    crypto_sign_state sign;
    char *message;
};

static int emit(struct writer *w, const void *data, size_t length)
{
    crypto_sign_update(&w->sign, data, length);
    int err = w->spec->write(w->spec->write_context, data, length);
    if (err)
        say(w->message, "cannot write the package: %s", mf_strerror(err));
    return err;
}

static int read_input(const struct mf_package_spec *spec, const struct sorted_input *f,
                      uint64_t offset, uint8_t *buffer, size_t n, char *message)
{
    int err = spec->read(spec->read_context, f->index, offset, buffer, n);
    if (err)
        say(message, "%.255s: cannot read at byte %llu: %s", f->path, (unsigned long long)offset,
            mf_strerror(err));
    return err;
}

static int check_spec(const struct mf_package_spec *spec, char *message)
{
    if (spec->file_count == 0) {
        say(message, "the setup has no files");
        return MF_EINVAL;
    }
    if (spec->file_count > MF_PACKAGE_FILES_MAX) {
        say(message, "the setup has %u files; a package holds at most %u", spec->file_count,
            MF_PACKAGE_FILES_MAX);
        return MF_EINVAL;
    }
    if (spec->recipient_count == 0 || spec->recipient_count > MF_PACKAGE_RECIPIENTS_MAX) {
        say(message, "%u recipients: a package is for 1 to %u programmers", spec->recipient_count,
            MF_PACKAGE_RECIPIENTS_MAX);
        return MF_EINVAL;
    }
    if (spec->not_before && spec->not_after && spec->not_after < spec->not_before) {
        say(message, "not-after is before not-before");
        return MF_EINVAL;
    }
    uint64_t total = 0;
    for (uint32_t i = 0; i < spec->file_count; i++) {
        const struct mf_package_input *f = &spec->files[i];
        if (!mf_package_path_ok(f->path, strlen(f->path))) {
            say(message,
                "%.255s: not a valid path in a package (relative, '/' separated, no '.' or '..' "
                "parts, no control characters, at most %u bytes)",
                f->path, MF_PACKAGE_PATH_MAX);
            return MF_EINVAL;
        }
        if (chunks_of(f->size) > UINT32_MAX || f->size > UINT64_MAX / 2 - total) {
            say(message, "%.255s: too large", f->path);
            return MF_EINVAL;
        }
        total += f->size;
    }
    return 0;
}

int mf_package_write(const struct mf_package_spec *spec, uint8_t setup_id[32], char *message)
{
    message[0] = '\0';
    int err = check_spec(spec, message);
    if (err)
        return err;
    uint32_t count = spec->file_count, rc = spec->recipient_count;
    struct sorted_input *files = malloc(count * sizeof *files);
    uint8_t(*sums)[32] = malloc(count * sizeof *sums);
    uint8_t *buf = malloc(STORED_CHUNK);
    size_t header_size = MF_PACKAGE_FIXED + (size_t)rc * MF_PACKAGE_RECIPIENT;
    uint8_t *header = malloc(header_size);
    uint8_t *manifest = NULL;
    uint8_t key[32], secret[64], owner[32], header_hash[32];
    struct writer w;
    memset(&w, 0, sizeof w);
    w.spec = spec;
    w.message = message;
    if (!files || !sums || !buf || !header) {
        err = MF_ENOMEM;
        say(message, "out of memory");
        goto out;
    }
    uint64_t total = 0;
    for (uint32_t i = 0; i < count; i++) {
        files[i] = (struct sorted_input){spec->files[i].path, spec->files[i].size, i};
        total += files[i].size;
    }
    qsort(files, count, sizeof *files, input_compare);
    bool duplicate = false;
    long bad = check_sorted(files, count, input_path_at, &duplicate);
    if (bad >= 0) {
        say(message,
            duplicate ? "%.255s: two files of this name (names are compared ignoring case)"
                      : "%.255s: a file of this name is also a folder (names are compared "
                        "ignoring case)",
            files[bad].path);
        err = MF_EINVAL;
        goto out;
    }

    /* Pass 1: what the header and the manifest must say before any content is written. */
    struct mf_sha256 id_state, file_state;
    mf_sha256_init(&id_state);
    for (uint32_t i = 0; i < count && !err; i++) {
        bool counted = !mf_package_programmer_file(files[i].path);
        if (counted)
            setup_id_file(&id_state, files[i].path, files[i].size);
        mf_sha256_init(&file_state);
        for (uint64_t off = 0; off < files[i].size && !err;) {
            size_t n = files[i].size - off < MF_PACKAGE_CHUNK ? (size_t)(files[i].size - off)
                                                              : MF_PACKAGE_CHUNK;
            err = read_input(spec, &files[i], off, buf, n, message);
            if (err)
                break;
            mf_sha256_update(&file_state, buf, n);
            if (counted)
                mf_sha256_update(&id_state, buf, n);
            off += n;
        }
        mf_sha256_final(&file_state, sums[i]);
    }
    mf_sha256_final(&id_state, setup_id);
    if (err)
        goto out;

    /* The header and the recipients. */
    randombytes_buf(key, sizeof key);
    mf_owner_keypair_from_seed(spec->owner_seed, owner, secret);
    memcpy(header, magic, MAGIC_SIZE);
    mf_put_le32(header + 8, (uint32_t)header_size);
    memcpy(header + 12, owner, 32);
    memcpy(header + 44, setup_id, 32);
    mf_put_le64(header + 76, (uint64_t)spec->not_before);
    mf_put_le64(header + 84, (uint64_t)spec->not_after);
    randombytes_buf(header + 92, 16);
    mf_put_le32(header + 108, count);
    mf_put_le64(header + 112, total);
    mf_put_le32(header + 120, rc);
    for (uint32_t r = 0; r < rc; r++) {
        uint8_t *entry = header + MF_PACKAGE_FIXED + (size_t)r * MF_PACKAGE_RECIPIENT;
        memcpy(entry, spec->recipients[r], 32);
        if (crypto_box_seal(entry + 32, key, sizeof key, spec->recipients[r]) != 0) {
            say(message, "recipient %u: not a usable X25519 public key", r + 1);
            err = MF_EINVAL;
            goto out;
        }
    }
    crypto_hash_sha256(header_hash, header, header_size);
    crypto_sign_init(&w.sign);
    err = emit(&w, header, header_size);
    if (err)
        goto out;

    /* The manifest: one AEAD message. */
    size_t plain_size = 0;
    for (uint32_t i = 0; i < count; i++)
        plain_size += 2 + strlen(files[i].path) + 8 + 32;
    manifest = malloc(4 + plain_size + MF_PACKAGE_TAG);
    if (!manifest) {
        err = MF_ENOMEM;
        say(message, "out of memory");
        goto out;
    }
    uint8_t *m = manifest + 4;
    for (uint32_t i = 0; i < count; i++) {
        size_t n = strlen(files[i].path);
        m[0] = (uint8_t)n;
        m[1] = (uint8_t)(n >> 8);
        memcpy(m + 2, files[i].path, n);
        mf_put_le64(m + 2 + n, files[i].size);
        memcpy(m + 10 + n, sums[i], 32);
        m += 42 + n;
    }
    uint8_t nonce[24];
    nonce_of(header + 92, MANIFEST_NONCE, nonce);
    mf_put_le32(manifest, (uint32_t)(plain_size + MF_PACKAGE_TAG));
    crypto_aead_xchacha20poly1305_ietf_encrypt_detached(manifest + 4, manifest + 4 + plain_size,
                                                        NULL, manifest + 4, plain_size, header_hash,
                                                        32, NULL, nonce, key);
    err = emit(&w, manifest, 4 + plain_size + MF_PACKAGE_TAG);
    if (err)
        goto out;

    /* Pass 2: the content, chunk by chunk. */
    uint64_t global = 0;
    for (uint32_t i = 0; i < count && !err; i++) {
        uint32_t chunks = (uint32_t)chunks_of(files[i].size);
        uint8_t sum[32];
        mf_sha256_init(&file_state);
        for (uint32_t k = 0; k < chunks && !err; k++) {
            uint64_t off = (uint64_t)k * MF_PACKAGE_CHUNK;
            size_t n = files[i].size - off < MF_PACKAGE_CHUNK ? (size_t)(files[i].size - off)
                                                              : MF_PACKAGE_CHUNK;
            err = read_input(spec, &files[i], off, buf, n, message);
            if (err)
                break;
            mf_sha256_update(&file_state, buf, n);
            uint8_t ad[CHUNK_AD_SIZE];
            chunk_ad(header_hash, i, k, k + 1 == chunks, ad);
            nonce_of(header + 92, global++, nonce);
            crypto_aead_xchacha20poly1305_ietf_encrypt_detached(buf, buf + n, NULL, buf, n, ad,
                                                                sizeof ad, NULL, nonce, key);
            err = emit(&w, buf, n + MF_PACKAGE_TAG);
        }
        mf_sha256_final(&file_state, sum);
        if (!err && memcmp(sum, sums[i], 32) != 0) {
            say(message, "%.255s: changed while it was being packed", files[i].path);
            err = MF_EVERIFY;
        }
    }
    if (err)
        goto out;
    uint8_t signature[MF_PACKAGE_SIGNATURE];
    crypto_sign_final_create(&w.sign, signature, NULL, secret);
    err = spec->write(spec->write_context, signature, sizeof signature);
    if (err)
        say(message, "cannot write the package: %s", mf_strerror(err));
out:
    sodium_memzero(key, sizeof key);
    sodium_memzero(secret, sizeof secret);
    if (buf)
        sodium_memzero(buf, STORED_CHUNK);
    free(buf);
    free(files);
    free(sums);
    free(header);
    free(manifest);
    return err;
}

/* ---- reading ---- */

static int read_at(mf_package_read_fn read, void *context, uint64_t offset, void *buffer,
                   size_t length, char *message)
{
    int err = read(context, offset, buffer, length);
    if (err)
        say(message, "cannot read the package at byte %llu: %s", (unsigned long long)offset,
            mf_strerror(err));
    return err;
}

/* Reads and checks the fixed part of the header; `fixed` gets its bytes. */
static int header_parse(mf_package_read_fn read, void *context, uint64_t size,
                        uint8_t fixed[MF_PACKAGE_FIXED], struct mf_package_header *h, char *message)
{
    memset(h, 0, sizeof *h);
    if (size < MAGIC_SIZE) {
        say(message, "%llu bytes: not a setup package", (unsigned long long)size);
        return MF_EFORMAT;
    }
    int err = read_at(read, context, 0, fixed, MAGIC_SIZE, message);
    if (err)
        return err;
    if (memcmp(fixed, magic, 6) != 0 || fixed[7] != 0) {
        say(message, "not a setup package (no MFPKG signature at its start)");
        return MF_EFORMAT;
    }
    if (fixed[6] != MF_PACKAGE_VERSION) {
        say(message, "setup package of format version %u: this programmer reads version %u",
            fixed[6], MF_PACKAGE_VERSION);
        return MF_EVERSION;
    }
    if (size < PACKAGE_MIN) {
        say(message, "truncated: %llu bytes, a package has at least %u", (unsigned long long)size,
            PACKAGE_MIN);
        return MF_EFORMAT;
    }
    err = read_at(read, context, MAGIC_SIZE, fixed + MAGIC_SIZE, MF_PACKAGE_FIXED - MAGIC_SIZE,
                  message);
    if (err)
        return err;
    uint32_t header_size = mf_le32(fixed + 8);
    memcpy(h->owner, fixed + 12, 32);
    memcpy(h->setup_id, fixed + 44, 32);
    h->not_before = (int64_t)mf_le64(fixed + 76);
    h->not_after = (int64_t)mf_le64(fixed + 84);
    h->file_count = mf_le32(fixed + 108);
    h->total_bytes = mf_le64(fixed + 112);
    h->recipient_count = mf_le32(fixed + 120);
    if (h->recipient_count == 0 || h->recipient_count > MF_PACKAGE_RECIPIENTS_MAX) {
        say(message, "header: %u recipients (a package has 1 to %u): damaged", h->recipient_count,
            MF_PACKAGE_RECIPIENTS_MAX);
        return MF_EFORMAT;
    }
    if (header_size != MF_PACKAGE_FIXED + h->recipient_count * MF_PACKAGE_RECIPIENT) {
        say(message, "header: size %u does not match its %u recipients: damaged", header_size,
            h->recipient_count);
        return MF_EFORMAT;
    }
    if (h->file_count == 0 || h->file_count > MF_PACKAGE_FILES_MAX) {
        say(message, "header: %u files (a package holds 1 to %u)", h->file_count,
            MF_PACKAGE_FILES_MAX);
        return MF_EFORMAT;
    }
    if (h->not_before && h->not_after && h->not_after < h->not_before) {
        say(message, "header: not valid after a time before it is valid: damaged");
        return MF_EFORMAT;
    }
    uint64_t least = (uint64_t)header_size + 4 + MF_PACKAGE_TAG +
                     (uint64_t)h->file_count * RECORD_MIN + MF_PACKAGE_SIGNATURE;
    if (size < least || h->total_bytes > size - least) {
        say(message, "truncated: %llu bytes, the header announces more", (unsigned long long)size);
        return MF_EFORMAT;
    }
    return 0;
}

int mf_package_read_header(mf_package_read_fn read, void *read_context, uint64_t size,
                           struct mf_package_header *header, uint8_t (*recipients)[32],
                           uint32_t recipient_max, char *message)
{
    uint8_t fixed[MF_PACKAGE_FIXED];
    message[0] = '\0';
    int err = header_parse(read, read_context, size, fixed, header, message);
    for (uint32_t r = 0; !err && recipients && r < header->recipient_count && r < recipient_max;
         r++)
        err = read_at(read, read_context, MF_PACKAGE_FIXED + (uint64_t)r * MF_PACKAGE_RECIPIENT,
                      recipients[r], 32, message);
    return err;
}

/* The one pass over the package: every byte before the signature goes through take() exactly
 * once, in order, into the signature check. After the first integrity failure the rest is only
 * hashed (skip mode), so that the message can say whether the owner's signature holds. */
struct pass {
    struct mf_package *p;
    uint64_t offset, end;
    crypto_sign_state sign;
    int failure; /* the first integrity failure, 0 if none */
    char failure_message[MF_PACKAGE_MESSAGE_MAX];
    char *message;
};

static int take(struct pass *s, void *buffer, size_t length)
{
    int err = read_at(s->p->read, s->p->read_context, s->offset, buffer, length, s->message);
    if (err)
        return err;
    crypto_sign_update(&s->sign, buffer, length);
    s->offset += length;
    return 0;
}

static void integrity(struct pass *s, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void integrity(struct pass *s, int err, const char *fmt, ...)
{
    if (s->failure)
        return;
    s->failure = err;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->failure_message, sizeof s->failure_message, fmt, ap);
    va_end(ap);
}

static const char *file_path_at(const void *table, size_t i)
{
    return ((const struct mf_package_file *)table)[i].path;
}

/* Parses the decrypted manifest into p->files. Integrity failures are recorded in `s`. */
static int parse_manifest(struct pass *s, const uint8_t *m, size_t length)
{
    struct mf_package *p = s->p;
    p->files = calloc(p->file_count, sizeof *p->files);
    if (!p->files) {
        say(s->message, "out of memory for %u files", p->file_count);
        return MF_ENOMEM;
    }
    size_t pos = 0;
    uint64_t total = 0;
    for (uint32_t i = 0; i < p->file_count; i++) {
        struct mf_package_file *f = &p->files[i];
        size_t n = length - pos >= 2 ? (size_t)(m[pos] | m[pos + 1] << 8) : 0;
        if (length - pos < 2 || n == 0 || n > MF_PACKAGE_PATH_MAX || length - pos - 2 < n + 40) {
            integrity(s, MF_EFORMAT, "manifest: entry %u is malformed", i + 1);
            return 0;
        }
        const char *path = (const char *)m + pos + 2;
        if (!mf_package_path_ok(path, n)) {
            integrity(s, MF_EFORMAT, "manifest: entry %u: '%.*s' is not a valid path", i + 1,
                      (int)n, path);
            return 0;
        }
        memcpy(f->path, path, n);
        f->path[n] = '\0';
        f->size = mf_le64(m + pos + 2 + n);
        memcpy(f->sha256, m + pos + 10 + n, 32);
        pos += 42 + n;
        if (f->size > p->total_bytes - total || chunks_of(f->size) > UINT32_MAX) {
            integrity(s, MF_EFORMAT, "manifest: %s: its size exceeds the package's total", f->path);
            return 0;
        }
        total += f->size;
        f->chunks = (uint32_t)chunks_of(f->size);
    }
    if (pos != length || total != p->total_bytes) {
        integrity(s, MF_EFORMAT, "manifest: its entries do not add up to the header's");
        return 0;
    }
    bool duplicate = false;
    long bad = check_sorted(p->files, p->file_count, file_path_at, &duplicate);
    if (bad >= 0)
        integrity(s, MF_EFORMAT,
                  duplicate ? "manifest: %s: out of order or named twice (ignoring case)"
                            : "manifest: %s: a file of this name is also a folder",
                  p->files[bad].path);
    return 0;
}

/* Streams the chunks: decrypts each, checks each file's checksum, recomputes the setup id. */
static int stream_chunks(struct pass *s, uint8_t id[32])
{
    struct mf_package *p = s->p;
    struct mf_sha256 id_state, file_state;
    mf_sha256_init(&id_state);
    uint64_t global = 0;
    int err = 0;
    for (uint32_t i = 0; i < p->file_count && !err && !s->failure; i++) {
        struct mf_package_file *f = &p->files[i];
        bool counted = !mf_package_programmer_file(f->path);
        if (counted)
            setup_id_file(&id_state, f->path, f->size);
        mf_sha256_init(&file_state);
        for (uint32_t k = 0; k < f->chunks && !err; k++) {
            uint64_t off = (uint64_t)k * MF_PACKAGE_CHUNK;
            size_t n =
                f->size - off < MF_PACKAGE_CHUNK ? (size_t)(f->size - off) : MF_PACKAGE_CHUNK;
            err = take(s, p->stored, n + MF_PACKAGE_TAG);
            if (err)
                break;
            uint8_t ad[CHUNK_AD_SIZE], nonce[24];
            chunk_ad(p->header_hash, i, k, k + 1 == f->chunks, ad);
            nonce_of(p->nonce_prefix, global++, nonce);
            if (crypto_aead_xchacha20poly1305_ietf_decrypt_detached(
                    p->plain, NULL, p->stored, n, p->stored + n, ad, sizeof ad, nonce, p->key)) {
                integrity(s, MF_EAUTH, "damaged: chunk %u of %u (bytes %llu to %llu) of %s", k + 1,
                          f->chunks, (unsigned long long)off, (unsigned long long)(off + n - 1),
                          f->path);
                break;
            }
            mf_sha256_update(&file_state, p->plain, n);
            if (counted)
                mf_sha256_update(&id_state, p->plain, n);
        }
        uint8_t sum[32];
        mf_sha256_final(&file_state, sum);
        if (!err && !s->failure && memcmp(sum, f->sha256, 32) != 0)
            integrity(s, MF_EVERIFY, "%s: its content does not match the manifest's SHA-256",
                      f->path);
    }
    mf_sha256_final(&id_state, id);
    return err;
}

static void area_init(struct mf_package *p);

int mf_package_open(struct mf_package *p, mf_package_read_fn read, void *read_context,
                    uint64_t size, const uint8_t x25519_secret[32], const uint8_t x25519_public[32],
                    const uint8_t *pinned_owner, int64_t now, char *message)
{
    memset(p, 0, sizeof *p);
    message[0] = '\0';
    p->read = read;
    p->read_context = read_context;
    p->size = size;
    p->plain_chunk = UINT64_MAX;
    p->hash_file = NO_FILE;

    uint8_t fixed[MF_PACKAGE_FIXED];
    struct mf_package_header h;
    int err = header_parse(read, read_context, size, fixed, &h, message);
    if (err)
        return err;
    memcpy(p->owner, h.owner, 32);
    memcpy(p->setup_id, h.setup_id, 32);
    p->not_before = h.not_before;
    p->not_after = h.not_after;
    p->file_count = h.file_count;
    p->total_bytes = h.total_bytes;
    p->recipient_count = h.recipient_count;
    memcpy(p->nonce_prefix, fixed + 92, 16);

    struct pass *s = calloc(1, sizeof *s);
    size_t table_size = (size_t)h.recipient_count * MF_PACKAGE_RECIPIENT;
    uint8_t *table = malloc(table_size);
    uint8_t *manifest = NULL;
    p->stored = malloc(STORED_CHUNK);
    p->plain = malloc(MF_PACKAGE_CHUNK);
    if (!s || !table || !p->stored || !p->plain) {
        say(message, "out of memory");
        err = MF_ENOMEM;
        goto out;
    }
    s->p = p;
    s->message = message;
    s->end = size - MF_PACKAGE_SIGNATURE;
    crypto_sign_init(&s->sign);
    crypto_sign_update(&s->sign, fixed, sizeof fixed);
    s->offset = MF_PACKAGE_FIXED;
    err = take(s, table, table_size);
    if (err)
        goto out;
    struct mf_sha256 st;
    mf_sha256_init(&st);
    mf_sha256_update(&st, fixed, sizeof fixed);
    mf_sha256_update(&st, table, table_size);
    mf_sha256_final(&st, p->header_hash);

    /* What the programmer's policy refuses at once. */
    if (pinned_owner && memcmp(pinned_owner, p->owner, 32) != 0) {
        struct mf_owner_key theirs, ours;
        mf_owner_key_from_public(p->owner, &theirs);
        mf_owner_key_from_public(pinned_owner, &ours);
        say(message,
            "signed by owner %s, but this programmer accepts only packages of owner %s "
            "(securearea create --owner)",
            theirs.fingerprint, ours.fingerprint);
        err = MF_EPERM;
        goto out;
    }
    bool addressed = false, opened = false;
    for (uint32_t r = 0; r < h.recipient_count && !opened; r++) {
        const uint8_t *entry = table + (size_t)r * MF_PACKAGE_RECIPIENT;
        if (memcmp(entry, x25519_public, 32) != 0)
            continue;
        addressed = true;
        opened = crypto_box_seal_open(p->key, entry + 32, MF_PACKAGE_RECIPIENT - 32, x25519_public,
                                      x25519_secret) == 0;
    }
    if (!addressed) {
        say(message, "not addressed to this programmer (it is for %u other programmer%s)",
            h.recipient_count, h.recipient_count == 1 ? "" : "s");
        err = MF_EACCES;
        goto out;
    }
    char when[MF_OWNER_TIME_SIZE], clock[MF_OWNER_TIME_SIZE];
    mf_owner_time_format(now, clock);
    if (p->not_before && now < p->not_before) {
        mf_owner_time_format(p->not_before, when);
        say(message, "not valid before %s (the programmer's clock says %s)", when, clock);
        err = MF_ERANGE;
        goto out;
    }
    if (p->not_after && now > p->not_after) {
        mf_owner_time_format(p->not_after, when);
        say(message, "expired at %s (the programmer's clock says %s)", when, clock);
        err = MF_ERANGE;
        goto out;
    }
    if (!opened)
        integrity(s, MF_EAUTH, "the recipient entry for this programmer does not open");

    /* The manifest. */
    uint8_t len4[4];
    err = take(s, len4, 4);
    if (err)
        goto out;
    uint32_t manifest_size = mf_le32(len4);
    if (!s->failure && (manifest_size < MF_PACKAGE_TAG + (uint64_t)h.file_count * RECORD_MIN ||
                        manifest_size > MF_PACKAGE_TAG + (uint64_t)h.file_count * RECORD_MAX)) {
        integrity(s, MF_EFORMAT, "manifest: %u bytes cannot describe %u files", manifest_size,
                  h.file_count);
    } else if (!s->failure && manifest_size > s->end - s->offset) {
        say(message, "truncated: %llu bytes, the manifest alone needs more",
            (unsigned long long)size);
        err = MF_EFORMAT;
        goto out;
    }
    if (!s->failure) {
        manifest = malloc(manifest_size);
        if (!manifest) {
            say(message, "out of memory");
            err = MF_ENOMEM;
            goto out;
        }
        err = take(s, manifest, manifest_size);
        if (err)
            goto out;
        uint8_t nonce[24];
        nonce_of(p->nonce_prefix, MANIFEST_NONCE, nonce);
        size_t plain_size = manifest_size - MF_PACKAGE_TAG;
        if (crypto_aead_xchacha20poly1305_ietf_decrypt_detached(manifest, NULL, manifest,
                                                                plain_size, manifest + plain_size,
                                                                p->header_hash, 32, nonce, p->key))
            integrity(s, MF_EAUTH, "the manifest does not decrypt: damaged");
        else
            err = parse_manifest(s, manifest, plain_size);
        if (err)
            goto out;
    }

    /* The layout the manifest gives must be the file's. */
    if (!s->failure) {
        uint64_t at = s->offset, global = 0;
        for (uint32_t i = 0; i < p->file_count; i++) {
            struct mf_package_file *f = &p->files[i];
            f->offset = at;
            f->first_chunk = global;
            global += f->chunks;
            uint64_t stored = f->size + (uint64_t)f->chunks * MF_PACKAGE_TAG;
            at = stored > UINT64_MAX - at ? UINT64_MAX : at + stored;
        }
        if (at != s->end) {
            uint64_t expected =
                at > UINT64_MAX - MF_PACKAGE_SIGNATURE ? UINT64_MAX : at + MF_PACKAGE_SIGNATURE;
            if (expected > size)
                say(message, "truncated: %llu bytes, the manifest describes %llu",
                    (unsigned long long)size, (unsigned long long)expected);
            else
                say(message, "%llu bytes after the end the manifest describes (%llu bytes)",
                    (unsigned long long)(size - expected), (unsigned long long)expected);
            err = MF_EFORMAT;
            goto out;
        }
    }

    uint8_t id[32];
    if (!s->failure) {
        err = stream_chunks(s, id);
        if (err)
            goto out;
    }
    /* Skip mode: the rest only for the signature. */
    while (s->offset < s->end) {
        uint64_t left = s->end - s->offset;
        err = take(s, p->stored, left < STORED_CHUNK ? (size_t)left : STORED_CHUNK);
        if (err)
            goto out;
    }
    uint8_t signature[MF_PACKAGE_SIGNATURE];
    err = read_at(read, read_context, s->end, signature, sizeof signature, message);
    if (err)
        goto out;
    if (crypto_sign_final_verify(&s->sign, signature, p->owner) != 0) {
        struct mf_owner_key k;
        mf_owner_key_from_public(p->owner, &k);
        if (s->failure)
            say(message,
                "bad signature: the package was altered or damaged after owner %s signed it "
                "(first damage found: %s)",
                k.fingerprint, s->failure_message);
        else
            say(message,
                "bad signature: the package was altered after owner %s signed it, or was not "
                "signed by that owner",
                k.fingerprint);
        err = MF_EAUTH;
        goto out;
    }
    if (s->failure) {
        say(message, "%s", s->failure_message);
        err = s->failure;
        goto out;
    }
    if (memcmp(id, p->setup_id, 32) != 0) {
        char a[65], b[65];
        mf_owner_hex_encode(p->setup_id, 32, a);
        mf_owner_hex_encode(id, 32, b);
        say(message, "setup id mismatch: the header says %.16s..., the content gives %.16s...", a,
            b);
        err = MF_EVERIFY;
        goto out;
    }
    area_init(p);
out:
    if (manifest)
        sodium_memzero(manifest, manifest_size);
    free(manifest);
    free(table);
    free(s);
    if (err)
        mf_package_close(p);
    return err;
}

void mf_package_close(struct mf_package *p)
{
    sodium_memzero(p->key, sizeof p->key);
    if (p->plain)
        sodium_memzero(p->plain, MF_PACKAGE_CHUNK);
    free(p->plain);
    free(p->stored);
    free(p->files);
    p->plain = p->stored = NULL;
    p->files = NULL;
    p->plain_chunk = UINT64_MAX;
    p->file_count = 0;
}

/* ---- the package's files as an area ---- */

static struct mf_package *package_of(struct mf_area *area)
{
    return area->context;
}

/* Package paths never start with '/': a caller that joins an empty folder name and a path with
 * '/' ("/Projects/...") still finds the file. */
static const char *area_path(const char *path)
{
    while (*path == '/')
        path++;
    return path;
}

static long find_file(const struct mf_package *p, const char *path)
{
    return find_sorted(p->files, p->file_count, file_path_at, path, strlen(path));
}

/* The first file inside folder `path` ("" = the root), or -1 when no file is inside it. */
static long folder_start(const struct mf_package *p, const char *path, size_t *prefix_length)
{
    char prefix[MF_PACKAGE_PATH_MAX + 2];
    size_t n = strlen(path);
    if (n == 0) {
        *prefix_length = 0;
        return p->file_count ? 0 : -1;
    }
    if (n > MF_PACKAGE_PATH_MAX)
        return -1;
    memcpy(prefix, path, n);
    prefix[n] = '/';
    size_t i = lower_bound(p->files, p->file_count, file_path_at, prefix, n + 1);
    if (i >= p->file_count || !has_prefix(p->files[i].path, prefix, n + 1))
        return -1;
    *prefix_length = n + 1;
    return (long)i;
}

static int package_stat(struct mf_area *area, const char *path, struct mf_area_entry *entry)
{
    struct mf_package *p = package_of(area);
    path = area_path(path);
    memset(entry, 0, sizeof *entry);
    const char *slash = strrchr(path, '/');
    snprintf(entry->name, sizeof entry->name, "%s", slash ? slash + 1 : path);
    long i = find_file(p, path);
    if (i >= 0) {
        entry->size = p->files[i].size;
        return 0;
    }
    size_t n;
    if (folder_start(p, path, &n) < 0)
        return MF_ENOENT;
    entry->is_dir = true;
    return 0;
}

static int package_list(struct mf_area *area, const char *path, mf_area_each_fn each, void *context)
{
    struct mf_package *p = package_of(area);
    path = area_path(path);
    size_t n;
    long start = folder_start(p, path, &n);
    if (start < 0)
        return find_file(p, path) >= 0 ? MF_ENOTDIR : MF_ENOENT;
    struct mf_area_entry entry;
    char last_dir[MF_AREA_NAME_MAX] = "";
    for (uint32_t i = (uint32_t)start; i < p->file_count; i++) {
        const struct mf_package_file *f = &p->files[i];
        if (n && (!has_prefix(f->path, path, n - 1) || f->path[n - 1] != '/'))
            break;
        const char *rest = f->path + n;
        const char *slash = strchr(rest, '/');
        memset(&entry, 0, sizeof entry);
        if (slash) {
            size_t len = (size_t)(slash - rest);
            if (last_dir[0] && strlen(last_dir) == len && has_prefix(last_dir, rest, len))
                continue; /* the next file of a subfolder already listed */
            memcpy(entry.name, rest, len);
            entry.name[len] = '\0';
            memcpy(last_dir, entry.name, len + 1);
            entry.is_dir = true;
        } else {
            snprintf(entry.name, sizeof entry.name, "%s", rest);
            entry.size = f->size;
        }
        int err = each(context, &entry);
        if (err)
            return err;
    }
    return 0;
}

/* Decrypts chunk k of file i into p->plain (unless it is there already). */
static int load_chunk(struct mf_package *p, uint32_t i, uint32_t k)
{
    const struct mf_package_file *f = &p->files[i];
    uint64_t global = f->first_chunk + k;
    if (p->plain_chunk == global)
        return 0;
    p->plain_chunk = UINT64_MAX;
    uint64_t off = (uint64_t)k * MF_PACKAGE_CHUNK;
    size_t n = f->size - off < MF_PACKAGE_CHUNK ? (size_t)(f->size - off) : MF_PACKAGE_CHUNK;
    int err = p->read(p->read_context, f->offset + (uint64_t)k * STORED_CHUNK, p->stored,
                      n + MF_PACKAGE_TAG);
    if (err)
        return err;
    uint8_t ad[CHUNK_AD_SIZE], nonce[24];
    chunk_ad(p->header_hash, i, k, k + 1 == f->chunks, ad);
    nonce_of(p->nonce_prefix, global, nonce);
    if (crypto_aead_xchacha20poly1305_ietf_decrypt_detached(
            p->plain, NULL, p->stored, n, p->stored + n, ad, sizeof ad, nonce, p->key))
        return MF_EAUTH;
    p->plain_chunk = global;
    p->plain_length = n;
    return 0;
}

static int package_read(struct mf_area *area, const char *path, uint64_t offset, void *buffer,
                        size_t length)
{
    struct mf_package *p = package_of(area);
    path = area_path(path);
    long found = find_file(p, path);
    if (found < 0) {
        size_t n;
        return folder_start(p, path, &n) >= 0 ? MF_EISDIR : MF_ENOENT;
    }
    uint32_t i = (uint32_t)found;
    const struct mf_package_file *f = &p->files[i];
    if (offset > f->size || length > f->size - offset)
        return MF_EIO;
    if (offset == 0) {
        p->hash_file = i;
        p->hash_offset = 0;
        mf_sha256_init(&p->hash);
    }
    bool hashing = p->hash_file == i && p->hash_offset == offset;
    if (!hashing && p->hash_file == i)
        p->hash_file = NO_FILE;
    uint8_t *out = buffer;
    for (size_t done = 0; done < length;) {
        uint64_t at = offset + done;
        uint32_t k = (uint32_t)(at / MF_PACKAGE_CHUNK);
        size_t in = (size_t)(at % MF_PACKAGE_CHUNK);
        int err = load_chunk(p, i, k);
        if (err)
            return err;
        size_t n = p->plain_length - in < length - done ? p->plain_length - in : length - done;
        memcpy(out + done, p->plain + in, n);
        done += n;
    }
    /* A file read from its start to its end is checked against the manifest once more: the
     * package could have been replaced since it was opened. */
    if (hashing) {
        mf_sha256_update(&p->hash, buffer, length);
        p->hash_offset += length;
        if (p->hash_offset == f->size) {
            uint8_t sum[32];
            mf_sha256_final(&p->hash, sum);
            p->hash_file = NO_FILE;
            if (memcmp(sum, f->sha256, 32) != 0)
                return MF_EAUTH;
        }
    }
    return 0;
}

static int package_read_number(struct mf_area *area, const char *path,
                               enum mf_numfile_syntax syntax, uint64_t max, uint64_t *value)
{
    struct mf_area_entry e;
    int err = package_stat(area, path, &e);
    if (err)
        return err;
    if (e.is_dir)
        return MF_EISDIR;
    if (e.size > MF_NUMFILE_SIZE_MAX)
        return MF_EFBIG;
    char text[MF_NUMFILE_SIZE_MAX];
    err = package_read(area, path, 0, text, (size_t)e.size);
    if (err)
        return err;
    return mf_numfile_parse(text, (uint32_t)e.size, syntax, max, value);
}

static int no_cycles(char *message)
{
    snprintf(message, MF_AREA_MESSAGE_MAX, "a setup package runs no cycles: install it first");
    return MF_ENOTSUP;
}

static int package_peek(struct mf_area *area, const struct mf_setup *setup, unsigned project,
                        struct mf_tally *tally, char *message)
{
    (void)area;
    (void)setup;
    (void)project;
    (void)tally;
    return no_cycles(message);
}

static int package_take(struct mf_area *area, const struct mf_setup *setup, unsigned project,
                        const struct mf_tally *tally, enum mf_area_taken *taken, char *message)
{
    (void)area;
    (void)setup;
    (void)project;
    (void)tally;
    *taken = MF_AREA_TAKEN_NONE;
    return no_cycles(message);
}

static void area_init(struct mf_package *p)
{
    p->area = (struct mf_area){
        .context = p,
        .stat = package_stat,
        .list = package_list,
        .read = package_read,
        .read_number = package_read_number,
        .peek = package_peek,
        .take = package_take,
    };
}

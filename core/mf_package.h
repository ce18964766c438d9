/* Sealed setup packages (.mfp, version 1): a production setup encrypted to one or more
 * programmers and signed by its owner, so that it can travel by mail or USB stick. The format is
 * in docs/internals/owner.md. Both directions stream with bounded memory (two 64 KiB chunk
 * buffers and the manifest, at most about 1.2 MiB for 4096 files), whatever the setup's size.
 *
 * Reading checks everything before it returns: a package that opens is whole, signed by the
 * owner it names, addressed to us, valid now, and its content gives the setup id it claims. Then
 * the package's files are an mf_area (read-only), so mf_secure_install can take them as it takes
 * a `_SECURE` folder. */
#ifndef MF_PACKAGE_H
#define MF_PACKAGE_H

#include "mf_area.h"
#include "mf_sha256.h"

#include <sodium.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MF_PACKAGE_VERSION        1u
#define MF_PACKAGE_CHUNK          (64u << 10) /* plaintext bytes per chunk */
#define MF_PACKAGE_TAG            16u
#define MF_PACKAGE_FILES_MAX      4096u
#define MF_PACKAGE_RECIPIENTS_MAX 64u
#define MF_PACKAGE_PATH_MAX       255u /* bytes of a path, without a NUL */
#define MF_PACKAGE_FIXED          124u /* bytes of the header before the recipients */
#define MF_PACKAGE_RECIPIENT      112u /* X25519 public key, sealed content key */
#define MF_PACKAGE_SIGNATURE      64u
#define MF_PACKAGE_MESSAGE_MAX    320u

/* Reads exactly `length` bytes at `offset` of the package; 0 or a negative MF_E* code. */
typedef int (*mf_package_read_fn)(void *context, uint64_t offset, void *buffer, size_t length);

/* Appends `length` bytes to the package being written; 0 or a negative MF_E* code. */
typedef int (*mf_package_write_fn)(void *context, const void *data, size_t length);

/* Reads exactly `length` bytes at `offset` of input file number `index`. */
typedef int (*mf_package_file_read_fn)(void *context, uint32_t index, uint64_t offset, void *buffer,
                                       size_t length);

/* One input file: its path inside the setup ('/' separated, relative) and its size. */
struct mf_package_input {
    const char *path;
    uint64_t size;
};

/* What to pack. Everything is the caller's and is only read. */
struct mf_package_spec {
    const struct mf_package_input *files; /* in any order: the writer sorts them */
    uint32_t file_count;                  /* 1 .. MF_PACKAGE_FILES_MAX */
    mf_package_file_read_fn read;
    void *read_context;
    const uint8_t (*recipients)[32]; /* the programmers' X25519 public keys */
    uint32_t recipient_count;        /* 1 .. MF_PACKAGE_RECIPIENTS_MAX */
    int64_t not_before, not_after;   /* unix seconds, 0 = none */
    const uint8_t *owner_seed;       /* 32 bytes: the owner's Ed25519 seed */
    mf_package_write_fn write;
    void *write_context;
};

/* Writes a package: reads every file twice (once for the setup id and the checksums the header
 * and the manifest carry, once to encrypt it; a file that changed in between is an error) and
 * writes the package front to back through spec->write. Returns 0 with `setup_id` (the
 * mf_setup_fingerprint of the files), or MF_EINVAL (bad spec: a path that is not relative,
 * has "." or ".." or empty parts, control characters or bad UTF-8, is longer than 255 bytes,
 * or names the same file or folder as another one ignoring ASCII case; no files; too many files
 * or recipients; not_after before not_before), MF_EVERIFY (a file changed while being packed),
 * MF_ENOMEM, or an error of the callbacks, with `message` (MF_PACKAGE_MESSAGE_MAX) saying what.
 * On an error the output written so far is garbage: the caller discards it. */
int mf_package_write(const struct mf_package_spec *spec, uint8_t setup_id[32], char *message);

struct mf_package_file; /* one manifest entry (private) */

/* An opened package. The public fields are read-only. Not for use by several threads. */
struct mf_package {
    uint8_t owner[32];    /* the owner's Ed25519 public key that signed it */
    uint8_t setup_id[32]; /* checked against the content */
    int64_t not_before, not_after;
    uint32_t file_count;
    uint64_t total_bytes;
    uint32_t recipient_count;
    struct mf_area area; /* the files: hand &package.area to mf_secure_install with "" */

    /* Private. */
    mf_package_read_fn read;
    void *read_context;
    uint64_t size;
    uint8_t key[32];
    uint8_t nonce_prefix[16];
    uint8_t header_hash[32];
    struct mf_package_file *files; /* in manifest order (upper-cased paths, ascending) */
    uint8_t *stored;               /* one stored chunk */
    uint8_t *plain;                /* one decrypted chunk */
    uint64_t plain_chunk;          /* global number of the chunk in `plain`, UINT64_MAX: none */
    size_t plain_length;
    /* Reads of a file from its start onwards are hashed and checked at its end again. */
    uint32_t hash_file;
    uint64_t hash_offset;
    struct mf_sha256 hash;
};

/* Opens and checks a package of `size` bytes read through `read`. Before returning 0 it has
 * checked, streaming once over the whole file: the format and its limits (at most 4096 files,
 * 1..64 recipients), the owner (when `pinned_owner`, 32 bytes, is given: the package's owner must
 * be it), a recipient entry for our X25519 key whose sealed content key opens, now within
 * [not_before, not_after] (where set), the owner's signature over the whole file, the manifest and
 * every chunk (authenticated decryption), each file's size and SHA-256, the paths (valid, unique
 * ignoring ASCII case), and the setup id recomputed from the content.
 * Refusals, with `message` (MF_PACKAGE_MESSAGE_MAX) saying what and where: MF_EFORMAT (not a
 * package, truncated, malformed, too many files), MF_EVERSION, MF_EPERM (another owner than the
 * pinned one), MF_EACCES (not addressed to this programmer), MF_ERANGE (not valid yet, or
 * expired), MF_EAUTH (bad signature, a damaged recipient entry, manifest or chunk), MF_EVERIFY
 * (a file's checksum or the setup id does not match), MF_ENOMEM, or the read callback's error.
 * When the integrity checks fail, the signature is checked first and the message says whether
 * the file was altered after the owner signed it. On an error nothing is left to close. */
int mf_package_open(struct mf_package *package, mf_package_read_fn read, void *read_context,
                    uint64_t size, const uint8_t x25519_secret[32], const uint8_t x25519_public[32],
                    const uint8_t *pinned_owner, int64_t now, char *message);

/* Releases what open allocated and wipes the content key and plaintext. */
void mf_package_close(struct mf_package *package);

/* The header fields, read without any key and without checking anything but the format: for
 * messages and tools. `recipients` (may be NULL) receives up to `recipient_max` X25519 keys. */
struct mf_package_header {
    uint8_t owner[32];
    uint8_t setup_id[32];
    int64_t not_before, not_after;
    uint32_t file_count;
    uint64_t total_bytes;
    uint32_t recipient_count;
};
int mf_package_read_header(mf_package_read_fn read, void *read_context, uint64_t size,
                           struct mf_package_header *header, uint8_t (*recipients)[32],
                           uint32_t recipient_max, char *message);

/* Is `path` ("a/b/c", `length` bytes) acceptable in a package? (Relative, '/' separated, no
 * empty, "." or ".." parts, no backslash, UTF-8 without control characters, 1..255 bytes.) */
bool mf_package_path_ok(const char *path, size_t length);

/* Does the setup id leave this file out (Cntdown.txt and Serial.txt anywhere; FLASHER.INI,
 * FLASHER.LOG and FLASHER.OLD at the root)? The same rule as mf_setup_fingerprint. */
bool mf_package_programmer_file(const char *path);

#endif

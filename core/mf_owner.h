/* Keys of the IP owner's side (docs/internals/owner.md): the programmer's identity and its public
 * file, the owner's signing key pair and its two files, fingerprints, and the small text helpers
 * every owner-side format shares (base64, hex, UTC times). Formats: docs/owner-guide.md.
 * Key files are parsed as hostile text: bounded, every line checked, unknown keys refused. */
#ifndef MF_OWNER_H
#define MF_OWNER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MF_OWNER_FINGERPRINT_SIZE 25u   /* "3F2A-9C1B-77D0-E412-0B5C" and a NUL */
#define MF_OWNER_MESSAGE_MAX      192u  /* bytes of an error text, with the NUL */
#define MF_OWNER_FILE_MAX         4096u /* bytes of a key file we accept */
#define MF_OWNER_TIME_SIZE        32u   /* "YYYY-MM-DDThh:mm:ssZ" and a NUL, with room */

/* A programmer's public keys, as its PROGRAMMER.pub file says. */
struct mf_owner_programmer {
    uint8_t x25519[32];  /* receives sealed setup packages */
    uint8_t ed25519[32]; /* signs production records */
    uint8_t id[32];      /* SHA-256("mintflash programmer\0" || x25519 || ed25519) */
    char fingerprint[MF_OWNER_FINGERPRINT_SIZE];
};

/* A programmer's secret keys, derived from the 64-byte identity secret of the trust anchor.
 * Wipe with mf_owner_identity_wipe. */
struct mf_owner_identity {
    uint8_t x25519_secret[32];
    uint8_t ed25519_secret[64]; /* libsodium's form: seed || public key */
    struct mf_owner_programmer pub;
};

/* An owner's public key, as its OWNER.pub file says. */
struct mf_owner_key {
    uint8_t ed25519[32];
    char fingerprint[MF_OWNER_FINGERPRINT_SIZE]; /* of SHA-256("mintflash owner\0" || ed25519) */
};

/* ---- identities and fingerprints ---- */

/* Derives every key of a programmer from its identity secret (bytes 0-31: X25519 secret key,
 * 32-63: Ed25519 seed). Cannot fail. */
void mf_owner_identity_derive(const uint8_t secret[64], struct mf_owner_identity *identity);

/* Overwrites the secret keys with zeros. */
void mf_owner_identity_wipe(struct mf_owner_identity *identity);

/* Fills id and fingerprint of `programmer` from its two public keys. */
void mf_owner_programmer_complete(struct mf_owner_programmer *programmer);

/* Fills `key` (public key and fingerprint) from an owner's Ed25519 public key. */
void mf_owner_key_from_public(const uint8_t ed25519[32], struct mf_owner_key *key);

/* Derives the owner's Ed25519 key pair from its 32-byte seed (libsodium's secret-key form). */
void mf_owner_keypair_from_seed(const uint8_t seed[32], uint8_t ed25519_public[32],
                                uint8_t ed25519_secret[64]);

/* The printable fingerprint of a 32-byte id: its first 10 bytes as 20 upper-case hex digits in
 * groups of 4 joined by '-'. */
void mf_owner_fingerprint(const uint8_t id[32], char fingerprint[MF_OWNER_FINGERPRINT_SIZE]);

/* ---- the three key files ----
 * Formatters write NUL-terminated text with LF line ends into `out` (MF_EINVAL when `size` is
 * too small; MF_OWNER_FILE_MAX is always enough). Parsers take `length` bytes of hostile text
 * (LF or CRLF lines, an optional UTF-8 BOM, empty lines ignored) and return MF_EFORMAT (a line
 * that is not "key: value", an unknown, repeated or missing key, a bad value, a fingerprint that
 * does not match the keys), MF_EVERSION (another version of the format) or MF_EFBIG (longer than
 * MF_OWNER_FILE_MAX), with `message` (MF_OWNER_MESSAGE_MAX) naming the line and the problem. */

/* "mintflash-programmer 1": fingerprint, x25519, ed25519. */
int mf_owner_format_programmer(const struct mf_owner_programmer *programmer, char *out,
                               size_t size);
int mf_owner_parse_programmer(const char *text, size_t length,
                              struct mf_owner_programmer *programmer, char *message);

/* "mintflash-owner 1": fingerprint, ed25519. */
int mf_owner_format_public(const struct mf_owner_key *key, char *out, size_t size);
int mf_owner_parse_public(const char *text, size_t length, struct mf_owner_key *key, char *message);

/* "mintflash-owner-secret 1": ed25519-seed. The caller wipes `out` / `seed` after use; the
 * parser wipes its own copies. */
int mf_owner_format_secret(const uint8_t seed[32], char *out, size_t size);
int mf_owner_parse_secret(const char *text, size_t length, uint8_t seed[32], char *message);

/* ---- text helpers ---- */

/* Standard base64 with padding (libsodium's ORIGINAL variant). Encode needs
 * mf_owner_b64_size(length) bytes of `out` (with the NUL); MF_EINVAL when `size` is smaller.
 * Decode accepts exactly `size` bytes' worth of canonical base64 (no spaces), else
 * MF_EFORMAT. */
size_t mf_owner_b64_size(size_t length);
int mf_owner_b64_encode(const uint8_t *data, size_t length, char *out, size_t size);
int mf_owner_b64_decode(const char *text, size_t length, uint8_t *out, size_t size);

/* Lower-case hex: `out` gets 2 * length digits and a NUL. Decode takes exactly 2 * size digits
 * of either case, else MF_EFORMAT. */
void mf_owner_hex_encode(const uint8_t *data, size_t length, char *out);
int mf_owner_hex_decode(const char *text, size_t length, uint8_t *out, size_t size);

/* "YYYY-MM-DDThh:mm:ssZ" (UTC). A time outside the years 0000-9999 is written as
 * "@<seconds>". */
void mf_owner_time_format(int64_t seconds, char out[MF_OWNER_TIME_SIZE]);

/* Parses "YYYY-MM-DDThh:mm:ssZ", and also "YYYY-MM-DD" (midnight UTC) when `date_alone` is true.
 * Checks the calendar (months, days of the month, leap years). MF_EFORMAT when malformed. */
int mf_owner_time_parse(const char *text, size_t length, bool date_alone, int64_t *seconds);

/* Is `text` (length bytes) well-formed UTF-8 without control characters (below 0x20 and 0x7F)? */
bool mf_owner_text_ok(const char *text, size_t length);

#endif

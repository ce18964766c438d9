/* Production records: one signed, hash-chained text line per cycle (RECORDS.000, RECORDS.001, ...
 * in the public area), so that the owner can prove which devices were made. This module formats
 * and signs a line, parses one from hostile text, and verifies a sequence of lines: any edited,
 * forged, deleted or reordered record shows, and so do the programmer's own gap records (written
 * when it finds its newest records deleted), a rise of the trust anchor's counter that no record
 * accounts for, and, against a signed head statement the programmer gives for an owner's nonce,
 * records deleted after the last one. Line formats: docs/internals/owner.md. */
#ifndef MF_RECORD_H
#define MF_RECORD_H

#include "mf_owner.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MF_RECORD_LINE_MAX    2048u      /* bytes of a line, with its LF */
#define MF_RECORD_FILE_MAX    (1u << 20) /* bytes of one RECORDS.nnn file */
#define MF_RECORD_UID_MAX     64u
#define MF_RECORD_PROJECT_MAX 255u /* bytes of the project name (decoded) */
#define MF_RECORD_NOTE_MAX    128u /* bytes of the note (decoded) */
#define MF_RECORD_MESSAGE_MAX 256u
#define MF_RECORD_TOTALS_MAX  4096u /* (setup, project) pairs a verifier sums up */
#define MF_RECORD_WHERE_MAX   256u  /* bytes of a file name a verifier keeps (longer: cut) */

/* Notes the programmer writes on its own ERR records: "unrecorded:N" (N cycles took a count but
 * have no record: a cut, or a record that could not be written), "counter-ahead:N" (N cycles the
 * trust anchor's counter proves beyond the secure area's state), "count-unknown" (a cycle whose
 * count's write failed in a way that may have taken it: it accounts for nothing; if the count was
 * taken, a later "unrecorded:1" accounts for it). */
#define MF_RECORD_NOTE_UNRECORDED    "unrecorded:"
#define MF_RECORD_NOTE_COUNTER_AHEAD "counter-ahead:"
#define MF_RECORD_NOTE_COUNT_UNKNOWN "count-unknown"
/* The counter step a clean end of a run takes (no device; docs/security.md). */
#define MF_RECORD_NOTE_RUN_END       "run-end"
#define MF_RECORD_NOTE_OPERATOR_PATCH                                                              \
    "operator-patch:" /* + 16 hex digits: the start of the SHA-256 of the #AUTO PATCH line */

enum mf_record_result {
    MF_RECORD_OK,  /* the device was made */
    MF_RECORD_ERR, /* the cycle failed (its count and serial number may be consumed) */
    MF_RECORD_GAP, /* no device: the programmer found records gap_first..gap_last missing */
};

struct mf_record {
    uint64_t seq;     /* 1, 2, ...: one chain per programmer, across the setups installed */
    uint8_t prev[32]; /* hash of the previous record; zeros for seq 1 */
    int64_t time;     /* unix seconds, UTC */
    char programmer[MF_OWNER_FINGERPRINT_SIZE];
    uint8_t setup[32];
    char project[MF_RECORD_PROJECT_MAX + 1]; /* "" = none */
    uint32_t slot;
    uint8_t uid[MF_RECORD_UID_MAX];
    size_t uid_length; /* 0 = none ("-") */
    bool has_serial;
    uint64_t serial;
    enum mf_record_result result;
    uint64_t counter;                  /* the trust anchor's counter */
    char note[MF_RECORD_NOTE_MAX + 1]; /* free text, "" = none; GAP records: "gap:A-B" */
    uint64_t gap_first, gap_last;      /* GAP records */
    uint8_t signature[64];
};

/* Formats and signs `record` (its prev is the previous record's hash; signature, and for a GAP
 * record the note, are made here from gap_first/gap_last) with the programmer's Ed25519 secret
 * key (libsodium's 64-byte form, mf_owner_identity.ed25519_secret). `line` gets the text with
 * its LF and a NUL (MF_RECORD_LINE_MAX + 1 bytes are always enough), *length its size with the
 * LF, `hash` the record's hash (the next record's prev). The project name and the note are
 * percent-encoded where needed. MF_EINVAL: a malformed fingerprint, a UID longer than
 * MF_RECORD_UID_MAX, a name or note too long, seq 0, gap_first > gap_last, `size` too small. */
int mf_record_format(const struct mf_record *record, const uint8_t ed25519_secret[64], char *line,
                     size_t size, size_t *length, uint8_t hash[32]);

/* Parses one line (`length` bytes; a trailing LF or CRLF is allowed) of hostile text. Checks the
 * syntax of every field, not the signature. Returns 0 with `record` and *body_length (the bytes
 * before " sig=", which the signature and the hash cover), MF_EFORMAT or MF_EVERSION with
 * `message` (MF_RECORD_MESSAGE_MAX) naming the field. */
int mf_record_parse(const char *line, size_t length, struct mf_record *record, size_t *body_length,
                    char *message);

/* How many consumed cycles a record accounts for: 0 for a GAP record and a "count-unknown" one,
 * N for "unrecorded:N" and "counter-ahead:N", else 1. */
uint64_t mf_record_cycles(const struct mf_record *record);

/* Is it the record of a cycle whose count may or may not have been taken ("count-unknown")? */
bool mf_record_count_unknown(const struct mf_record *record);

/* An ERR record noting the counter step of a run's clean end: it accounts for that step and is
 * no device. */
bool mf_record_run_end(const struct mf_record *record);

/* The hash of a parsed line: SHA-256 of its body. */
void mf_record_hash(const char *line, size_t body_length, uint8_t hash[32]);

/* Does the parsed line's signature hold under `ed25519_public`? */
bool mf_record_signature_ok(const char *line, size_t body_length, const uint8_t signature[64],
                            const uint8_t ed25519_public[32]);

/* ---- the head statement ---- */

/* What the programmer states, signed, about its chain when an owner asks with a nonce
 * (`#RECORDHEAD`): the newest record (seq 0 and a zero hash: none yet), the trust anchor's
 * counter, and the cycles that took a count but have no record yet (running, or to be recorded as
 * "unrecorded" at the next start). One line: "MFH1 nonce=... sig=...", signed like a record; no
 * record starts with "MFH1", so neither can stand for the other. */
#define MF_RECORD_HEAD_NONCE_SIZE 32u

struct mf_record_head {
    uint8_t nonce[MF_RECORD_HEAD_NONCE_SIZE]; /* chosen by the owner */
    int64_t time;                             /* the programmer's clock, unix seconds, UTC */
    char programmer[MF_OWNER_FINGERPRINT_SIZE];
    uint8_t setup[32]; /* the installed setup */
    uint64_t seq;      /* the chain's newest record */
    uint8_t hash[32];  /* its hash */
    uint64_t counter;  /* the trust anchor's counter */
    uint64_t pending;  /* cycles that took a count and have no record yet */
    uint8_t signature[64];
};

/* Formats and signs a head statement (as mf_record_format; no hash). MF_EINVAL: a malformed
 * fingerprint or time, `size` too small. */
int mf_record_head_format(const struct mf_record_head *head, const uint8_t ed25519_secret[64],
                          char *line, size_t size, size_t *length);

/* Parses a head statement line of hostile text (as mf_record_parse). */
int mf_record_head_parse(const char *line, size_t length, struct mf_record_head *head,
                         size_t *body_length, char *message);

/* ---- verification of a sequence of lines ---- */

enum mf_record_problem {
    MF_RECORD_MALFORMED,     /* not a record line (damaged, or torn by a power cut) */
    MF_RECORD_BAD_SIGNATURE, /* edited, or forged with another key */
    MF_RECORD_FOREIGN,       /* a record of another programmer */
    MF_RECORD_CHAIN_BREAK,   /* records deleted, reordered or replaced */
    MF_RECORD_GAP_FOUND,     /* a gap record: the programmer found its newest records deleted */
    MF_RECORD_COUNTER,       /* the anchor's counter goes down, or rose more than the records
                              * account for (records deleted before a restart or a removal) */
    MF_RECORD_HEAD,          /* the head statement does not hold, or the records do not reach it */
    /* A note, no problem: up to MF_RECORD_TORN_MAX lines that are no record between two records
     * that chain (the later one names the earlier one as its previous, at the next seq), so no
     * record is missing there: a torn line the programmer could not cut. */
    MF_RECORD_TORN_LINE,
};
#define MF_RECORD_PROBLEM_KINDS 8u
#define MF_RECORD_TORN_MAX      2u /* lines that are no record in a row, taken as torn lines */

/* Called for each problem: `where` and `line` say where (as given to the verifier). */
typedef void (*mf_record_report_fn)(void *context, enum mf_record_problem problem,
                                    const char *where, uint64_t line, const char *message);

/* The proven totals of one project of one setup (from records whose signature holds). */
struct mf_record_total {
    uint8_t setup[32];
    char project[MF_RECORD_PROJECT_MAX + 1];
    uint64_t ok;
    uint64_t failed;     /* cycles that took a count and failed */
    uint64_t unrecorded; /* cycles that took a count but have no record of their outcome (the
                          * device may have been made): "unrecorded:N", "counter-ahead:N" */
    uint64_t unknown;    /* "count-unknown" records: cycles that may or may not have taken one */
    uint64_t serials;    /* records that carry a serial number */
    uint64_t serial_min, serial_max;
};

struct mf_record_verifier {
    /* What was found (read them after the last line). */
    uint64_t lines, records; /* lines seen; lines that parse as records */
    uint64_t verified;       /* records whose signature holds */
    uint64_t malformed, bad_signatures, foreign, chain_breaks, gaps;
    uint64_t counter_problems, head_problems;
    uint64_t torn_lines; /* lines that are no record but provably hide none (not in malformed) */
    uint64_t chains;     /* chains started at seq 1 (more than one is a chain break) */
    /* After mf_record_verifier_end: counts of the anchor's counter that no record accounts for,
     * and records missing after the last one (from the head statement). */
    uint64_t unaccounted, missing_after;
    bool has_head; /* a head statement that holds was given: `head` */
    struct mf_record_head head;
    bool has_time;
    int64_t first_time, last_time; /* of verified records */
    struct mf_record_total *totals;
    size_t total_count;

    /* Private. */
    struct mf_owner_programmer programmer;
    mf_record_report_fn report;
    void *report_context;
    size_t total_capacity;
    bool have_last, last_flagged;     /* a record was seen: the last one's seq and hash */
    uint64_t last_seq, malformed_run; /* lines that are no record since it */
    uint8_t last_hash[32];
    bool ended;
    /* The counter's accounting, over verified records: the first one's counter is the base;
     * every later record's cycles are credits against the counter's rise. */
    bool has_counter;
    uint64_t counter_base, counter_top, credits;
    uint64_t base_seq, top_seq;
    /* Where the counter rose most beyond its record's cycles. */
    uint64_t jump, jump_line, jump_seq, jump_from_seq, jump_from, jump_to;
    char jump_where[MF_RECORD_WHERE_MAX];
    char head_where[MF_RECORD_WHERE_MAX]; /* the head taken: where it is, its body's hash */
    uint64_t head_line;
    uint8_t head_hash[32];
    /* Lines that are no record since the last record, not reported yet: torn lines if the next
     * record chains to the last one, else malformed. */
    unsigned pending_count;
    struct {
        char where[MF_RECORD_WHERE_MAX];
        uint64_t line;
        char message[MF_RECORD_MESSAGE_MAX];
    } pending[MF_RECORD_TORN_MAX];
};

/* Starts a verification of the records of `programmer` (its public file). `report` may be NULL. */
void mf_record_verifier_init(struct mf_record_verifier *verifier,
                             const struct mf_owner_programmer *programmer,
                             mf_record_report_fn report, void *report_context);

/* Takes the next line (several files' lines in their order, one sequence). Problems go to the
 * report callback and the counters; the return value is 0, or MF_ENOMEM / MF_EFBIG when the
 * totals table cannot grow (more than MF_RECORD_TOTALS_MAX projects). */
int mf_record_verifier_line(struct mf_record_verifier *verifier, const char *where,
                            uint64_t line_number, const char *line, size_t length);

/* Takes the programmer's head statement (line `line_number` of `where`), at any time before
 * mf_record_verifier_end. `nonce` (may be NULL: not compared) is the one the owner chose. A
 * statement that does not parse, is not signed by the programmer, or names another nonce is a
 * MF_RECORD_HEAD problem and is not used; so is a second one, unless it is the same statement
 * again. Problems the head shows at the end are reported at the head taken. */
void mf_record_verifier_head(struct mf_record_verifier *verifier, const char *where,
                             uint64_t line_number, const char *line, size_t length,
                             const uint8_t *nonce);

/* After the last line: accounts for the anchor's counter (it may not go down, and its rise from
 * the first verified record to the last one, or to the head's counter, must be accounted for by
 * the later records' cycles and the head's pending ones: else MF_RECORD_COUNTER, the shortfall in
 * `unaccounted`), and checks that the records end at the head (else MF_RECORD_HEAD, records
 * missing after the last one in `missing_after`). */
void mf_record_verifier_end(struct mf_record_verifier *verifier);

/* True after mf_record_verifier_end when every line was a verified record of the programmer (or a
 * torn line between two that chain: MF_RECORD_TORN_LINE), in one unbroken chain, without gap
 * records, with every count of the anchor's counter accounted for, reaching the head when one was
 * given, and there was at least one record. Without a head statement, records deleted at the very
 * end cannot show until the programmer notices (its gap record at the next start). */
bool mf_record_verifier_intact(const struct mf_record_verifier *verifier);

/* Releases the totals. */
void mf_record_verifier_free(struct mf_record_verifier *verifier);

/* Writes `text` as a record field value: "-" when empty, "%2D" for "-", space, '%', control
 * bytes and DEL as %XX (MF_EINVAL when `size` is too small; 3 * length + 4 is enough). */
int mf_record_encode_text(const char *text, char *out, size_t size);

/* "OK", "ERR", "GAP". */
const char *mf_record_result_name(enum mf_record_result result);

#endif

/* The secure area (see mf_secure.h; the format is in docs/security.md).
 *
 * Layout of partition 2, in bytes, R = 512 and S = 4096 rounded up to the block size:
 *   [0, R)            header slot 0     [R, 2R)       header slot 1
 *   [2R, 2R+S)        state slot 0      [2R+S, 2R+2S) state slot 1
 *   [2R+2S, ...)      chunks: each MF_SECURE_CHUNK bytes of ciphertext and a 16-byte tag,
 *                     rounded up to the block size; files first, then the file table. */
#include "mf_secure.h"
#include "mf_le.h"

#include "mf_owner.h"
#include "mf_package.h"
#include "mf_sha256.h"

#include "mf_err.h"
#include "mf_ini.h"
#include "mf_numfile.h"
#include "mf_setup.h"

#include <sodium.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HEADER_SIZE       512u
#define HEADER_MAC_AT     480u
#define STATE_SIZE        4096u
#define STATE_NONCE       24u
#define STATE_TAG         16u
#define STATE_PLAIN       (STATE_SIZE - STATE_NONCE - STATE_TAG)
#define ENTRY_SIZE        320u
#define ENTRY_PATH        256u
#define TAG               16u
#define KDF_CONTEXT       "MFSECURE"
#define DEFAULT_PROJECT   (-1)
#define STATE_RECORDS     (48u + 32u * MF_SECURE_PROJECTS_MAX) /* the records' chain head */
#define HEADER_FLAGS      184u                                 /* bit 0: from a sealed package */
#define HEADER_OWNER      192u
#define HEADER_MARK       224u
#define HEADER_FLAG_OWNER 1u
#define STATE_FORFEITED   (STATE_RECORDS + 48u)
_Static_assert(STATE_FORFEITED + 8u <= STATE_PLAIN, "state layout");
_Static_assert(HEADER_MARK + 8u <= HEADER_MAC_AT, "header layout");

static const uint8_t header_magic[8] = {'M', 'F', 'S', 'E', 'C', 'U', 'R', 'E'};
static const uint8_t state_magic[8] = {'M', 'F', 'S', 'T', 'A', 'T', 'E', '1'};

struct mf_secure_file {
    char path[ENTRY_PATH];
    uint64_t size;
    uint64_t first_chunk;
    uint32_t chunks;
    uint32_t id;
};

/* ---- little helpers ---- */

static void say(char *message, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void say(char *message, const char *fmt, ...)
{
    if (!message)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, MF_SECURE_MESSAGE_MAX, fmt, ap);
    va_end(ap);
}

static uint64_t round_up(uint64_t v, uint64_t to)
{
    return (v + to - 1) / to * to;
}

static char fold(char c)
{
    return (c >= 'a' && c <= 'z') ? (char)(c - 32) : c;
}

/* Paths compare without regard to ASCII case, as FAT looks names up. */
static int path_compare(const char *a, const char *b)
{
    for (;; a++, b++) {
        char x = fold(*a), y = fold(*b);
        if (x != y || !x)
            return (unsigned char)x - (unsigned char)y;
    }
}

/* ---- geometry ---- */

static uint64_t block(const struct mf_secure *s)
{
    return s->config.bd->block_size;
}

static uint64_t header_off(const struct mf_secure *s, unsigned slot)
{
    return slot * round_up(HEADER_SIZE, block(s));
}

static uint64_t state_off(const struct mf_secure *s, unsigned slot)
{
    return 2 * round_up(HEADER_SIZE, block(s)) + slot * round_up(STATE_SIZE, block(s));
}

static uint64_t data_off(const struct mf_secure *s)
{
    return state_off(s, 2);
}

static uint64_t stored_chunk(const struct mf_secure *s)
{
    return round_up(MF_SECURE_CHUNK + TAG, block(s));
}

uint64_t mf_secure_capacity(const struct mf_secure *s)
{
    uint64_t total = mf_bd_size(s->config.bd);
    if (total <= data_off(s))
        return 0;
    return (total - data_off(s)) / stored_chunk(s) * MF_SECURE_CHUNK;
}

static uint64_t chunks_for(uint64_t bytes)
{
    return (bytes + MF_SECURE_CHUNK - 1) / MF_SECURE_CHUNK;
}

uint64_t mf_secure_needed(uint64_t files, uint64_t bytes, uint64_t path_bytes)
{
    (void)path_bytes;
    return bytes + chunks_for(files * ENTRY_SIZE) * MF_SECURE_CHUNK;
}

/* Byte-addressed device access; offsets and lengths are multiples of the block size. */
static int dev_read(const struct mf_secure *s, uint64_t off, void *buf, uint64_t len)
{
    return mf_bd_read(s->config.bd, off / block(s), buf, (size_t)(len / block(s)));
}

static int dev_write(const struct mf_secure *s, uint64_t off, const void *buf, uint64_t len)
{
    return mf_bd_prog(s->config.bd, off / block(s), buf, (size_t)(len / block(s)));
}

static void derive_keys(struct mf_secure *s, const uint8_t key[MF_ANCHOR_KEY_SIZE])
{
    crypto_kdf_derive_from_key(s->mac_key, sizeof s->mac_key, 1, KDF_CONTEXT, key);
    crypto_kdf_derive_from_key(s->file_key, sizeof s->file_key, 2, KDF_CONTEXT, key);
    crypto_kdf_derive_from_key(s->state_key, sizeof s->state_key, 3, KDF_CONTEXT, key);
}

/* ---- chunks ---- */

/* The associated data binds a chunk to its file, its place and the file's size: swapped,
 * reordered or truncated chunks fail authentication. */
static void chunk_ad(uint8_t ad[17], uint32_t file_id, uint32_t index, uint64_t size, bool last)
{
    mf_put_le32(ad, file_id);
    mf_put_le32(ad + 4, index);
    mf_put_le64(ad + 8, size);
    ad[16] = last;
}

static void chunk_nonce(const struct mf_secure *s, uint64_t global,
                        uint8_t nonce[crypto_aead_xchacha20poly1305_ietf_NPUBBYTES])
{
    memcpy(nonce, s->header + 160, 16); /* the install's random nonce prefix */
    mf_put_le64(nonce + 16, global);
}

/* Encrypts MF_SECURE_CHUNK bytes of `plain` as chunk `global` into `stored` (stored_chunk()
 * bytes, the padding zeroed). */
static void chunk_seal(const struct mf_secure *s, uint64_t global, uint32_t file_id, uint32_t index,
                       uint64_t size, bool last, const uint8_t *plain, uint8_t *stored)
{
    uint8_t ad[17], nonce[crypto_aead_xchacha20poly1305_ietf_NPUBBYTES];
    chunk_ad(ad, file_id, index, size, last);
    chunk_nonce(s, global, nonce);
    memset(stored + MF_SECURE_CHUNK + TAG, 0, stored_chunk(s) - MF_SECURE_CHUNK - TAG);
    crypto_aead_xchacha20poly1305_ietf_encrypt(stored, NULL, plain, MF_SECURE_CHUNK, ad, sizeof ad,
                                               NULL, nonce, s->file_key);
}

/* Reads and authenticates chunk `global`; the plaintext is released only when its tag holds. */
static int chunk_read(const struct mf_secure *s, uint64_t global, uint32_t file_id, uint32_t index,
                      uint64_t size, bool last, uint8_t *plain, uint8_t *stored)
{
    uint8_t ad[17], nonce[crypto_aead_xchacha20poly1305_ietf_NPUBBYTES];
    if (data_off(s) + (global + 1) * stored_chunk(s) > mf_bd_size(s->config.bd))
        return MF_ECORRUPT;
    int err = dev_read(s, data_off(s) + global * stored_chunk(s), stored, stored_chunk(s));
    if (err)
        return err;
    chunk_ad(ad, file_id, index, size, last);
    chunk_nonce(s, global, nonce);
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(plain, NULL, NULL, stored, MF_SECURE_CHUNK + TAG,
                                                   ad, sizeof ad, nonce, s->file_key) != 0) {
        sodium_memzero(plain, MF_SECURE_CHUNK);
        return MF_EAUTH;
    }
    return 0;
}

/* ---- the file table ---- */

static const struct mf_secure_file *lookup(const struct mf_secure *s, const char *path)
{
    /* Leading '/' and "./" are not part of stored paths. */
    while (*path == '/' || (path[0] == '.' && path[1] == '/'))
        path += *path == '/' ? 1 : 2;
    uint32_t lo = 0, hi = s->file_count;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        int c = path_compare(s->files[mid].path, path);
        if (c == 0)
            return &s->files[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

static void entry_encode(const struct mf_secure_file *f, uint8_t *e)
{
    memset(e, 0, ENTRY_SIZE);
    memcpy(e, f->path, strlen(f->path));
    mf_put_le64(e + 256, f->size);
    mf_put_le64(e + 264, f->first_chunk);
    mf_put_le32(e + 272, f->chunks);
    mf_put_le32(e + 276, f->id);
    /* e + 280: 32 bytes reserved, zero (an earlier format kept a BLAKE2b-256 of the content
     * here; nothing reads them). */
}

static int entry_decode(const uint8_t *e, struct mf_secure_file *f, uint32_t index)
{
    memcpy(f->path, e, ENTRY_PATH);
    if (f->path[ENTRY_PATH - 1] != '\0' || !f->path[0])
        return MF_ECORRUPT;
    f->size = mf_le64(e + 256);
    f->first_chunk = mf_le64(e + 264);
    f->chunks = mf_le32(e + 272);
    f->id = mf_le32(e + 276);
    if (f->id != index + 1 || f->chunks != chunks_for(f->size))
        return MF_ECORRUPT;
    return 0;
}

static int compare_files(const void *a, const void *b)
{
    return path_compare(((const struct mf_secure_file *)a)->path,
                        ((const struct mf_secure_file *)b)->path);
}

/* Does `path` start with `prefix` (ASCII case ignored)? */
static bool has_prefix(const char *path, const char *prefix)
{
    for (; *prefix; path++, prefix++) {
        if (fold(*path) != fold(*prefix))
            return false;
    }
    return true;
}

/* The projects: folders directly under Projects/, in the order mf_setup lists them (strcmp). */
static void find_projects(struct mf_secure *s)
{
    s->project_count = 0;
    static const char prefix[] = "Projects/";
    for (uint32_t i = 0; i < s->file_count; i++) {
        const char *p = s->files[i].path;
        if (!has_prefix(p, prefix))
            continue;
        const char *name = p + sizeof prefix - 1, *slash = strchr(name, '/');
        if (!slash || slash == name || (size_t)(slash - name) >= MF_AREA_NAME_MAX)
            continue;
        char folder[MF_AREA_NAME_MAX];
        memcpy(folder, name, (size_t)(slash - name));
        folder[slash - name] = '\0';
        bool known = false;
        for (uint32_t k = 0; k < s->project_count && !known; k++)
            known = path_compare(s->projects[k].folder, folder) == 0;
        if (!known && s->project_count < MF_SECURE_PROJECTS_MAX)
            strcpy(s->projects[s->project_count++].folder, folder);
    }
    /* strcmp order, as mf_setup sorts the listing. */
    for (uint32_t i = 1; i < s->project_count; i++) {
        struct mf_secure_project t = s->projects[i];
        uint32_t j = i;
        while (j > 0 && strcmp(s->projects[j - 1].folder, t.folder) > 0) {
            s->projects[j] = s->projects[j - 1];
            j--;
        }
        s->projects[j] = t;
    }
}

static int project_index(const struct mf_secure *s, const struct mf_project *p)
{
    const char *folder = p->folder + strlen(MF_DIR_PROJECTS) + 1;
    for (uint32_t i = 0; i < s->project_count; i++) {
        if (path_compare(s->projects[i].folder, folder) == 0)
            return (int)i;
    }
    return -1;
}

/* ---- state records ---- */

static void state_encode(const struct mf_secure_state *st, uint8_t *plain)
{
    memset(plain, 0, STATE_PLAIN);
    memcpy(plain, state_magic, 8);
    mf_put_le64(plain + 8, st->seq);
    mf_put_le64(plain + 16, st->total_used);
    plain[24] = st->root_limited;
    plain[25] = st->folder_removed;
    plain[26] = st->run_end_unrecorded;
    mf_put_le32(plain + 28, (uint32_t)st->selected);
    mf_put_le64(plain + 32, st->root_limit);
    mf_put_le32(plain + 40, st->project_count);
    mf_put_le64(plain + STATE_RECORDS, st->record_seq);
    memcpy(plain + STATE_RECORDS + 8, st->record_hash, 32);
    mf_put_le64(plain + STATE_RECORDS + 40, st->recorded);
    mf_put_le64(plain + STATE_FORFEITED, st->forfeited);
    for (uint32_t i = 0; i < st->project_count; i++) {
        uint8_t *q = plain + 48 + 32 * i;
        mf_put_le64(q, st->projects[i].used);
        mf_put_le64(q + 8, st->projects[i].serial_next);
        mf_put_le64(q + 16, st->projects[i].limit);
        q[24] = st->projects[i].limited;
        q[25] = st->projects[i].has_serial;
    }
}

static int state_decode(const uint8_t *plain, struct mf_secure_state *st)
{
    if (memcmp(plain, state_magic, 8) != 0)
        return MF_ECORRUPT;
    memset(st, 0, sizeof *st);
    st->seq = mf_le64(plain + 8);
    st->total_used = mf_le64(plain + 16);
    st->root_limited = plain[24] != 0;
    st->folder_removed = plain[25] != 0;
    st->run_end_unrecorded = plain[26] != 0; /* zero in records written before it */
    st->selected = (int32_t)mf_le32(plain + 28);
    st->root_limit = mf_le64(plain + 32);
    st->project_count = mf_le32(plain + 40);
    st->record_seq = mf_le64(plain + STATE_RECORDS);
    memcpy(st->record_hash, plain + STATE_RECORDS + 8, 32);
    st->recorded = mf_le64(plain + STATE_RECORDS + 40);
    st->forfeited = mf_le64(plain + STATE_FORFEITED); /* zero in records written before it */
    if (st->project_count > MF_SECURE_PROJECTS_MAX)
        return MF_ECORRUPT;
    for (uint32_t i = 0; i < st->project_count; i++) {
        const uint8_t *q = plain + 48 + 32 * i;
        st->projects[i].used = mf_le64(q);
        st->projects[i].serial_next = mf_le64(q + 8);
        st->projects[i].limit = mf_le64(q + 16);
        st->projects[i].limited = q[24] != 0;
        st->projects[i].has_serial = q[25] != 0;
    }
    return 0;
}

/* `st` sealed as a state record: a fresh nonce, then XChaCha20-Poly1305 under the state key
 * with the install nonce as associated data. */
static void state_seal(const struct mf_secure *s, const struct mf_secure_state *st,
                       uint8_t record[STATE_SIZE])
{
    uint8_t plain[STATE_PLAIN];
    state_encode(st, plain);
    memset(record, 0, STATE_SIZE);
    s->config.random(s->config.random_context, record, STATE_NONCE);
    crypto_aead_xchacha20poly1305_ietf_encrypt(record + STATE_NONCE, NULL, plain, STATE_PLAIN,
                                               s->header + 160, 16, NULL, record, s->state_key);
    sodium_memzero(plain, sizeof plain);
}

/* A sealed record (from the medium or the anchor's note) opened: 0, or nonzero when it does
 * not authenticate or decode. */
static int state_unseal(const struct mf_secure *s, const uint8_t *record,
                        struct mf_secure_state *st)
{
    uint8_t plain[STATE_PLAIN];
    int err = crypto_aead_xchacha20poly1305_ietf_decrypt(plain, NULL, NULL, record + STATE_NONCE,
                                                         STATE_PLAIN + STATE_TAG, s->header + 160,
                                                         16, record, s->state_key);
    if (!err)
        err = state_decode(plain, st);
    sodium_memzero(plain, sizeof plain);
    return err;
}

/* Writes the sealed `record` of `st` into the slot after the newest one (the newest stays
 * until this one is durable), synced when `durable`; then `st` is the state. */
static int state_put(struct mf_secure *s, const struct mf_secure_state *st,
                     const uint8_t record[STATE_SIZE], bool durable)
{
    unsigned slot = s->state_slot ^ 1u;
    uint64_t span = round_up(STATE_SIZE, block(s));
    uint8_t *buf = calloc(1, span);
    if (!buf)
        return MF_ENOMEM;
    memcpy(buf, record, STATE_SIZE);
    int err = dev_write(s, state_off(s, slot), buf, span);
    free(buf);
    if (!err && durable)
        err = mf_bd_sync(s->config.bd);
    if (err)
        return err;
    s->state = *st;
    s->state_slot = slot;
    return 0;
}

/* Writes `st` durably (see state_put). */
static int state_write(struct mf_secure *s, const struct mf_secure_state *st)
{
    uint8_t record[STATE_SIZE];
    state_seal(s, st, record);
    return state_put(s, st, record, true);
}

/* The newest state: of the two slots on the medium and the anchor's note (a state the anchor
 * keeps with its counter, see secure_take), the valid one with the highest sequence; on a tie
 * the medium's. */
static int state_read(struct mf_secure *s, char *message)
{
    uint64_t span = round_up(STATE_SIZE, block(s));
    if (span < MF_ANCHOR_NOTE_MAX)
        span = MF_ANCHOR_NOTE_MAX;
    uint8_t *buf = malloc(span);
    if (!buf)
        return MF_ENOMEM;
    bool found = false;
    struct mf_secure_state st;
    for (unsigned slot = 0; slot < 2; slot++) {
        if (dev_read(s, state_off(s, slot), buf, round_up(STATE_SIZE, block(s))) != 0)
            continue;
        if (state_unseal(s, buf, &st) != 0)
            continue;
        if (!found || st.seq > s->state.seq) {
            s->state = st;
            s->state_slot = slot;
            found = true;
        }
    }
    struct mf_anchor *a = s->config.anchor;
    size_t size = 0;
    int err = a->read_note ? a->read_note(a, buf, &size) : 0;
    if (err) {
        free(buf);
        say(message, "trust anchor: %s", a->error[0] ? a->error : mf_strerror(err));
        return err;
    }
    /* A note of another install does not authenticate (another key, another nonce). */
    if (size == STATE_SIZE && state_unseal(s, buf, &st) == 0 && (!found || st.seq > s->state.seq)) {
        s->state = st;
        found = true;
    }
    free(buf);
    sodium_memzero(&st, sizeof st);
    if (!found) {
        say(message, "secure area: no state record passes authentication (damaged or tampered)");
        return MF_EAUTH;
    }
    return 0;
}

/* ---- counts ---- */

/* The cycles of the anchor's counter the state accounts for: devices and forfeited cycles. */
static uint64_t accounted(const struct mf_secure_state *st)
{
    return st->total_used + st->forfeited;
}

uint64_t mf_secure_missing(const struct mf_secure *s, uint64_t counter)
{
    uint64_t taken = counter > s->counter_base ? counter - s->counter_base : 0;
    uint64_t proven;
    if (s->run_reserved) {
        /* This run took the reservation in progress and keeps the state itself. Reservations
         * before it were used up before it was taken; it was taken for a cycle that may have
         * consumed its count before a cut. */
        proven = taken ? (taken - 1) * s->reservation + 1 : 0;
    } else {
        /* Until this run takes a reservation, the counter stands for every cycle it covers: the
         * rest of the reservation in progress is charged, not left. A run that ended without
         * mf_secure_end_run (a power cut) or a copy of the storage made during a run and put
         * back looks the same here as the state that copy made its devices after: leaving the
         * rest would give K devices per copy for one count. */
        proven = taken * s->reservation;
    }
    return proven > accounted(&s->state) ? proven - accounted(&s->state) : 0;
}

/* The anchor's counter. Only this programmer advances it, and only under the state's lock, so
 * after the first read the value is kept (a TPM read costs milliseconds): an increase by anyone
 * else could only make the programmer charge more, never less, once it reads it again at the
 * next start. Called with the lock held, or before the area is shared. */
static int counter(struct mf_secure *s, uint64_t *value, char *message)
{
    if (s->counter_known) {
        *value = s->counter_value;
        return 0;
    }
    struct mf_anchor *a = s->config.anchor;
    int err = a->counter_read(a, value);
    if (err) {
        say(message, "trust anchor: %s", a->error[0] ? a->error : mf_strerror(err));
        return err;
    }
    s->counter_value = *value;
    s->counter_known = true;
    return 0;
}

static uint64_t left_of(bool limited, uint64_t limit, uint64_t used)
{
    return limited && limit > used ? limit - used : 0;
}

/* What peek and take start with: the project's place in the state, then, with the state's lock
 * taken, the anchor's counter. The counter is read under the lock: a value read before another
 * slot's new reservation would take a second one and waste the first. On success the caller
 * holds the lock. */
static int count_begin(struct mf_secure *s, const struct mf_project *p, int *index, uint64_t *v,
                       char *message)
{
    *index = project_index(s, p);
    if (*index < 0) {
        say(message, "%s is not in the secure area's state", p->folder);
        return MF_ECORRUPT;
    }
    mf_lock_take(&s->config.lock);
    int err = counter(s, v, message);
    if (err)
        mf_lock_give(&s->config.lock);
    return err;
}

static int secure_peek(struct mf_area *area, const struct mf_setup *setup, unsigned project,
                       struct mf_tally *tally, char *message)
{
    struct mf_secure *s = area->context;
    const struct mf_project *p = &setup->projects[project];
    memset(tally, 0, sizeof *tally);
    int index;
    uint64_t v;
    int err = count_begin(s, p, &index, &v, message);
    if (err)
        return err;
    uint64_t missing = mf_secure_missing(s, v);
    const struct mf_secure_counts *c = &s->state.projects[index];
    tally->project_limited = c->limited;
    tally->project_left = left_of(c->limited, c->limit, c->used + missing);
    tally->root_limited = s->state.root_limited;
    tally->root_left =
        left_of(s->state.root_limited, s->state.root_limit, s->state.total_used + missing);
    tally->has_serial = c->has_serial && mf_project_takes_serial(p);
    tally->serial = c->serial_next + missing * p->serial_increment;
    mf_lock_give(&s->config.lock);
    return 0;
}

static int secure_take(struct mf_area *area, const struct mf_setup *setup, unsigned project,
                       const struct mf_tally *tally, enum mf_area_taken *taken, char *message)
{
    (void)tally;
    struct mf_secure *s = area->context;
    struct mf_anchor *a = s->config.anchor;
    const struct mf_project *p = &setup->projects[project];
    int index;
    uint64_t v;
    *taken = MF_AREA_TAKEN_NONE;
    int err = count_begin(s, p, &index, &v, message);
    if (err)
        return err;
    /* A run uses only reservations it took itself: until it has taken one, `missing` charges
     * the rest of the reservation in progress (mf_secure_missing), so its first cycle takes a
     * new one. Only mf_secure_end_run leaves a rest uncharged (forfeited). */
    uint64_t missing = mf_secure_missing(s, v);
    uint64_t covered = (v - s->counter_base) * s->reservation;
    struct mf_secure_state st = s->state;
    st.seq++;
    uint64_t n = accounted(&st) + missing + 1; /* this cycle's number on the counter */
    if (missing) {
        /* Cycles the anchor proves but the state lost: charged to every project, and their
         * serial numbers skip ahead, so that none is handed out twice. */
        for (unsigned i = 0; i < setup->project_count; i++) {
            int k = project_index(s, &setup->projects[i]);
            if (k < 0)
                continue;
            st.projects[k].used += missing;
            st.projects[k].serial_next += missing * setup->projects[i].serial_increment;
        }
    }
    st.projects[index].used++;
    if (st.projects[index].has_serial && mf_project_takes_serial(p))
        st.projects[index].serial_next += p->serial_increment;
    st.total_used += missing + 1;
    uint8_t record[STATE_SIZE];
    state_seal(s, &st, record);
    bool noted = false;
    if (n > covered) {
        /* A new reservation, durable in the anchor before any of its cycles is used. At K = 1
         * an anchor that keeps a note takes the new state with it in the same write: then that
         * write is the cycle's only sync, the medium's copy follows unsynced (state_read picks
         * the newer), and a restored older image loses nothing the anchor saw. Not beyond
         * K = 1: a note from the start of a reservation would stand in for a restored image's
         * record exactly where the counter proves no more, so the devices made after it would
         * be lost from the count at every restore (the forfeit above cannot catch them). */
        noted = s->reservation == 1 && a->counter_increment_note && a->note_max >= STATE_SIZE;
        err = noted ? a->counter_increment_note(a, record, STATE_SIZE, &v)
                    : a->counter_increment(a, &v);
        if (err) {
            /* The anchor refused, or its write never completed: nothing was taken, and the next
             * cycle takes the same number. Else whether it counted is unknown: this run goes on
             * as if it had not (the keystore writes its next state over that write; a TPM's
             * counter is read afresh, and what it proves is charged as missing), and the next
             * start reads whatever became durable. */
            if (!a->unchanged) {
                s->counter_known = false;
                *taken = MF_AREA_TAKEN_UNKNOWN;
            }
            say(message, "trust anchor: %s%s", a->error[0] ? a->error : mf_strerror(err),
                err == MF_EBUSY ? " (retry later)" : "");
            mf_lock_give(&s->config.lock);
            return err;
        }
        s->counter_value = v;
        s->run_reserved = true;
        /* From here the cycle is counted: the note holds it, or the counter proves it. */
        *taken = MF_AREA_TAKEN;
    }
    err = state_put(s, &st, record, !noted);
    if (!err) {
        *taken = MF_AREA_TAKEN;
    } else if (*taken == MF_AREA_TAKEN) {
        /* Durable in the anchor all the same (its note, or its counter, which every later state
         * would charge as missing): the state says so, and the next state write (the cycle's
         * record, the next cycle) brings the medium's copy up to date. */
        s->state = st;
    } else {
        /* Only the medium's record counts this cycle, and its write failed: it may have landed
         * (a failed sync). The next write goes to the same slot, over it. */
        *taken = MF_AREA_TAKEN_UNKNOWN;
    }
    mf_lock_give(&s->config.lock);
    if (err)
        say(message, "secure area: cannot record the cycle: %s", mf_strerror(err));
    return err;
}

int mf_secure_end_run(struct mf_secure *s, bool *stepped, char *message)
{
    say(message, "%s", "");
    *stepped = false;
    if (!s->present || !s->run_reserved)
        return 0;
    struct mf_anchor *a = s->config.anchor;
    mf_lock_take(&s->config.lock);
    uint64_t v;
    int err = counter(s, &v, message);
    uint64_t covered = err ? 0 : (v - s->counter_base) * s->reservation;
    /* Counts the counter proves beyond the state (an anchor write that failed but landed) are no
     * rest of the reservation: they stay to be charged at the next start, as devices, and are
     * recorded there ("counter-ahead"). At K = 1 that is all there is beyond the state. */
    uint64_t owed = err ? 0 : mf_secure_missing(s, v);
    if (err || covered <= accounted(&s->state) + owed) {
        /* Used up to the last cycle: no copy made during the run holds a rest to use. */
        mf_lock_give(&s->config.lock);
        return err;
    }
    /* One counter step: every copy of the storage made during this run now shows a counter
     * behind the anchor's, which charges it all the counter covers. The rest of this run's
     * reservation and the one just taken are forfeited: no device, no limit, no serial number.
     * Anchor first: a cut before the state follows costs this rest and one reservation. */
    err = a->counter_increment(a, &v);
    if (err) {
        if (!a->unchanged)
            s->counter_known = false;
        say(message, "trust anchor: %s", a->error[0] ? a->error : mf_strerror(err));
        mf_lock_give(&s->config.lock);
        return err;
    }
    s->counter_value = v;
    *stepped = true;
    struct mf_secure_state st = s->state;
    st.seq++;
    st.forfeited += (v - s->counter_base) * s->reservation - accounted(&st) - owed;
    /* Until its "run-end" record is appended (mf_secure_run_end_recorded), the next
     * mf_reclog_open appends it: the step is never left without a record. */
    st.run_end_unrecorded = true;
    uint8_t record[STATE_SIZE];
    state_seal(s, &st, record);
    err = state_put(s, &st, record, true);
    if (err)
        say(message, "secure area: cannot record the end of the run: %s", mf_strerror(err));
    else
        s->run_reserved = false; /* a cycle after this takes a new reservation */
    mf_lock_give(&s->config.lock);
    return err;
}

/* ---- the area ---- */

/* Whole chunks [first, first + count) of a file, decrypted into `out`, shared between the reader
 * and the worker: each takes the next chunk not yet taken until none is left. */
struct chunk_share {
    const struct mf_secure *s;
    const struct mf_secure_file *f;
    uint32_t first, count;
    uint8_t *out;
    atomic_uint next; /* the next chunk to take, from 0; count or more: none left */
};

/* One side's share: its own stored_chunk() buffer, and its first failure. */
struct chunk_taker {
    struct chunk_share *share;
    uint8_t *stored;
    uint32_t failed_at; /* UINT32_MAX: none */
    int err;
};

static void chunk_take(void *context)
{
    struct chunk_taker *t = context;
    struct chunk_share *sh = t->share;
    t->err = 0;
    t->failed_at = UINT32_MAX;
    for (;;) {
        unsigned i = atomic_fetch_add_explicit(&sh->next, 1, memory_order_relaxed);
        if (i >= sh->count)
            break;
        uint32_t index = sh->first + i;
        int err = chunk_read(sh->s, sh->f->first_chunk + index, sh->f->id, index, sh->f->size,
                             index + 1 == sh->f->chunks, sh->out + (size_t)i * MF_SECURE_CHUNK,
                             t->stored);
        if (err) {
            t->err = err;
            t->failed_at = i;
            atomic_store_explicit(&sh->next, sh->count, memory_order_relaxed); /* both stop */
            break;
        }
    }
}

/* `count` whole chunks from `first` into `out`, shared with the worker when it is free (and
 * another stored buffer can be had). A worker whose thread has not begun by the time the reader
 * has taken every chunk is withdrawn rather than waited for: a busy second core costs nothing. */
static int read_chunks(const struct mf_secure *s, const struct mf_secure_file *f, uint32_t first,
                       uint32_t count, uint8_t *out, uint8_t *stored, uint8_t **stored2)
{
    const struct mf_worker *w = s->config.worker;
    struct chunk_share share = {s, f, first, count, out, 0};
    struct chunk_taker theirs = {&share, NULL, UINT32_MAX, 0};
    struct chunk_taker mine = {&share, stored, UINT32_MAX, 0};
    bool shared = false;
    if (w && count >= 2 && (*stored2 || (*stored2 = malloc(stored_chunk(s))) != NULL)) {
        theirs.stored = *stored2;
        shared = w->try_start(w->context, chunk_take, &theirs);
    }
    chunk_take(&mine);
    if (shared && !(w->withdraw && w->withdraw(w->context)))
        w->wait(w->context);
    else
        theirs.err = 0; /* it never ran */
    /* The earlier chunk's failure first. */
    if (theirs.err && theirs.failed_at < mine.failed_at)
        return theirs.err;
    return mine.err ? mine.err : theirs.err;
}

static int secure_read(struct mf_area *area, const char *path, uint64_t offset, void *buffer,
                       size_t length)
{
    struct mf_secure *s = area->context;
    const struct mf_secure_file *f = lookup(s, path);
    if (!f)
        return MF_ENOENT;
    if (offset > f->size || length > f->size - offset)
        return MF_EIO;
    uint8_t *plain = NULL, *stored2 = NULL, *stored = malloc(stored_chunk(s));
    if (!stored)
        return MF_ENOMEM;
    int err = 0;
    uint8_t *out = buffer;
    while (length > 0 && !err) {
        uint32_t index = (uint32_t)(offset / MF_SECURE_CHUNK);
        uint32_t within = (uint32_t)(offset % MF_SECURE_CHUNK);
        bool last = index + 1 == f->chunks;
        if (within == 0 && length >= MF_SECURE_CHUNK) {
            /* Whole chunks: decrypted straight into the caller's buffer (a chunk that fails
             * authentication reads as zeros). */
            uint32_t count = (uint32_t)(length / MF_SECURE_CHUNK);
            if (count > f->chunks - index)
                count = f->chunks - index;
            err = read_chunks(s, f, index, count, out, stored, &stored2);
            size_t n = (size_t)count * MF_SECURE_CHUNK;
            if (offset + n > f->size)
                n = (size_t)(f->size - offset);
            out += n;
            offset += n;
            length -= n;
            continue;
        }
        if (!plain && !(plain = malloc(MF_SECURE_CHUNK))) {
            err = MF_ENOMEM;
            break;
        }
        err = chunk_read(s, f->first_chunk + index, f->id, index, f->size, last, plain, stored);
        if (err)
            break;
        size_t n = MF_SECURE_CHUNK - within < length ? MF_SECURE_CHUNK - within : length;
        memcpy(out, plain + within, n);
        out += n;
        offset += n;
        length -= n;
    }
    if (plain) {
        sodium_memzero(plain, MF_SECURE_CHUNK);
        free(plain);
    }
    free(stored);
    free(stored2);
    return err;
}

/* Is `dir` a folder: some path starts with "dir/"? */
static bool is_folder(const struct mf_secure *s, const char *dir)
{
    size_t n = strlen(dir);
    if (n == 0)
        return true;
    for (uint32_t i = 0; i < s->file_count; i++) {
        const char *p = s->files[i].path;
        if (strlen(p) > n && p[n] == '/') {
            char head[ENTRY_PATH];
            memcpy(head, p, n);
            head[n] = '\0';
            if (path_compare(head, dir) == 0)
                return true;
        }
    }
    return false;
}

static const char *trim_path(const char *path)
{
    while (*path == '/' || (path[0] == '.' && path[1] == '/'))
        path += *path == '/' ? 1 : 2;
    return path;
}

static int secure_stat(struct mf_area *area, const char *path, struct mf_area_entry *entry)
{
    struct mf_secure *s = area->context;
    path = trim_path(path);
    char dir[ENTRY_PATH];
    size_t n = strlen(path);
    if (n >= sizeof dir)
        return MF_ENOENT;
    memcpy(dir, path, n + 1);
    while (n && dir[n - 1] == '/')
        dir[--n] = '\0';
    memset(entry, 0, sizeof *entry);
    const struct mf_secure_file *f = lookup(s, dir);
    if (f) {
        const char *base = strrchr(f->path, '/');
        snprintf(entry->name, sizeof entry->name, "%s", base ? base + 1 : f->path);
        entry->size = f->size;
        return 0;
    }
    if (is_folder(s, dir)) {
        const char *base = strrchr(dir, '/');
        snprintf(entry->name, sizeof entry->name, "%s", base ? base + 1 : dir);
        entry->is_dir = true;
        return 0;
    }
    return MF_ENOENT;
}

static int secure_list(struct mf_area *area, const char *path, mf_area_each_fn each, void *context)
{
    struct mf_secure *s = area->context;
    path = trim_path(path);
    char dir[ENTRY_PATH];
    size_t n = strlen(path);
    if (n >= sizeof dir)
        return MF_ENOENT;
    memcpy(dir, path, n + 1);
    while (n && dir[n - 1] == '/')
        dir[--n] = '\0';
    if (lookup(s, dir))
        return MF_ENOTDIR;
    if (!is_folder(s, dir))
        return MF_ENOENT;
    char last[MF_AREA_NAME_MAX] = "";
    bool last_dir = false;
    for (uint32_t i = 0; i < s->file_count; i++) {
        const char *p = s->files[i].path;
        if (n) {
            if (strlen(p) <= n || p[n] != '/')
                continue;
            char head[ENTRY_PATH];
            memcpy(head, p, n);
            head[n] = '\0';
            if (path_compare(head, dir) != 0)
                continue;
            p += n + 1;
        }
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (len >= MF_AREA_NAME_MAX)
            continue;
        struct mf_area_entry e;
        memset(&e, 0, sizeof e);
        memcpy(e.name, p, len);
        e.is_dir = slash != NULL;
        e.size = e.is_dir ? 0 : s->files[i].size;
        if (e.is_dir && last_dir && path_compare(e.name, last) == 0)
            continue; /* the next file of a subfolder already listed */
        strcpy(last, e.name);
        last_dir = e.is_dir;
        int err = each(context, &e);
        if (err)
            return err;
    }
    return 0;
}

static int secure_read_number(struct mf_area *area, const char *path, enum mf_numfile_syntax syntax,
                              uint64_t max, uint64_t *value)
{
    struct mf_secure *s = area->context;
    const struct mf_secure_file *f = lookup(s, path);
    if (!f)
        return MF_ENOENT;
    if (f->size > MF_NUMFILE_SIZE_MAX)
        return MF_EFBIG;
    char text[MF_NUMFILE_SIZE_MAX];
    int err = secure_read(area, path, 0, text, (size_t)f->size);
    if (err)
        return err;
    return mf_numfile_parse(text, (uint32_t)f->size, syntax, max, value);
}

static int secure_fingerprint(struct mf_area *area, uint8_t fingerprint[32])
{
    struct mf_secure *s = area->context;
    if (!s->present)
        return MF_ENOENT;
    memcpy(fingerprint, s->fingerprint, 32);
    return 0;
}

/* The setup was installed by this open, which sealed every chunk from the bytes it read, kept
 * the file table it wrote and took the fingerprint in passing: what a later open reads. */
static bool secure_just_installed(struct mf_area *area)
{
    const struct mf_secure *s = area->context;
    return s->present && s->installed_here;
}

static void area_init(struct mf_secure *s)
{
    s->area = (struct mf_area){
        .context = s,
        .stat = secure_stat,
        .list = secure_list,
        .read = secure_read,
        .read_number = secure_read_number,
        .peek = secure_peek,
        .take = secure_take,
        .fingerprint = secure_fingerprint,
        .just_installed = secure_just_installed,
    };
}

/* ---- opening ---- */

static bool header_valid(const struct mf_secure *s, const uint8_t *h)
{
    if (memcmp(h, header_magic, 8) != 0)
        return false;
    uint8_t mac[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256(mac, h, HEADER_MAC_AT, s->mac_key);
    return sodium_memcmp(mac, h + HEADER_MAC_AT, sizeof mac) == 0;
}

static int load_table(struct mf_secure *s, char *message)
{
    const uint8_t *h = s->header;
    uint64_t table_first = mf_le64(h + 104);
    uint32_t table_chunks = mf_le32(h + 112);
    uint32_t count = mf_le32(h + 116);
    uint64_t table_bytes = mf_le64(h + 176);
    if (count > MF_SECURE_FILES_MAX || table_bytes != (uint64_t)count * ENTRY_SIZE ||
        table_chunks != chunks_for(table_bytes)) {
        say(message, "secure area: the file table's size is not plausible");
        return MF_ECORRUPT;
    }
    s->files = calloc(count ? count : 1, sizeof *s->files);
    uint8_t *plain = malloc((size_t)table_chunks * MF_SECURE_CHUNK + 1);
    uint8_t *stored = malloc(stored_chunk(s));
    int err = (!s->files || !plain || !stored) ? MF_ENOMEM : 0;
    for (uint32_t i = 0; i < table_chunks && !err; i++)
        err = chunk_read(s, table_first + i, 0, i, table_bytes, i + 1 == table_chunks,
                         plain + (size_t)i * MF_SECURE_CHUNK, stored);
    for (uint32_t i = 0; i < count && !err; i++) {
        err = entry_decode(plain + (size_t)i * ENTRY_SIZE, &s->files[i], i);
        if (!err && (s->files[i].first_chunk + s->files[i].chunks > table_first))
            err = MF_ECORRUPT;
    }
    free(plain);
    free(stored);
    if (err) {
        say(message, "secure area: the file table %s",
            err == MF_EAUTH ? "fails authentication (damaged or tampered)" : "is damaged");
        return err;
    }
    s->file_count = count;
    find_projects(s);
    return 0;
}

int mf_secure_open(struct mf_secure *s, const struct mf_secure_config *config, char *message)
{
    memset(s, 0, sizeof *s);
    s->config = *config;
    area_init(s);
    say(message, "%s", "");
    struct mf_anchor *a = config->anchor;
    struct mf_anchor_state as;
    int err = a->read_state(a, &as);
    if (err) {
        say(message, "trust anchor: %s", a->error[0] ? a->error : mf_strerror(err));
        return err;
    }
    if (!as.has_key)
        return 0; /* no setup installed */
    derive_keys(s, as.key);
    sodium_memzero(&as.key, sizeof as.key);

    uint64_t span = round_up(HEADER_SIZE, block(s));
    uint8_t *buf = malloc(span);
    if (!buf)
        return MF_ENOMEM;
    int chosen = -1, newer_version = 0;
    bool stale = false;
    for (unsigned slot = 0; slot < 2; slot++) {
        if (dev_read(s, header_off(s, slot), buf, span) != 0)
            continue;
        /* A newer format is told before its MAC is checked: it may derive its keys otherwise. */
        uint16_t version = (uint16_t)(buf[8] | buf[9] << 8);
        if (memcmp(buf, header_magic, 8) == 0 && version > MF_SECURE_VERSION) {
            newer_version = version;
            continue;
        }
        if (!header_valid(s, buf))
            continue;
        uint8_t digest[32];
        crypto_hash_sha256(digest, buf, HEADER_SIZE);
        bool matches = as.has_digest && sodium_memcmp(digest, as.digest, 32) == 0;
        /* A header one step ahead of the anchor (a cut between writing it and recording its
         * digest) is taken and recorded now; any other is older or foreign. */
        bool next = !as.has_digest ? true : sodium_memcmp(buf + 24, as.digest, 32) == 0;
        if (matches || next) {
            memcpy(s->header, buf, HEADER_SIZE);
            memcpy(s->digest, digest, 32);
            chosen = (int)slot;
            if (!matches) {
                err = a->write_digest(a, digest);
                if (err) {
                    free(buf);
                    say(message, "trust anchor: %s", a->error);
                    return err;
                }
            }
            break;
        }
        stale = true;
    }
    free(buf);
    if (chosen < 0) {
        if (newer_version) {
            say(message,
                "secure area: written in format %d, newer than this programmer reads (%u): "
                "update mintflash",
                newer_version, MF_SECURE_VERSION);
            return MF_EVERSION;
        }
        if (stale) {
            say(message, "secure area: its header is older than the trust anchor allows "
                         "(a restored older storage image?)");
            return MF_EAUTH;
        }
        if (as.has_digest) {
            say(message, "secure area: no header passes authentication (damaged or tampered)");
            return MF_EAUTH;
        }
        return 0; /* an install was interrupted: no setup (the next start moves again) */
    }
    const uint8_t *h = s->header;
    uint8_t binding[MF_ANCHOR_BINDING_SIZE];
    err = a->binding(a, binding);
    if (err) {
        say(message, "trust anchor: %s", a->error);
        return err;
    }
    if (sodium_memcmp(binding, h + 56, 32) != 0) {
        say(message, "secure area: installed with another trust-anchor counter (was it replaced "
                     "or defined again?)");
        return MF_EAUTH;
    }
    s->counter_base = mf_le64(h + 88);
    s->reservation = mf_le32(h + 96);
    memcpy(s->fingerprint, h + 128, 32);
    s->has_owner = (mf_le32(h + HEADER_FLAGS) & HEADER_FLAG_OWNER) != 0;
    memcpy(s->owner, h + HEADER_OWNER, 32);
    s->package_mark = mf_le64(h + HEADER_MARK);
    if (s->has_owner && as.package_mark < s->package_mark) {
        /* A cut between the header's digest and the mark: the mark catches up now. */
        err = a->write_owner(a, as.has_owner ? as.owner : NULL, s->package_mark);
        if (err) {
            say(message, "trust anchor: %s", a->error);
            return err;
        }
    }
    if (s->reservation == 0 || mf_le32(h + 100) != MF_SECURE_CHUNK || mf_le32(h + 12) != block(s)) {
        say(message, "secure area: the header's geometry does not fit this storage");
        return MF_ECORRUPT;
    }
    uint64_t v;
    err = counter(s, &v, message);
    if (err)
        return err;
    if (v < s->counter_base) {
        say(message, "secure area: the trust anchor's counter is below the installed one");
        return MF_EAUTH;
    }
    err = load_table(s, message);
    if (!err)
        err = state_read(s, message);
    if (!err && accounted(&s->state) > (v - s->counter_base) * s->reservation) {
        say(message, "secure area: more cycles used than the trust anchor's counter allows");
        err = MF_EAUTH;
    }
    if (err) {
        mf_secure_close(s);
        return err;
    }
    s->present = true;
    return 0;
}

void mf_secure_close(struct mf_secure *s)
{
    free(s->files);
    s->files = NULL;
    s->file_count = 0;
    s->present = false;
    sodium_memzero(s->file_key, sizeof s->file_key);
    sodium_memzero(s->state_key, sizeof s->state_key);
    sodium_memzero(s->mac_key, sizeof s->mac_key);
}

int mf_secure_erase(struct mf_anchor *a, char *message)
{
    int err = a->write_key(a, NULL);
    if (!err)
        err = a->write_digest(a, NULL);
    if (err)
        say(message, "trust anchor: %s", a->error[0] ? a->error : mf_strerror(err));
    return err;
}

int mf_secure_selected(const struct mf_secure *s)
{
    return s->present ? s->state.selected : DEFAULT_PROJECT;
}

int mf_secure_select(struct mf_secure *s, int project, char *message)
{
    if (!s->present)
        return MF_ENOENT;
    mf_lock_take(&s->config.lock);
    struct mf_secure_state st = s->state;
    st.seq++;
    st.selected = project;
    int err = state_write(s, &st);
    mf_lock_give(&s->config.lock);
    if (err)
        say(message, "secure area: cannot record the selection: %s", mf_strerror(err));
    return err;
}

int mf_secure_folder_removed(struct mf_secure *s)
{
    if (!s->present || s->state.folder_removed)
        return 0;
    mf_lock_take(&s->config.lock);
    struct mf_secure_state st = s->state;
    st.seq++;
    st.folder_removed = true;
    int err = state_write(s, &st);
    mf_lock_give(&s->config.lock);
    return err;
}

int mf_secure_set_limit(struct mf_secure *s, int project, uint64_t limit, char *message)
{
    if (!s->present || project >= (int)s->state.project_count) {
        say(message, "secure area: no such project");
        return MF_ENOENT;
    }
    mf_lock_take(&s->config.lock);
    struct mf_secure_state st = s->state;
    st.seq++;
    if (project < 0) {
        st.root_limited = true;
        st.root_limit = limit;
    } else {
        st.projects[project].limited = true;
        st.projects[project].limit = limit;
    }
    int err = state_write(s, &st);
    mf_lock_give(&s->config.lock);
    if (err)
        say(message, "secure area: cannot record the new limit: %s", mf_strerror(err));
    return err;
}

/* The production records' head in a new state record; `recorded` NULL keeps the count of
 * recorded cycles, `run_end` clears the flag of an unrecorded run-end step. */
static int head_write(struct mf_secure *s, uint64_t seq, const uint8_t hash[32],
                      const uint64_t *recorded, bool run_end, char *message)
{
    if (!s->present)
        return MF_ENOENT;
    mf_lock_take(&s->config.lock);
    struct mf_secure_state st = s->state;
    st.seq++;
    st.record_seq = seq;
    memcpy(st.record_hash, hash, 32);
    if (recorded)
        st.recorded = *recorded;
    if (run_end)
        st.run_end_unrecorded = false;
    int err = state_write(s, &st);
    mf_lock_give(&s->config.lock);
    if (err)
        say(message, "secure area: cannot record the production records' head: %s",
            mf_strerror(err));
    return err;
}

int mf_secure_record_head(struct mf_secure *s, uint64_t seq, const uint8_t hash[32],
                          uint64_t recorded, char *message)
{
    return head_write(s, seq, hash, &recorded, false, message);
}

int mf_secure_run_end_recorded(struct mf_secure *s, uint64_t seq, const uint8_t hash[32],
                               char *message)
{
    return head_write(s, seq, hash, NULL, true, message);
}

int mf_secure_record_status(struct mf_secure *s, uint64_t *seq, uint8_t hash[32], uint64_t *value,
                            uint64_t *pending, char *message)
{
    if (!s->present) {
        say(message, "no setup is installed in the secure area");
        return MF_ENOENT;
    }
    mf_lock_take(&s->config.lock);
    int err = counter(s, value, message);
    if (!err) {
        const struct mf_secure_state *st = &s->state;
        *seq = st->record_seq;
        memcpy(hash, st->record_hash, 32);
        /* As mf_reclog_open would record them: the state's cycles and those the counter proves
         * beyond it, less those with a record. */
        uint64_t owed = st->total_used + mf_secure_missing(s, *value);
        *pending = owed > st->recorded ? owed - st->recorded : 0;
    }
    mf_lock_give(&s->config.lock);
    return err;
}

/* ---- installing ---- */

struct walk {
    struct mf_area *source;
    struct mf_secure_file *files;
    uint32_t count, capacity;
    char (*pending)[ENTRY_PATH];
    uint32_t pending_count, pending_capacity;
    const char *root; /* the folder being moved, e.g. "_SECURE" */
    const char *dir;  /* the folder being listed, relative to root ("" = root) */
    uint64_t bytes;
    char *message;
};

static int walk_each(void *context, const struct mf_area_entry *e)
{
    struct walk *w = context;
    char path[ENTRY_PATH + MF_AREA_NAME_MAX];
    snprintf(path, sizeof path, "%s%s%s", w->dir, w->dir[0] ? "/" : "", e->name);
    if (strlen(path) >= ENTRY_PATH) {
        say(w->message, "%s/%.100s...: path longer than %u bytes", w->root, path, ENTRY_PATH - 1);
        return MF_ENAMETOOLONG;
    }
    if (e->is_dir) {
        if (w->pending_count == w->pending_capacity) {
            uint32_t cap = w->pending_capacity ? w->pending_capacity * 2 : 16;
            if (cap > MF_SECURE_FILES_MAX) {
                say(w->message, "%s: more than %u folders", w->root, MF_SECURE_FILES_MAX);
                return MF_EFBIG;
            }
            void *p = realloc(w->pending, cap * sizeof *w->pending);
            if (!p)
                return MF_ENOMEM;
            w->pending = p;
            w->pending_capacity = cap;
        }
        strcpy(w->pending[w->pending_count++], path);
        return 0;
    }
    if (w->count == MF_SECURE_FILES_MAX) {
        say(w->message, "%s: more than %u files", w->root, MF_SECURE_FILES_MAX);
        return MF_EFBIG;
    }
    if (w->count == w->capacity) {
        uint32_t cap = w->capacity ? w->capacity * 2 : 64;
        void *p = realloc(w->files, cap * sizeof *w->files);
        if (!p)
            return MF_ENOMEM;
        w->files = p;
        w->capacity = cap;
    }
    struct mf_secure_file *f = &w->files[w->count++];
    memset(f, 0, sizeof *f);
    strcpy(f->path, path);
    f->size = e->size;
    w->bytes += e->size;
    return 0;
}

/* Lists every file under `root` of `source`, without recursion on the volume's depth. */
static int walk_folder(struct walk *w)
{
    char dir[ENTRY_PATH] = "", full[ENTRY_PATH + 16];
    int err = 0;
    for (unsigned rounds = 0;; rounds++) {
        if (rounds > MF_SECURE_FILES_MAX * 2u) {
            say(w->message, "%s: too many folders", w->root);
            return MF_EFBIG;
        }
        snprintf(full, sizeof full, "%s%s%s", w->root, w->root[0] && dir[0] ? "/" : "", dir);
        w->dir = dir;
        err = w->source->list(w->source, full, walk_each, w);
        if (err) {
            if (!w->message[0])
                say(w->message, "%.120s: %s", full, mf_strerror(err));
            return err;
        }
        if (!w->pending_count)
            return 0;
        strcpy(dir, w->pending[--w->pending_count]);
    }
}

static int source_path(const struct walk *w, const struct mf_secure_file *f, char *out, size_t size)
{
    int n = snprintf(out, size, "%s%s%s", w->root, w->root[0] ? "/" : "", f->path);
    return (n < 0 || (size_t)n >= size) ? MF_ENAMETOOLONG : 0;
}

/* Checks the number files of the setup and reads [CONFIG] Reservation before anything changes. */
struct ini_reservation {
    uint32_t value;
    bool bad;
};

static int reservation_item(void *context, const struct mf_ini_item *item)
{
    struct ini_reservation *r = context;
    if (mf_ini_name_is(item->section, "CONFIG") && mf_ini_name_is(item->key, "Reservation")) {
        char *end;
        unsigned long v = strtoul(item->value, &end, 10);
        if (*end || end == item->value || v < 1 || v > 1000000)
            r->bad = true;
        else
            r->value = (uint32_t)v;
    }
    return 0;
}

static int precheck(struct mf_secure *s, struct walk *w, uint32_t *reservation,
                    struct mf_secure_state *st, char *message)
{
    memset(st, 0, sizeof *st);
    st->seq = 1;
    st->selected = DEFAULT_PROJECT;
    *reservation = s->config.reservation ? s->config.reservation : 1;
    char path[ENTRY_PATH + 16];
    for (uint32_t i = 0; i < w->count; i++) {
        const struct mf_secure_file *f = &w->files[i];
        const char *base = strrchr(f->path, '/');
        base = base ? base + 1 : f->path;
        bool at_root = base == f->path;
        bool cnt = mf_ini_name_is(base, MF_FILE_CNTDOWN),
             ser = mf_ini_name_is(base, MF_FILE_SERIAL);
        if (at_root && mf_ini_name_is(base, MF_FILE_FLASHER_INI)) {
            char text[MF_SETUP_INI_MAX];
            if (f->size > sizeof text) {
                say(message, "%s/%s: larger than 16 KiB", w->root, f->path);
                return MF_EFBIG;
            }
            int err = source_path(w, f, path, sizeof path);
            if (!err)
                err = w->source->read(w->source, path, 0, text, (size_t)f->size);
            struct ini_reservation r = {*reservation, false};
            struct mf_ini_error ierr;
            if (!err)
                err = mf_ini_parse(text, (size_t)f->size, reservation_item, &r, &ierr);
            if (err || r.bad) {
                say(message, "%s/%s: %s", w->root, f->path,
                    r.bad ? "[CONFIG] Reservation: a number from 1 to 1000000" : ierr.message);
                return err ? err : MF_EFORMAT;
            }
            *reservation = r.value;
            continue;
        }
        if (!cnt && !ser)
            continue;
        /* Where is it: the root, or a project folder (Projects/<name>/)? */
        int project = -1;
        if (!at_root) {
            for (uint32_t k = 0; k < s->project_count; k++) {
                char want[2 * ENTRY_PATH + 16];
                snprintf(want, sizeof want, "Projects/%s/%s", s->projects[k].folder, base);
                if (path_compare(want, f->path) == 0)
                    project = (int)k;
            }
            if (project < 0)
                continue; /* elsewhere: not a counter */
        } else if (ser) {
            continue;
        }
        uint64_t v;
        char text[MF_NUMFILE_SIZE_MAX];
        int err = f->size > sizeof text ? MF_EFBIG : source_path(w, f, path, sizeof path);
        if (!err)
            err = w->source->read(w->source, path, 0, text, (size_t)f->size);
        if (!err)
            err = mf_numfile_parse(text, (uint32_t)f->size,
                                   cnt ? MF_NUMFILE_STRICT : MF_NUMFILE_LEADING,
                                   cnt ? UINT32_MAX : UINT64_MAX, &v);
        if (err) {
            say(message, "%s/%s: %s", w->root, f->path,
                err != MF_EFORMAT ? mf_strerror(err)
                : cnt             ? "not a decimal number from 0 to 4294967295"
                                  : "does not start with a decimal number");
            return err;
        }
        if (project < 0) {
            st->root_limited = true;
            st->root_limit = v;
        } else if (cnt) {
            st->projects[project].limited = true;
            st->projects[project].limit = v;
        } else {
            st->projects[project].has_serial = true;
            st->projects[project].serial_next = v;
        }
    }
    st->project_count = s->project_count;
    return 0;
}

/* The owner pin and the package mark, before anything else. */
static int check_origin(struct mf_secure *s, const struct mf_secure_origin *origin,
                        struct mf_anchor_state *as, char *message)
{
    struct mf_anchor *a = s->config.anchor;
    int err = a->read_state(a, as);
    sodium_memzero(as->key, sizeof as->key);
    if (err) {
        say(message, "trust anchor: %s", a->error[0] ? a->error : mf_strerror(err));
        return err;
    }
    char pinned[MF_OWNER_FINGERPRINT_SIZE], signer[MF_OWNER_FINGERPRINT_SIZE];
    if (as->has_owner) {
        struct mf_owner_key k;
        mf_owner_key_from_public(as->owner, &k);
        memcpy(pinned, k.fingerprint, sizeof pinned);
    }
    if (as->has_owner && !origin) {
        say(message,
            "this programmer is pinned to owner %s: it installs only that owner's sealed "
            "packages (.mfp), not a plain folder",
            pinned);
        return MF_EPERM;
    }
    if (!origin)
        return 0;
    struct mf_owner_key k;
    mf_owner_key_from_public(origin->owner, &k);
    memcpy(signer, k.fingerprint, sizeof signer);
    if (as->has_owner && sodium_memcmp(as->owner, origin->owner, 32) != 0) {
        say(message, "the package is signed by owner %s, but this programmer is pinned to %s",
            signer, pinned);
        return MF_EPERM;
    }
    if (origin->package_mark <= as->package_mark) {
        char when[MF_OWNER_TIME_SIZE], last[MF_OWNER_TIME_SIZE];
        mf_owner_time_format((int64_t)origin->package_mark, when);
        mf_owner_time_format((int64_t)as->package_mark, last);
        say(message,
            "the package's not-before time %s is not later than that of the last package "
            "installed here (%s): a replayed or older package is never installed",
            when, last);
        return MF_EPERM;
    }
    return 0;
}

/* The install's chunks go through two batches: while the worker (when there is one and it is
 * free) seals one and writes it with one device call, this thread reads and hashes the next.
 * The chunks reach the device in their order either way; the header follows only after all of
 * them are written and synced. */
#define INSTALL_BATCH 16u /* chunks per batch: 256 KiB of plaintext */

struct batch_chunk {
    uint32_t file_id, index;
    uint64_t size;
    bool last;
};

struct chunk_batch {
    const struct mf_secure *s;
    uint64_t global; /* the first chunk's number; the others follow */
    uint32_t count;
    struct batch_chunk chunks[INSTALL_BATCH];
    uint8_t *plain;  /* INSTALL_BATCH chunks of plaintext, one after the other */
    uint8_t *stored; /* INSTALL_BATCH stored chunks */
    int err;
};

static void chunk_batch_write(void *context)
{
    struct chunk_batch *b = context;
    const struct mf_secure *s = b->s;
    for (uint32_t i = 0; i < b->count; i++) {
        const struct batch_chunk *c = &b->chunks[i];
        chunk_seal(s, b->global + i, c->file_id, c->index, c->size, c->last,
                   b->plain + (size_t)i * MF_SECURE_CHUNK, b->stored + i * stored_chunk(s));
    }
    b->err = dev_write(s, data_off(s) + b->global * stored_chunk(s), b->stored,
                       b->count * stored_chunk(s));
}

struct install_pipe {
    const struct mf_worker *worker;
    struct chunk_batch batch[2];
    unsigned filling;   /* the batch being filled; the other may be with the worker */
    bool other_at_work; /* the worker has the other batch */
};

static int pipe_open(struct install_pipe *p, const struct mf_secure *s)
{
    memset(p, 0, sizeof *p);
    p->worker = s->config.worker;
    for (unsigned i = 0; i < 2; i++) {
        p->batch[i].s = s;
        p->batch[i].plain = malloc((size_t)INSTALL_BATCH * MF_SECURE_CHUNK);
        p->batch[i].stored = malloc(INSTALL_BATCH * stored_chunk(s));
        if (!p->batch[i].plain || !p->batch[i].stored)
            return MF_ENOMEM;
    }
    return 0;
}

/* Waits for the worker's batch, if any: its error. */
static int pipe_wait(struct install_pipe *p)
{
    if (!p->other_at_work)
        return 0;
    p->worker->wait(p->worker->context);
    p->other_at_work = false;
    return p->batch[p->filling ^ 1u].err;
}

/* Room for `*room` more chunks (at least one) of the filling batch: their plaintext. A full batch
 * is handed over first. */
static int pipe_room(struct install_pipe *p, uint32_t *room, uint8_t **plain)
{
    struct chunk_batch *b = &p->batch[p->filling];
    if (b->count == INSTALL_BATCH) {
        int err = pipe_wait(p);
        if (err)
            return err;
        const struct mf_worker *w = p->worker;
        if (w && w->try_start(w->context, chunk_batch_write, b)) {
            p->other_at_work = true;
        } else {
            chunk_batch_write(b);
            if (b->err)
                return b->err;
        }
        uint64_t next = b->global + b->count;
        p->filling ^= 1u;
        b = &p->batch[p->filling];
        b->global = next;
        b->count = 0;
    }
    *room = INSTALL_BATCH - b->count;
    *plain = b->plain + (size_t)b->count * MF_SECURE_CHUNK;
    return 0;
}

/* The next `n` chunks of the filling batch (their plaintext in place) belong to `file_id` from
 * chunk `index` on. */
static void pipe_add(struct install_pipe *p, uint32_t n, uint32_t file_id, uint32_t index,
                     uint64_t size, uint32_t chunks)
{
    struct chunk_batch *b = &p->batch[p->filling];
    for (uint32_t i = 0; i < n; i++)
        b->chunks[b->count++] =
            (struct batch_chunk){file_id, index + i, size, index + i + 1 == chunks};
}

/* Writes what is left and waits for it; then, and on every return, the plaintext is wiped. */
static int pipe_close(struct install_pipe *p, int err)
{
    int werr = pipe_wait(p);
    struct chunk_batch *b = &p->batch[p->filling];
    if (!err && !werr && b->count) {
        chunk_batch_write(b);
        werr = b->err;
    }
    for (unsigned i = 0; i < 2; i++) {
        if (p->batch[i].plain)
            sodium_memzero(p->batch[i].plain, (size_t)INSTALL_BATCH * MF_SECURE_CHUNK);
        free(p->batch[i].plain);
        free(p->batch[i].stored);
    }
    return err ? err : werr;
}

/* Reads the file `path` of `f` (its chunks from chunk 0) from `source` into the pipe, in as few
 * reads as the batches allow, hashing its bytes into `fp` when given. A read error is said in
 * `message`. */
static int pipe_file(struct install_pipe *p, struct mf_area *source, const char *path,
                     const struct mf_secure_file *f, struct mf_sha256 *fp, uint64_t *done,
                     uint64_t total, mf_secure_progress_fn progress, void *progress_context,
                     char *message)
{
    for (uint32_t k = 0; k < f->chunks;) {
        uint32_t room;
        uint8_t *plain;
        int err = pipe_room(p, &room, &plain);
        if (err)
            return err;
        uint32_t n = f->chunks - k < room ? f->chunks - k : room;
        uint64_t off = (uint64_t)k * MF_SECURE_CHUNK;
        size_t bytes = f->size - off < (uint64_t)n * MF_SECURE_CHUNK ? (size_t)(f->size - off)
                                                                     : (size_t)n * MF_SECURE_CHUNK;
        memset(plain + bytes, 0, (size_t)n * MF_SECURE_CHUNK - bytes);
        err = source->read(source, path, off, plain, bytes);
        if (err) {
            say(message, "%.200s: cannot read: %s", path, mf_strerror(err));
            return err;
        }
        if (fp)
            mf_sha256_update(fp, plain, bytes);
        pipe_add(p, n, f->id, k, f->size, f->chunks);
        k += n;
        *done += bytes;
        if (progress)
            progress(progress_context, *done, total);
    }
    return 0;
}

int mf_secure_install(struct mf_secure *s, struct mf_area *source, const char *folder,
                      mf_secure_progress_fn progress, void *progress_context, char *message)
{
    return mf_secure_install_from(s, source, folder, NULL, progress, progress_context, message);
}

int mf_secure_install_from(struct mf_secure *s, struct mf_area *source, const char *folder,
                           const struct mf_secure_origin *origin, mf_secure_progress_fn progress,
                           void *progress_context, char *message)
{
    struct mf_anchor *a = s->config.anchor;
    struct walk w;
    memset(&w, 0, sizeof w);
    w.source = source;
    w.root = folder;
    w.message = message;
    message[0] = '\0';
    struct mf_anchor_state as;
    int err = check_origin(s, origin, &as, message);
    if (err)
        return err;
    err = walk_folder(&w);
    if (err)
        goto out;
    qsort(w.files, w.count, sizeof *w.files, compare_files);
    for (uint32_t i = 1; i < w.count; i++) {
        if (path_compare(w.files[i - 1].path, w.files[i].path) == 0) {
            say(message, "%s: two files named %s", folder, w.files[i].path);
            err = MF_EEXIST;
            goto out;
        }
    }
    /* Everything that can refuse the move is checked before anything is erased. */
    uint64_t data_chunks = 0;
    for (uint32_t i = 0; i < w.count; i++)
        data_chunks += chunks_for(w.files[i].size);
    uint64_t table_bytes = (uint64_t)w.count * ENTRY_SIZE;
    uint64_t total_chunks = data_chunks + chunks_for(table_bytes);
    uint64_t capacity = mf_secure_capacity(s);
    if (total_chunks * MF_SECURE_CHUNK > capacity) {
        say(message,
            "%s: %llu bytes of files need %llu bytes in the secure area, which holds "
            "%llu: nothing was moved",
            folder, (unsigned long long)w.bytes,
            (unsigned long long)(total_chunks * MF_SECURE_CHUNK), (unsigned long long)capacity);
        err = MF_ENOSPC;
        goto out;
    }
    struct mf_secure next;
    memset(&next, 0, sizeof next);
    next.config = s->config;
    next.files = w.files;
    next.file_count = w.count;
    find_projects(&next);
    uint32_t reservation;
    struct mf_secure_state st;
    err = precheck(&next, &w, &reservation, &st, message);
    if (err)
        goto out;
    /* The production records are the programmer's one chain across setups: the new setup's go on
     * from the old one's newest, so that deleting an earlier setup's records shows as records
     * missing from the chain (docs/internals/owner.md). */
    if (s->present) {
        st.record_seq = s->state.record_seq;
        memcpy(st.record_hash, s->state.record_hash, 32);
    }
    /* Room for everything the new setup will write (headers, state records, chunks), taken from
     * the device before the old setup goes: a sparse image file on a full host file system is
     * refused here, with the old setup whole, rather than after the erase below. */
    uint64_t reserved = data_off(s) + total_chunks * stored_chunk(s);
    err = mf_bd_reserve(s->config.bd, 0, (size_t)(reserved / block(s)));
    if (err) {
        say(message,
            "secure area: cannot reserve %llu bytes for the new setup: %s: nothing was moved",
            (unsigned long long)reserved, mf_strerror(err));
        goto out;
    }

    /* The old setup goes first, for good: its key leaves the anchor. The digest is cleared
     * before (a cut in between leaves the old setup whole, its header taken again at the next
     * start), never after (a new key with the old digest would refuse every header). */
    uint8_t key[MF_ANCHOR_KEY_SIZE];
    s->config.random(s->config.random_context, key, sizeof key);
    err = a->write_digest(a, NULL);
    if (!err)
        err = a->write_key(a, key);
    if (err) {
        say(message, "trust anchor: %s", a->error[0] ? a->error : mf_strerror(err));
        sodium_memzero(key, sizeof key);
        goto out;
    }
    /* Then its chunks, before the new files are copied in (the spec: "all contents of the secure
     * area are completely erased"), not only its key: a copy of the old key kept elsewhere finds
     * nothing to open. Its extent comes from its header; without one that opened (none yet, or a
     * cut in an earlier move), the whole data region goes. */
    uint64_t old_end = mf_bd_size(s->config.bd);
    if (old_end < data_off(s))
        old_end = data_off(s);
    else if (s->present && mf_le64(s->header + 120) <= (old_end - data_off(s)) / stored_chunk(s))
        old_end = data_off(s) + mf_le64(s->header + 120) * stored_chunk(s);
    old_end = old_end / block(s) * block(s);
    err = mf_bd_erase(s->config.bd, data_off(s) / block(s),
                      (size_t)((old_end - data_off(s)) / block(s)));
    if (err) {
        say(message, "secure area: erasing the old setup failed: %s", mf_strerror(err));
        sodium_memzero(key, sizeof key);
        goto out;
    }
    mf_secure_close(s);
    *s = next;
    s->files = NULL;
    area_init(s);
    derive_keys(s, key);
    sodium_memzero(key, sizeof key);
    uint8_t *h = s->header;
    memset(h, 0, HEADER_SIZE);
    s->config.random(s->config.random_context, h + 160, 16); /* nonce prefix, state AD */

    struct install_pipe pipe;
    uint8_t *table = calloc(chunks_for(table_bytes) ? chunks_for(table_bytes) : 1, MF_SECURE_CHUNK);
    err = pipe_open(&pipe, s);
    if (!err && !table)
        err = MF_ENOMEM;
    uint64_t global = 0, done = 0;
    char path[ENTRY_PATH + 16];
    /* The setup's fingerprint, as mf_setup_fingerprint defines it, taken in passing: the files
     * are written in its order (upper-cased paths), and the owner's files only count. */
    struct mf_sha256 fp;
    mf_sha256_init(&fp);
    for (uint32_t i = 0; i < w.count && !err; i++) {
        struct mf_secure_file *f = &w.files[i];
        f->id = i + 1;
        f->first_chunk = global;
        f->chunks = (uint32_t)chunks_for(f->size);
        global += f->chunks;
        err = source_path(&w, f, path, sizeof path);
        bool owners = !mf_package_programmer_file(f->path);
        if (owners) {
            char up[ENTRY_PATH];
            size_t len = strlen(f->path);
            for (size_t k = 0; k <= len; k++)
                up[k] = fold(f->path[k]);
            uint8_t size[8];
            mf_put_le64(size, f->size);
            mf_sha256_update(&fp, (const uint8_t *)up, len + 1);
            mf_sha256_update(&fp, size, sizeof size);
        }
        if (!err)
            err = pipe_file(&pipe, source, path, f, owners ? &fp : NULL, &done, w.bytes, progress,
                            progress_context, message);
        entry_encode(f, table + (size_t)i * ENTRY_SIZE);
    }
    uint64_t table_first = global;
    uint32_t table_chunks = (uint32_t)chunks_for(table_bytes);
    for (uint32_t k = 0; k < table_chunks && !err;) {
        uint32_t room;
        uint8_t *plain;
        err = pipe_room(&pipe, &room, &plain);
        uint32_t n = table_chunks - k < room ? table_chunks - k : room;
        if (!err) {
            memcpy(plain, table + (size_t)k * MF_SECURE_CHUNK, (size_t)n * MF_SECURE_CHUNK);
            pipe_add(&pipe, n, 0, k, table_bytes, table_chunks);
            k += n;
        }
    }
    global += table_chunks;
    err = pipe_close(&pipe, err);
    free(table);
    if (err) {
        if (!message[0])
            say(message, "secure area: writing failed: %s", mf_strerror(err));
        goto out;
    }

    /* The header: what the anchor will vouch for. */
    uint64_t v;
    uint8_t binding[MF_ANCHOR_BINDING_SIZE];
    err = counter(s, &v, message);
    if (!err && (err = a->binding(a, binding)) != 0)
        say(message, "trust anchor: %s", a->error);
    if (err)
        goto out;
    memcpy(h, header_magic, 8);
    h[8] = MF_SECURE_VERSION & 0xFF;
    h[9] = MF_SECURE_VERSION >> 8;
    mf_put_le32(h + 12, (uint32_t)block(s));
    mf_put_le64(h + 16, 1);
    /* prev_digest (h + 24) stays zero: the anchor's digest was cleared with the old key. */
    memcpy(h + 56, binding, 32);
    mf_put_le64(h + 88, v);
    mf_put_le32(h + 96, reservation);
    mf_put_le32(h + 100, MF_SECURE_CHUNK);
    mf_put_le64(h + 104, table_first);
    mf_put_le32(h + 112, table_chunks);
    mf_put_le32(h + 116, w.count);
    mf_put_le64(h + 120, global);
    mf_put_le64(h + 176, table_bytes);
    s->files = w.files;
    s->file_count = w.count;
    w.files = NULL;
    s->counter_base = v;
    s->reservation = reservation;
    mf_sha256_final(&fp, s->fingerprint);
    memcpy(h + 128, s->fingerprint, 32);
    if (origin) {
        mf_put_le32(h + HEADER_FLAGS, HEADER_FLAG_OWNER);
        memcpy(h + HEADER_OWNER, origin->owner, 32);
        mf_put_le64(h + HEADER_MARK, origin->package_mark);
        s->has_owner = true;
        memcpy(s->owner, origin->owner, 32);
        s->package_mark = origin->package_mark;
    }
    crypto_auth_hmacsha256(h + HEADER_MAC_AT, h, HEADER_MAC_AT, s->mac_key);

    s->state_slot = 1; /* the first record goes to slot 0 */
    err = state_write(s, &st);
    uint64_t span = round_up(HEADER_SIZE, block(s));
    uint8_t *hb = calloc(1, span);
    if (!err && !hb)
        err = MF_ENOMEM;
    if (!err) {
        memcpy(hb, h, HEADER_SIZE);
        err = dev_write(s, header_off(s, 0), hb, span);
    }
    free(hb);
    if (!err)
        err = mf_bd_sync(s->config.bd);
    if (err) {
        say(message, "secure area: writing failed: %s", mf_strerror(err));
        goto out;
    }
    crypto_hash_sha256(s->digest, h, HEADER_SIZE);
    err = a->write_digest(a, s->digest);
    if (err) {
        /* The header is durable: the next start takes it and records its digest. */
        say(message, "trust anchor: %s", a->error);
        goto out;
    }
    if (origin &&
        (err = a->write_owner(a, as.has_owner ? as.owner : NULL, origin->package_mark)) != 0) {
        /* The next start catches the mark up from the header. */
        say(message, "trust anchor: %s", a->error);
        goto out;
    }
    s->present = true;
    s->installed_here = true;
out:
    free(w.files);
    free(w.pending);
    return err;
}

bool mf_secure_removal_pending(const struct mf_secure *s)
{
    return s->present && !s->state.folder_removed;
}

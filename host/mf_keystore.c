/* The `keystore` trust anchor (see mf_keystore.h and docs/internals/anchor.md): two slots of
 * 512 bytes in a private file, then a note area for each; every update is one pwrite of a whole
 * slot (after its note area, when it has a note) plus one fdatasync, and a key or identity
 * change rewrites both slots one after the other so no stale copy keeps the old secret. */
#include "mf_keystore.h"
#include "mf_le.h"

#include "mf_crc32.h"
#include "mf_err.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* Slot layout, little-endian; docs/internals/anchor.md has the table. */
#define KS_MAGIC               "MFKSTORE"
#define KS_MAGIC_SIZE          8u
#define KS_OFF_VERSION         8u
#define KS_OFF_FLAGS           12u
#define KS_OFF_SEQUENCE        16u
#define KS_OFF_COUNTER         24u
#define KS_OFF_ID              32u
#define KS_OFF_KEY             48u
#define KS_OFF_DIGEST          80u
#define KS_OFF_IDENTITY        112u
#define KS_OFF_OWNER           176u
#define KS_OFF_MARK            208u
#define KS_OFF_NOTE_SIZE       216u
#define KS_OFF_NOTE_CRC        220u
#define KS_OFF_RESERVED        224u
#define KS_OFF_CHECKSUM        (MF_KEYSTORE_SLOT_SIZE - 4u)
#define KS_FLAG_KEY            0x1u
#define KS_FLAG_DIGEST         0x2u
#define KS_FLAG_IDENTITY       0x4u
#define KS_FLAG_OWNER          0x8u
#define KS_FLAG_NOTE           0x10u /* version 2 only */
#define KS_FLAGS_V1            (KS_FLAG_KEY | KS_FLAG_DIGEST | KS_FLAG_IDENTITY | KS_FLAG_OWNER)
#define KS_FLAGS_KNOWN         (KS_FLAGS_V1 | KS_FLAG_NOTE)
#define KS_CREATE_ATTEMPTS     8
#define MF_KEYSTORE_SHOWN_PATH 96 /* paths in messages: the anchor's error text is short */

_Static_assert(KS_OFF_IDENTITY + MF_ANCHOR_IDENTITY_SIZE == KS_OFF_OWNER, "slot layout");
_Static_assert(KS_OFF_OWNER + MF_ANCHOR_OWNER_SIZE + 8u == KS_OFF_NOTE_SIZE, "slot layout");
_Static_assert(KS_OFF_RESERVED < KS_OFF_CHECKSUM, "slot layout");

static bool all_zero(const uint8_t *p, size_t n)
{
    uint8_t acc = 0;
    for (size_t i = 0; i < n; i++)
        acc |= p[i];
    return acc == 0;
}

static void set_error(char *error, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_error(char *error, size_t size, const char *fmt, ...)
{
    if (!error || size == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(error, size, fmt, ap);
    va_end(ap);
}

static int errno_code(int error)
{
    switch (error) {
    case ENOENT:
        return MF_ENOENT;
    case EACCES:
    case EPERM:
    case ELOOP:
        return MF_EACCES;
    case EWOULDBLOCK:
        return MF_EBUSY;
    case EEXIST:
        return MF_EEXIST;
    case ENOTDIR:
        return MF_ENOTDIR;
    case EISDIR:
        return MF_EISDIR;
    case ENOSPC:
    case EDQUOT:
        return MF_ENOSPC;
    case EROFS:
        return MF_EROFS;
    case ENAMETOOLONG:
        return MF_ENAMETOOLONG;
    case ENOMEM:
        return MF_ENOMEM;
    default:
        return MF_EIO;
    }
}

/* ---- slot format ---- */

static off_t note_offset(unsigned index)
{
    return (off_t)MF_KEYSTORE_FILE_SIZE_V1 + (off_t)index * MF_KEYSTORE_NOTE_SIZE;
}

/* A slot with a note is version 2, any other version 1: a version 1 reader must refuse it as
 * newer, never take it for a damaged slot and fall back to the older one. */
void mf_keystore_encode_slot(const struct mf_keystore_slot *slot,
                             uint8_t raw[MF_KEYSTORE_SLOT_SIZE])
{
    memset(raw, 0, MF_KEYSTORE_SLOT_SIZE);
    memcpy(raw, KS_MAGIC, KS_MAGIC_SIZE);
    mf_put_le32(raw + KS_OFF_VERSION, slot->has_note ? MF_KEYSTORE_VERSION : 1u);
    uint32_t flags = (slot->has_key ? KS_FLAG_KEY : 0) | (slot->has_digest ? KS_FLAG_DIGEST : 0) |
                     (slot->has_identity ? KS_FLAG_IDENTITY : 0) |
                     (slot->has_owner ? KS_FLAG_OWNER : 0) | (slot->has_note ? KS_FLAG_NOTE : 0);
    mf_put_le32(raw + KS_OFF_FLAGS, flags);
    mf_put_le64(raw + KS_OFF_SEQUENCE, slot->sequence);
    mf_put_le64(raw + KS_OFF_COUNTER, slot->counter);
    memcpy(raw + KS_OFF_ID, slot->id, MF_KEYSTORE_ID_SIZE);
    /* An absent secret is written as zeros whatever the struct holds: the wipe relies on it. */
    if (slot->has_key)
        memcpy(raw + KS_OFF_KEY, slot->key, MF_ANCHOR_KEY_SIZE);
    if (slot->has_digest)
        memcpy(raw + KS_OFF_DIGEST, slot->digest, MF_ANCHOR_DIGEST_SIZE);
    if (slot->has_identity)
        memcpy(raw + KS_OFF_IDENTITY, slot->identity, MF_ANCHOR_IDENTITY_SIZE);
    if (slot->has_owner)
        memcpy(raw + KS_OFF_OWNER, slot->owner, MF_ANCHOR_OWNER_SIZE);
    mf_put_le64(raw + KS_OFF_MARK, slot->package_mark);
    if (slot->has_note) {
        mf_put_le32(raw + KS_OFF_NOTE_SIZE, slot->note_size);
        mf_put_le32(raw + KS_OFF_NOTE_CRC, slot->note_crc);
    }
    mf_put_le32(raw + KS_OFF_CHECKSUM, mf_crc32_update(0, raw, KS_OFF_CHECKSUM));
}

int mf_keystore_decode_slot(const uint8_t raw[MF_KEYSTORE_SLOT_SIZE], struct mf_keystore_slot *slot)
{
    memset(slot, 0, sizeof *slot);
    if (memcmp(raw, KS_MAGIC, KS_MAGIC_SIZE) != 0)
        return MF_EFORMAT;
    /* The checksum first: a torn slot may carry any version number. */
    if (mf_le32(raw + KS_OFF_CHECKSUM) != mf_crc32_update(0, raw, KS_OFF_CHECKSUM))
        return MF_ECORRUPT;
    uint32_t version = mf_le32(raw + KS_OFF_VERSION);
    if (version != 1 && version != MF_KEYSTORE_VERSION)
        return MF_EVERSION;
    uint32_t flags = mf_le32(raw + KS_OFF_FLAGS);
    uint64_t sequence = mf_le64(raw + KS_OFF_SEQUENCE);
    bool has_note = (flags & KS_FLAG_NOTE) != 0;
    uint32_t note_size = mf_le32(raw + KS_OFF_NOTE_SIZE);
    if ((flags & ~(version == 1 ? KS_FLAGS_V1 : KS_FLAGS_KNOWN)) != 0 || sequence == 0 ||
        has_note != (version == MF_KEYSTORE_VERSION) ||
        (has_note ? note_size == 0 || note_size > MF_KEYSTORE_NOTE_SIZE
                  : !all_zero(raw + KS_OFF_NOTE_SIZE, KS_OFF_RESERVED - KS_OFF_NOTE_SIZE)) ||
        !all_zero(raw + KS_OFF_RESERVED, KS_OFF_CHECKSUM - KS_OFF_RESERVED))
        return MF_ECORRUPT;
    if ((!(flags & KS_FLAG_KEY) && !all_zero(raw + KS_OFF_KEY, MF_ANCHOR_KEY_SIZE)) ||
        (!(flags & KS_FLAG_DIGEST) && !all_zero(raw + KS_OFF_DIGEST, MF_ANCHOR_DIGEST_SIZE)) ||
        (!(flags & KS_FLAG_IDENTITY) &&
         !all_zero(raw + KS_OFF_IDENTITY, MF_ANCHOR_IDENTITY_SIZE)) ||
        (!(flags & KS_FLAG_OWNER) && !all_zero(raw + KS_OFF_OWNER, MF_ANCHOR_OWNER_SIZE)))
        return MF_ECORRUPT;
    slot->sequence = sequence;
    slot->counter = mf_le64(raw + KS_OFF_COUNTER);
    memcpy(slot->id, raw + KS_OFF_ID, MF_KEYSTORE_ID_SIZE);
    slot->has_key = (flags & KS_FLAG_KEY) != 0;
    memcpy(slot->key, raw + KS_OFF_KEY, MF_ANCHOR_KEY_SIZE);
    slot->has_digest = (flags & KS_FLAG_DIGEST) != 0;
    memcpy(slot->digest, raw + KS_OFF_DIGEST, MF_ANCHOR_DIGEST_SIZE);
    slot->has_identity = (flags & KS_FLAG_IDENTITY) != 0;
    memcpy(slot->identity, raw + KS_OFF_IDENTITY, MF_ANCHOR_IDENTITY_SIZE);
    slot->has_owner = (flags & KS_FLAG_OWNER) != 0;
    memcpy(slot->owner, raw + KS_OFF_OWNER, MF_ANCHOR_OWNER_SIZE);
    slot->package_mark = mf_le64(raw + KS_OFF_MARK);
    slot->has_note = has_note;
    slot->note_size = has_note ? note_size : 0;
    slot->note_crc = has_note ? mf_le32(raw + KS_OFF_NOTE_CRC) : 0;
    return 0;
}

/* A slot with a note is valid only with its note whole: torn, the write did not happen. */
static int check_note(const uint8_t *file, size_t size, unsigned index,
                      const struct mf_keystore_slot *slot)
{
    if (!slot->has_note)
        return 0;
    if (size != MF_KEYSTORE_FILE_SIZE)
        return MF_ECORRUPT;
    const uint8_t *note = file + note_offset(index);
    return mf_crc32_update(0, note, slot->note_size) == slot->note_crc ? 0 : MF_ECORRUPT;
}

/* True when both slots hold the same secrets (key and identity): the stale slot of a single-slot
 * update differs only in counter and digest, which are not secret. */
static bool same_secrets(const struct mf_keystore_slot *a, const struct mf_keystore_slot *b)
{
    return a->has_key == b->has_key && a->has_identity == b->has_identity &&
           sodium_memcmp(a->key, b->key, MF_ANCHOR_KEY_SIZE) == 0 &&
           sodium_memcmp(a->identity, b->identity, MF_ANCHOR_IDENTITY_SIZE) == 0;
}

int mf_keystore_decode(const uint8_t *file, size_t size, struct mf_keystore_slot *state,
                       unsigned *current, bool *damaged, char *error, size_t error_size)
{
    memset(state, 0, sizeof *state);
    *current = 0;
    if (damaged)
        *damaged = false;
    if (size != MF_KEYSTORE_FILE_SIZE && size != MF_KEYSTORE_FILE_SIZE_V1) {
        set_error(error, error_size, "not a mintflash keystore (%zu bytes, expected %u or %u)",
                  size, MF_KEYSTORE_FILE_SIZE, MF_KEYSTORE_FILE_SIZE_V1);
        return MF_EFORMAT;
    }
    struct mf_keystore_slot slots[2];
    int rc[2];
    for (unsigned i = 0; i < 2; i++) {
        rc[i] = mf_keystore_decode_slot(file + i * MF_KEYSTORE_SLOT_SIZE, &slots[i]);
        if (rc[i] == 0)
            rc[i] = check_note(file, size, i, &slots[i]);
    }

    int err = 0;
    if (rc[0] == MF_EVERSION || rc[1] == MF_EVERSION) {
        /* A newer program's slot may be the newest state: never fall back past it. */
        set_error(error, error_size, "written by a newer mintflash (format version %u expected)",
                  MF_KEYSTORE_VERSION);
        err = MF_EVERSION;
    } else if (rc[0] != 0 && rc[1] != 0) {
        set_error(error, error_size,
                  "both slots are damaged (slot 0: %s, slot 1: %s): no valid copy of the trust "
                  "anchor is left",
                  rc[0] == MF_EFORMAT ? "no keystore magic" : "bad checksum, fields or note",
                  rc[1] == MF_EFORMAT ? "no keystore magic" : "bad checksum, fields or note");
        err = MF_ECORRUPT;
    } else if (rc[0] == 0 && rc[1] == 0) {
        unsigned newer = slots[1].sequence > slots[0].sequence ? 1u : 0u;
        const struct mf_keystore_slot *n = &slots[newer], *o = &slots[1u - newer];
        if (memcmp(slots[0].id, slots[1].id, MF_KEYSTORE_ID_SIZE) != 0) {
            set_error(error, error_size, "the two slots belong to different keystores");
            err = MF_ECORRUPT;
        } else if (slots[0].sequence == slots[1].sequence) {
            set_error(error, error_size, "both slots carry sequence number %llu",
                      (unsigned long long)slots[0].sequence);
            err = MF_ECORRUPT;
        } else if (n->counter < o->counter) {
            /* Every write goes from the newest slot upward: a lower counter in a newer slot was
             * not written by us. */
            set_error(error, error_size,
                      "the newer slot's counter (%llu) is below the older one's (%llu)",
                      (unsigned long long)n->counter, (unsigned long long)o->counter);
            err = MF_ECORRUPT;
        } else {
            *current = newer;
            *state = *n;
        }
    } else {
        unsigned good = rc[0] == 0 ? 0u : 1u;
        *current = good;
        *state = slots[good];
        if (damaged)
            *damaged = true;
    }
    sodium_memzero(slots, sizeof slots);
    return err;
}

/* ---- private files ---- */

static void short_path(char *out, size_t size, const char *path)
{
    size_t n = strlen(path);
    if (n < size) {
        memcpy(out, path, n + 1);
    } else {
        /* Keep the end: the file name says more than the first folders. */
        snprintf(out, size, "...%s", path + n - (size - 4));
    }
}

static int check_private(int fd, const char *path, const char *what, char *error, size_t size)
{
    char shown[MF_KEYSTORE_SHOWN_PATH];
    short_path(shown, sizeof shown, path);
    path = shown;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        set_error(error, size, "%s: %s: cannot stat: %s", path, what, strerror(e));
        return errno_code(e);
    }
    if (!S_ISREG(st.st_mode)) {
        set_error(error, size, "%s: the %s is not a regular file", path, what);
        return MF_EACCES;
    }
    if (st.st_uid != geteuid()) {
        set_error(error, size, "%s: the %s belongs to user %u, not to us (user %u): refusing", path,
                  what, (unsigned)st.st_uid, (unsigned)geteuid());
        return MF_EACCES;
    }
    if ((st.st_mode & 077) != 0) {
        set_error(error, size,
                  "%s: the %s has permissions %04o; it must be readable by its owner only "
                  "(chmod 600)",
                  path, what, (unsigned)(st.st_mode & 07777));
        return MF_EACCES;
    }
    return 0;
}

static int lock_private(int fd, const char *path, const char *what, char *error, size_t size)
{
    char shown[MF_KEYSTORE_SHOWN_PATH];
    short_path(shown, sizeof shown, path);
    path = shown;
    if (flock(fd, LOCK_EX | LOCK_NB) == 0)
        return 0;
    int e = errno;
    if (e == EWOULDBLOCK) {
        set_error(error, size, "%s: the %s is in use by another program (locked)", path, what);
        return MF_EBUSY;
    }
    set_error(error, size, "%s: cannot lock the %s: %s", path, what, strerror(e));
    return errno_code(e);
}

int mf_keystore_open_private(const char *path, const char *what, int *fd, char *error,
                             size_t error_size)
{
    *fd = -1;
    char shown[MF_KEYSTORE_SHOWN_PATH];
    short_path(shown, sizeof shown, path);
    int f = open(path, O_RDWR | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (f < 0) {
        int e = errno;
        path = shown;
        if (e == ELOOP)
            set_error(error, error_size, "%s: the %s is a symbolic link: refusing", path, what);
        else
            set_error(error, error_size, "%s: cannot open the %s: %s", path, what, strerror(e));
        return errno_code(e);
    }
    int err = check_private(f, path, what, error, error_size);
    if (!err)
        err = lock_private(f, path, what, error, error_size);
    if (err) {
        close(f);
        return err;
    }
    *fd = f;
    return 0;
}

static int write_all(int fd, const void *data, size_t size, off_t offset)
{
    const uint8_t *p = data;
    while (size > 0) {
        ssize_t n = pwrite(fd, p, size, offset);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (n == 0) {
            errno = EIO;
            return -1;
        }
        p += n;
        size -= (size_t)n;
        offset += n;
    }
    return 0;
}

static int sync_folder(const char *folder)
{
    int d = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (d < 0)
        return -1;
    int rc = fsync(d);
    int e = errno;
    close(d);
    errno = e;
    return rc;
}

int mf_keystore_create_private(const char *path, const char *what, const void *data, size_t size,
                               bool replace, int *fd, char *error, size_t error_size)
{
    *fd = -1;
    char folder[PATH_MAX];
    char temp[PATH_MAX];
    if (strlen(path) + 24 >= sizeof temp) {
        set_error(error, error_size, "keystore path too long (%zu bytes)", strlen(path));
        return MF_ENAMETOOLONG;
    }
    snprintf(folder, sizeof folder, "%s", path);
    char *dir = dirname(folder);
    char shown[MF_KEYSTORE_SHOWN_PATH];
    short_path(shown, sizeof shown, path);
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        set_error(error, error_size,
                  "%s: the folder does not exist (the %s is only created in an existing folder)",
                  shown, what);
        return MF_ENOENT;
    }

    int f = -1;
    for (int attempt = 0; attempt < KS_CREATE_ATTEMPTS && f < 0; attempt++) {
        snprintf(temp, sizeof temp, "%s.new-%08x", path, randombytes_random());
        f = open(temp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC, 0600);
        if (f < 0 && errno != EEXIST) {
            int e = errno;
            set_error(error, error_size, "%s: cannot create the %s: %s", shown, what, strerror(e));
            return errno_code(e);
        }
    }
    if (f < 0) {
        set_error(error, error_size, "%s: cannot find a free temporary name", shown);
        return MF_EEXIST;
    }
    int err = 0;
    const char *step = NULL;
    /* The lock is taken before the file gets its real name, so nobody else can lock it first. */
    if (fchmod(f, 0600) != 0)
        step = "set the mode of";
    else if (flock(f, LOCK_EX | LOCK_NB) != 0)
        step = "lock";
    else if (write_all(f, data, size, 0) != 0)
        step = "write";
    else if (fsync(f) != 0)
        step = "sync";
    if (step) {
        int e = errno;
        err = errno_code(e);
        set_error(error, error_size, "%s: cannot %s the new %s: %s", shown, step, what,
                  strerror(e));
    } else if (replace ? rename(temp, path) != 0 : link(temp, path) != 0) {
        int e = errno;
        err = errno_code(e);
        if (e == EEXIST)
            set_error(error, error_size, "%s: the %s already exists", shown, what);
        else
            set_error(error, error_size, "%s: cannot put the new %s in place: %s", shown, what,
                      strerror(e));
    }
    if (!replace || err)
        unlink(temp);
    if (!err && sync_folder(dir) != 0) {
        int e = errno;
        err = errno_code(e);
        set_error(error, error_size, "%s: cannot sync its folder: %s", shown, strerror(e));
    }
    if (err) {
        close(f);
        return err;
    }
    *fd = f;
    return 0;
}

/* ---- the anchor ---- */

static int ks_fail(struct mf_keystore *ks, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int ks_fail(struct mf_keystore *ks, int err, const char *fmt, ...)
{
    char *out = ks->anchor->error;
    size_t n = strlen(ks->path);
    if (n + 2 >= sizeof ks->anchor->error)
        n = 0;
    memcpy(out, ks->path, n);
    if (n) {
        memcpy(out + n, ": ", 2);
        n += 2;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out + n, sizeof ks->anchor->error - n, fmt, ap);
    va_end(ap);
    return err;
}

/* Writes `slot` into slot `index` (and `note`, its note, into the slot's note area first) and
 * makes it durable: one or two pwrites and one fdatasync. The slot's CRC of the note makes the
 * pair atomic: whichever of the two writes a power cut leaves torn, the slot is not valid.
 * On a failure *written says whether the new slot may be in the file: not when a pwrite failed
 * (the slot's last bytes, its checksum, never came, so it cannot be valid; the note area written
 * belongs to the older slot, which is not the state), perhaps when only the sync failed. */
static int ks_write_slot(struct mf_keystore *ks, const struct mf_keystore_slot *slot,
                         const uint8_t *note, unsigned index, bool *written)
{
    *written = false;
    if (slot->has_note && write_all(ks->fd, note, slot->note_size, note_offset(index)) != 0) {
        int e = errno;
        return ks_fail(ks, errno_code(e), "write of note %u: %s", index, strerror(e));
    }
    uint8_t raw[MF_KEYSTORE_SLOT_SIZE];
    mf_keystore_encode_slot(slot, raw);
    int rc = write_all(ks->fd, raw, sizeof raw, (off_t)index * MF_KEYSTORE_SLOT_SIZE);
    int e = errno;
    sodium_memzero(raw, sizeof raw);
    if (rc != 0)
        return ks_fail(ks, errno_code(e), "write of slot %u: %s", index, strerror(e));
    *written = true;
    if (fdatasync(ks->fd) != 0) {
        e = errno;
        return ks_fail(ks, errno_code(e), "sync of slot %u: %s", index, strerror(e));
    }
    return 0;
}

/* Makes `next` the state: into the older slot with sequence + 1; with `both`, then also into
 * the other slot with sequence + 2, so that neither slot keeps the previous secrets. `note` is
 * next's note (may be ks->note itself), used when next->has_note. */
static int ks_commit(struct mf_keystore *ks, struct mf_keystore_slot *next, const uint8_t *note,
                     bool both)
{
    ks->anchor->unchanged = true;
    if (ks->fd < 0)
        return ks_fail(ks, MF_EBADF, "keystore is closed");
    if (ks->state.sequence > UINT64_MAX - 2)
        return ks_fail(ks, MF_ERANGE, "sequence number exhausted");
    unsigned older = 1u - ks->current;
    next->sequence = ks->state.sequence + 1;
    bool written;
    int err = ks_write_slot(ks, next, note, older, &written);
    if (err) {
        /* The state stays the current slot's in memory: the next commit writes the same slot
         * again, so a slot whose sync failed is replaced, never built upon. */
        ks->anchor->unchanged = !written;
        return err;
    }
    ks->anchor->unchanged = false;
    ks->current = older;
    ks->state = *next;
    if (next->has_note && note != ks->note)
        memcpy(ks->note, note, next->note_size);
    if (both) {
        next->sequence++;
        err = ks_write_slot(ks, next, ks->note, 1u - older, &written);
        if (err)
            return err;
        ks->current = 1u - older;
        ks->state = *next;
    }
    return 0;
}

static int ks_read_state(struct mf_anchor *anchor, struct mf_anchor_state *state)
{
    struct mf_keystore *ks = anchor->context;
    memset(state, 0, sizeof *state);
    if (ks->fd < 0)
        return ks_fail(ks, MF_EBADF, "keystore is closed");
    state->has_key = ks->state.has_key;
    memcpy(state->key, ks->state.key, sizeof state->key);
    state->has_digest = ks->state.has_digest;
    memcpy(state->digest, ks->state.digest, sizeof state->digest);
    state->has_owner = ks->state.has_owner;
    memcpy(state->owner, ks->state.owner, sizeof state->owner);
    state->package_mark = ks->state.package_mark;
    return 0;
}

static int ks_write_key(struct mf_anchor *anchor, const uint8_t *key)
{
    struct mf_keystore *ks = anchor->context;
    struct mf_keystore_slot next = ks->state;
    next.has_key = key != NULL;
    next.has_note = false; /* a new key is a new setup: the note was the old one's */
    next.note_size = next.note_crc = 0;
    if (key)
        memcpy(next.key, key, MF_ANCHOR_KEY_SIZE);
    else
        sodium_memzero(next.key, sizeof next.key);
    int err = ks_commit(ks, &next, ks->note, true);
    sodium_memzero(&next, sizeof next);
    return err;
}

static int ks_write_digest(struct mf_anchor *anchor, const uint8_t *digest)
{
    struct mf_keystore *ks = anchor->context;
    struct mf_keystore_slot next = ks->state;
    next.has_digest = digest != NULL;
    if (digest)
        memcpy(next.digest, digest, MF_ANCHOR_DIGEST_SIZE);
    else
        memset(next.digest, 0, sizeof next.digest);
    int err = ks_commit(ks, &next, ks->note, false);
    sodium_memzero(&next, sizeof next);
    return err;
}

static int ks_write_owner(struct mf_anchor *anchor, const uint8_t *owner, uint64_t package_mark)
{
    struct mf_keystore *ks = anchor->context;
    struct mf_keystore_slot next = ks->state;
    next.has_owner = owner != NULL;
    if (owner)
        memcpy(next.owner, owner, MF_ANCHOR_OWNER_SIZE);
    else
        memset(next.owner, 0, sizeof next.owner);
    next.package_mark = package_mark;
    int err = ks_commit(ks, &next, ks->note, false);
    sodium_memzero(&next, sizeof next);
    return err;
}

static int ks_counter_read(struct mf_anchor *anchor, uint64_t *value)
{
    struct mf_keystore *ks = anchor->context;
    *value = 0;
    if (ks->fd < 0)
        return ks_fail(ks, MF_EBADF, "keystore is closed");
    *value = ks->state.counter;
    return 0;
}

static int ks_counter_increment(struct mf_anchor *anchor, uint64_t *value)
{
    struct mf_keystore *ks = anchor->context;
    *value = 0;
    anchor->unchanged = true;
    if (ks->state.counter == UINT64_MAX)
        return ks_fail(ks, MF_ERANGE, "counter at its maximum");
    struct mf_keystore_slot next = ks->state;
    next.counter++;
    int err = ks_commit(ks, &next, ks->note, false);
    sodium_memzero(&next, sizeof next);
    if (!err)
        *value = ks->state.counter;
    return err;
}

static int ks_counter_increment_note(struct mf_anchor *anchor, const uint8_t *note, size_t size,
                                     uint64_t *value)
{
    struct mf_keystore *ks = anchor->context;
    *value = 0;
    anchor->unchanged = true;
    if (size == 0 || size > MF_KEYSTORE_NOTE_SIZE)
        return ks_fail(ks, MF_EINVAL, "a note of %zu bytes (1 to %u)", size, MF_KEYSTORE_NOTE_SIZE);
    if (ks->state.counter == UINT64_MAX)
        return ks_fail(ks, MF_ERANGE, "counter at its maximum");
    struct mf_keystore_slot next = ks->state;
    next.counter++;
    next.has_note = true;
    next.note_size = (uint32_t)size;
    next.note_crc = mf_crc32_update(0, note, size);
    int err = ks_commit(ks, &next, note, false);
    sodium_memzero(&next, sizeof next);
    if (!err)
        *value = ks->state.counter;
    return err;
}

static int ks_read_note(struct mf_anchor *anchor, uint8_t *note, size_t *size)
{
    struct mf_keystore *ks = anchor->context;
    *size = 0;
    if (ks->fd < 0)
        return ks_fail(ks, MF_EBADF, "keystore is closed");
    if (ks->state.has_note) {
        memcpy(note, ks->note, ks->state.note_size);
        *size = ks->state.note_size;
    }
    return 0;
}

static int ks_binding(struct mf_anchor *anchor, uint8_t binding[MF_ANCHOR_BINDING_SIZE])
{
    struct mf_keystore *ks = anchor->context;
    if (ks->fd < 0)
        return ks_fail(ks, MF_EBADF, "keystore is closed");
    _Static_assert(crypto_hash_sha256_BYTES == MF_ANCHOR_BINDING_SIZE, "binding size");
    crypto_hash_sha256(binding, ks->state.id, sizeof ks->state.id);
    return 0;
}

static int ks_read_identity(struct mf_anchor *anchor, uint8_t secret[MF_ANCHOR_IDENTITY_SIZE],
                            bool *present)
{
    struct mf_keystore *ks = anchor->context;
    *present = false;
    memset(secret, 0, MF_ANCHOR_IDENTITY_SIZE);
    if (ks->fd < 0)
        return ks_fail(ks, MF_EBADF, "keystore is closed");
    *present = ks->state.has_identity;
    memcpy(secret, ks->state.identity, MF_ANCHOR_IDENTITY_SIZE);
    return 0;
}

static int ks_write_identity(struct mf_anchor *anchor,
                             const uint8_t secret[MF_ANCHOR_IDENTITY_SIZE])
{
    struct mf_keystore *ks = anchor->context;
    if (ks->state.has_identity) {
        /* Made once, never changed: writing the same secret again (a retry) is harmless. */
        if (sodium_memcmp(ks->state.identity, secret, MF_ANCHOR_IDENTITY_SIZE) == 0)
            return 0;
        return ks_fail(ks, MF_EEXIST, "an identity exists already; it is never replaced");
    }
    struct mf_keystore_slot next = ks->state;
    next.has_identity = true;
    memcpy(next.identity, secret, MF_ANCHOR_IDENTITY_SIZE);
    int err = ks_commit(ks, &next, ks->note, true);
    sodium_memzero(&next, sizeof next);
    return err;
}

void mf_keystore_close(struct mf_keystore *ks)
{
    if (ks->fd >= 0)
        close(ks->fd); /* also releases the lock */
    ks->fd = -1;
    sodium_memzero(&ks->state, sizeof ks->state);
}

static void ks_close(struct mf_anchor *anchor)
{
    mf_keystore_close(anchor->context);
}

static int ks_read_file(struct mf_keystore *ks, uint8_t *raw, size_t *size)
{
    struct stat st;
    if (fstat(ks->fd, &st) != 0)
        return ks_fail(ks, errno_code(errno), "cannot stat: %s", strerror(errno));
    if (st.st_size != (off_t)MF_KEYSTORE_FILE_SIZE &&
        st.st_size != (off_t)MF_KEYSTORE_FILE_SIZE_V1) {
        *size = st.st_size < 0 ? 0 : (size_t)st.st_size;
        return 0; /* the decoder names the size */
    }
    size_t want = (size_t)st.st_size, done = 0;
    while (done < want) {
        ssize_t n = pread(ks->fd, raw + done, want - done, (off_t)done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return ks_fail(ks, errno_code(errno), "read: %s", strerror(errno));
        if (n == 0)
            break;
        done += (size_t)n;
    }
    *size = done;
    return 0;
}

static int ks_load(struct mf_keystore *ks)
{
    uint8_t raw[MF_KEYSTORE_FILE_SIZE];
    size_t size = 0;
    int err = ks_read_file(ks, raw, &size);
    if (err)
        return err;
    bool damaged = false;
    char text[MF_ANCHOR_ERROR_MAX];
    err = mf_keystore_decode(raw, size, &ks->state, &ks->current, &damaged, text, sizeof text);
    if (err) {
        sodium_memzero(raw, sizeof raw);
        return ks_fail(ks, err, "%s", text);
    }
    if (ks->state.has_note)
        memcpy(ks->note, raw + note_offset(ks->current), ks->state.note_size);
    if (size == MF_KEYSTORE_FILE_SIZE_V1) {
        /* A version 1 file: room for the notes, durable before any slot refers to one, and
         * written, not a hole, so that a note's write later needs no new space on the host. */
        static const uint8_t zeros[MF_KEYSTORE_FILE_SIZE - MF_KEYSTORE_FILE_SIZE_V1];
        errno = 0;
        if (pwrite(ks->fd, zeros, sizeof zeros, (off_t)MF_KEYSTORE_FILE_SIZE_V1) !=
                (ssize_t)sizeof zeros ||
            fsync(ks->fd) != 0) {
            int e = errno ? errno : ENOSPC; /* a short write: the host's file system is full */
            sodium_memzero(raw, sizeof raw);
            return ks_fail(ks, errno_code(e), "cannot make room for notes: %s", strerror(e));
        }
    }
    struct mf_keystore_slot other;
    int other_rc =
        damaged ? MF_ECORRUPT
                : mf_keystore_decode_slot(raw + (1u - ks->current) * MF_KEYSTORE_SLOT_SIZE, &other);
    sodium_memzero(raw, sizeof raw);
    /* Repair: a damaged slot may hold pieces of an old key, and a slot left by a key change cut
     * between its two writes holds the old key whole. Rewriting it from the newest state makes
     * the wipe complete. */
    if (other_rc != 0 || !same_secrets(&ks->state, &other)) {
        struct mf_keystore_slot next = ks->state;
        err = ks_commit(ks, &next, ks->note, false);
        sodium_memzero(&next, sizeof next);
    }
    sodium_memzero(&other, sizeof other);
    return err;
}

static void ks_fill_anchor(struct mf_keystore *ks, struct mf_anchor *anchor)
{
    anchor->context = ks;
    anchor->name = "keystore";
    anchor->read_state = ks_read_state;
    anchor->write_key = ks_write_key;
    anchor->write_digest = ks_write_digest;
    anchor->write_owner = ks_write_owner;
    anchor->counter_read = ks_counter_read;
    anchor->counter_increment = ks_counter_increment;
    anchor->note_max = MF_KEYSTORE_NOTE_SIZE;
    anchor->counter_increment_note = ks_counter_increment_note;
    anchor->read_note = ks_read_note;
    anchor->binding = ks_binding;
    anchor->read_identity = ks_read_identity;
    anchor->write_identity = ks_write_identity;
    anchor->close = ks_close;
}

int mf_keystore_open(struct mf_keystore *ks, const char *path, bool create,
                     struct mf_anchor *anchor)
{
    memset(ks, 0, sizeof *ks);
    memset(anchor, 0, sizeof *anchor);
    ks->fd = -1;
    ks->anchor = anchor;
    short_path(ks->path, sizeof ks->path, path);
    ks_fill_anchor(ks, anchor);
    if (sodium_init() < 0)
        return ks_fail(ks, MF_EIO, "libsodium cannot start");

    int err =
        mf_keystore_open_private(path, "keystore", &ks->fd, anchor->error, sizeof anchor->error);
    if (err == MF_ENOENT && create) {
        struct mf_keystore_slot fresh;
        memset(&fresh, 0, sizeof fresh);
        randombytes_buf(fresh.id, sizeof fresh.id);
        uint8_t raw[MF_KEYSTORE_FILE_SIZE];
        memset(raw, 0, sizeof raw); /* the note areas: empty */
        /* Both slots valid from the start (sequences 1 and 2), so a fresh keystore has no
         * damaged slot to repair. */
        fresh.sequence = 1;
        mf_keystore_encode_slot(&fresh, raw);
        fresh.sequence = 2;
        mf_keystore_encode_slot(&fresh, raw + MF_KEYSTORE_SLOT_SIZE);
        err = mf_keystore_create_private(path, "keystore", raw, sizeof raw, false, &ks->fd,
                                         anchor->error, sizeof anchor->error);
        if (err == MF_EEXIST) /* made by another program meanwhile: use that one */
            err = mf_keystore_open_private(path, "keystore", &ks->fd, anchor->error,
                                           sizeof anchor->error);
    } else if (err == MF_ENOENT) {
        ks_fail(ks, err, "no keystore here (it is created at the first start)");
    }
    if (!err)
        err = ks_load(ks);
    if (err) {
        mf_keystore_close(ks);
        return err;
    }
    anchor->error[0] = '\0';
    return 0;
}

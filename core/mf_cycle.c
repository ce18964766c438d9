/* A programming cycle (see mf_cycle.h). */
#include "mf_cycle.h"

#include "mf_datafile.h"
#include "mf_err.h"
#include "mf_uidsig.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *mf_phase_name(enum mf_phase phase)
{
    static const char *const names[] = {"READY",     "INITIALIZING", "CONNECTING",
                                        "UNLOCKING", "ERASING",      "PROGRAMMING",
                                        "VERIFYING", "PROTECTING",   "STARTING"};
    return (unsigned)phase < sizeof names / sizeof names[0] ? names[phase] : "UNKNOWN";
}

void mf_slot_init(struct mf_slot *slot, unsigned number, struct mf_target *target)
{
    slot->number = number;
    slot->target = target;
    slot->window_open = false;
    slot->overlay_count = 0;
}

/* ---- the cycle's context ---- */

enum pass_kind { PASS_PROGRAM, PASS_VERIFY };

/* A run of write units the program pass wrote, with the CRC of the bytes it wrote: verifying by
 * CRC asks the device for the same runs and needs neither the data files nor the overlays again
 * (from the secure area, that is one decryption per cycle instead of two). */
struct run_crc {
    uint64_t address;
    uint32_t length;
    uint32_t crc;
    uint32_t placed; /* bytes of data and overlays of its window (progress) */
};

struct cycle {
    const struct mf_cycle_env *env;
    struct mf_slot *slot;
    struct mf_target *target;
    const struct mf_project *project;
    const struct mf_cycle_request *request;
    struct mf_cycle_result *result;
    const struct mf_job *job;       /* current job */
    const struct mf_datafile *file; /* the data file a pass reads now */
    int job_index;
    enum mf_phase phase;
    enum pass_kind pass;
    bool verify_readback;
    bool exclude_overlays;       /* verify-only: overlay bytes are not compared */
    bool reserved;               /* holds one of env->reserved (in all and of its project) */
    enum mf_cycle_failure stage; /* what a failure now is, unless its code says better */
    uint64_t done, total;        /* progress of the phase */
    struct run_crc *runs;        /* what this job's program pass wrote, while `runs_valid` */
    size_t run_count, run_cap;
    bool runs_valid;
    bool differs; /* a sealed verify found a difference (run_job reports it) */
};

static void fail(struct cycle *c, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Records the first failure: the code and a message prefixed with the job, when in one. */
static void fail(struct cycle *c, int err, const char *fmt, ...)
{
    struct mf_cycle_result *r = c->result;
    if (r->error)
        return;
    r->error = err;
    r->failed_job = c->job ? c->job_index : -1;
    r->failure = err == MF_EAUTH                                     ? MF_FAIL_SECURE
                 : err == MF_ECANCELED                               ? MF_FAIL_CANCELED
                 : err == MF_EEXHAUSTED                              ? MF_FAIL_EXHAUSTED
                 : err == MF_EVERIFY                                 ? MF_FAIL_VERIFY
                 : err == MF_ETIMEOUT && c->stage >= MF_FAIL_CONNECT ? MF_FAIL_TIMEOUT
                 : err == MF_EACCES && c->stage >= MF_FAIL_CONNECT   ? MF_FAIL_PROTECTED
                 /* while verifying, anything but a mismatch is the target's (a link lost) */
                 : c->stage == MF_FAIL_VERIFY ? MF_FAIL_TARGET
                                              : c->stage;
    size_t n = 0;
    if (c->job)
        n = (size_t)snprintf(r->message, sizeof r->message, "job %s: ", c->job->name);
    if (err == MF_ECANCELED) {
        /* Whoever noticed it (the engine or the back end), it is the same event. */
        char phase_name[16];
        const char *p = mf_phase_name(c->phase);
        size_t k = 0;
        for (; k < sizeof phase_name - 1 && p[k]; k++)
            phase_name[k] = (char)(p[k] >= 'A' && p[k] <= 'Z' ? p[k] + 32 : p[k]);
        phase_name[k] = '\0';
        snprintf(r->message + n, sizeof r->message - n, "cancelled while %s", phase_name);
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->message + n, sizeof r->message - n, fmt, ap);
    va_end(ap);
}

/* The target's own text when it gave one, else the error's. */
static const char *target_text(const struct cycle *c, int err)
{
    return c->target->error[0] ? c->target->error : mf_strerror(err);
}

static uint64_t now(const struct cycle *c)
{
    return c->env->now_ms ? c->env->now_ms(c->env->clock_context) : 0;
}

static void emit(struct cycle *c)
{
    if (!c->env->event)
        return;
    if (c->done > c->total)
        c->total = c->done; /* never more than 100 %, whatever was estimated */
    struct mf_cycle_event ev = {c->slot->number, c->phase, c->job ? c->job->name : NULL, c->done,
                                c->total};
    c->env->event(c->env->event_context, &ev);
}

static void phase(struct cycle *c, enum mf_phase p, uint64_t total)
{
    c->phase = p;
    c->done = 0;
    c->total = total;
    emit(c);
}

static int cancelled(struct cycle *c)
{
    if (atomic_load(&c->target->cancel)) {
        fail(c, MF_ECANCELED, "cancelled");
        return MF_ECANCELED;
    }
    return 0;
}

/* ---- counts and serial numbers ---- */

static int project_path(const struct mf_project *p, const char *name, char *out)
{
    int n = snprintf(out, MF_SETUP_PATH_MAX, "%s/%s", p->folder, name);
    return (n < 0 || n >= (int)MF_SETUP_PATH_MAX) ? MF_ENAMETOOLONG : 0;
}

/* The smallest of the applicable counts; `limited` false when there is none. */
static void tally_left(const struct mf_tally *t, bool *limited, uint64_t *left)
{
    *limited = t->project_limited || t->root_limited;
    *left = t->project_limited && (!t->root_limited || t->project_left < t->root_left)
                ? t->project_left
                : t->root_left;
}

int mf_cycle_remaining(const struct mf_cycle_env *env, bool *limited, uint64_t *remaining)
{
    const struct mf_project *p = mf_setup_project(env->setup);
    char message[MF_AREA_MESSAGE_MAX];
    struct mf_tally t;
    *limited = false;
    if (!p)
        return MF_ENOENT;
    int err =
        env->area->peek(env->area, env->setup, (unsigned)(p - env->setup->projects), &t, message);
    if (!err)
        tally_left(&t, limited, remaining);
    return err;
}

/* Gives back what the cycle holds of env->reserved. Under env->authorize. */
static void release_reserved(struct cycle *c)
{
    c->env->reserved->total--;
    c->env->reserved->project[c->project - c->env->setup->projects]--;
    c->reserved = false;
}

/* Encodes the serial number for one job. */
static int encode_serial(struct cycle *c, const struct mf_job *job, uint64_t serial,
                         const uint8_t *listed, uint8_t *out)
{
    unsigned len = job->serial_length;
    if (listed) {
        memcpy(out, listed, len);
        return 0;
    }
    switch (job->serial_encoding) {
    case MF_SERIAL_LE:
    case MF_SERIAL_BE:
        if (len < 8 && serial >> (8 * len)) {
            fail(c, MF_ERANGE, "serial number %llu does not fit %u bytes",
                 (unsigned long long)serial, len);
            return MF_ERANGE;
        }
        for (unsigned i = 0; i < len; i++) {
            uint8_t b = (uint8_t)(serial >> (8 * i));
            out[job->serial_encoding == MF_SERIAL_LE ? i : len - 1 - i] = b;
        }
        return 0;
    case MF_SERIAL_ASCII_DEC:
    case MF_SERIAL_ASCII_HEX: {
        unsigned radix = job->serial_encoding == MF_SERIAL_ASCII_DEC ? 10 : 16;
        uint64_t v = serial;
        for (unsigned i = len; i-- > 0;) {
            out[i] = (uint8_t) "0123456789ABCDEF"[v % radix];
            v /= radix;
        }
        if (v) {
            fail(c, MF_ERANGE, "serial number %llu does not fit %u %s digits",
                 (unsigned long long)serial, len, radix == 10 ? "decimal" : "hex");
            return MF_ERANGE;
        }
        return 0;
    }
    }
    return MF_EINVAL;
}

static bool in_flash(const struct mf_profile *profile, uint64_t start, uint64_t end)
{
    const struct mf_flash_region *r = mf_profile_region(profile, start);
    return r && end - r->start <= r->size;
}

_Static_assert(MF_WINDOW_SIZE == MF_SETUP_CRC_WINDOW, "held window CRCs are per cycle window");
_Static_assert(MF_SIGNATURE_SIZE == MF_UIDSIG_SIZE && MF_SIGNATURE_SIZE <= MF_PATCH_BYTES_MAX,
               "a signature is one overlay");

/* Signs this device for one job: its UID and the serial number it took (0 when none), bound to
 * the setup. */
static int sign_device(struct cycle *c, const struct mf_job *job, uint64_t serial, uint8_t *out)
{
    const struct mf_cycle_result *r = c->result;
    if (!r->uid_length) {
        /* mf_setup refuses [signature] for devices without a UID, which are read at connect. */
        fail(c, MF_EINVAL, "[signature]: the device's unique ID was not read");
        return MF_EINVAL;
    }
    int err = mf_uidsig_sign(c->env->setup->fingerprint, r->uid, r->uid_length, serial,
                             job->signature_seed, out);
    if (err)
        fail(c, err, "[signature]: %s", mf_strerror(err));
    return err;
}

/* What an overlay is, for messages. */
static void overlay_name(const struct cycle *c, const struct mf_overlay *o, char *out, size_t size)
{
    if (o->kind == MF_OVERLAY_PATCH)
        snprintf(out, size, "patch %u", o->patch);
    else
        snprintf(out, size, "the %s of job %s",
                 o->kind == MF_OVERLAY_SERIAL ? "serial number" : "signature",
                 c->project->jobs[o->job].name);
}

/* Builds the overlays of this device: each job's serial number and signature, and the patch
 * line. `serial` is the Serial.txt number the device takes, 0 when it takes none. */
/* A new overlay of the slot for `length` bytes at `address` (bytes zero). */
static struct mf_overlay *overlay_add(struct mf_slot *slot, uint64_t address, uint32_t length,
                                      int job, enum mf_overlay_kind kind)
{
    struct mf_overlay *o = &slot->overlays[slot->overlay_count++];
    memset(o, 0, sizeof *o);
    o->address = address;
    o->length = length;
    o->job = job;
    o->kind = kind;
    return o;
}

/* Verify alone compares no serial number and no signature (docs/protocol.md, #VERIFY): their
 * places, as overlays that exclude_overlays leaves out of the comparison, also where they lie
 * over the data. Patches are not known afterwards: their bytes are compared as data. */
static void device_bytes_places(struct cycle *c)
{
    struct mf_slot *slot = c->slot;
    slot->overlay_count = 0;
    for (unsigned j = 0; j < c->project->job_count; j++) {
        const struct mf_job *job = &c->project->jobs[j];
        if (job->serial)
            overlay_add(slot, job->serial_address, job->serial_length, (int)j, MF_OVERLAY_SERIAL);
        if (job->signature)
            overlay_add(slot, job->signature_address, MF_SIGNATURE_SIZE, (int)j,
                        MF_OVERLAY_SIGNATURE);
    }
}

/* Does `job` program a byte of [start, end): its data or its per-device fields? */
static bool job_meets(const struct mf_job *job, uint64_t start, uint64_t end)
{
    for (size_t i = 0; i < job->range_count; i++) {
        if (job->ranges[i].start < end && start < job->ranges[i].end)
            return true;
    }
    if (job->serial && job->serial_address < end &&
        start < job->serial_address + job->serial_length)
        return true;
    return job->signature && job->signature_address < end &&
           start < job->signature_address + MF_SIGNATURE_SIZE;
}

/* Chooses the job that lays patch `o` down (its `job`). The patch replaces bytes of at most one
 * job, and that job lays it; a patch where no job has bytes goes to the last job with bytes in
 * its sectors (that job, or one before it, erased them), or, in sectors nobody uses, to the first
 * job that takes patches (which erases them, when it erases by sectors). Refused before anything
 * is taken: a patch over bytes of two jobs; one a later job's sector erase would remove; one
 * whose job erases, by sectors, a sector an earlier job programmed; one whose job takes no
 * patches (`patches = no`). */
static int patch_owner(struct cycle *c, struct mf_overlay *o)
{
    const struct mf_project *p = c->project;
    uint64_t end = o->address + o->length;
    unsigned long long at = (unsigned long long)o->address;
    int owner = -1;
    for (unsigned j = 0; j < p->job_count; j++) {
        if (!job_meets(&p->jobs[j], o->address, end))
            continue;
        if (owner >= 0) {
            fail(c, MF_ECONFLICT, "patch %u at 0x%llX lies in the bytes of two jobs (%s and %s)",
                 o->patch, at, p->jobs[owner].name, p->jobs[j].name);
            return MF_ECONFLICT;
        }
        owner = (int)j;
    }
    /* build_overlays checked that the patch lies in one flash region. */
    const struct mf_flash_region *r = mf_profile_region(p->jobs[0].profile, o->address);
    int last = -1; /* the last job with bytes in a sector of the patch */
    for (uint64_t a = o->address; owner < 0 && a < end;) {
        uint64_t start;
        uint32_t size;
        mf_region_sector(r, a, &start, &size);
        for (unsigned j = 0; j < p->job_count; j++) {
            if (job_meets(&p->jobs[j], start, start + size) && (int)j > last)
                last = (int)j;
        }
        a = start + size;
    }
    if (owner < 0)
        owner = last;
    for (unsigned j = 0; owner < 0 && j < p->job_count; j++) {
        if (p->jobs[j].patches)
            owner = (int)j;
    }
    if (owner < 0) {
        fail(c, MF_ECONFLICT, "patch %u: no job of project %s takes patches (patches = no)",
             o->patch, p->name);
        return MF_ECONFLICT;
    }
    const struct mf_job *job = &p->jobs[owner];
    if (!job->patches) {
        fail(c, MF_ECONFLICT,
             "patch %u at 0x%llX is in the bytes or sectors of job %s, which takes no patches "
             "(patches = no)",
             o->patch, at, job->name);
        return MF_ECONFLICT;
    }
    /* Every sector of the patch: no later job erases it, and the patch's job, when it erases by
     * sectors, finds no earlier job's bytes there. */
    for (uint64_t a = o->address; a < end;) {
        uint64_t start;
        uint32_t size;
        mf_region_sector(r, a, &start, &size);
        for (unsigned j = 0; j < p->job_count; j++) {
            const struct mf_job *other = &p->jobs[j];
            if ((int)j == owner || !job_meets(other, start, start + size))
                continue;
            if ((int)j > owner && other->erase == MF_ERASE_SECTORS) {
                fail(c, MF_ECONFLICT,
                     "patch %u at 0x%llX lies in the sector at 0x%llX, which job %s erases after "
                     "job %s laid the patch",
                     o->patch, at, (unsigned long long)start, other->name, job->name);
                return MF_ECONFLICT;
            }
            if ((int)j < owner && job->erase == MF_ERASE_SECTORS) {
                fail(c, MF_ECONFLICT,
                     "patch %u at 0x%llX: job %s, which lays it, would erase the sector at 0x%llX "
                     "with bytes of job %s",
                     o->patch, at, job->name, (unsigned long long)start, other->name);
                return MF_ECONFLICT;
            }
        }
        a = start + size;
    }
    o->job = owner;
    return 0;
}

static int build_overlays(struct cycle *c, uint64_t serial, const uint8_t *listed,
                          const struct mf_patch_line *patches)
{
    struct mf_slot *slot = c->slot;
    slot->overlay_count = 0;
    for (unsigned j = 0; j < c->project->job_count; j++) {
        const struct mf_job *job = &c->project->jobs[j];
        if (job->serial) {
            struct mf_overlay *o = overlay_add(slot, job->serial_address, job->serial_length,
                                               (int)j, MF_OVERLAY_SERIAL);
            int err = encode_serial(c, job, serial, listed, o->bytes);
            if (err)
                return err;
        }
        if (job->signature) {
            struct mf_overlay *o = overlay_add(slot, job->signature_address, MF_SIGNATURE_SIZE,
                                               (int)j, MF_OVERLAY_SIGNATURE);
            int err = sign_device(c, job, serial, o->bytes);
            if (err)
                return err;
        }
    }
    const struct mf_profile *profile = c->project->jobs[0].profile;
    for (unsigned i = 0; patches && i < patches->count; i++) {
        const struct mf_patch *p = &patches->patches[i];
        if (!in_flash(profile, p->address, p->address + p->length)) {
            fail(c, MF_ERANGE, "patch %u: 0x%llX+%u is outside the flash of %s", i + 1,
                 (unsigned long long)p->address, p->length, profile->name);
            return MF_ERANGE;
        }
        struct mf_overlay *o = overlay_add(slot, p->address, p->length, -1, MF_OVERLAY_PATCH);
        memcpy(o->bytes, p->bytes, p->length);
        o->patch = i + 1;
        int err = patch_owner(c, o);
        if (err)
            return err;
        const struct mf_job *job = &c->project->jobs[o->job];
        if (c->env->sealed && c->request->patch_line && !job->operator_patches) {
            fail(c, MF_ECONFLICT,
                 "#AUTO PATCH: patch %u at 0x%llX is in job %s, which runs from the secure area "
                 "and takes no patches from the operator (operator_patches = no)",
                 o->patch, (unsigned long long)o->address, job->name);
            return MF_ECONFLICT;
        }
    }
    /* Two per-device fields must not claim the same byte. */
    for (unsigned i = 0; i < slot->overlay_count; i++) {
        for (unsigned k = i + 1; k < slot->overlay_count; k++) {
            const struct mf_overlay *a = &slot->overlays[i], *b = &slot->overlays[k];
            if (a->address < b->address + b->length && b->address < a->address + a->length) {
                char first[MF_SETUP_NAME_MAX + 32], second[MF_SETUP_NAME_MAX + 32];
                overlay_name(c, a, first, sizeof first);
                overlay_name(c, b, second, sizeof second);
                fail(c, MF_ECONFLICT, "per-device data overlaps at 0x%llX (%s and %s)",
                     (unsigned long long)(a->address > b->address ? a->address : b->address), first,
                     second);
                return MF_ECONFLICT;
            }
        }
    }
    return 0;
}

/* Does `job` lay overlay `o` down? (A patch's job is chosen by patch_owner.) */
static bool overlay_in_job(const struct mf_overlay *o, int job)
{
    return o->job == job;
}

/* What is wrong with the line of SNList.txt or Patches.txt that Serial.txt number `serial` selects.
 * The reference selects lines counting from 0; the message names the line as an editor (and every
 * job.ini error) counts, from 1, and says which number selected it. */
static void fail_line(struct cycle *c, int err, const char *path, uint64_t serial,
                      const char *used_up, const char *parse_error)
{
    /* serial < UINT64_MAX: authorize() refuses a serial number that cannot advance first. */
    unsigned long long index = (unsigned long long)serial;
    char line[24];
    snprintf(line, sizeof line, "%llu", index + 1);
    const char *why = err == MF_EFORMAT ? parse_error : mf_strerror(err);
    char text[64];
    if (err == MF_ENOENT) {
        snprintf(text, sizeof text, "no such line (%s)", used_up);
        why = text;
    } else if (err == MF_EFBIG) {
        snprintf(text, sizeof text, "line %s is longer than %u characters", line, MF_TEXT_LINE_MAX);
        why = text;
    }
    fail(c, err, "%s:%s (Serial.txt %llu selects it, counting lines from 0): %s", path, line, index,
         why);
}

/* Whether every job of the project that takes patches (patches = yes) takes them from the
 * operator too (operator_patches = yes): no line of Patches.txt can lay data where the operator
 * may not. */
static bool operator_patches_everywhere(const struct mf_project *p)
{
    for (unsigned j = 0; j < p->job_count; j++) {
        if (p->jobs[j].patches && !p->jobs[j].operator_patches)
            return false;
    }
    return true;
}

/* Takes the count and the serial number of this device, durably, under the authorization lock.
 * Everything that could refuse the device is checked before anything is written. */
static int authorize(struct cycle *c)
{
    const struct mf_cycle_env *env = c->env;
    const struct mf_project *p = c->project;
    struct mf_area *area = env->area;
    unsigned index = (unsigned)(p - env->setup->projects);
    char path[MF_SETUP_PATH_MAX], message[MF_AREA_MESSAGE_MAX], line[MF_TEXT_LINE_MAX + 1];
    struct mf_tally tally;
    uint8_t listed[MF_SERIAL_LENGTH_MAX];

    c->stage = MF_FAIL_STORAGE;
    mf_lock_take(env->authorize);
    if (env->reserved && c->reserved) {
        release_reserved(c); /* the reservation turns into the count itself, or into nothing */
    }
    int err = area->peek(area, env->setup, index, &tally, message);
    if (err) {
        fail(c, err, "%s", message);
        goto out;
    }
    if ((tally.project_limited && tally.project_left == 0) ||
        (tally.root_limited && tally.root_left == 0)) {
        err = MF_EEXHAUSTED;
        bool project = tally.project_limited && tally.project_left == 0;
        fail(c, err, "no programming cycles left (%s%s%s = 0)", project ? p->folder : "",
             project ? "/" : "", MF_FILE_CNTDOWN);
        goto out;
    }
    uint64_t serial = tally.has_serial ? tally.serial : 0;

    /* The lines the serial number selects. */
    c->stage = MF_FAIL_DEVICE_DATA;
    const uint8_t *list_bytes = NULL;
    struct mf_patch_line patch_line, *patches = NULL;
    if (tally.has_serial) {
        if (serial > UINT64_MAX - p->serial_increment) {
            err = MF_ERANGE;
            fail(c, err, "%s/%s: serial number %llu cannot advance", p->folder, MF_FILE_SERIAL,
                 (unsigned long long)serial);
            goto out;
        }
        if (p->has_snlist && p->uses_serial) {
            char perr[MF_PATCH_ERROR_MAX];
            unsigned len = MF_SERIAL_LENGTH_MAX;
            err = project_path(p, MF_FILE_SNLIST, path);
            if (!err)
                err = mf_text_line(area, path, serial, line);
            if (!err)
                err = mf_snlist_parse(line, listed, len, perr);
            if (err) {
                fail_line(c, err, path, serial, "the list is used up", perr);
                goto out;
            }
            list_bytes = listed;
        }
    }
    char perr[MF_PATCH_ERROR_MAX];
    if (p->has_patches && (c->request->no_patch || c->request->patch_line) && env->sealed &&
        !operator_patches_everywhere(p)) {
        /* The owner's per-device data would be left out of a device counted and recorded as
         * good: NOPATCH skips its line, and PATCH gives the operator's line instead of it (also
         * one into jobs that take the operator's patches). */
        err = MF_ECONFLICT;
        fail(c, err,
             "%s: %s/%s came with the owner's setup, which runs from the secure area, and not "
             "every job of it takes patches from the operator (operator_patches = no): its line "
             "is not left out",
             c->request->patch_line ? "#AUTO PATCH" : "#AUTO NOPATCH", p->folder, MF_FILE_PATCHES);
        goto out;
    }
    if (c->request->patch_line) {
        err = strlen(c->request->patch_line) > MF_TEXT_LINE_MAX
                  ? MF_EFBIG
                  : mf_patch_parse(c->request->patch_line, &patch_line, perr);
        if (err) {
            if (err == MF_EFBIG)
                fail(c, err, "#AUTO PATCH: the line is longer than %u characters",
                     MF_TEXT_LINE_MAX);
            else
                fail(c, err, "#AUTO PATCH: %s", perr);
            goto out;
        }
        patches = &patch_line;
    } else if (p->has_patches && !c->request->no_patch) {
        err = project_path(p, MF_FILE_PATCHES, path);
        if (!err)
            err = mf_text_line(area, path, serial, line);
        if (!err)
            err = mf_patch_parse(line, &patch_line, perr);
        if (err) {
            fail_line(c, err, path, serial, "the patches are used up", perr);
            goto out;
        }
        patches = &patch_line;
    }
    err = build_overlays(c, serial, list_bytes, patches);
    if (err)
        goto out;

    /* Durable before the target is touched: the area writes the serial number first, then
     * the counts (a cut in between leaves a gap in the serial numbers, never a repeat). */
    c->stage = MF_FAIL_STORAGE;
    enum mf_area_taken taken;
    err = area->take(area, env->setup, index, &tally, &taken, message);
    c->result->consumed = taken == MF_AREA_TAKEN;
    c->result->count_unknown = taken == MF_AREA_TAKEN_UNKNOWN;
    if (err) {
        fail(c, err, "%s", message);
        goto out;
    }
    if (tally.has_serial) {
        c->result->has_serial = true;
        c->result->serial = serial;
    }
    bool limited;
    uint64_t left;
    tally_left(&tally, &limited, &left);
    c->result->has_remaining = limited;
    c->result->remaining = limited ? left - 1 : 0;
out:
    mf_lock_give(env->authorize);
    return err;
}

/* ---- the window: data collected per 64 KiB, programmed or verified in write units ---- */

static void bits_set(uint8_t *bits, uint32_t from, uint32_t count)
{
    for (; count && (from & 7); from++, count--)
        bits[from >> 3] = (uint8_t)(bits[from >> 3] | (1u << (from & 7)));
    if (count >= 8) {
        memset(bits + (from >> 3), 0xFF, count >> 3);
        from += count & ~7u;
        count &= 7;
    }
    for (; count; from++, count--)
        bits[from >> 3] = (uint8_t)(bits[from >> 3] | (1u << (from & 7)));
}

static bool bit(const uint8_t *bits, uint32_t i)
{
    return (bits[i >> 3] >> (i & 7)) & 1;
}

static void bit_clear(uint8_t *bits, uint32_t i)
{
    bits[i >> 3] = (uint8_t)(bits[i >> 3] & ~(1u << (i & 7)));
}

/* Are all (`want` true) or any (`want` false) of the bits [from, from + count) set? Whole bytes,
 * and eight of them at a time, where the range allows: the window's 64 K bits are scanned for
 * every write unit of every pass. */
static bool bits_test(const uint8_t *bits, uint32_t from, uint32_t count, bool want_all)
{
    uint32_t end = from + count;
    for (; from < end && (from & 7); from++) {
        if (bit(bits, from) != want_all)
            return !want_all;
    }
    const uint8_t full = want_all ? 0xFF : 0x00;
    for (; from + 64 <= end; from += 64) {
        uint64_t w;
        memcpy(&w, bits + (from >> 3), sizeof w);
        if (w != (want_all ? ~(uint64_t)0 : 0))
            return !want_all;
    }
    for (; from + 8 <= end; from += 8) {
        if (bits[from >> 3] != full)
            return !want_all;
    }
    for (; from < end; from++) {
        if (bit(bits, from) != want_all)
            return !want_all;
    }
    return want_all;
}

/* Is any byte of [from, from + count) touched? */
static bool any_touched(const uint8_t *bits, uint32_t from, uint32_t count)
{
    return bits_test(bits, from, count, false);
}

/* The end of the run of write units from `start` (a multiple of `unit`) below `limit` in which
 * every unit has a touched byte. A window full of data is one run: 64 bits of the map at a time
 * where they are all set and hold whole units. */
static uint32_t touched_run_end(const uint8_t *bits, uint32_t start, uint32_t limit, uint32_t unit)
{
    uint32_t end = start;
    bool words = unit <= 64 && 64 % unit == 0;
    while (end < limit) {
        if (words && (end & 63) == 0 && end + 64 <= limit) {
            uint64_t w;
            memcpy(&w, bits + (end >> 3), sizeof w);
            if (w == ~(uint64_t)0) {
                end += 64;
                continue;
            }
        }
        if (!any_touched(bits, end, unit))
            break;
        end += unit;
    }
    return end;
}

static void window_open(struct cycle *c, uint64_t start)
{
    struct mf_slot *s = c->slot;
    const struct mf_flash_region *r = mf_profile_region(c->job->profile, start);
    memset(s->window, r ? r->erased_value : 0xFF, sizeof s->window);
    memset(s->touched, 0, sizeof s->touched);
    s->window_start = start;
    s->window_open = true;
    s->window_placed = 0;
}

/* Lays the overlays that belong to this job onto the open window: bytes whose write unit the data
 * touches (or every byte, in the final pass for overlays alone). */
static void window_overlays(struct cycle *c, bool alone)
{
    struct mf_slot *s = c->slot;
    for (unsigned i = 0; i < s->overlay_count; i++) {
        struct mf_overlay *o = &s->overlays[i];
        if (!overlay_in_job(o, c->job_index))
            continue;
        for (uint32_t k = 0; k < o->length; k++) {
            uint64_t a = o->address + k;
            if (a < s->window_start || a - s->window_start >= MF_WINDOW_SIZE)
                continue;
            if ((o->pass >> k) & 1)
                continue;
            uint32_t off = (uint32_t)(a - s->window_start);
            const struct mf_flash_region *r = mf_profile_region(c->job->profile, a);
            uint32_t unit = r ? r->write_size : 1, u0 = off / unit * unit;
            if (!alone && !any_touched(s->touched, u0, unit))
                continue;
            o->pass |= 1ull << k;
            if (c->exclude_overlays) {
                bit_clear(s->touched, off); /* not compared */
                continue;
            }
            s->window[off] = o->bytes[k];
            bits_set(s->touched, off, 1);
            s->window_placed++;
        }
    }
}

/* What a run programs or verifies: `len` bytes for `address`, `bytes[i]` for the address
 * `address + i`; with `touched`, only bytes whose bit `off + i` is set there count (the others,
 * inside a write unit, hold whatever the device has); without, all of them. */
struct run_bytes {
    uint64_t address;
    const uint8_t *bytes;
    uint32_t len;
    const uint8_t *touched;
    uint32_t off;
    const uint32_t *crc; /* mf_target_crc of all `len` bytes when known (held data), or NULL */
};

/* The run's bytes [0, len) of the window at `off`. */
static struct run_bytes window_bytes(const struct mf_slot *s, uint32_t off, uint32_t len)
{
    return (struct run_bytes){s->window_start + off, s->window + off, len, s->touched, off, NULL};
}

static bool run_counts(const struct run_bytes *r, uint32_t i)
{
    return !r->touched || bit(r->touched, r->off + i);
}

/* Compares device memory with the run's bytes; MF_EVERIFY names the first differing address.
 * Sealed (env->sealed): the whole run is read and compared whatever differs, and a difference
 * only sets c->differs, so that neither the reply nor the device's requests say where (a
 * device under the factory's control would otherwise learn the data byte by byte). */
static int verify_readback(struct cycle *c, const struct run_bytes *r)
{
    struct mf_target *t = c->target;
    uint8_t buf[1024];
    for (uint32_t done = 0; done < r->len;) {
        uint32_t n = r->len - done < sizeof buf ? r->len - done : (uint32_t)sizeof buf;
        uint64_t addr = r->address + done;
        t->error[0] = '\0';
        int err = t->ops->read(t, addr, buf, n);
        if (err) {
            fail(c, err, "verify: read at 0x%llX: %s", (unsigned long long)addr,
                 target_text(c, err));
            return err;
        }
        /* A block that is all compared and equal is passed in one comparison. */
        if ((!r->touched || bits_test(r->touched, r->off + done, n, true)) &&
            memcmp(buf, r->bytes + done, n) == 0) {
            done += n;
            continue;
        }
        for (uint32_t i = 0; i < n; i++) {
            if (!run_counts(r, done + i))
                continue;
            if (buf[i] != r->bytes[done + i]) {
                if (c->env->sealed) {
                    c->differs = true;
                    break;
                }
                fail(c, MF_EVERIFY, "verify failed at 0x%llX (expected 0x%02X, read 0x%02X)",
                     (unsigned long long)(addr + i), r->bytes[done + i], buf[i]);
                return MF_EVERIFY;
            }
        }
        done += n;
    }
    return 0;
}

/* Held data that no longer matches the CRC its load took: the cycle stops, as for a data file
 * that can no longer be read (a bit that flipped in memory would go into every device). */
static int held_changed(struct cycle *c, uint64_t address, uint32_t length)
{
    c->stage = MF_FAIL_DATA_FILE;
    fail(c, MF_ECORRUPT,
         "%s: the data held in memory for 0x%llX-0x%llX changed since the setup was loaded",
         c->file ? c->file->path : "a data file", (unsigned long long)address,
         (unsigned long long)(address + length - 1));
    return MF_ECORRUPT;
}

/* Held bytes sent with the load's CRC must still match it before a readback compares the device
 * with them (after a CRC the device refused, or that differed: then the change in memory is the
 * cause, and the daemon loads the setup afresh instead of failing every device). */
static int held_intact(struct cycle *c, const struct run_bytes *r)
{
    if (r->crc && mf_target_crc(MF_TARGET_CRC_INIT, r->bytes, r->len) != *r->crc)
        return held_changed(c, r->address, r->len);
    return 0;
}

/* Keeps a programmed run for verify_runs(); a run with bytes nobody placed (they hold whatever
 * the device has) or no memory for the list sends the verify pass back to the data. */
static void run_record(struct cycle *c, const struct run_bytes *r, bool all_placed)
{
    if (!all_placed) {
        c->runs_valid = false;
        return;
    }
    if (c->run_count == c->run_cap) {
        size_t cap = c->run_cap ? c->run_cap * 2 : 64;
        struct run_crc *grown = realloc(c->runs, cap * sizeof *grown);
        if (!grown) {
            c->runs_valid = false;
            return;
        }
        c->runs = grown;
        c->run_cap = cap;
    }
    uint32_t crc = r->crc ? *r->crc : mf_target_crc(MF_TARGET_CRC_INIT, r->bytes, r->len);
    c->runs[c->run_count++] = (struct run_crc){r->address, r->len, crc, 0};
}

/* Programs or verifies one run of whole write units. */
static int run_bytes_do(struct cycle *c, const struct run_bytes *r)
{
    struct mf_target *t = c->target;
    uint64_t addr = r->address;
    uint32_t len = r->len;
    /* Only runs whose every byte is known can be kept (program) or compared by CRC (verify). */
    bool all = !r->touched || bits_test(r->touched, r->off, len, true);
    t->error[0] = '\0';
    if (c->pass == PASS_PROGRAM) {
        int err = t->ops->program(t, addr, r->bytes, len);
        if (err) {
            /* The sim names the byte that failed itself ("program at 0x...: ..."). */
            const char *text = target_text(c, err);
            if (strncmp(text, "program at 0x", 13) == 0)
                fail(c, err, "%s", text);
            else
                fail(c, err, "program at 0x%llX: %s", (unsigned long long)addr, text);
        } else if (c->runs_valid)
            run_record(c, r, all);
        return err;
    }
    if (!c->verify_readback && t->ops->crc && all) {
        uint32_t crc;
        int err = t->ops->crc(t, addr, len, &crc);
        if (err == MF_EACCES || err == MF_ENOTSUP)
            return held_intact(c, r) ? MF_ECORRUPT : verify_readback(c, r);
        if (err) {
            fail(c, err, "verify: CRC at 0x%llX: %s", (unsigned long long)addr,
                 target_text(c, err));
            return err;
        }
        if (crc == (r->crc ? *r->crc : mf_target_crc(MF_TARGET_CRC_INIT, r->bytes, len)))
            return 0;
        /* Sealed: no readback, and nothing else either before the next request (the held
         * bytes are checked once the pass is done, whatever differed). */
        if (c->env->sealed) {
            c->differs = true;
            return 0;
        }
        /* Find the first difference when the device lets us read it. */
        int rerr = held_intact(c, r);
        if (!rerr)
            rerr = verify_readback(c, r);
        if (rerr)
            return rerr;
        fail(c, MF_EVERIFY, "verify failed at 0x%llX+%u (CRC mismatch)", (unsigned long long)addr,
             len);
        return MF_EVERIFY;
    }
    return verify_readback(c, r);
}

/* Programs or verifies what the window collected, write unit by write unit, and closes it. */
static int window_flush(struct cycle *c, bool alone)
{
    struct mf_slot *s = c->slot;
    if (!s->window_open)
        return 0;
    window_overlays(c, alone);
    s->window_open = false;
    int err = cancelled(c);
    if (err)
        return err;
    uint32_t off = 0;
    while (off < MF_WINDOW_SIZE) {
        uint64_t addr = s->window_start + off;
        const struct mf_flash_region *r = mf_profile_region(c->job->profile, addr);
        if (!r) {
            if (bit(s->touched, off)) {
                fail(c, MF_ERANGE, "data at 0x%llX is outside the flash", (unsigned long long)addr);
                return MF_ERANGE;
            }
            off++;
            continue;
        }
        uint32_t unit = r->write_size;
        uint64_t region_end = r->start + r->size;
        /* Extend a run over consecutive touched units inside this region. */
        uint32_t start = off / unit * unit;
        uint64_t left = region_end - s->window_start;
        uint32_t limit = left < MF_WINDOW_SIZE ? (uint32_t)left : MF_WINDOW_SIZE;
        uint32_t end = touched_run_end(s->touched, start, limit, unit);
        if (end == start) {
            /* Skip untouched bytes eight at a time up to the next touched one. */
            uint32_t next = start + unit;
            while (next + 64 <= MF_WINDOW_SIZE && s->window_start + next + 64 <= region_end &&
                   (next & 63) == 0 && !any_touched(s->touched, next, 64))
                next += 64;
            off = next / unit * unit > start ? next / unit * unit : start + unit;
            continue;
        }
        struct run_bytes run = window_bytes(s, start, end - start);
        err = run_bytes_do(c, &run);
        if (err)
            return err;
        off = end;
    }
    if (c->pass == PASS_PROGRAM && c->runs_valid && c->run_count > 0)
        c->runs[c->run_count - 1].placed += s->window_placed;
    c->done += s->window_placed;
    emit(c);
    return 0;
}

/* Can the window at `start` be programmed or verified straight from data that fills all of it?
 * Only when it lies in one flash region in whole write units and no overlay of the job falls
 * into it: then there is nothing to collect, lay over or leave out. */
static bool window_direct(const struct cycle *c, uint64_t start)
{
    const struct mf_slot *s = c->slot;
    const struct mf_flash_region *r = mf_profile_region(c->job->profile, start);
    if (!r || r->size < MF_WINDOW_SIZE || start - r->start > r->size - MF_WINDOW_SIZE ||
        r->write_size == 0 || MF_WINDOW_SIZE % r->write_size != 0 ||
        (start - r->start) % r->write_size != 0)
        return false;
    for (unsigned i = 0; i < s->overlay_count; i++) {
        const struct mf_overlay *o = &s->overlays[i];
        if (overlay_in_job(o, c->job_index) && o->address < start + MF_WINDOW_SIZE &&
            o->address + o->length > start)
            return false;
    }
    return true;
}

/* A whole window of data programmed or verified from where it is (see window_direct). */
static int window_from(struct cycle *c, uint64_t start, const uint8_t *bytes)
{
    int err = cancelled(c);
    if (err)
        return err;
    /* Held data comes with the window's CRC. */
    const struct mf_held_crc *held =
        c->file && c->file->blocks ? mf_datafile_window_crc(c->file, start, bytes) : NULL;
    struct run_bytes run = {start, bytes, MF_WINDOW_SIZE, NULL, 0, held ? &held->crc : NULL};
    err = run_bytes_do(c, &run);
    if (err)
        return err;
    if (c->pass == PASS_PROGRAM && c->runs_valid && c->run_count > 0)
        c->runs[c->run_count - 1].placed += MF_WINDOW_SIZE;
    c->done += MF_WINDOW_SIZE;
    emit(c);
    return 0;
}

/* The sink every data record of a pass goes through. */
static int pass_data(void *context, uint64_t address, const uint8_t *bytes, size_t length,
                     uint64_t where)
{
    (void)where;
    struct cycle *c = context;
    struct mf_slot *s = c->slot;
    while (length > 0) {
        uint64_t start = address & ~(uint64_t)(MF_WINDOW_SIZE - 1);
        if (!s->window_open || s->window_start != start) {
            int err = window_flush(c, false);
            if (err)
                return err;
            if (address == start && length >= MF_WINDOW_SIZE && window_direct(c, start)) {
                /* Nothing to collect: no copy into the window. */
                err = window_from(c, start, bytes);
                if (err)
                    return err;
                address += MF_WINDOW_SIZE;
                bytes += MF_WINDOW_SIZE;
                length -= MF_WINDOW_SIZE;
                continue;
            }
            window_open(c, start);
        }
        uint32_t off = (uint32_t)(address - start);
        uint32_t n = MF_WINDOW_SIZE - off < length ? MF_WINDOW_SIZE - off : (uint32_t)length;
        memcpy(s->window + off, bytes, n);
        bits_set(s->touched, off, n);
        s->window_placed += n;
        address += n;
        bytes += n;
        length -= n;
    }
    return 0;
}

/* The sink of a data file's records: bytes another file of the job wins ([job] overlap) are left
 * out, the rest goes to the window. */
static int pass_file_data(void *context, uint64_t address, const uint8_t *bytes, size_t length,
                          uint64_t where)
{
    struct cycle *c = context;
    const struct mf_datafile *f = c->file;
    if (!f->excluded_count)
        return pass_data(c, address, bytes, length, where);
    uint64_t end = address + length, at = address;
    /* The first range left out that ends after `address`. */
    size_t lo = 0, hi = f->excluded_count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (f->excluded[mid].end <= address)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (size_t i = lo; i < f->excluded_count && at < end; i++) {
        const struct mf_range *x = &f->excluded[i];
        if (x->start >= end)
            break;
        if (x->start > at) {
            int err = pass_data(c, at, bytes + (at - address), (size_t)(x->start - at), where);
            if (err)
                return err;
        }
        if (x->end > at)
            at = x->end;
    }
    return at < end ? pass_data(c, at, bytes + (at - address), (size_t)(end - at), where) : 0;
}

/* The bytes a pass of the current job goes over: its data, and its overlays unless they are not
 * compared (verify alone). */
static uint64_t pass_total(const struct cycle *c)
{
    const struct mf_slot *s = c->slot;
    uint64_t total = c->job->data_bytes;
    for (unsigned i = 0; i < s->overlay_count && !c->exclude_overlays; i++) {
        if (overlay_in_job(&s->overlays[i], c->job_index))
            total += s->overlays[i].length;
    }
    return total;
}

/* Does [start, start + length) meet a range file `f` leaves out? */
static bool excluded_meets(const struct mf_datafile *f, uint64_t start, uint64_t length)
{
    for (size_t i = 0; i < f->excluded_count; i++) {
        if (f->excluded[i].start < start + length && start < f->excluded[i].end)
            return true;
    }
    return false;
}

/* Will the device's CRC of the job's whole windows be compared with what the load took (the
 * program pass's runs, or a verify alone)? Else held data is checked in memory. */
static bool held_verified(const struct cycle *c, const struct mf_job *job)
{
    enum mf_cycle_action a = c->request->action;
    return job->verify == MF_VERIFY_CRC && c->target->ops->crc &&
           (a == MF_ACTION_AUTO || a == MF_ACTION_VERIFY);
}

/* Held data against the CRCs taken at its load: every block but the whole windows that go to the
 * device as they are with the load's CRC, for a CRC verify to vouch for them. Before anything is
 * reserved or the device touched (`early`, when the device's own bytes are not known yet: every
 * whole window counts as vouched for), so that a bit flipped in memory since the load costs no
 * count and no device; then at the start of each pass, and once the job's last pass has used
 * them, so that no flip between the checks goes unseen. A block that no longer matches stops
 * the cycle, as a data file that can no longer be read does: otherwise the flip would go into
 * every device from then on. */
static int held_check(struct cycle *c, const struct mf_job *job, const struct mf_datafile *f,
                      bool early)
{
    /* A sealed verify that found a difference vouches for nothing. */
    bool verified = held_verified(c, job) && !c->differs;
    for (size_t i = 0; i < f->block_count; i++) {
        const struct mf_held_crc *b = &f->blocks[i];
        bool vouched = verified && b->length == MF_WINDOW_SIZE;
        if (vouched &&
            (early || (window_direct(c, b->address) && !excluded_meets(f, b->address, b->length))))
            continue;
        if (mf_target_crc(MF_TARGET_CRC_INIT, b->bytes, b->length) != b->crc) {
            c->file = f;
            return held_changed(c, b->address, b->length);
        }
    }
    return 0;
}

/* held_check on every file of the job (a file not held has no blocks). */
static int held_check_job(struct cycle *c, const struct mf_job *job, bool early)
{
    int err = 0;
    for (unsigned k = 0; k < job->file_count && !err; k++)
        err = held_check(c, job, &job->files[k], early);
    return err;
}

/* One pass over the job's data and overlays: program it or verify it. */
static int run_pass(struct cycle *c, enum pass_kind kind)
{
    struct mf_slot *s = c->slot;
    const struct mf_job *job = c->job;
    c->pass = kind;
    c->stage = kind == PASS_VERIFY ? MF_FAIL_VERIFY : MF_FAIL_TARGET;
    s->window_open = false;
    for (unsigned i = 0; i < s->overlay_count; i++)
        s->overlays[i].pass = s->overlays[i].done;
    phase(c, kind == PASS_PROGRAM ? MF_PHASE_PROGRAMMING : MF_PHASE_VERIFYING, pass_total(c));
    struct mf_image_sink sink = {pass_file_data, NULL, c};
    for (unsigned i = 0; i < job->file_count; i++) {
        const struct mf_datafile *f = &job->files[i];
        int err;
        c->file = f;
        if (f->held) {
            size_t n;
            const struct mf_image_segment *seg = mf_image_segments(f->held, &n);
            err = held_check(c, c->job, f, false);
            for (size_t k = 0; k < n && !err; k++)
                err = pass_file_data(c, seg[k].address, seg[k].data, (size_t)seg[k].size, 0);
        } else {
            struct mf_area_entry e;
            err = c->env->area->stat(c->env->area, f->path, &e);
            if (!err && e.size != f->size) {
                c->stage = MF_FAIL_DATA_FILE;
                fail(c, MF_ECONFLICT, "%s changed since the setup was loaded", f->path);
                return MF_ECONFLICT;
            }
            struct mf_image_error ierr;
            c->stage = MF_FAIL_DATA_FILE;
            if (!err)
                err = mf_datafile_stream(c->env->area, f->path, f->format, f->base, f->size, &sink,
                                         s->io, sizeof s->io, &ierr);
            if (err && !c->result->error)
                fail(c, err, "%s: %s", f->path, ierr.text[0] ? ierr.text : mf_strerror(err));
            c->stage = kind == PASS_VERIFY ? MF_FAIL_VERIFY : MF_FAIL_TARGET;
        }
        if (!err)
            err = window_flush(c, false); /* files never share a write unit (mf_setup checks) */
        if (err)
            return err;
    }
    /* Overlays no data covered: their own windows. */
    if (!c->exclude_overlays) {
        for (unsigned i = 0; i < s->overlay_count; i++) {
            struct mf_overlay *o = &s->overlays[i];
            if (!overlay_in_job(o, c->job_index))
                continue;
            for (uint32_t k = 0; k < o->length; k++) {
                if ((o->pass >> k) & 1)
                    continue;
                uint64_t start = (o->address + k) & ~(uint64_t)(MF_WINDOW_SIZE - 1);
                int err = 0;
                if (!s->window_open || s->window_start != start) {
                    err = window_flush(c, true);
                    window_open(c, start);
                }
                if (err)
                    return err;
                window_overlays(c, true);
            }
        }
        int err = window_flush(c, true);
        if (err)
            return err;
    }
    return 0;
}

/* The verify pass of a job whose program pass this cycle kept every run (run_record): the
 * device's CRC of each run against the CRC of what was written. A mismatch, or a device that
 * cannot compute a CRC there, goes back to the full pass over the data, which names the first
 * differing byte where the device can be read. */
static int verify_runs(struct cycle *c)
{
    struct mf_target *t = c->target;
    c->pass = PASS_VERIFY;
    c->stage = MF_FAIL_VERIFY;
    phase(c, MF_PHASE_VERIFYING, pass_total(c));
    for (size_t i = 0; i < c->run_count; i++) {
        const struct run_crc *run = &c->runs[i];
        int err = cancelled(c);
        if (err)
            return err;
        uint32_t crc;
        t->error[0] = '\0';
        err = t->ops->crc(t, run->address, run->length, &crc);
        if (err == MF_EACCES || err == MF_ENOTSUP)
            return run_pass(c, PASS_VERIFY);
        if (err) {
            fail(c, err, "verify: CRC at 0x%llX: %s", (unsigned long long)run->address,
                 target_text(c, err));
            return err;
        }
        if (crc != run->crc) {
            if (c->env->sealed) {
                c->differs = true; /* every run is asked for, whatever differs */
            } else {
                err = run_pass(c, PASS_VERIFY);
                if (!err) {
                    fail(c, MF_EVERIFY, "verify failed at 0x%llX+%u (CRC mismatch)",
                         (unsigned long long)run->address, run->length);
                    err = MF_EVERIFY;
                }
                return err;
            }
        }
        if (run->placed) {
            c->done += run->placed;
            emit(c);
        }
    }
    return 0;
}

/* ---- erasing ---- */

struct sector {
    uint64_t start;
    uint32_t size;
};

static int sector_compare(const void *a, const void *b)
{
    const struct sector *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start;
}

/* Erases a sorted list of sectors, merging neighbours into one request. */
static int erase_list(struct cycle *c, struct sector *list, size_t n)
{
    struct mf_target *t = c->target;
    for (size_t i = 0; i < n;) {
        uint64_t start = list[i].start, end = start + list[i].size;
        size_t k = i + 1;
        while (k < n && list[k].start <= end) {
            if (list[k].start + list[k].size > end)
                end = list[k].start + list[k].size;
            k++;
        }
        /* Stay inside one region. */
        const struct mf_flash_region *r = mf_profile_region(c->job->profile, start);
        if (r && end > r->start + r->size)
            end = r->start + r->size;
        int err = cancelled(c);
        if (err)
            return err;
        t->error[0] = '\0';
        err = t->ops->erase(t, start, end - start);
        if (err) {
            fail(c, err, "erase 0x%llX-0x%llX: %s", (unsigned long long)start,
                 (unsigned long long)(end - 1), target_text(c, err));
            return err;
        }
        c->done += end - start;
        emit(c);
        while (i < n && list[i].start < end)
            i++;
    }
    return 0;
}

/* Adds the sectors covering [start, end) to the list (flushing it when full). */
static int erase_add(struct cycle *c, struct sector *list, size_t *n, uint64_t start, uint64_t end)
{
    uint64_t a = start;
    while (a < end) {
        const struct mf_flash_region *r = mf_profile_region(c->job->profile, a);
        if (!r) {
            fail(c, MF_ERANGE, "0x%llX is outside the flash", (unsigned long long)a);
            return MF_ERANGE;
        }
        uint64_t s;
        uint32_t size;
        mf_region_sector(r, a, &s, &size);
        if (!*n || list[*n - 1].start != s) {
            if (*n == MF_ERASE_LIST_MAX) {
                qsort(list, *n, sizeof *list, sector_compare);
                int err = erase_list(c, list, *n);
                if (err)
                    return err;
                *n = 0;
            }
            list[(*n)++] = (struct sector){s, size};
        }
        a = s + size;
    }
    return 0;
}

static int erase_job(struct cycle *c)
{
    const struct mf_job *job = c->job;
    struct mf_target *t = c->target;
    if (job->erase == MF_ERASE_NONE)
        return 0;
    uint64_t started = now(c);
    int err;
    if (job->erase == MF_ERASE_CHIP) {
        uint64_t total = 0;
        for (unsigned i = 0; i < job->profile->flash_count; i++)
            total += job->profile->flash[i].size;
        phase(c, MF_PHASE_ERASING, total);
        t->error[0] = '\0';
        err = t->ops->erase_chip(t);
        if (err)
            fail(c, err, "chip erase: %s", target_text(c, err));
        else {
            c->done = total;
            emit(c);
        }
    } else {
        /* The window's memory serves as the sector list: nothing else uses it now. */
        struct sector *list = (struct sector *)(void *)c->slot->window;
        size_t n = 0;
        phase(c, MF_PHASE_ERASING, 0);
        err = 0;
        for (size_t i = 0; i < job->range_count && !err; i++)
            err = erase_add(c, list, &n, job->ranges[i].start, job->ranges[i].end);
        for (unsigned i = 0; i < c->slot->overlay_count && !err && !c->exclude_overlays; i++) {
            const struct mf_overlay *o = &c->slot->overlays[i];
            uint64_t all = o->length == 64 ? ~0ull : (1ull << o->length) - 1;
            if (overlay_in_job(o, c->job_index) && o->done != all)
                err = erase_add(c, list, &n, o->address, o->address + o->length);
        }
        if (!err) {
            qsort(list, n, sizeof *list, sector_compare);
            /* Progress counts the bytes of the sectors erased. */
            for (size_t i = 0; i < n; i++) {
                if (i == 0 || list[i].start != list[i - 1].start)
                    c->total += list[i].size;
            }
            err = erase_list(c, list, n);
        }
    }
    c->result->erase_ms += (uint32_t)(now(c) - started);
    return err;
}

/* ---- the cycle ---- */

static bool modifies(enum mf_cycle_action action)
{
    return action == MF_ACTION_AUTO || action == MF_ACTION_PROGRAM || action == MF_ACTION_ERASE;
}

static bool consumes(enum mf_cycle_action action)
{
    return action == MF_ACTION_AUTO || action == MF_ACTION_PROGRAM;
}

static int run_job(struct cycle *c)
{
    const struct mf_job *job = c->job;
    struct mf_target *t = c->target;
    enum mf_cycle_action action = c->request->action;
    int err = 0;
    c->stage = MF_FAIL_TARGET;
    if (action == MF_ACTION_AUTO || action == MF_ACTION_PROGRAM || action == MF_ACTION_ERASE)
        err = erase_job(c);
    c->run_count = 0;
    c->runs_valid = action == MF_ACTION_AUTO && job->verify == MF_VERIFY_CRC && t->ops->crc;
    if (!err && (action == MF_ACTION_AUTO || action == MF_ACTION_PROGRAM)) {
        uint64_t started = now(c);
        err = run_pass(c, PASS_PROGRAM);
        c->result->program_ms += (uint32_t)(now(c) - started);
    }
    bool verify =
        action == MF_ACTION_VERIFY || (action == MF_ACTION_AUTO && job->verify != MF_VERIFY_NONE);
    if (!err && verify) {
        uint64_t started = now(c);
        c->verify_readback = job->verify == MF_VERIFY_READBACK;
        c->differs = false;
        err = c->runs_valid ? verify_runs(c) : run_pass(c, PASS_VERIFY);
        if (!err && c->differs) {
            /* Held bytes that changed in memory explain it (102), as when not sealed. */
            err = held_check_job(c, job, false);
            if (!err) {
                fail(c, MF_EVERIFY,
                     "verify failed (the setup runs from the secure area: where is not shown)");
                err = MF_EVERIFY;
            }
        }
        c->result->verify_ms += (uint32_t)(now(c) - started);
    }
    /* The held bytes the passes used, once more now that they are done with them. */
    if (!err && action != MF_ACTION_ERASE)
        err = held_check_job(c, job, false);
    if (!err) {
        /* The overlays this job laid down are done for the jobs after it. */
        for (unsigned i = 0; i < c->slot->overlay_count; i++)
            c->slot->overlays[i].done = c->slot->overlays[i].pass;
    }
    c->stage = MF_FAIL_TARGET;
    if (!err && action == MF_ACTION_AUTO && job->protect) {
        phase(c, MF_PHASE_PROTECTING, 0);
        t->error[0] = '\0';
        err = t->ops->protect(t, job->protect);
        if (err)
            fail(c, err, "readout protection: %s", target_text(c, err));
    }
    if (!err && action == MF_ACTION_AUTO && job->start) {
        phase(c, MF_PHASE_STARTING, 0);
        t->error[0] = '\0';
        err = t->ops->start(t, job->start);
        if (err)
            fail(c, err, "start: %s", target_text(c, err));
    }
    return err;
}

static void uid_hex(const struct mf_cycle_result *r, char *out)
{
    static const char digits[] = "0123456789ABCDEF";
    for (uint32_t i = 0; i < r->uid_length; i++) {
        out[2 * i] = digits[r->uid[i] >> 4];
        out[2 * i + 1] = digits[r->uid[i] & 15];
    }
    out[2 * r->uid_length] = '\0';
    if (!r->uid_length)
        strcpy(out, "-");
}

static const char *action_name(enum mf_cycle_action a)
{
    static const char *const names[] = {"AUTO", "ERASE", "PROGRAM", "VERIFY", "START"};
    return names[a];
}

/* Appends ` "name"` for job `j` to `out` (`size` bytes, NUL-terminated; cut when full). */
static void add_job_name(const struct cycle *c, unsigned j, char *out, size_t size)
{
    size_t n = strlen(out);
    if (n < size)
        snprintf(out + n, size - n, " \"%s\"", c->project->jobs[j].name);
}

/* One FLASHER.LOG line per cycle (the layout docs/jobs.md documents):
 *   slot S ACTION project "P" uid U serial N OK (timings)[, L left], job "J1" "J2" ...
 *   slot S ACTION project "P" uid U serial N ERROR what[ (count consumed)| (count perhaps
 *       consumed)] (timings)[, L left],
 *       job "J" | job -
 * The job field comes last so that older readers of the fields before it keep working. */
static int log_result(struct cycle *c)
{
    struct mf_flashlog *log = c->env->log;
    const struct mf_cycle_result *r = c->result;
    if (!log)
        return 0;
    char uid[2 * MF_PROFILE_UID_MAX + 1], serial[24] = "-";
    uid_hex(r, uid);
    if (r->has_serial)
        snprintf(serial, sizeof serial, "%llu", (unsigned long long)r->serial);
    const char *project = c->project ? c->project->name : "-";
    char left[32] = "";
    if (r->has_remaining)
        snprintf(left, sizeof left, ", %llu left", (unsigned long long)r->remaining);
    char jobs[MF_PROJECT_JOBS_MAX * (MF_SETUP_NAME_MAX + 3) + 1] = "";
    if (r->error && r->failed_job >= 0) {
        add_job_name(c, (unsigned)r->failed_job, jobs, sizeof jobs);
    } else if (!r->error && c->request->action == MF_ACTION_START) {
        add_job_name(c, c->project->job_count - 1, jobs, sizeof jobs); /* its start mode */
    } else if (!r->error) {
        for (unsigned j = 0; j < c->project->job_count; j++)
            add_job_name(c, j, jobs, sizeof jobs);
    }
    char result[MF_CYCLE_MESSAGE_MAX + 32];
    if (r->error)
        snprintf(result, sizeof result, "ERROR %s%s", r->message,
                 r->consumed        ? " (count consumed)"
                 : r->count_unknown ? " (count perhaps consumed)"
                                    : "");
    else
        snprintf(result, sizeof result, "OK");
    return mf_flashlog_write(log,
                             "slot %u %s project \"%s\" uid %s serial %s %s (Total %u.%03us, Erase "
                             "%u.%03us, Prog %u.%03us, Verify %u.%03us)%s, job%s",
                             c->slot->number, action_name(c->request->action), project, uid, serial,
                             result, r->total_ms / 1000, r->total_ms % 1000, r->erase_ms / 1000,
                             r->erase_ms % 1000, r->program_ms / 1000, r->program_ms % 1000,
                             r->verify_ms / 1000, r->verify_ms % 1000, left, jobs[0] ? jobs : " -");
}

int mf_cycle_run(const struct mf_cycle_env *env, struct mf_slot *slot,
                 const struct mf_cycle_request *request, struct mf_cycle_result *result)
{
    struct cycle cycle = {.env = env,
                          .slot = slot,
                          .target = slot->target,
                          .request = request,
                          .result = result,
                          .job_index = -1};
    struct cycle *c = &cycle;
    struct mf_target *t = slot->target;
    memset(result, 0, sizeof *result);
    result->failed_job = -1;
    atomic_store(&t->cancel, 0); /* a cancel meant for an earlier cycle does not stop this one */
    uint64_t started = now(c);
    slot->overlay_count = 0;
    c->project = request->project ? request->project : mf_setup_project(env->setup);
    c->exclude_overlays = request->action == MF_ACTION_VERIFY;
    int err = 0;
    bool connected = false;
    phase(c, MF_PHASE_INITIALIZING, 0);
    c->stage = MF_FAIL_NO_SETUP;
    if (!c->project) {
        fail(c, MF_ENOENT, "no project is selected");
        goto done;
    }
    if (env->preflight) {
        char message[MF_CYCLE_MESSAGE_MAX];
        c->stage = MF_FAIL_CONFLICT;
        err = env->preflight(env->preflight_context, message);
        if (err) {
            fail(c, err, "%s", message);
            goto done;
        }
    }
    c->stage = c->project->data_file_error ? MF_FAIL_DATA_FILE : MF_FAIL_SETUP;
    if (c->project->error) {
        fail(c, c->project->error, "%s", c->project->message);
        goto done;
    }
    /* #PROGRAM stops after the program pass: from the secure area it would make devices, each
     * counted and recorded as good, without the readout protection the owner's job ends with. */
    if (env->sealed && request->action == MF_ACTION_PROGRAM) {
        for (unsigned j = 0; j < c->project->job_count; j++) {
            const struct mf_job *job = &c->project->jobs[j];
            if (job->protect) {
                c->stage = MF_FAIL_SECURE;
                err = MF_EPERM;
                fail(c, err,
                     "#PROGRAM leaves out the readout protection of job %s (protect = %u), which "
                     "runs from the secure area: use #AUTO",
                     job->name, job->protect);
                goto done;
            }
        }
    }
    if (request->action != MF_ACTION_ERASE && request->action != MF_ACTION_START) {
        for (unsigned j = 0; j < c->project->job_count && !err; j++)
            err = held_check_job(c, &c->project->jobs[j], true);
        if (err)
            goto done;
    }
    c->stage = MF_FAIL_STORAGE;
    /* No device is touched unless a count is left for it: a reservation under the lock keeps
     * slots started together from connecting to more devices than there are counts. */
    if (consumes(request->action)) {
        struct mf_tally tally = {0};
        char message[MF_AREA_MESSAGE_MAX];
        unsigned index = (unsigned)(c->project - env->setup->projects);
        struct mf_cycle_reserved *r = env->reserved;
        mf_lock_take(env->authorize);
        err = env->area->peek(env->area, env->setup, index, &tally, message);
        /* The project's own count against what its other cycles hold, the root's against what
         * all of them hold; the one that runs out names the count and what others hold. */
        unsigned mine = r ? r->project[index] : 0, all = r ? r->total : 0;
        bool project_out = tally.project_limited && tally.project_left <= mine;
        bool root_out = tally.root_limited && tally.root_left <= all;
        if (!err && !project_out && !root_out && r) {
            r->total++;
            r->project[index]++;
            c->reserved = true;
        }
        mf_lock_give(env->authorize);
        if (err) {
            fail(c, err, "cannot read %s: %s", MF_FILE_CNTDOWN, mf_strerror(err));
            goto done;
        }
        if (project_out || root_out) {
            bool by_root = root_out && (!project_out || tally.root_left < tally.project_left);
            uint64_t left = by_root ? tally.root_left : tally.project_left;
            unsigned held = by_root ? all : mine;
            fail(c, MF_EEXHAUSTED, "no programming cycles left (%s%s%s = %llu%s)",
                 by_root ? "" : c->project->folder, by_root ? "" : "/", MF_FILE_CNTDOWN,
                 (unsigned long long)left, held ? ", the rest taken by other slots" : "");
            goto done;
        }
    }

    const struct mf_profile *profile = c->project->jobs[0].profile;
    t->profile = profile;
    t->error[0] = '\0';
    phase(c, MF_PHASE_CONNECTING, 0);
    c->stage = MF_FAIL_CONNECT;
    err = t->ops->connect(t);
    if (err) {
        fail(c, err, "connect: %s", target_text(c, err));
        goto done;
    }
    connected = true;
    /* Always, when the device has one: the log names it, and [signature] signs it (mf_setup
     * refuses [signature] for a device without one). */
    if (profile->uid_length) {
        t->error[0] = '\0';
        err = t->ops->read_uid(t, result->uid, profile->uid_length);
        if (err) {
            fail(c, err, "read UID: %s", target_text(c, err));
            goto done;
        }
        result->uid_length = profile->uid_length;
    }
    if (consumes(request->action)) {
        err = authorize(c);
        if (err)
            goto done;
    } else if (c->exclude_overlays) {
        device_bytes_places(c);
    }
    c->stage = MF_FAIL_TARGET;
    if (modifies(request->action)) {
        phase(c, MF_PHASE_UNLOCKING, 0);
        t->error[0] = '\0';
        err = t->ops->unlock(t);
        if (err) {
            fail(c, err, "unlock: %s", target_text(c, err));
            goto done;
        }
    }
    if (request->action == MF_ACTION_START) {
        const struct mf_job *last = &c->project->jobs[c->project->job_count - 1];
        phase(c, MF_PHASE_STARTING, 0);
        t->error[0] = '\0';
        err = t->ops->start(t, last->start ? last->start : MF_START_RESET);
        if (err)
            fail(c, err, "start: %s", target_text(c, err));
        goto done;
    }
    for (unsigned j = 0; j < c->project->job_count && !err; j++) {
        c->job = &c->project->jobs[j];
        c->job_index = (int)j;
        err = run_job(c);
    }
done:
    if (c->reserved) {
        mf_lock_take(env->authorize);
        release_reserved(c);
        mf_lock_give(env->authorize);
    }
    c->job = NULL; /* letting the device go is no job's step (docs/jobs.md: job -) */
    if (connected) {
        t->error[0] = '\0';
        int derr = t->ops->disconnect(t);
        if (derr && !result->error)
            fail(c, derr, "disconnect: %s", target_text(c, derr));
    }
    free(c->runs);
    result->total_ms = (uint32_t)(now(c) - started);
    result->log_error = log_result(c);
    phase(c, MF_PHASE_READY, 0);
    return result->error;
}

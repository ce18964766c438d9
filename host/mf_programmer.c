/* The programmer at run time (see mf_programmer.h). */
#include "mf_programmer.h"

#include "mf_clock.h"
#include "mf_err.h"
#include "mf_gdb.h"
#include "mf_ini.h"
#include "mf_package.h"
#include "mf_proto.h"
#include "mf_sim.h"
#include "mf_token.h"

#include <errno.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define LOAD_BUFFER_SIZE (256u << 10)

static void say(char *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int refresh_setup(struct mf_programmer *p, char *error);

static void say(char *out, const char *fmt, ...)
{
    if (!out)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out, MF_PROGRAMMER_TEXT_MAX, fmt, ap);
    va_end(ap);
}

/* snprintf that may cut the text (messages are bounded on purpose). */
static void sayn(char *out, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void sayn(char *out, size_t size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out, size, fmt, ap);
    va_end(ap);
}

static void log_stderr(const struct mf_programmer *p, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Logs to stderr, one line per event (journald adds the time). Control characters a message
 * quotes (a file name read from the public area) are shown as <hh>, as in replies: no line of
 * the daemon's log can be forged, no escape sequence reaches a terminal. */
static void log_stderr(const struct mf_programmer *p, int level, const char *fmt, ...)
{
    if (level > p->config.verbose)
        return;
    char line[512], shown[MF_PROTO_ESCAPED_SIZE(sizeof line)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    mf_proto_escape(line, false, shown, sizeof shown);
    fprintf(stderr, "mintflashd: %s\n", shown);
}

static void mutex_lock(void *m)
{
    pthread_mutex_lock(m);
}

static void mutex_unlock(void *m)
{
    pthread_mutex_unlock(m);
}

static uint64_t clock_ms(void *context)
{
    (void)context;
    return mf_clock_ms();
}

static uint32_t random_u32(void)
{
    uint32_t v = 0;
    if (getrandom(&v, sizeof v, 0) != (ssize_t)sizeof v)
        v = (uint32_t)mf_clock_ms() ^ (uint32_t)getpid() << 16;
    return v;
}

void mf_programmer_default_paths(char *storage, char *keystore, char *sim_dir, size_t size)
{
    const char *data = getenv("XDG_DATA_HOME");
    const char *home = getenv("HOME");
    char base[512];
    if (data && *data)
        snprintf(base, sizeof base, "%s/mintflash", data);
    else if (home && *home)
        snprintf(base, sizeof base, "%s/.local/share/mintflash", home);
    else
        snprintf(base, sizeof base, "/tmp/mintflash-%u", (unsigned)getuid());
    if (storage)
        snprintf(storage, size, "%s/storage.img", base);
    if (keystore)
        snprintf(keystore, size, "%s/keystore", base);
    if (sim_dir)
        snprintf(sim_dir, size, "%s/sim", base);
}

/* ---- slot workers ---- */

static void on_event(void *context, const struct mf_cycle_event *event)
{
    struct mf_slot_worker *w = context;
    struct mf_programmer *p = w->owner;
    pthread_mutex_lock(&p->state_lock);
    w->phase = event->phase;
    w->done = event->done;
    w->total = event->total;
    uint64_t origin = w->origin;
    pthread_mutex_unlock(&p->state_lock);
    if (p->sink.event)
        p->sink.event(p->sink.context, origin, event);
}

static int64_t utc_now(void *context)
{
    (void)context;
    return (int64_t)time(NULL);
}

/* The production record of a cycle that took a count, or whose count's write failed in a way that
 * may have taken it. A record that cannot be written stops production (the next cycle's
 * preflight refuses, and tries the records again) rather than let devices go unrecorded. */
static void record_cycle(struct mf_programmer *p, struct mf_slot_worker *w,
                         const struct mf_cycle_request *request,
                         const struct mf_cycle_result *result)
{
    /* A patch line the operator sent (#AUTO PATCH) changed the owner's bytes: the record names
     * it by the start of its SHA-256, so the owner sees which devices got which line. */
    char note[sizeof MF_RECORD_NOTE_OPERATOR_PATCH + 16] = "";
    if (request->patch_line) {
        uint8_t digest[crypto_hash_sha256_BYTES];
        crypto_hash_sha256(digest, (const unsigned char *)request->patch_line,
                           strlen(request->patch_line));
        memcpy(note, MF_RECORD_NOTE_OPERATOR_PATCH, sizeof MF_RECORD_NOTE_OPERATOR_PATCH - 1);
        mf_owner_hex_encode(digest, 8, note + sizeof MF_RECORD_NOTE_OPERATOR_PATCH - 1);
    }
    pthread_mutex_lock(&p->records_mutex);
    if (p->records_open) {
        const struct mf_project *proj = request->project; /* the one the cycle ran */
        struct mf_reclog_entry e = {.project = proj ? proj->name : "",
                                    .slot = w->number,
                                    .uid = result->uid,
                                    .uid_length = result->uid_length,
                                    .has_serial = result->has_serial,
                                    .serial = result->serial,
                                    .ok = result->error == 0,
                                    .count_unknown = result->count_unknown,
                                    .note = note[0] ? note : NULL};
        char message[MF_RECLOG_MESSAGE_MAX];
        uint64_t failures = mf_filebd_failure(&p->file, NULL, 0);
        int err = mf_reclog_append(&p->records, &e, message);
        if (err) {
            /* The storage image's own failure is the cause when there was one (a full host file
             * system says "no space" like a full volume would). */
            char device[MF_FILEBD_MESSAGE_MAX];
            if (mf_filebd_failure(&p->file, device, sizeof device) != failures)
                sayn(message, sizeof message, "production records: the storage image failed: %s",
                     device);
            p->records_open = false; /* the log closed itself: see records_admit */
            if (!p->records_problem[0])
                sayn(p->records_problem, sizeof p->records_problem, "%s", message);
            log_stderr(p, 0, "slot %u: %s", w->number, message);
            mf_flashlog_write(&p->log, "ERROR %s", message);
        }
    } else if (p->records_problem[0]) {
        /* Closed by another slot's failure: a count this cycle took is recorded as
         * "unrecorded" when the records open again (a count perhaps taken, if it landed). */
        log_stderr(p, 0, "slot %u: no production record for this cycle: %s", w->number,
                   p->records_problem);
    }
    pthread_mutex_unlock(&p->records_mutex);
}

static void *worker_main(void *arg)
{
    struct mf_slot_worker *w = arg;
    struct mf_programmer *p = w->owner;
    pthread_mutex_lock(&p->state_lock);
    for (;;) {
        while (!w->has_job && !p->stopping)
            pthread_cond_wait(&p->state_cond, &p->state_lock);
        if (p->stopping && !w->has_job)
            break;
        w->has_job = false;
        struct mf_cycle_request request = w->request;
        uint64_t origin = w->origin;
        /* The env is read under the lock: a reboot waits until no slot is busy. */
        struct mf_cycle_env env = p->env;
        env.event = on_event;
        env.event_context = w;
        /* The project selected now is the one this cycle runs and records: a #SELECT while it
         * runs (the setup stays loaded until no slot is busy) concerns the next cycle. */
        request.project = env.setup ? mf_setup_project(env.setup) : NULL;
        pthread_mutex_unlock(&p->state_lock);

        if (mf_gdb_is(&w->target)) {
            /* The project's [gdb] settings (its first job's) drive the GDB server. */
            const struct mf_project *proj = request.project;
            mf_gdb_set_options(&w->target, proj && proj->job_count ? &proj->jobs[0].gdb : NULL);
        }
        struct mf_cycle_result result;
        mf_cycle_run(&env, w->slot, &request, &result);
        if (result.error)
            log_stderr(p, 0, "slot %u: %s", w->number, result.message);
        else
            log_stderr(p, 1, "slot %u: OK (%u ms)", w->number, result.total_ms);
        if (result.consumed || result.count_unknown)
            record_cycle(p, w, &request, &result);
        if (result.log_error)
            log_stderr(p, 0, "slot %u: FLASHER.LOG: this cycle's line is missing: %s", w->number,
                       mf_strerror(result.log_error));
        pthread_mutex_lock(&p->records_mutex);
        w->admitted = false;
        pthread_mutex_unlock(&p->records_mutex);

        pthread_mutex_lock(&p->state_lock);
        /* Data kept in memory that no longer matches its load (a flipped bit): the next cycle
         * loads the setup afresh from the storage instead of failing again. */
        if (result.failure == MF_FAIL_DATA_FILE && result.error == MF_ECORRUPT)
            p->files_changed = p->reload_setup = true;
        w->result = result;
        w->last_action = request.action;
        w->has_result = true;
        w->busy = false;
        w->phase = MF_PHASE_READY;
        pthread_cond_broadcast(&p->state_cond);
        pthread_mutex_unlock(&p->state_lock);
        if (p->sink.done)
            p->sink.done(p->sink.context, origin, w->number, request.action, &result);
        pthread_mutex_lock(&p->state_lock);
    }
    pthread_mutex_unlock(&p->state_lock);
    return NULL;
}

static int open_target(struct mf_programmer *p, struct mf_slot_worker *w, const char *spec,
                       char *error)
{
    if (strcmp(spec, "sim") == 0) {
        struct mf_sim_options o = {.time_scale = p->config.sim_speed};
        int err = mf_sim_open(&w->target, p->config.sim_dir, w->number, &o);
        if (err) {
            say(error, "slot %u: sim: %s", w->number, w->target.error);
            return err;
        }
        w->target_open = true;
        return 0;
    }
    if (strncmp(spec, "gdb:", 4) == 0) {
        int err = mf_gdb_open(&w->target, spec, NULL);
        if (err) {
            say(error, "slot %u: %s", w->number, w->target.error);
            return err;
        }
        w->target_open = true;
        return 0;
    }
    say(error,
        "slot %u: target '%s': unknown (known: sim, gdb:tcp:HOST:PORT, "
        "gdb:serial:DEVICE[:BAUD])",
        w->number, spec);
    return MF_EINVAL;
}

/* ---- booting ---- */

/* Everything of the current boot goes: the NBD export, setup, log, volume. Called with no slot
 * busy. */
static void shutdown_areas(struct mf_programmer *p)
{
    if (p->nbd.running) {
        mf_nbdserver_stop(&p->nbd);
        log_stderr(p, 0, "file access mode ended: the NBD export is closed");
    }
    if (p->secure_open) {
        /* A clean end: the next start charges nothing of this run's reservation; the counter's
         * step for it gets its production record (or, when they cannot take it now, the next
         * start's mf_reclog_open appends it). After a failed end the next start charges what the
         * counter covers, recorded as "counter-ahead": no run-end record then. */
        char message[MF_SECURE_MESSAGE_MAX > MF_RECLOG_MESSAGE_MAX ? MF_SECURE_MESSAGE_MAX
                                                                   : MF_RECLOG_MESSAGE_MAX];
        bool stepped = false;
        int ended = mf_secure_end_run(&p->secure, &stepped, message);
        if (ended != 0) {
            log_stderr(p, 0, "%s: the next start charges the rest of the reservation", message);
            if (p->fat_mounted)
                mf_flashlog_write(&p->log, "%s: the next start charges the rest of the reservation",
                                  message);
        }
        pthread_mutex_lock(&p->records_mutex);
        struct mf_reclog_entry e = {.run_end = true};
        if (!ended && stepped && p->records_open && mf_reclog_append(&p->records, &e, message) != 0)
            log_stderr(p, 0, "%s", message);
        pthread_mutex_unlock(&p->records_mutex);
    }
    if (p->setup_loaded) {
        mf_setup_free(&p->setup);
        p->setup_loaded = false;
    }
    pthread_mutex_lock(&p->records_mutex);
    p->records_open = false;
    p->records_problem[0] = '\0';
    pthread_mutex_unlock(&p->records_mutex);
    if (p->secure_open) {
        mf_secure_close(&p->secure);
        p->secure_open = false;
        p->from_secure = false;
    }
    if (p->fat_mounted) {
        pthread_mutex_lock(&p->public_mutex);
        mf_fat_unmount(&p->fat);
        p->fat_mounted = false;
        pthread_mutex_unlock(&p->public_mutex);
    }
}

static void entropy(void *context, void *buffer, size_t length)
{
    (void)context;
    uint8_t *p = buffer;
    while (length > 0) {
        ssize_t n = getrandom(p, length, 0);
        if (n <= 0)
            continue; /* EINTR; getrandom never runs dry once the pool is initialised */
        p += n;
        length -= (size_t)n;
    }
}

static bool ends_with(const char *name, const char *suffix)
{
    size_t n = strlen(name), m = strlen(suffix);
    return n > m && mf_ini_name_is(name + n - m, suffix);
}

static void apply_tokens(struct mf_programmer *p);
static void open_records(struct mf_programmer *p);

/* The public area's rule while the secure area holds the setup: nothing but the programmer's own
 * files at its root, or it is not clear which setup should run. A _SECURE folder there is one the
 * last start did not move (refused, failed) or one put there since: the setup that runs is not
 * the one it holds, so no cycle runs until it is moved by a start or removed. */
static int conflict_check(void *context, char *message)
{
    struct mf_programmer *p = context;
    struct mf_fat_dir dir;
    struct mf_fat_stat st;
    int err = 0, r;
    pthread_mutex_lock(&p->public_mutex);
    if (p->fat_mounted) {
        err = mf_fat_opendir(&p->fat, &dir, "");
        while (!err && (r = mf_fat_readdir(&p->fat, &dir, &st)) == 1) {
            if (!mf_setup_public_allowed(st.name, st.is_dir)) {
                sayn(message, MF_CYCLE_MESSAGE_MAX,
                     "the public area holds %s '%.100s' while the secure area holds a setup: "
                     "it is not clear which to use (remove it)",
                     st.is_dir ? "the folder" : "the file", st.name);
                err = MF_ECONFLICT;
            } else if (st.is_dir) { /* the one folder the list allows: _SECURE, not moved */
                sayn(message, MF_CYCLE_MESSAGE_MAX,
                     "the public area holds a _SECURE folder that is not installed (%.200s): "
                     "restart to move it, or remove it to run the installed setup",
                     p->move_error[0] ? p->move_error : "put there after the last start");
                err = MF_ECONFLICT;
            }
        }
    }
    pthread_mutex_unlock(&p->public_mutex);
    return err;
}

static bool open_records_locked(struct mf_programmer *p);

/* The worker whose thread calls (the preflight runs on its slot's thread), or NULL. */
static struct mf_slot_worker *calling_worker(struct mf_programmer *p)
{
    for (unsigned i = 0; i < p->slot_count; i++) {
        if (p->workers[i].thread_started && pthread_equal(p->workers[i].thread, pthread_self()))
            return &p->workers[i];
    }
    return NULL;
}

/* Production stopped because the records could not be written: tried again before each cycle,
 * as a start would (mf_reclog_open cuts a half-written line, takes a record written without its
 * head as the head, and records the cycles left without a record as "unrecorded"). Not while
 * another slot's cycle is past its preflight: it may hold a count whose record is still to come,
 * which would then be recorded twice. Cycles that start meanwhile are refused, before any count. On
 * success the calling slot is admitted. Under records_mutex. */
static int records_admit(struct mf_programmer *p, char *message)
{
    bool others = false;
    for (unsigned i = 0; i < p->slot_count; i++)
        others = others || p->workers[i].admitted;
    if (p->records_problem[0] && others) {
        sayn(message, MF_CYCLE_MESSAGE_MAX,
             "production stopped (tried again when the running cycles are done): %s",
             p->records_problem);
        return MF_EIO;
    }
    if (p->records_problem[0]) {
        char before[sizeof p->records_problem];
        memcpy(before, p->records_problem, sizeof before);
        if (!open_records_locked(p)) {
            sayn(message, MF_CYCLE_MESSAGE_MAX,
                 "production stopped (tried again at each cycle): %s", p->records_problem);
            return MF_EIO;
        }
        log_stderr(p, 0, "production records work again (they had stopped: %s)", before);
        mf_flashlog_write(&p->log, "production records work again (they had stopped: %s)", before);
    }
    struct mf_slot_worker *w = calling_worker(p);
    if (w)
        w->admitted = true;
    return 0;
}

/* Before every cycle, from either area: FLASHER.LOG has room for its line (one per slot, as
 * slots run at once), so that no device goes unlogged. */
static int log_room(void *context, char *message)
{
    struct mf_programmer *p = context;
    char m[MF_FLASHLOG_MESSAGE_MAX];
    int err = mf_flashlog_room(&p->log, p->slot_count, m);
    if (err)
        sayn(message, MF_CYCLE_MESSAGE_MAX, "%s", m);
    return err;
}

/* Before every cycle from the secure area: top-up tokens are applied, the public area holds
 * nothing but the programmer's files, and the production records and FLASHER.LOG can take this
 * cycle's. */
static int preflight(void *context, char *message)
{
    struct mf_programmer *p = context;
    apply_tokens(p);
    int err = conflict_check(p, message);
    if (err)
        return err;
    pthread_mutex_lock(&p->records_mutex);
    err = records_admit(p, message);
    if (!err && p->records_open) {
        char m[MF_RECLOG_MESSAGE_MAX];
        err = mf_reclog_room(&p->records, p->slot_count, m);
        if (err)
            sayn(message, MF_CYCLE_MESSAGE_MAX, "%s", m);
    }
    pthread_mutex_unlock(&p->records_mutex);
    return err ? err : log_room(p, message);
}

static void nbd_log(void *context, enum mf_nbdserver_level level, const char *message)
{
    log_stderr(context, level == MF_NBDSERVER_ERROR ? 0 : 1, "%s", message);
}

/* A programmer pinned to an owner runs only a setup that owner sealed and signed: never the
 * public area's (anyone with file access, or `securearea remove`, could put one there) and never
 * a secure-area setup of another origin. MF_ENOENT with setup_message saying so, or 0. */
static int pin_refuses(struct mf_programmer *p)
{
    if (!p->pinned[0])
        return 0;
    if (p->from_secure && p->secure.has_owner &&
        sodium_memcmp(p->secure.owner, p->pinned_owner, sizeof p->pinned_owner) == 0)
        return 0;
    sayn(p->setup_message, sizeof p->setup_message,
         "this programmer is pinned to owner %s: it runs only a sealed package that owner "
         "signed, and none is installed (%s is not run)",
         p->pinned, p->from_secure ? "a setup of another origin" : "a setup in the public area");
    return MF_ENOENT;
}

static void load_setup(struct mf_programmer *p)
{
    if (p->setup_loaded) {
        mf_setup_free(&p->setup);
        p->setup_loaded = false;
    }
    /* A secure area holding no files (an empty _SECURE was moved) holds no configuration: the
     * public area's setup runs, as the conflict rule only bites when the secure area has some. */
    p->from_secure = p->secure_open && p->secure.present && p->secure.file_count > 0;
    struct mf_area *area = p->from_secure ? &p->secure.area : &p->area.area;
    p->setup_error = pin_refuses(p);
    if (!p->setup_error)
        p->setup_error =
            mf_setup_load(&p->setup, area, p->load_buffer, LOAD_BUFFER_SIZE, p->setup_message);
    if (!p->setup_error) {
        p->setup_loaded = true;
        int selected = p->from_secure ? mf_secure_selected(&p->secure) : -1;
        if (selected >= 0 && (unsigned)selected < p->setup.project_count)
            p->setup.selected = (unsigned)selected; /* #SELECT, recorded in the secure area */
        const struct mf_project *proj = mf_setup_project(&p->setup);
        log_stderr(p, 0, "setup loaded from the %s area: %u project(s), selected %s",
                   p->from_secure ? "secure" : "public", p->setup.project_count,
                   proj ? proj->name : "none");
        for (unsigned i = 0; i < p->setup.project_count; i++) {
            if (p->setup.projects[i].error)
                log_stderr(p, 0, "project %s cannot run: %s", p->setup.projects[i].name,
                           p->setup.projects[i].message);
        }
        uint64_t unheld = proj && !proj->error && !p->from_secure && area->hold_max
                              ? mf_project_unheld_bytes(proj)
                              : 0;
        if (unheld)
            log_stderr(p, 0,
                       "project %s: %llu KiB of its data files are not kept in memory (--hold "
                       "%llu MiB): every cycle reads them from the storage",
                       proj->name, (unsigned long long)((unheld + 1023) >> 10),
                       (unsigned long long)(area->hold_max >> 20));
        p->log.max_bytes = p->setup.log_max_bytes;
        if (p->setup.ignored_keys[0]) {
            log_stderr(p, 0, "the reference's keys have no effect here: %s", p->setup.ignored_keys);
            mf_flashlog_write(&p->log, "the reference's keys have no effect here: %s",
                              p->setup.ignored_keys);
        }
    } else {
        log_stderr(p, 0, "no usable setup: %s", p->setup_message);
    }
    memset(&p->env, 0, sizeof p->env);
    p->env.setup = p->setup_loaded ? &p->setup : NULL;
    p->env.area = area;
    p->env.sealed = p->from_secure;
    p->env.authorize = &p->authorize_lock;
    p->env.reserved = &p->reserved;
    p->env.log = &p->log;
    p->env.now_ms = clock_ms;
    p->env.preflight = p->from_secure ? preflight : log_room;
    p->env.preflight_context = p;
}

static void move_progress(void *context, uint64_t done, uint64_t total)
{
    struct mf_programmer *p = context;
    uint64_t step = total / 10 ? total / 10 : 1;
    if (done == total || done % step < MF_SECURE_CHUNK)
        log_stderr(p, 1, "moving _SECURE: %llu of %llu bytes", (unsigned long long)done,
                   (unsigned long long)total);
}

/* The `_SECURE` folder of a setup that is installed: every file erased, then deleted, the
 * free space wiped, and that recorded. A cut at any point is finished at the next start
 * (boot_secure), and no byte of the files is left on the public area in between. */
static int finish_removal(struct mf_programmer *p)
{
    pthread_mutex_lock(&p->public_mutex);
    int err = mf_fat_remove_tree_wiped(&p->fat, MF_SECURE_FOLDER);
    if (!err || err == MF_ENOENT)
        err = mf_fat_wipe_free(&p->fat);
    pthread_mutex_unlock(&p->public_mutex);
    if (!err)
        err = mf_secure_folder_removed(&p->secure);
    if (err) {
        log_stderr(p, 0, "cannot remove _SECURE from the public area: %s", mf_strerror(err));
        mf_flashlog_write(&p->log, "cannot remove _SECURE from the public area: %s",
                          mf_strerror(err));
    }
    return err;
}

/* Opens the trust anchor the configuration names: the keystore file, or the TPM with its state
 * file beside the keystore path. */
static int open_anchor(struct mf_programmer *p)
{
    if (p->anchor_open)
        return 0;
    int err;
    if (p->config.tpm) {
        char state[700];
        snprintf(state, sizeof state, "%s.tpm", p->config.keystore);
        err = mf_tpm_open(&p->tpm, p->config.tpm, state, true, &p->anchor);
    } else {
        err = mf_keystore_open(&p->keystore, p->config.keystore, true, &p->anchor);
    }
    if (!err)
        p->anchor_open = true;
    return err;
}

static void close_anchor(struct mf_programmer *p)
{
    if (!p->anchor_open)
        return;
    p->anchor.close(&p->anchor);
    p->anchor_open = false;
}

/* The pinned owner's fingerprint, for #INFO (read once: the anchor is not read while cycles run).
 */
static void note_pin(struct mf_programmer *p)
{
    struct mf_anchor_state as;
    p->pinned[0] = '\0';
    if (!p->anchor_open || p->anchor.read_state(&p->anchor, &as) != 0)
        return;
    sodium_memzero(as.key, sizeof as.key);
    if (as.has_owner) {
        struct mf_owner_key k;
        mf_owner_key_from_public(as.owner, &k);
        snprintf(p->pinned, sizeof p->pinned, "%s", k.fingerprint);
        memcpy(p->pinned_owner, as.owner, sizeof p->pinned_owner);
    }
}

/* The programmer's identity: read from the trust anchor, or made there at the first start. */
static int ensure_identity(struct mf_programmer *p)
{
    if (p->has_identity)
        return 0;
    int err = open_anchor(p);
    if (err) {
        /* The programmer runs on (file access, a public-area setup) without an identity, so the
         * reason must show where the operator looks first, not only in FLASHER.LOG. */
        log_stderr(p, 0,
                   "no identity: trust anchor: %s (the secure area and the production records "
                   "need it)",
                   p->anchor.error[0] ? p->anchor.error : mf_strerror(err));
        return err;
    }
    uint8_t secret[MF_ANCHOR_IDENTITY_SIZE];
    bool present = false;
    err = p->anchor.read_identity(&p->anchor, secret, &present);
    if (!err && !present) {
        entropy(NULL, secret, sizeof secret);
        err = p->anchor.write_identity(&p->anchor, secret);
        if (!err) {
            struct mf_owner_identity id;
            mf_owner_identity_derive(secret, &id);
            log_stderr(p, 0, "made this programmer's identity: %s", id.pub.fingerprint);
            mf_owner_identity_wipe(&id);
        }
    }
    if (!err) {
        mf_owner_identity_derive(secret, &p->identity);
        p->has_identity = true;
    }
    note_pin(p);
    sodium_memzero(secret, sizeof secret);
    if (err)
        log_stderr(p, 0, "identity: %s", p->anchor.error);
    return err;
}

/* Reads `length` bytes at `offset` of a package file in the public area, keeping it open. */
struct package_reader {
    struct mf_programmer *p;
    struct mf_fat_file file;
};

static int package_read(void *context, uint64_t offset, void *buffer, size_t length)
{
    struct package_reader *r = context;
    if (offset + length > mf_fat_size(&r->file))
        return MF_EFORMAT;
    pthread_mutex_lock(&r->p->public_mutex);
    int err = mf_fat_seek(&r->p->fat, &r->file, (uint32_t)offset);
    int n = err ? err : mf_fat_read(&r->p->fat, &r->file, buffer, (uint32_t)length);
    pthread_mutex_unlock(&r->p->public_mutex);
    if (n < 0)
        return n;
    return (size_t)n == length ? 0 : MF_EIO;
}

/* The one `.mfp` file directly in `_SECURE`, if the folder holds one: a sealed package, which
 * must then be the folder's only entry. 1 with `name` when found, 0 when the folder holds no
 * package (a plain setup), or an error with `message`. */
static int find_package(struct mf_programmer *p, char *name, size_t size, char *message)
{
    struct mf_fat_dir dir;
    struct mf_fat_stat st;
    unsigned entries = 0, packages = 0;
    bool too_long = false;
    pthread_mutex_lock(&p->public_mutex);
    int err = mf_fat_opendir(&p->fat, &dir, MF_SECURE_FOLDER);
    int r;
    while (!err && (r = mf_fat_readdir(&p->fat, &dir, &st)) == 1) {
        entries++;
        if (!st.is_dir && ends_with(st.name, ".mfp")) {
            packages++;
            too_long = sizeof MF_SECURE_FOLDER + strlen(st.name) + 1 > size;
            sayn(name, size, "%s/%s", MF_SECURE_FOLDER, st.name);
        }
    }
    pthread_mutex_unlock(&p->public_mutex);
    if (err) {
        sayn(message, MF_SECURE_MESSAGE_MAX, "_SECURE: %s", mf_strerror(err));
        return err;
    }
    if (packages == 0)
        return 0;
    if (packages > 1 || entries > 1) {
        sayn(message, MF_SECURE_MESSAGE_MAX,
             "_SECURE holds a sealed package (.mfp) and %u other entr%s: put the package "
             "alone into _SECURE",
             entries - 1, entries == 2 ? "y" : "ies");
        return MF_EINVAL;
    }
    size_t most = size - sizeof MF_SECURE_FOLDER - 1; /* "_SECURE/" before it, a NUL after */
    if (too_long) {
        sayn(message, MF_SECURE_MESSAGE_MAX,
             "the sealed package's name is longer than %zu bytes: rename it", most);
        return MF_ENAMETOOLONG;
    }
    return 1;
}

/* Installs the sealed package `path` (everything checked before anything is erased). A package
 * that is the installed setup already (a cut before its folder was deleted) is only removed. */
static int import_package(struct mf_programmer *p, const char *path, char *message)
{
    if (!p->has_identity) {
        sayn(message, MF_SECURE_MESSAGE_MAX, "this programmer has no identity (trust anchor: %s)",
             p->anchor.error);
        return MF_EAUTH;
    }
    struct package_reader reader = {.p = p};
    pthread_mutex_lock(&p->public_mutex);
    int err = mf_fat_open(&p->fat, &reader.file, path, MF_FAT_O_RDONLY);
    pthread_mutex_unlock(&p->public_mutex);
    if (err) {
        sayn(message, MF_SECURE_MESSAGE_MAX, "%s: %s", path, mf_strerror(err));
        return err;
    }
    uint64_t size = mf_fat_size(&reader.file);
    struct mf_package_header h;
    char pmessage[MF_PACKAGE_MESSAGE_MAX] = "";
    err = mf_package_read_header(package_read, &reader, size, &h, NULL, 0, pmessage);
    if (!err && p->secure.present && p->secure.has_owner && !p->secure.state.folder_removed &&
        sodium_memcmp(h.owner, p->secure.owner, 32) == 0 &&
        sodium_memcmp(h.setup_id, p->secure.fingerprint, 32) == 0 &&
        (uint64_t)h.not_before == p->secure.package_mark) {
        err = 1; /* installed already: only the folder is left to remove */
        goto close;
    }
    struct mf_anchor_state as;
    err = p->anchor.read_state(&p->anchor, &as);
    sodium_memzero(as.key, sizeof as.key);
    if (err) {
        sayn(message, MF_SECURE_MESSAGE_MAX, "trust anchor: %s", p->anchor.error);
        goto close;
    }
    struct mf_package pkg;
    err = mf_package_open(&pkg, package_read, &reader, size, p->identity.x25519_secret,
                          p->identity.pub.x25519, as.has_owner ? as.owner : NULL,
                          (int64_t)time(NULL), pmessage);
    if (err) {
        sayn(message, MF_SECURE_MESSAGE_MAX, "%s: %s", path, pmessage);
        goto close;
    }
    if (pkg.not_before <= 0) {
        sayn(message, MF_SECURE_MESSAGE_MAX,
             "%s: the package has no not-before time, which this programmer needs to tell "
             "a new package from a replayed one (mintflash pack sets it)",
             path);
        mf_package_close(&pkg);
        err = MF_EPERM;
        goto close;
    }
    struct mf_secure_origin origin = {.package_mark = (uint64_t)pkg.not_before};
    memcpy(origin.owner, pkg.owner, 32);
    log_stderr(p, 0, "installing the sealed package %s", path);
    err = mf_secure_install_from(&p->secure, &pkg.area, "", &origin, move_progress, p, message);
    mf_package_close(&pkg);
close:
    pthread_mutex_lock(&p->public_mutex);
    mf_fat_close(&p->fat, &reader.file);
    pthread_mutex_unlock(&p->public_mutex);
    if (err < 0 && !message[0])
        sayn(message, MF_SECURE_MESSAGE_MAX, "%s: %s", path, pmessage);
    return err;
}

/* Adds the storage image's own words to `message` when it failed since `failures` (a full host
 * file system names itself there: the core only knows the device said "no space"). */
static void add_storage_cause(struct mf_programmer *p, uint64_t failures, char *message,
                              size_t size)
{
    char device[MF_FILEBD_MESSAGE_MAX];
    if (mf_filebd_failure(&p->file, device, sizeof device) == failures)
        return;
    size_t n = strlen(message);
    if (n < size)
        snprintf(message + n, size - n, " (storage image: %s)", device);
}

/* Before another setup replaces the installed one: the installed setup's records are brought up
 * to date first, as its own start would (cycles that took a count without a record, a counter
 * ahead of its state), so that the chain the next setup goes on from accounts for every count
 * this one took: else they would be counts no record explains. */
static void settle_records(struct mf_programmer *p)
{
    if (!p->secure.present || !p->has_identity)
        return;
    open_records(p);
    pthread_mutex_lock(&p->records_mutex);
    p->records_open = false; /* the setup that runs next opens its own */
    pthread_mutex_unlock(&p->records_mutex);
}

/* Opens the trust anchor and the secure area, and handles a `_SECURE` folder in the public area:
 * moves it (stand-alone mode only), or finishes removing what is left of one already moved. */
static void boot_secure(struct mf_programmer *p)
{
    char message[MF_SECURE_MESSAGE_MAX + MF_FILEBD_MESSAGE_MAX + 32];
    if (open_anchor(p) != 0) {
        say(p->state_message, "trust anchor (%s): %s", p->config.tpm ? "tpm" : "keystore",
            p->anchor.error);
        p->state_error = MF_EAUTH;
        log_stderr(p, 0, "%s", p->state_message);
        mf_flashlog_write(&p->log, "%s", p->state_message);
        return;
    }
    struct mf_secure_config sc = {.bd = mf_storage_secure_area(&p->storage),
                                  .anchor = &p->anchor,
                                  .random = entropy,
                                  .reservation = p->config.tpm ? 100 : 1,
                                  .lock = p->secure_lock,
                                  .worker =
                                      p->decrypt_worker_started ? &p->decrypt_worker.worker : NULL};
    int err = mf_secure_open(&p->secure, &sc, message);
    if (err) {
        /* Tampered, rolled back, foreign: refused, and said everywhere. */
        say(p->state_message, "%s", message);
        p->state_error = MF_EAUTH;
        log_stderr(p, 0, "%s", message);
        mf_flashlog_write(&p->log, "refused: %s", message);
        return;
    }
    p->secure_open = true;
    if (mf_secure_removal_pending(&p->secure)) {
        /* A cut after the setup was installed, before the removal of its folder was recorded:
         * whatever `_SECURE` holds now (maybe nothing, maybe files erased or garbled in part) is
         * what is left of it, removed and wiped; never moved again. In either mode. */
        log_stderr(p, 0, "finishing the removal of a _SECURE folder already moved");
        if (!finish_removal(p))
            mf_flashlog_write(&p->log, "finished removing the _SECURE folder already moved");
        return;
    }
    struct mf_area_entry e;
    if (p->area.area.stat(&p->area.area, MF_SECURE_FOLDER, &e) != 0 || !e.is_dir)
        return;
    char package[MF_SETUP_PATH_MAX];
    message[0] = '\0';
    int found = find_package(p, package, sizeof package, message);
    if (found != 0 && p->mode == MF_MODE_FILEACCESS)
        return;
    if (found < 0) {
        log_stderr(p, 0, "the _SECURE move failed: %s", message);
        mf_flashlog_write(&p->log, "the _SECURE move failed: %s", message);
        sayn(p->move_error, sizeof p->move_error, "the _SECURE move failed: %s", message);
        return;
    }
    if (found > 0) {
        settle_records(p);
        message[0] = '\0';
        uint64_t failures = mf_filebd_failure(&p->file, NULL, 0);
        err = import_package(p, package, message);
        if (err < 0)
            add_storage_cause(p, failures, message, sizeof message);
        if (err == 1) {
            log_stderr(p, 0, "finishing the removal of a sealed package already installed");
            if (!finish_removal(p))
                mf_flashlog_write(&p->log, "finished removing the package already installed");
            return;
        }
        if (err) {
            log_stderr(p, 0, "the package import failed: %s", message);
            mf_flashlog_write(&p->log, "the package import failed: %s", message);
            sayn(p->move_error, sizeof p->move_error, "the package import failed: %s", message);
            if (!p->secure.present) {
                say(p->state_message, "the package import failed: %s", message);
                p->state_error = MF_EAUTH;
            }
            return;
        }
        struct mf_owner_key k;
        mf_owner_key_from_public(p->secure.owner, &k);
        char fp[17];
        for (int i = 0; i < 8; i++)
            snprintf(fp + 2 * i, 3, "%02x", p->secure.fingerprint[i]);
        log_stderr(p, 0, "installed the sealed package (setup %s..., owner %s)", fp, k.fingerprint);
        mf_flashlog_write(
            &p->log, "installed the sealed package %s: %u files, setup %s..., owner %s",
            package + strlen(MF_SECURE_FOLDER) + 1, p->secure.file_count, fp, k.fingerprint);
        finish_removal(p);
        return;
    }
    if (p->mode == MF_MODE_FILEACCESS)
        return; /* file access mode never moves anything */
    settle_records(p);
    log_stderr(p, 0, "moving _SECURE into the secure area");
    uint64_t failures = mf_filebd_failure(&p->file, NULL, 0);
    err = mf_secure_install(&p->secure, &p->area.area, MF_SECURE_FOLDER, move_progress, p, message);
    if (err) {
        add_storage_cause(p, failures, message, sizeof message);
        log_stderr(p, 0, "the _SECURE move failed: %s", message);
        mf_flashlog_write(&p->log, "the _SECURE move failed: %s", message);
        sayn(p->move_error, sizeof p->move_error, "the _SECURE move failed: %s", message);
        if (!p->secure.present) {
            say(p->state_message, "the _SECURE move failed: %s", message);
            p->state_error = MF_EAUTH;
        }
        return;
    }
    char fp[17];
    for (int i = 0; i < 8; i++)
        snprintf(fp + 2 * i, 3, "%02x", p->secure.fingerprint[i]);
    const char *empty = p->secure.file_count ? "" : " (no files: the public area's setup runs)";
    log_stderr(p, 0, "moved _SECURE into the secure area (setup %s...)%s", fp, empty);
    mf_flashlog_write(&p->log, "moved _SECURE into the secure area: %u files, setup %s...%s",
                      p->secure.file_count, fp, empty);
    finish_removal(p);
}

/* Boots in p->mode: mounts the public area, opens the secure area and handles `_SECURE`, then
 * loads the setup (stand-alone) or exports the public area (file access). Problems are kept in
 * state_message, not returned. */
static void boot(struct mf_programmer *p)
{
    p->state_message[0] = '\0';
    p->move_error[0] = '\0';
    p->state_error = MF_EIO;
    p->files_changed = false; /* a start reads everything afresh */
    if (p->storage.interrupted) {
        log_stderr(p, 0, "completing an interrupted repartition (the public area is formatted)");
        int err = mf_storage_recover(&p->storage);
        if (err) {
            say(p->state_message, "storage: %s",
                p->storage.reason[0] ? p->storage.reason : mf_strerror(err));
            return;
        }
    }
    pthread_mutex_lock(&p->public_mutex);
    int err = mf_fat_mount(&p->fat, mf_storage_public_area(&p->storage), mf_clock_local, NULL);
    p->fat_mounted = err == 0;
    pthread_mutex_unlock(&p->public_mutex);
    if (err) {
        say(p->state_message, "public area: cannot mount its FAT volume: %s", mf_strerror(err));
        log_stderr(p, 0, "%s", p->state_message);
    } else {
        mf_area_fat_init(&p->area, &p->fat, &p->public_lock);
        if (p->config.hold_set)
            p->area.area.hold_max = p->config.hold;
        mf_flashlog_init(&p->log, &p->fat, &p->public_lock, 1024u * 1024u, mf_clock_local, NULL);
        if (ensure_identity(p) != 0 && !p->storage.layout.secure_count)
            mf_flashlog_write(&p->log, "no identity: trust anchor: %s", p->anchor.error);
        if (p->storage.layout.secure_count) {
            boot_secure(p);
        } else {
            struct mf_area_entry e;
            if (p->area.area.stat(&p->area.area, MF_SECURE_FOLDER, &e) == 0 && e.is_dir) {
                static const char why[] = "a _SECURE folder, but no secure area: nothing moved, "
                                          "the folder stays readable in the public area "
                                          "(securearea create makes one)";
                log_stderr(p, 0, "%s", why);
                if (p->mode == MF_MODE_STANDALONE) {
                    mf_flashlog_write(&p->log, "%s", why);
                    sayn(p->move_error, sizeof p->move_error, "%s", why);
                }
            }
        }
    }
    if (p->mode == MF_MODE_FILEACCESS) {
        if (p->fat_mounted) {
            /* The export writes the volume underneath: nothing may keep it mounted. */
            pthread_mutex_lock(&p->public_mutex);
            mf_fat_unmount(&p->fat);
            p->fat_mounted = false;
            pthread_mutex_unlock(&p->public_mutex);
        }
        if (!p->config.nbd_listen) {
            log_stderr(p, 0, "file access mode: no NBD export (--nbd off)");
            return;
        }
        /* The public area, and only it, goes out as a block device. */
        struct mf_nbdserver_options o = {.log = nbd_log, .log_context = p};
        err = mf_nbdserver_start(&p->nbd, p->config.nbd_listen, mf_storage_public_area(&p->storage),
                                 &p->public_lock, &o);
        if (err) {
            say(p->state_message, "NBD: %s", mf_nbdserver_message(&p->nbd));
            log_stderr(p, 0, "file access mode: %s", p->state_message);
        } else {
            log_stderr(p, 0,
                       "file access mode: the public area is exported over NBD on %s (port %u)",
                       p->nbd.address, mf_nbdserver_port(&p->nbd));
        }
        return;
    }
    if (!p->fat_mounted)
        return;
    load_setup(p);
    mf_flashlog_write(&p->log, "programmer started (stand-alone mode, setup in the %s area)%s%s",
                      p->from_secure ? "secure" : "public", p->setup_error ? ": " : "",
                      p->setup_error ? p->setup_message : "");
    if (p->from_secure)
        open_records(p);
    apply_tokens(p);
}

/* The production records of the setup in the secure area: checked against the chain head
 * (mf_reclog_open's notes go to FLASHER.LOG). True when they are open; else records_problem says
 * why. Under records_mutex. */
static bool open_records_locked(struct mf_programmer *p)
{
    p->records_open = false;
    p->records_problem[0] = '\0';
    if (!p->has_identity) {
        sayn(p->records_problem, sizeof p->records_problem,
             "production records cannot be signed: this programmer has no identity");
    } else {
        struct mf_reclog_config c = {.fs = &p->fat,
                                     .fs_lock = p->public_lock,
                                     .lock = {NULL, NULL, NULL},
                                     .secure = &p->secure,
                                     .anchor = &p->anchor,
                                     .identity = &p->identity,
                                     .utc = utc_now};
        char notes[MF_RECLOG_MESSAGE_MAX], message[MF_RECLOG_MESSAGE_MAX];
        char device[MF_FILEBD_MESSAGE_MAX];
        uint64_t failures = mf_filebd_failure(&p->file, NULL, 0);
        int err = mf_reclog_open(&p->records, &c, notes, message);
        if (err && mf_filebd_failure(&p->file, device, sizeof device) != failures) {
            sayn(p->records_problem, sizeof p->records_problem,
                 "production records: the storage image failed: %s", device);
        } else if (err) {
            sayn(p->records_problem, sizeof p->records_problem, "%s", message);
        } else {
            p->records_open = true;
            if (notes[0]) {
                log_stderr(p, 0, "%s", notes);
                mf_flashlog_write(&p->log, "%s", notes);
            }
        }
    }
    return p->records_open;
}

/* open_records_locked at a start, the problem logged. */
static void open_records(struct mf_programmer *p)
{
    pthread_mutex_lock(&p->records_mutex);
    open_records_locked(p);
    if (p->records_problem[0]) {
        log_stderr(p, 0, "%s", p->records_problem);
        mf_flashlog_write(&p->log, "ERROR %s", p->records_problem);
    }
    pthread_mutex_unlock(&p->records_mutex);
}

/* Decides and applies one token; `text` gets the decision. 0: applied, 1: a replay (nothing to
 * do), or a negative error. Under tokens_mutex. */
static int apply_token(struct mf_programmer *p, const uint8_t *data, size_t size, char *text)
{
    struct mf_token token;
    char message[MF_TOKEN_MESSAGE_MAX];
    int err = mf_token_decode(data, size, &token, message);
    if (err) {
        sayn(text, MF_TOKEN_MESSAGE_MAX, "%s", message);
        return err;
    }
    if (!p->secure_open || !p->secure.present) {
        sayn(text, MF_TOKEN_MESSAGE_MAX, "no setup is installed in the secure area");
        return MF_ENOENT;
    }
    struct mf_secure *s = &p->secure;
    struct mf_token_project projects[MF_SECURE_PROJECTS_MAX];
    mf_lock_take(&p->secure_lock);
    for (uint32_t i = 0; i < s->project_count; i++) {
        projects[i].folder = s->projects[i].folder;
        projects[i].limited = s->state.projects[i].limited;
        projects[i].limit = s->state.projects[i].limit;
    }
    /* The installed package's not-before time names this installation: a token made for an
     * earlier (or later) installation of the same setup does not apply to it. */
    struct mf_token_current current = {.installed = true,
                                       .has_owner = s->has_owner,
                                       .package_time = (int64_t)s->package_mark,
                                       .root_limited = s->state.root_limited,
                                       .root_limit = s->state.root_limit,
                                       .projects = projects,
                                       .project_count = s->project_count};
    mf_lock_give(&p->secure_lock);
    memcpy(current.programmer_id, p->identity.pub.id, 32);
    memcpy(current.setup_id, s->fingerprint, 32);
    memcpy(current.owner, s->owner, 32);
    int project = -1;
    enum mf_token_decision d = mf_token_decide(&token, &current, &project, message);
    sayn(text, MF_TOKEN_MESSAGE_MAX, "%s", message);
    if (d == MF_TOKEN_REPLAY)
        return 1; /* nothing to do */
    if (d != MF_TOKEN_APPLY)
        return MF_EPERM;
    char smessage[MF_SECURE_MESSAGE_MAX];
    err = mf_secure_set_limit(s, project, token.limit, smessage);
    if (err)
        sayn(text, MF_TOKEN_MESSAGE_MAX, "%s", smessage);
    return err;
}

/* Top-up tokens (*.mft) at the public area's root: each is decided, applied when it may be, the
 * decision logged, and the file deleted. */
static void apply_tokens(struct mf_programmer *p)
{
    if (!p->fat_mounted || !p->has_identity)
        return;
    pthread_mutex_lock(&p->tokens_mutex);
    for (unsigned round = 0; round < 64; round++) {
        char name[MF_FAT_NAME_UTF8_MAX] = "";
        struct mf_fat_dir dir;
        struct mf_fat_stat st;
        pthread_mutex_lock(&p->public_mutex);
        int err = mf_fat_opendir(&p->fat, &dir, "");
        while (!err && mf_fat_readdir(&p->fat, &dir, &st) == 1) {
            if (!st.is_dir && mf_setup_public_file(st.name) == MF_PUBLIC_TOKEN) {
                snprintf(name, sizeof name, "%s", st.name);
                break;
            }
        }
        uint8_t data[MF_TOKEN_SIZE_MAX];
        int n = 0;
        if (name[0]) {
            struct mf_fat_file f;
            err = mf_fat_open(&p->fat, &f, name, MF_FAT_O_RDONLY);
            if (!err) {
                n = mf_fat_size(&f) > sizeof data ? MF_EFBIG
                                                  : mf_fat_read(&p->fat, &f, data, sizeof data);
                mf_fat_close(&p->fat, &f);
            } else {
                n = err;
            }
        }
        pthread_mutex_unlock(&p->public_mutex);
        if (!name[0])
            break;
        char text[MF_TOKEN_MESSAGE_MAX];
        if (n == MF_EFBIG)
            sayn(text, sizeof text, "larger than a token (%u bytes at most)", MF_TOKEN_SIZE_MAX);
        else if (n < 0)
            sayn(text, sizeof text, "cannot read it: %s", mf_strerror(n));
        int aerr = n < 0 ? n : apply_token(p, data, (size_t)n, text);
        log_stderr(p, 0, "top-up token %s: %s", name, text);
        mf_flashlog_write(&p->log, "top-up token %s %s: %s", name,
                          aerr < 0 ? "refused"
                          : aerr   ? "replayed"
                                   : "applied",
                          text);
        pthread_mutex_lock(&p->public_mutex);
        err = mf_fat_remove(&p->fat, name);
        pthread_mutex_unlock(&p->public_mutex);
        if (err && err != MF_ENOENT) {
            log_stderr(p, 0, "cannot delete the top-up token %s: %s", name, mf_strerror(err));
            break; /* try again at the next cycle */
        }
    }
    pthread_mutex_unlock(&p->tokens_mutex);
}

int mf_programmer_topup(struct mf_programmer *p, const uint8_t *token, size_t size, char *text)
{
    /* A restart (#REBOOT on another connection, SIGHUP) or a secure-area command begun from now
     * on waits until the token is applied: it would close the secure area under it. */
    pthread_mutex_lock(&p->state_lock);
    bool ready = !p->initializing && p->has_identity;
    if (ready)
        p->pushing++;
    pthread_mutex_unlock(&p->state_lock);
    if (!ready) {
        sayn(text, MF_TOKEN_MESSAGE_MAX, "the programmer is starting up");
        return MF_EBUSY;
    }
    pthread_mutex_lock(&p->tokens_mutex);
    int err = apply_token(p, token, size, text);
    pthread_mutex_unlock(&p->tokens_mutex);
    bool replay = err == 1;
    if (replay)
        err = 0;
    log_stderr(p, 0, "top-up token (pushed): %s", text);
    if (p->fat_mounted)
        mf_flashlog_write(&p->log, "top-up token (pushed) %s: %s",
                          err      ? "refused"
                          : replay ? "replayed"
                                   : "applied",
                          text);
    pthread_mutex_lock(&p->state_lock);
    p->pushing--;
    pthread_cond_broadcast(&p->state_cond);
    pthread_mutex_unlock(&p->state_lock);
    return err;
}

int mf_programmer_record_head(struct mf_programmer *p,
                              const uint8_t nonce[MF_RECORD_HEAD_NONCE_SIZE], char *line,
                              size_t size, char *text)
{
    pthread_mutex_lock(&p->state_lock);
    bool ready = !p->initializing;
    pthread_mutex_unlock(&p->state_lock);
    if (!ready) {
        say(text, "the programmer is starting up");
        return MF_EBUSY;
    }
    /* Under records_mutex: no record is half appended (written, its head not yet moved). */
    pthread_mutex_lock(&p->records_mutex);
    int err;
    if (p->records_open) {
        char m[MF_RECLOG_MESSAGE_MAX];
        size_t length;
        err = mf_reclog_head(&p->records, nonce, line, size, &length, m);
        if (err)
            say(text, "%s", m);
        else
            line[length - 1] = '\0'; /* its LF */
    } else if (p->records_problem[0]) {
        err = MF_EIO;
        say(text, "the production records are stopped, so their head is not known: %s",
            p->records_problem);
    } else {
        err = MF_ENOENT;
        say(text, "no production records are kept: no setup runs from the secure area");
    }
    pthread_mutex_unlock(&p->records_mutex);
    return err;
}

int mf_programmer_identity(struct mf_programmer *p, struct mf_owner_programmer *identity,
                           char *error)
{
    pthread_mutex_lock(&p->state_lock);
    bool has = p->has_identity;
    if (has)
        *identity = p->identity.pub;
    pthread_mutex_unlock(&p->state_lock);
    if (!has) {
        say(error, "no identity yet (trust anchor: %s)",
            p->anchor.error[0] ? p->anchor.error : "not open");
        return MF_ENOENT;
    }
    return 0;
}

static int open_storage(struct mf_programmer *p, char *error)
{
    const char *path = p->config.storage;
    struct stat st;
    int err;
    if (stat(path, &st) != 0 && errno == ENOENT) {
        /* First start: a fresh storage image. */
        char dir[512];
        snprintf(dir, sizeof dir, "%s", path);
        for (char *s = strchr(dir + 1, '/'); s; s = strchr(s + 1, '/')) {
            *s = '\0';
            mkdir(dir, 0700);
            *s = '/';
        }
        uint64_t size = p->config.storage_size ? p->config.storage_size : MF_STORAGE_DEFAULT_SIZE;
        err = mf_filebd_create(&p->file, path, size, false);
        if (err) {
            say(error, "%s", mf_filebd_last_error(&p->file));
            return err;
        }
        struct mf_storage_options o = {.volume_id = random_u32(), .disk_signature = random_u32()};
        err = mf_storage_init(&p->storage, &p->file.bd, &o);
        if (err) {
            say(error, "%s: cannot initialise: %s", path,
                p->storage.reason[0] ? p->storage.reason : mf_strerror(err));
            mf_filebd_close(&p->file);
            return err;
        }
        log_stderr(p, 0, "created storage image %s (%llu MiB)", path,
                   (unsigned long long)(size >> 20));
    } else {
        err = mf_filebd_open(&p->file, path, false);
        if (err) {
            say(error, "%s", mf_filebd_last_error(&p->file));
            return err;
        }
        err = mf_storage_open(&p->storage, &p->file.bd);
        if (err) {
            say(error, "%s: %s", path, p->storage.reason[0] ? p->storage.reason : mf_strerror(err));
            mf_filebd_close(&p->file);
            return err;
        }
    }
    p->storage_open = true;
    return 0;
}

int mf_programmer_start(struct mf_programmer *p, const struct mf_programmer_config *config,
                        const struct mf_programmer_sink *sink, char *error)
{
    memset(p, 0, sizeof *p);
    p->config = *config;
    if (sink)
        p->sink = *sink;
    if (p->config.slots == 0 || p->config.slots > MF_SLOTS_MAX) {
        say(error, "--slots: from 1 to %u", MF_SLOTS_MAX);
        return MF_EINVAL;
    }
    if (p->config.target_count > 1 && p->config.target_count != p->config.slots) {
        say(error, "--target given %u times for %u slots: give it once for all or once per slot",
            p->config.target_count, p->config.slots);
        return MF_EINVAL;
    }
    pthread_mutex_init(&p->state_lock, NULL);
    pthread_cond_init(&p->state_cond, NULL);
    pthread_mutex_init(&p->public_mutex, NULL);
    pthread_mutex_init(&p->authorize_mutex, NULL);
    p->public_lock = (struct mf_lock){mutex_lock, mutex_unlock, &p->public_mutex};
    p->authorize_lock = (struct mf_lock){mutex_lock, mutex_unlock, &p->authorize_mutex};
    pthread_mutex_init(&p->secure_mutex, NULL);
    p->secure_lock = (struct mf_lock){mutex_lock, mutex_unlock, &p->secure_mutex};
    pthread_mutex_init(&p->records_mutex, NULL);
    pthread_mutex_init(&p->tokens_mutex, NULL);
    p->records_lock = (struct mf_lock){mutex_lock, mutex_unlock, &p->records_mutex};
    p->load_buffer = malloc(LOAD_BUFFER_SIZE);
    if (!p->load_buffer) {
        say(error, "out of memory");
        return MF_ENOMEM;
    }
    /* Without the thread, secure-area reads decrypt in line: slower, the same. */
    p->decrypt_worker_started = mf_worker_thread_start(&p->decrypt_worker) == 0;
    /* The targets first: a bad --target is refused before the storage is created or opened. */
    int err = 0;
    p->slot_count = p->config.slots;
    for (unsigned i = 0; i < p->slot_count; i++) {
        struct mf_slot_worker *w = &p->workers[i];
        w->owner = p;
        w->number = i + 1;
        w->phase = MF_PHASE_READY;
        w->slot = calloc(1, sizeof *w->slot);
        if (!w->slot) {
            say(error, "out of memory");
            err = MF_ENOMEM;
            goto fail;
        }
        const char *spec = p->config.target_count == 0   ? "sim"
                           : p->config.target_count == 1 ? p->config.targets[0]
                                                         : p->config.targets[i];
        err = open_target(p, w, spec, error);
        if (err)
            goto fail;
        mf_slot_init(w->slot, w->number, &w->target);
    }
    err = open_storage(p, error);
    if (err)
        goto fail;
    if (p->config.tpm) {
        /* --tpm names the trust anchor: without a TPM there the programmer does not start (a
         * keystore instead would silently weaken what the owner relies on). */
        err = open_anchor(p);
        if (err) {
            say(error, "--tpm %s: %s", p->config.tpm,
                p->anchor.error[0] ? p->anchor.error : mf_strerror(err));
            goto fail;
        }
    }
    for (unsigned i = 0; i < p->slot_count; i++) {
        struct mf_slot_worker *w = &p->workers[i];
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            say(error, "cannot start the thread of slot %u", w->number);
            err = MF_ENOMEM;
            goto fail;
        }
        w->thread_started = true;
    }
    p->mode = p->config.mode;
    p->initializing = true;
    return 0;
fail:
    mf_programmer_stop(p);
    return err;
}

void mf_programmer_stop(struct mf_programmer *p)
{
    pthread_mutex_lock(&p->state_lock);
    p->stopping = true;
    for (unsigned i = 0; i < p->slot_count; i++) {
        if (p->workers[i].busy)
            atomic_store(&p->workers[i].target.cancel, 1);
    }
    pthread_cond_broadcast(&p->state_cond);
    pthread_mutex_unlock(&p->state_lock);
    for (unsigned i = 0; i < MF_SLOTS_MAX; i++) {
        struct mf_slot_worker *w = &p->workers[i];
        if (w->thread_started)
            pthread_join(w->thread, NULL);
        w->thread_started = false;
        if (w->target_open && mf_gdb_is(&w->target))
            mf_gdb_close(&w->target);
        else if (w->target_open)
            mf_sim_close(&w->target);
        w->target_open = false;
        free(w->slot);
        w->slot = NULL;
    }
    if (p->fat_mounted)
        mf_flashlog_write(&p->log, "programmer stopped");
    shutdown_areas(p);
    close_anchor(p);
    if (p->decrypt_worker_started) {
        mf_worker_thread_stop(&p->decrypt_worker);
        p->decrypt_worker_started = false;
    }
    if (p->storage_open) {
        mf_bd_sync(&p->file.bd);
        mf_filebd_close(&p->file);
        p->storage_open = false;
    }
    free(p->load_buffer);
    p->load_buffer = NULL;
}

static bool any_busy(const struct mf_programmer *p)
{
    for (unsigned i = 0; i < p->slot_count; i++) {
        if (p->workers[i].busy)
            return true;
    }
    return false;
}

void mf_programmer_boot(struct mf_programmer *p)
{
    boot(p);
    pthread_mutex_lock(&p->state_lock);
    p->initializing = false;
    pthread_mutex_unlock(&p->state_lock);
}

void mf_programmer_files_changed(struct mf_programmer *p)
{
    pthread_mutex_lock(&p->state_lock);
    p->files_changed = true;
    pthread_mutex_unlock(&p->state_lock);
}

bool mf_programmer_package_replaces(struct mf_programmer *p)
{
    pthread_mutex_lock(&p->state_lock);
    bool holds = !p->secure_open || (p->secure.present && p->secure.file_count > 0);
    bool replaces = p->initializing || (p->storage.layout.secure_count && !p->pinned[0] && holds);
    pthread_mutex_unlock(&p->state_lock);
    return replaces;
}

int mf_programmer_reboot(struct mf_programmer *p, enum mf_mode mode, char *error)
{
    pthread_mutex_lock(&p->state_lock);
    if (p->initializing) {
        pthread_mutex_unlock(&p->state_lock);
        say(error, "the programmer is starting up");
        return MF_EBUSY;
    }
    /* As a power cycle would, but safely: running cycles are cancelled (a count they took stays
     * taken) and finish before anything restarts. */
    p->initializing = true;
    for (unsigned i = 0; i < p->slot_count; i++) {
        if (p->workers[i].busy)
            atomic_store(&p->workers[i].target.cancel, 1);
    }
    while (any_busy(p) || p->pushing)
        pthread_cond_wait(&p->state_cond, &p->state_lock);
    pthread_mutex_unlock(&p->state_lock);

    log_stderr(p, 0, "restarting in %s mode",
               mode == MF_MODE_FILEACCESS ? "file access" : "stand-alone");
    if (p->fat_mounted)
        mf_flashlog_write(&p->log, "restart (%s mode)",
                          mode == MF_MODE_FILEACCESS ? "file access" : "stand-alone");
    shutdown_areas(p);
    /* Like a power cycle: the storage is opened afresh. */
    mf_bd_sync(&p->file.bd);
    int err = mf_storage_open(&p->storage, &p->file.bd);
    pthread_mutex_lock(&p->state_lock);
    p->mode = mode;
    pthread_mutex_unlock(&p->state_lock);
    if (err)
        say(p->state_message, "storage: %s",
            p->storage.reason[0] ? p->storage.reason : mf_strerror(err));
    else
        boot(p);
    pthread_mutex_lock(&p->state_lock);
    p->initializing = false;
    pthread_mutex_unlock(&p->state_lock);
    return 0;
}

/* Files were written since the setup was loaded: take them in now (with state_lock held).
 * MF_EBUSY while a slot runs the old setup. */
static int refresh_setup(struct mf_programmer *p, char *error)
{
    if (!p->files_changed || !p->fat_mounted)
        return 0;
    if (any_busy(p)) {
        say(error, "the setup changed; it is reloaded when no slot is busy");
        return MF_EBUSY;
    }
    p->files_changed = false;
    if (p->from_secure && !p->reload_setup)
        apply_tokens(p); /* the setup is in the secure area: only tokens can have arrived */
    else
        load_setup(p);
    p->reload_setup = false;
    return 0;
}

int mf_programmer_submit(struct mf_programmer *p, unsigned slot,
                         const struct mf_cycle_request *request, uint64_t origin, char *error)
{
    if (slot < 1 || slot > p->slot_count) {
        say(error, "no slot %u", slot);
        return MF_EINVAL;
    }
    struct mf_slot_worker *w = &p->workers[slot - 1];
    pthread_mutex_lock(&p->state_lock);
    int err = 0;
    if (p->mode == MF_MODE_FILEACCESS) {
        say(error, "not available in file access mode");
        err = MF_EPERM;
    } else if (p->initializing) {
        say(error, "the programmer is starting up");
        err = MF_EBUSY;
    } else if (w->busy) {
        say(error, "slot %u is busy", slot);
        err = MF_EBUSY;
    } else if ((err = refresh_setup(p, error)) != 0) {
        /* said */
    } else {
        if (p->state_message[0] || !p->setup_loaded) {
            say(error, "%s", p->state_message[0] ? p->state_message : p->setup_message);
            pthread_mutex_unlock(&p->state_lock);
            return p->state_message[0] ? p->state_error
                                       : (p->setup_error ? p->setup_error : MF_ENOENT);
        }
        w->busy = true;
        w->has_job = true;
        w->origin = origin;
        w->phase = MF_PHASE_INITIALIZING;
        w->request = *request;
        if (request->patch_line) {
            snprintf(w->patch_line, sizeof w->patch_line, "%s", request->patch_line);
            w->request.patch_line = w->patch_line;
        }
        pthread_cond_broadcast(&p->state_cond);
    }
    pthread_mutex_unlock(&p->state_lock);
    return err;
}

void mf_programmer_cancel(struct mf_programmer *p, unsigned slot)
{
    if (slot < 1 || slot > p->slot_count)
        return;
    pthread_mutex_lock(&p->state_lock);
    if (p->workers[slot - 1].busy)
        atomic_store(&p->workers[slot - 1].target.cancel, 1);
    pthread_mutex_unlock(&p->state_lock);
}

void mf_programmer_slot_state(struct mf_programmer *p, unsigned slot, struct mf_slot_state *state)
{
    memset(state, 0, sizeof *state);
    if (slot < 1 || slot > p->slot_count)
        return;
    const struct mf_slot_worker *w = &p->workers[slot - 1];
    pthread_mutex_lock(&p->state_lock);
    state->phase = w->busy ? w->phase : MF_PHASE_READY;
    state->busy = w->busy;
    state->has_result = w->has_result;
    state->last_action = w->last_action;
    state->result = w->result;
    pthread_mutex_unlock(&p->state_lock);
}

void mf_programmer_mode(struct mf_programmer *p, enum mf_mode *mode, bool *initializing)
{
    pthread_mutex_lock(&p->state_lock);
    *mode = p->mode;
    *initializing = p->initializing;
    pthread_mutex_unlock(&p->state_lock);
}

struct mf_fat *mf_programmer_public(struct mf_programmer *p)
{
    pthread_mutex_lock(&p->public_mutex);
    if (!p->fat_mounted) {
        pthread_mutex_unlock(&p->public_mutex);
        return NULL;
    }
    return &p->fat;
}

void mf_programmer_public_release(struct mf_programmer *p)
{
    pthread_mutex_unlock(&p->public_mutex);
}

/* Names FLASHER.INI's new text is written under before it takes the old one's place:
 * FLASHER.NEW, or when that name is taken by something not ours (a folder, a file with
 * attributes we never set), FLASHER.N1 ... FLASHER.N9. */
#define SELECTION_NAMES 10u

static void selection_name(unsigned i, char name[16])
{
    if (i == 0)
        snprintf(name, 16, "FLASHER.NEW");
    else
        snprintf(name, 16, "FLASHER.N%u", i);
}

/* Picks the first of the names not taken by the user: folders and files with the read-only,
 * hidden or system attribute are the user's, left alone, their name skipped. A plain file under
 * the name picked is what an earlier cut left there (we write nothing else under it, and never a
 * later name while that one is free): it is removed. Names after it are not ours, whatever they
 * hold. MF_EEXIST when every name is taken by the user. */
static int selection_pick(struct mf_fat *fs, char name[16])
{
    for (unsigned i = 0; i < SELECTION_NAMES; i++) {
        struct mf_fat_stat st;
        selection_name(i, name);
        int err = mf_fat_stat(fs, name, &st);
        if (err == 0 && (st.is_dir || (st.attributes & (MF_FAT_ATTR_READ_ONLY | MF_FAT_ATTR_HIDDEN |
                                                        MF_FAT_ATTR_SYSTEM))))
            continue; /* the user's */
        if (err == 0)
            err = mf_fat_remove(fs, name);
        return err == MF_ENOENT ? 0 : err;
    }
    return MF_EEXIST;
}

/* The name of a "[name]" header line, or NULL for other lines; `name` gets it. */
static const char *section_of(const char *line, size_t len, char *name, size_t size)
{
    size_t k = 0;
    while (k < len && (line[k] == ' ' || line[k] == '\t'))
        k++;
    if (k == len || line[k] != '[')
        return NULL;
    size_t e = k + 1;
    while (e < len && line[e] != ']')
        e++;
    size_t n = e - k - 1 < size - 1 ? e - k - 1 : size - 1;
    memcpy(name, line + k + 1, n);
    name[n] = '\0';
    return name;
}

/* Does the line set `key` (key = value)? */
static bool line_sets(const char *line, size_t len, const char *key)
{
    size_t k = 0, n = strlen(key);
    while (k < len && (line[k] == ' ' || line[k] == '\t'))
        k++;
    if (len - k < n)
        return false;
    char buf[32];
    if (n >= sizeof buf)
        return false;
    memcpy(buf, line + k, n);
    buf[n] = '\0';
    k += n;
    while (k < len && (line[k] == ' ' || line[k] == '\t'))
        k++;
    return mf_ini_name_is(buf, key) && k < len && line[k] == '=';
}

int mf_programmer_write_selection(struct mf_fat *fs, const char *folder)
{
    static char old[MF_SETUP_INI_MAX], out[MF_SETUP_INI_MAX + 128]; /* under the public lock */
    size_t len = 0, n = 0;
    struct mf_fat_file file;
    int err = mf_fat_open(fs, &file, MF_FILE_FLASHER_INI, MF_FAT_O_RDONLY);
    if (!err) {
        if (mf_fat_size(&file) > sizeof old) {
            mf_fat_close(fs, &file);
            return MF_EFBIG;
        }
        int r = mf_fat_read(fs, &file, old, sizeof old);
        mf_fat_close(fs, &file);
        if (r < 0)
            return r;
        len = (size_t)r;
    } else if (err != MF_ENOENT) {
        return err;
    }
    char setting[MF_SETUP_NAME_MAX + 16];
    int sl = snprintf(setting, sizeof setting, "Project = %s\r\n", folder);
    bool in_config = false, written = false;
    for (size_t i = 0; i < len;) {
        size_t e = i;
        while (e < len && old[e] != '\n')
            e++;
        size_t next = e < len ? e + 1 : e;
        char section[MF_INI_SECTION_MAX + 1];
        if (section_of(old + i, e - i, section, sizeof section)) {
            if (in_config && !written) {
                memcpy(out + n, setting, (size_t)sl);
                n += (size_t)sl;
                written = true;
            }
            in_config = mf_ini_name_is(section, "CONFIG");
        }
        if (!(in_config && line_sets(old + i, e - i, "Project"))) {
            if (n + (next - i) + 2 + (size_t)sl >= sizeof out)
                return MF_EFBIG;
            memcpy(out + n, old + i, next - i);
            n += next - i;
            if (next == e) { /* the last line had no line end */
                memcpy(out + n, "\r\n", 2);
                n += 2;
            }
        }
        i = next;
    }
    if (!written) {
        if (!in_config) {
            memcpy(out + n, "[CONFIG]\r\n", 10);
            n += 10;
        }
        memcpy(out + n, setting, (size_t)sl);
        n += (size_t)sl;
    }
    /* Written whole under another name, then put in FLASHER.INI's place in one step: a failure
     * or a cut leaves the old text or the new, never a part (an earlier cut's leftover goes). */
    char temporary[16];
    err = selection_pick(fs, temporary);
    if (err)
        return err;
    err = mf_fat_open(fs, &file, temporary, MF_FAT_O_WRONLY | MF_FAT_O_CREAT | MF_FAT_O_EXCL);
    if (err)
        return err;
    int w = mf_fat_write(fs, &file, out, (uint32_t)n);
    int cerr = mf_fat_close(fs, &file);
    err = w < 0 ? w : cerr;
    if (!err)
        err = mf_fat_replace(fs, temporary, MF_FILE_FLASHER_INI);
    if (err)
        mf_fat_remove(fs, temporary); /* when it is still there and the device lets us */
    return err;
}

int mf_programmer_select(struct mf_programmer *p, const char *name, char *error)
{
    pthread_mutex_lock(&p->state_lock);
    int err = 0;
    unsigned index;
    if (p->mode != MF_MODE_STANDALONE || p->initializing) {
        say(error, "not available now");
        err = MF_EPERM;
    } else if ((err = refresh_setup(p, error)) != 0) {
        /* said */
    } else if (!p->setup_loaded) {
        say(error, "no production setup: %s", p->setup_message);
        err = MF_ENOENT;
    } else if (mf_setup_find(&p->setup, name, &index)) {
        say(error, "no project '%s'", name);
        err = MF_ENOENT;
    } else {
        const struct mf_project *proj = &p->setup.projects[index];
        const char *folder = proj->folder + strlen(MF_DIR_PROJECTS) + 1;
        char message[MF_SECURE_MESSAGE_MAX];
        if (p->from_secure) {
            /* The secure area's files are as installed: the choice goes to its state. */
            err = mf_secure_select(&p->secure, (int)index, message);
            if (err)
                say(error, "%s", message);
        } else {
            pthread_mutex_lock(&p->public_mutex);
            /* What the storage says, when it failed during this update. */
            uint64_t failures = mf_filebd_failure(&p->file, NULL, 0);
            err = mf_programmer_write_selection(&p->fat, folder);
            char cause[sizeof p->file.message];
            if (mf_filebd_failure(&p->file, cause, sizeof cause) == failures)
                cause[0] = '\0';
            if (err == MF_EEXIST)
                say(error,
                    "cannot update %s: FLASHER.NEW and FLASHER.N1 to FLASHER.N9 are all folders "
                    "or protected files: remove one",
                    MF_FILE_FLASHER_INI);
            else if (err)
                say(error, "cannot update %s: %s%s%s%s", MF_FILE_FLASHER_INI, mf_strerror(err),
                    *cause ? " (storage " : "", cause, *cause ? ")" : "");
            pthread_mutex_unlock(&p->public_mutex);
        }
        if (!err) {
            /* Memory goes to the selected project first: a load with the new choice gives it. */
            if (!p->from_secure && p->area.area.hold_max && mf_project_unheld_bytes(proj))
                p->files_changed = true;
            p->setup.selected = index;
            snprintf(p->setup.selected_name, sizeof p->setup.selected_name, "%s", folder);
            mf_flashlog_write(&p->log, "project \"%s\" selected", proj->name);
        }
    }
    pthread_mutex_unlock(&p->state_lock);
    return err;
}

void mf_programmer_info(struct mf_programmer *p, struct mf_programmer_info *info)
{
    memset(info, 0, sizeof *info);
    pthread_mutex_lock(&p->state_lock);
    info->mode = p->mode;
    info->initializing = p->initializing;
    info->secure = p->from_secure;
    info->slots = p->slot_count;
    info->log_error = p->fat_mounted ? p->log.last_error : 0;
    if (p->initializing) {
        pthread_mutex_unlock(&p->state_lock);
        return;
    }
    refresh_setup(p, NULL); /* a setup just uploaded is what #INFO should describe */
    if (p->state_message[0])
        snprintf(info->problem, sizeof info->problem, "%s", p->state_message);
    else if (p->mode == MF_MODE_STANDALONE && !p->setup_loaded && !p->initializing)
        snprintf(info->problem, sizeof info->problem, "%s", p->setup_message);
    const struct mf_project *proj = p->setup_loaded ? mf_setup_project(&p->setup) : NULL;
    if (p->setup_loaded) {
        for (int i = 0; i < 32; i++)
            snprintf(info->setup_id + 2 * i, 3, "%02x", p->setup.fingerprint[i]);
    }
    if (p->has_identity)
        snprintf(info->programmer, sizeof info->programmer, "%s", p->identity.pub.fingerprint);
    if (p->from_secure && p->secure.has_owner) {
        struct mf_owner_key k;
        mf_owner_key_from_public(p->secure.owner, &k);
        snprintf(info->owner, sizeof info->owner, "%s", k.fingerprint);
        /* As the token messages write it (no time_t, which may be 32 bits on a board). */
        if (p->secure.package_mark <= (uint64_t)INT64_MAX)
            mf_owner_time_format((int64_t)p->secure.package_mark, info->package);
    }
    if (p->pinned[0])
        snprintf(info->pinned, sizeof info->pinned, "%s", p->pinned);
    snprintf(info->move_error, sizeof info->move_error, "%s", p->move_error);
    if (proj) {
        snprintf(info->project, sizeof info->project, "%s", proj->name);
        if (proj->error)
            snprintf(info->problem, sizeof info->problem, "%s", proj->message);
        uint64_t left = 0;
        bool limited = false;
        if (mf_cycle_remaining(&p->env, &limited, &left) == 0) {
            info->limited = limited;
            info->cycles_left = left;
        }
        struct mf_tally tally;
        char message[MF_AREA_MESSAGE_MAX];
        if (p->env.area->peek(p->env.area, &p->setup, p->setup.selected, &tally, message) == 0 &&
            tally.has_serial) {
            info->has_serial = true;
            info->next_serial = tally.serial;
        }
    }
    /* The public area's rule stops every cycle from the secure area too (a stray file, an
     * unmoved _SECURE): said here as well, not only when a cycle is refused. Under state_lock,
     * which a restart's rewrite of move_error waits for (state_lock before public_mutex, as
     * mf_programmer_select takes them). */
    char m[MF_CYCLE_MESSAGE_MAX];
    if (!info->problem[0] && p->from_secure && p->setup_loaded &&
        conflict_check(p, m) == MF_ECONFLICT)
        snprintf(info->problem, sizeof info->problem, "%s", m);
    pthread_mutex_unlock(&p->state_lock);
}

int mf_programmer_secure_area(struct mf_programmer *p, bool create, const uint8_t *owner,
                              char *error)
{
    pthread_mutex_lock(&p->state_lock);
    if (any_busy(p) || p->initializing) {
        pthread_mutex_unlock(&p->state_lock);
        say(error, "a slot is busy");
        return MF_EBUSY;
    }
    p->initializing = true;
    while (p->pushing)
        pthread_cond_wait(&p->state_cond, &p->state_lock);
    pthread_mutex_unlock(&p->state_lock);
    shutdown_areas(p);
    /* Whatever the secure area held is gone for good before the partitions change: the anchor
     * forgets its key (the spec: all configuration and data files are lost). */
    int err = 0;
    error[0] = '\0';
    if ((err = open_anchor(p)) != 0)
        say(error, "trust anchor: %s", p->anchor.error);
    /* The owner pin is for the life of the trust anchor: never changed here, never removed. */
    struct mf_anchor_state as;
    memset(&as, 0, sizeof as);
    if (!err && (err = p->anchor.read_state(&p->anchor, &as)) != 0)
        say(error, "trust anchor: %s", p->anchor.error);
    sodium_memzero(as.key, sizeof as.key);
    if (!err && owner && as.has_owner && sodium_memcmp(owner, as.owner, 32) != 0) {
        struct mf_owner_key k;
        mf_owner_key_from_public(as.owner, &k);
        say(error,
            "this programmer is pinned to owner %s: the pin cannot be changed (nothing was "
            "erased)",
            k.fingerprint);
        err = MF_EPERM;
    }
    /* A command the storage will refuse is refused before the anchor forgets anything: a
     * `create` where a secure area exists (or a `remove` where none does) used to erase the
     * installed setup's key first and then fail, so the setup was gone behind an error reply. */
    bool exists = p->storage.layout.secure_count != 0;
    if (!err && !p->storage.interrupted && create == exists) {
        say(error, "%s (nothing was erased)",
            exists ? "a secure area exists already" : "there is no secure area");
        err = exists ? MF_EEXIST : MF_ENOENT;
    }
    /* The pin goes first: a power cut later in the command leaves a pinned programmer whose
     * create is simply run again, never a new secure area without the pin that was asked for
     * (one the factory could load a plain setup into). */
    bool pinned_now = false;
    if (!err && create && owner && !as.has_owner) {
        err = p->anchor.write_owner(&p->anchor, owner, as.package_mark);
        if (err)
            say(error, "the owner pin failed (nothing was erased): trust anchor: %s",
                p->anchor.error);
        pinned_now = err == 0;
    }
    char message[MF_SECURE_MESSAGE_MAX];
    if (!err && (err = mf_secure_erase(&p->anchor, message)) != 0)
        say(error, "%s", message);
    if (!err) {
        err = create ? mf_storage_secure_create(&p->storage, random_u32())
                     : mf_storage_secure_remove(&p->storage, random_u32());
        if (err)
            say(error, "%s",
                p->storage.reason[0] ? p->storage.reason
                : err == MF_EEXIST   ? "a secure area exists already"
                : err == MF_ENOENT   ? "there is no secure area"
                                     : mf_strerror(err));
    }
    if (err && pinned_now) {
        /* The pin is for life and stays: the owner is told, and that the same command again
         * completes the rest. */
        char why[MF_PROGRAMMER_TEXT_MAX];
        snprintf(why, sizeof why, "%s", error);
        say(error, "%.200s (the owner pin is written: run the same command again)", why);
    }
    note_pin(p);
    if (!err) {
        struct mf_owner_key k;
        if (owner || as.has_owner)
            mf_owner_key_from_public(owner ? owner : as.owner, &k);
        log_stderr(p, 0, "secure area %s: every file was erased%s%s",
                   create ? "created" : "removed",
                   owner || as.has_owner ? "; pinned to owner " : "",
                   owner || as.has_owner ? k.fingerprint : "");
    }
    boot(p);
    pthread_mutex_lock(&p->state_lock);
    p->initializing = false;
    pthread_mutex_unlock(&p->state_lock);
    return err;
}

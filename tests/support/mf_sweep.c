/* Power-cut sweep harness (see mf_sweep.h): a RAM medium restored from a snapshot for every
 * point, a fault device over it, and the bookkeeping that makes each failure repeatable. */
#include "mf_sweep.h"

#include "mf_err.h"
#include "mf_rambd.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MF_SWEEP_CACHE_BLOCKS 64u
#define MF_SWEEP_SOAK_SEEDS   8u

struct mf_sweep_state {
    const struct mf_sweep *sweep;
    struct mf_sweep_options options;
    struct mf_sweep_result *result;
    bool verbose;
    uint64_t only_at, only_at2; /* MF_SWEEP_AT; 0 = all */
    uint8_t *memory, *snapshot, *cache;
    size_t size;
    struct mf_rambd ram;
    struct mf_faultbd fb;
};

static const unsigned mf_sweep_modes[] = {
    MF_FAULTBD_CUT_DROP, MF_FAULTBD_CUT_APPLY,      MF_FAULTBD_CUT_SOME,
    MF_FAULTBD_CUT_TORN, MF_FAULTBD_CUT_TORN_BYTES, MF_FAULTBD_CUT_GARBLE,
};

static bool mf_sweep_env_u64(const char *name, uint64_t *value)
{
    const char *text = getenv(name);
    if (!text || !*text)
        return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 0);
    if (errno || *end) {
        fprintf(stderr, "sweep: ignoring %s=\"%s\" (not a number)\n", name, text);
        return false;
    }
    *value = v;
    return true;
}

static unsigned mf_sweep_parse_modes(const char *text)
{
    unsigned modes = 0;
    char name[32];
    while (*text) {
        size_t len = strcspn(text, ",");
        if (len < sizeof name) {
            memcpy(name, text, len);
            name[len] = '\0';
            for (size_t i = 0; i < sizeof mf_sweep_modes / sizeof mf_sweep_modes[0]; i++) {
                if (strcmp(name, mf_faultbd_cut_mode_name(mf_sweep_modes[i])) == 0)
                    modes |= mf_sweep_modes[i];
            }
        }
        text += len;
        if (*text == ',')
            text++;
    }
    return modes;
}

static void mf_sweep_resolve(struct mf_sweep_state *state, const struct mf_sweep_options *options)
{
    struct mf_sweep_options *o = &state->options;
    if (options)
        *o = *options;
    if (!o->modes)
        o->modes = MF_FAULTBD_CUT_ATOMIC;
    if (!o->seed)
        o->seed = 1;
    if (!o->seeds)
        o->seeds = 1;
    if (!o->max_reports)
        o->max_reports = 10;
    const char *soak = getenv("MF_SOAK");
    if (soak && strcmp(soak, "1") == 0) {
        o->max_points = 0;
        o->seeds *= MF_SWEEP_SOAK_SEEDS;
    }
    mf_sweep_env_u64("MF_SWEEP_SEED", &o->seed);
    const char *modes = getenv("MF_SWEEP_MODES");
    if (modes && *modes)
        o->modes = mf_sweep_parse_modes(modes);
    const char *at = getenv("MF_SWEEP_AT");
    if (at && *at) {
        char *end;
        state->only_at = strtoull(at, &end, 10);
        if (*end == ',')
            state->only_at2 = strtoull(end + 1, &end, 10);
        if (*end || state->only_at == 0) {
            fprintf(stderr, "sweep: ignoring MF_SWEEP_AT=\"%s\" (want N or N,M)\n", at);
            state->only_at = state->only_at2 = 0;
        }
    }
    const char *verbose = getenv("MF_SWEEP_VERBOSE");
    state->verbose = verbose && strcmp(verbose, "1") == 0;
}

/* Each (mode, try) gets its own seed, printed with failures. */
static uint64_t mf_sweep_seed(const struct mf_sweep_state *state, unsigned mode, unsigned try)
{
    uint64_t mix = state->options.seed ^ ((uint64_t)mode << 32) ^ try;
    return mf_faultbd_random(&mix);
}

static bool mf_sweep_is_random(unsigned mode)
{
    return mode != MF_FAULTBD_CUT_DROP && mode != MF_FAULTBD_CUT_APPLY;
}

/* The points of one dimension 1..count, spread out when limited; returns 0 after the last. */
static uint64_t mf_sweep_next(const struct mf_sweep_state *state, uint64_t previous, uint64_t count,
                              uint64_t only)
{
    if (only)
        return previous == 0 && only <= count ? only : 0;
    uint64_t limit = state->options.max_points;
    uint64_t stride = (limit && count > limit) ? (count + limit - 1) / limit : 1;
    if (previous == 0)
        return count ? 1 + state->options.seed % stride : 0;
    if (previous >= count)
        return 0;
    return previous + stride <= count ? previous + stride : count;
}

static void mf_sweep_describe(const struct mf_sweep_point *point, char *text, size_t size)
{
    if (point->cut_at2)
        snprintf(text, size, "mode=%s cut=%" PRIu64 " then cut=%" PRIu64 " seed=0x%" PRIx64,
                 mf_faultbd_cut_mode_name(point->mode), point->cut_at, point->cut_at2, point->seed);
    else if (point->second_run)
        snprintf(text, size, "mode=%s cut=%" PRIu64 " then complete run seed=0x%" PRIx64,
                 mf_faultbd_cut_mode_name(point->mode), point->cut_at, point->seed);
    else
        snprintf(text, size, "mode=%s cut=%" PRIu64 " seed=0x%" PRIx64,
                 mf_faultbd_cut_mode_name(point->mode), point->cut_at, point->seed);
}

static void mf_sweep_fail(struct mf_sweep_state *state, const struct mf_sweep_point *point,
                          const char *format, ...) __attribute__((format(printf, 3, 4)));

static void mf_sweep_fail(struct mf_sweep_state *state, const struct mf_sweep_point *point,
                          const char *format, ...)
{
    struct mf_sweep_result *result = state->result;
    char reason[160];
    va_list ap;
    va_start(ap, format);
    vsnprintf(reason, sizeof reason, format, ap);
    va_end(ap);
    if (result->failures == 0) {
        result->first_failure = *point;
        snprintf(result->first_reason, sizeof result->first_reason, "%s", reason);
    }
    result->failures++;
    if (result->failures > state->options.max_reports)
        return;
    char where[160];
    mf_sweep_describe(point, where, sizeof where);
    fprintf(stderr, "sweep %s: FAIL %s (try %u): %s\n", state->sweep->name, where, point->seed_try,
            reason);
    if (point->cut_at2)
        fprintf(stderr,
                "  repeat: MF_SWEEP_SEED=0x%" PRIx64 " MF_SWEEP_MODES=%s MF_SWEEP_AT=%" PRIu64
                ",%" PRIu64 "\n",
                state->options.seed, mf_faultbd_cut_mode_name(point->mode), point->cut_at,
                point->cut_at2);
    else
        fprintf(stderr,
                "  repeat: MF_SWEEP_SEED=0x%" PRIx64 " MF_SWEEP_MODES=%s MF_SWEEP_AT=%" PRIu64 "\n",
                state->options.seed, mf_faultbd_cut_mode_name(point->mode), point->cut_at);
}

static bool mf_sweep_stopped(const struct mf_sweep_state *state)
{
    return state->options.stop_after && state->result->failures >= state->options.stop_after;
}

/* A fresh power-up on the snapshot. */
static void mf_sweep_restore(struct mf_sweep_state *state, uint64_t seed)
{
    memcpy(state->memory, state->snapshot, state->size);
    struct mf_faultbd_config config = {
        .seed = seed,
        .cache = state->cache,
        .cache_size =
            (state->sweep->cache_blocks ? state->sweep->cache_blocks : MF_SWEEP_CACHE_BLOCKS) *
            state->sweep->block_size,
    };
    mf_faultbd_init(&state->fb, &state->ram.bd, &config);
}

/* Runs the scenario with a cut armed at n; returns false (after reporting) when the cut was not
 * reached or its error was swallowed. Reboots afterwards either way. */
static bool mf_sweep_cut_run(struct mf_sweep_state *state, struct mf_sweep_point *point, uint64_t n)
{
    mf_faultbd_arm_cut(&state->fb, n, point->mode);
    uint64_t before = mf_faultbd_counters(&state->fb)->write_points;
    point->run_error = state->sweep->run(state->sweep->context, &state->fb.bd);
    point->completed = point->run_error == 0;
    state->result->runs++;
    bool cut = mf_faultbd_powered_off(&state->fb);
    uint64_t made = mf_faultbd_counters(&state->fb)->write_points - before;
    mf_faultbd_reset(&state->fb);
    if (!cut) {
        mf_sweep_fail(state, point,
                      "the cut at write point %" PRIu64 " was not reached: the run made %" PRIu64
                      " and returned %d (%s); is the scenario deterministic?",
                      n, made, point->run_error, mf_strerror(point->run_error));
        return false;
    }
    point->cut = *mf_faultbd_last_cut(&state->fb);
    if (point->run_error == 0) {
        mf_sweep_fail(state, point, "the run returned 0 after the power cut (an error ignored)");
        return false;
    }
    return true;
}

static void mf_sweep_check(struct mf_sweep_state *state, struct mf_sweep_point *point)
{
    if (state->verbose) {
        char where[160];
        mf_sweep_describe(point, where, sizeof where);
        fprintf(stderr, "sweep %s: checking %s (try %u)\n", state->sweep->name, where,
                point->seed_try);
    }
    state->result->cuts++;
    point->report = state->result->failures < state->options.max_reports;
    int err = state->sweep->check(state->sweep->context, &state->fb.bd, point);
    if (err)
        mf_sweep_fail(state, point, "check returned %d (%s)", err, mf_strerror(err));
}

/* For a first cut at n: the run after the reboot, complete and then cut at each of its points. */
static void mf_sweep_pairs(struct mf_sweep_state *state, const struct mf_sweep_point *first,
                           uint64_t n)
{
    struct mf_sweep_point point = *first;
    point.second_run = true;
    mf_sweep_restore(state, point.seed);
    if (!mf_sweep_cut_run(state, &point, n))
        return;
    uint64_t before = mf_faultbd_counters(&state->fb)->write_points;
    point.run_error = state->sweep->run(state->sweep->context, &state->fb.bd);
    point.completed = point.run_error == 0;
    state->result->runs++;
    uint64_t second_points = mf_faultbd_counters(&state->fb)->write_points - before;
    if (point.run_error) {
        mf_sweep_fail(state, &point, "the run after the reboot failed: %d (%s)", point.run_error,
                      mf_strerror(point.run_error));
        return;
    }
    mf_sweep_check(state, &point);

    for (uint64_t m = mf_sweep_next(state, 0, second_points, state->only_at2); m;
         m = mf_sweep_next(state, m, second_points, state->only_at2)) {
        if (mf_sweep_stopped(state))
            return;
        point = *first;
        point.second_run = true;
        mf_sweep_restore(state, point.seed);
        if (!mf_sweep_cut_run(state, &point, n))
            continue;
        point.cut_at2 = m;
        if (!mf_sweep_cut_run(state, &point, m))
            continue;
        mf_sweep_check(state, &point);
    }
}

static void mf_sweep_mode(struct mf_sweep_state *state, unsigned mode)
{
    uint64_t count = state->result->write_points;
    unsigned tries = mf_sweep_is_random(mode) ? state->options.seeds : 1;
    for (uint64_t n = mf_sweep_next(state, 0, count, state->only_at); n;
         n = mf_sweep_next(state, n, count, state->only_at)) {
        for (unsigned t = 0; t < tries; t++) {
            if (mf_sweep_stopped(state))
                return;
            struct mf_sweep_point point = {
                .mode = mode,
                .seed = mf_sweep_seed(state, mode, t),
                .seed_try = t,
                .cut_at = n,
            };
            bool cut_ok = true;
            if (!state->only_at2) {
                mf_sweep_restore(state, point.seed);
                cut_ok = mf_sweep_cut_run(state, &point, n);
                if (cut_ok)
                    mf_sweep_check(state, &point);
            }
            /* A first run that already failed would only repeat its report. */
            if (cut_ok && state->options.pairs)
                mf_sweep_pairs(state, &point, n);
        }
    }
}

/* Setup, snapshot and the fault-free run that counts W. */
static int mf_sweep_prepare(struct mf_sweep_state *state)
{
    const struct mf_sweep *sweep = state->sweep;
    memset(state->memory, 0, state->size);
    if (sweep->setup) {
        int err = sweep->setup(sweep->context, &state->ram.bd);
        if (err) {
            fprintf(stderr, "sweep %s: setup failed: %d (%s)\n", sweep->name, err,
                    mf_strerror(err));
            return err;
        }
    }
    memcpy(state->snapshot, state->memory, state->size);

    struct mf_sweep_point point = {.mode = 0, .seed = state->options.seed};
    mf_sweep_restore(state, point.seed);
    point.run_error = sweep->run(sweep->context, &state->fb.bd);
    point.completed = point.run_error == 0;
    state->result->runs++;
    if (point.run_error) {
        fprintf(stderr, "sweep %s: the fault-free run failed: %d (%s)\n", sweep->name,
                point.run_error, mf_strerror(point.run_error));
        return point.run_error;
    }
    state->result->write_points = mf_faultbd_counters(&state->fb)->write_points;
    mf_faultbd_reset(&state->fb);
    point.report = true;
    int err = sweep->check(sweep->context, &state->fb.bd, &point);
    if (err) {
        fprintf(stderr, "sweep %s: check after the fault-free run failed: %d (%s)\n", sweep->name,
                err, mf_strerror(err));
        return err;
    }
    return 0;
}

int mf_sweep_run(const struct mf_sweep *sweep, const struct mf_sweep_options *options,
                 struct mf_sweep_result *result)
{
    struct mf_sweep_result local;
    if (!result)
        result = &local;
    memset(result, 0, sizeof *result);
    struct mf_sweep_state state = {.sweep = sweep, .result = result};
    mf_sweep_resolve(&state, options);

    size_t cache_blocks = sweep->cache_blocks ? sweep->cache_blocks : MF_SWEEP_CACHE_BLOCKS;
    state.size = (size_t)sweep->block_count * sweep->block_size;
    state.memory = calloc(1, state.size);
    state.snapshot = calloc(1, state.size);
    state.cache = calloc(cache_blocks, sweep->block_size);
    int err = MF_ENOMEM;
    if (!state.memory || !state.snapshot || !state.cache) {
        fprintf(stderr, "sweep %s: out of memory for a %zu-byte medium\n", sweep->name, state.size);
        goto cleanup;
    }
    mf_rambd_init(&state.ram, state.memory, sweep->block_size, sweep->block_count);

    err = mf_sweep_prepare(&state);
    if (err)
        goto cleanup;
    for (size_t i = 0; i < sizeof mf_sweep_modes / sizeof mf_sweep_modes[0]; i++) {
        if (state.options.modes & mf_sweep_modes[i])
            mf_sweep_mode(&state, mf_sweep_modes[i]);
    }
    fprintf(stderr,
            "sweep %s: %" PRIu64 " write points, %" PRIu64 " cuts checked in %" PRIu64
            " runs, %" PRIu64 " failures (seed 0x%" PRIx64 "%s)\n",
            sweep->name, result->write_points, result->cuts, result->runs, result->failures,
            state.options.seed, state.options.pairs ? ", pairs" : "");
    err = result->failures ? MF_EVERIFY : 0;

cleanup:
    free(state.memory);
    free(state.snapshot);
    free(state.cache);
    return err;
}

/* A fresh power-up on the snapshot, prepared without errors. */
static int mf_sweep_io_start(const struct mf_sweep_io *sweep, struct mf_faultbd *fb)
{
    memcpy(sweep->memory, sweep->snapshot, sweep->size);
    mf_faultbd_init(fb, sweep->medium, NULL);
    return sweep->prepare ? sweep->prepare(sweep->context, &fb->bd) : 0;
}

uint64_t mf_sweep_io_run(const struct mf_sweep_io *sweep)
{
    static const int device_codes[] = {MF_EIO, MF_EACCES, MF_ENOSPC, MF_EROFS, MF_EFBIG};
    const int *codes = sweep->codes ? sweep->codes : device_codes;
    size_t code_count =
        sweep->codes ? sweep->code_count : sizeof device_codes / sizeof device_codes[0];
    struct mf_faultbd fb;
    int err = mf_sweep_io_start(sweep, &fb);
    if (!err) {
        mf_faultbd_reset_counters(&fb);
        err = sweep->run(sweep->context);
    }
    if (err) {
        fprintf(stderr, "I/O-error sweep: the run without errors failed: %d (%s)\n", err,
                mf_strerror(err));
        return 0;
    }
    const struct mf_faultbd_counters *n = mf_faultbd_counters(&fb);
    uint64_t calls = n->reads + n->progs + n->erases + n->syncs + n->reserves;
    for (uint64_t at = 1; at <= calls; at++) {
        for (int persistent = 0; persistent < 2; persistent++) {
            for (size_t k = 0; k < code_count; k++) {
                struct mf_sweep_io_point point = {
                    .at = at, .persistent = persistent != 0, .code = codes[k]};
                err = mf_sweep_io_start(sweep, &fb);
                if (err) {
                    fprintf(stderr, "I/O-error sweep: prepare failed: %d (%s)\n", err,
                            mf_strerror(err));
                    return 0;
                }
                mf_faultbd_fail_io(&fb, MF_FAULTBD_OP_ALL, at, point.persistent);
                mf_faultbd_fail_io_code(&fb, point.code);
                point.run_error = sweep->run(sweep->context);
                mf_faultbd_fail_io_off(&fb);
                sweep->check(sweep->context, &point);
            }
        }
    }
    return calls;
}

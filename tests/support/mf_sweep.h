/* Power-cut sweep harness: runs a scenario on an mf_faultbd over a RAM medium, cuts the power at
 * every write point (and, for short critical paths, at every pair of points: one in a first
 * run, one in the run after the reboot), reboots and checks invariants each time.
 * No test framework inside: check() returns an error, and failures are printed with what is
 * needed to repeat them (mode, cut points, seed). docs/internals/faultbd.md has an example.
 *
 * One sweep, per cut mode in options.modes:
 *   1. setup(medium) once on a zeroed RAM medium; its contents become the snapshot.
 *   2. fault-free: restore, run(bd) must return 0; its write points are W; check(point 0).
 *   3. for each N in 1..W (all of them, or a spread when limited), for each seed try:
 *      restore, arm a cut at N, run(bd) must hit the cut and return nonzero, reboot
 *      (mf_faultbd_reset), check(bd, point).
 *   4. with options.pairs, for each first cut N as above: reboot, run again without a cut
 *      (must return 0, W2 write points), check; then for each M in 1..W2: repeat the first cut
 *      at N, reboot, run with a cut at M, reboot, check.
 * The random modes (some, torn, torn-bytes, garble) are tried with `seeds` different seeds per
 * point; drop and apply once.
 * Environment: MF_SOAK=1 sweeps every point and 8 times the seeds; MF_SWEEP_SEED (base seed),
 * MF_SWEEP_MODES (names, comma-separated) and MF_SWEEP_AT ("N" or "N,M") narrow a sweep down to
 * repeat a reported failure; MF_SWEEP_VERBOSE=1 prints every point before its check. */
#ifndef MF_SWEEP_H
#define MF_SWEEP_H

#include "mf_bd.h"
#include "mf_faultbd.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Where the cut(s) were, handed to check(). */
struct mf_sweep_point {
    unsigned mode;     /* MF_FAULTBD_CUT_* of this point */
    uint64_t seed;     /* the fault device's seed */
    unsigned seed_try; /* 0 .. seeds - 1 */
    uint64_t cut_at;   /* first cut: write point 1..W of the first run; 0 = fault-free run */
    uint64_t cut_at2;  /* pairs: second cut, write point of the second run; 0 = none */
    bool second_run;   /* pairs: a second run happened after the first cut */
    bool completed;    /* the last run returned 0 (it was not cut) */
    int run_error;     /* what the last run returned */
    bool report;       /* a failure here is printed: check() may print its details too */
    struct mf_faultbd_cut cut; /* details of the last cut (when cut_at != 0) */
};

struct mf_sweep {
    const char *name; /* printed with every failure */
    uint32_t block_size;
    mf_block_t block_count;
    size_t cache_blocks; /* fault device's write cache; 0: 64 blocks */
    void *context;       /* handed to the callbacks */
    /* Prepares the initial contents, directly on the medium (no faults). Optional. */
    int (*setup)(void *context, const struct mf_bd *medium);
    /* The scenario (including any recovery/mount at its start). Returns 0 or an error; after a
     * cut it must return an error (a 0 means an error was swallowed: reported as a failure). */
    int (*run)(void *context, const struct mf_bd *bd);
    /* Verifies the invariants on the rebooted device (no faults armed; it may write, e.g. to
     * recover). Returns 0 when they hold; print details on stderr. */
    int (*check)(void *context, const struct mf_bd *bd, const struct mf_sweep_point *point);
};

/* Zero-init means: block-atomic modes, base seed 1, one seed try, single cuts only, every
 * point, report up to 10 failures, never stop early. */
struct mf_sweep_options {
    unsigned modes;       /* MF_FAULTBD_CUT_* bits; 0: MF_FAULTBD_CUT_ATOMIC */
    uint64_t seed;        /* base seed; 0: 1 */
    unsigned seeds;       /* tries per point for random modes; 0: 1 (soak: 8 times) */
    bool pairs;           /* also sweep pairs of cuts (cost: about W * W2 runs per mode) */
    uint64_t max_points;  /* per sweep dimension, outside soak: when W is larger, every
                           * ceil(W / max_points)-th point is tried, and always W; 0: all */
    unsigned max_reports; /* failures printed; 0: 10 */
    uint64_t stop_after;  /* stop after this many failures; 0: never */
};

struct mf_sweep_result {
    uint64_t write_points; /* W of the fault-free run */
    uint64_t runs;         /* scenario runs, all modes */
    uint64_t cuts;         /* points cut and checked */
    uint64_t failures;
    struct mf_sweep_point first_failure;
    char first_reason[160];
};

/* Runs the sweep described above. Returns 0 when every check passed, MF_EVERIFY when any point
 * failed (details on stderr and in `result`, which may be NULL), or another error when the sweep
 * itself could not run (setup failed, the fault-free run or its check failed, no memory). */
int mf_sweep_run(const struct mf_sweep *sweep, const struct mf_sweep_options *options,
                 struct mf_sweep_result *result);

/* Device errors at every device call of a scenario, the I/O-error side of a sweep: for each call
 * n of run() (reads, programs, erases, syncs and reserves, counted in a first run without errors),
 * once and for good (persistent), with each of `codes` in turn (innermost): the RAM medium is
 * restored from `snapshot`, prepare() runs on a fault device over it without errors (a mount, say),
 * the error is armed (mf_faultbd_fail_io over every kind of call, then mf_faultbd_fail_io_code),
 * run() runs, the error is disarmed, and check() judges, still with the fault device (it may go on
 * using it). */
struct mf_sweep_io_point {
    uint64_t at;     /* the call that fails, from 1 */
    bool persistent; /* and every call after it */
    int code;        /* what they return */
    int run_error;   /* what run() returned */
};

struct mf_sweep_io {
    const struct mf_bd *medium; /* a RAM device over `memory` */
    uint8_t *memory;
    const uint8_t *snapshot; /* the medium's contents before each run, `size` bytes */
    size_t size;
    const int *codes; /* the errors each failing call returns; NULL: every code a file device
                         gives (MF_EIO, MF_EACCES, MF_ENOSPC, MF_EROFS, MF_EFBIG) */
    size_t code_count;
    void *context;
    int (*prepare)(void *context, const struct mf_bd *bd);
    int (*run)(void *context);
    void (*check)(void *context, const struct mf_sweep_io_point *point);
};

/* Runs the error sweep above. Returns the number of calls run() made without errors (each was
 * failed in turn), or 0 when prepare() or the run without errors failed (printed). */
uint64_t mf_sweep_io_run(const struct mf_sweep_io *sweep);

#endif

/* A helper thread lent by the platform (the core has no threads of its own): a caller hands it one
 * job, goes on with its own share of the work, then waits for the job. Several callers may share
 * one worker; one that finds it busy does all the work itself. */
#ifndef MF_WORKER_H
#define MF_WORKER_H

#include <stdbool.h>

struct mf_worker {
    void *context;
    /* Starts fn(arg) on the worker's thread and returns true; false when the worker is busy with
     * another caller's job (or has no thread): nothing was started. After true, the caller must
     * call wait() before the worker takes another job. */
    bool (*try_start)(void *context, void (*fn)(void *arg), void *arg);
    /* Returns once the job started by this caller's try_start has finished. */
    void (*wait)(void *context);
    /* Optional (may be NULL): takes back the job started by this caller's try_start if the
     * worker has not begun it (its thread had no core yet): then it never runs, the worker is
     * free again, and true is returned. False when it has begun: wait() for it. For a caller
     * that can do the job's share itself rather than wait for a thread to be scheduled. */
    bool (*withdraw)(void *context);
};

#endif

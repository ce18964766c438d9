/* The platform's worker (core/mf_worker.h) on a POSIX thread of its own. */
#ifndef MF_WORKER_THREAD_H
#define MF_WORKER_THREAD_H

#include "mf_worker.h"

#include <pthread.h>
#include <stdbool.h>

struct mf_worker_thread {
    struct mf_worker worker; /* hand &x.worker to the core */
    pthread_t thread;
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    void (*fn)(void *arg); /* the job given, NULL when there is none to run */
    void *arg;
    bool owned;   /* a caller's job is given or running or not yet waited for */
    bool running; /* the thread is running the job */
    bool stop;
    bool started;
};

/* Starts the thread. 0, or MF_ENOMEM (no thread: the worker then refuses every job, and callers
 * do the work themselves). */
int mf_worker_thread_start(struct mf_worker_thread *w);

/* Stops the thread (after the job it runs). */
void mf_worker_thread_stop(struct mf_worker_thread *w);

#endif

/* The platform's worker on a POSIX thread (see mf_worker_thread.h). */
#include "mf_worker_thread.h"

#include "mf_err.h"

#include <string.h>

static void *worker_main(void *context)
{
    struct mf_worker_thread *w = context;
    pthread_mutex_lock(&w->mutex);
    for (;;) {
        while (!w->fn && !w->stop)
            pthread_cond_wait(&w->cond, &w->mutex);
        if (w->stop && !w->fn)
            break;
        void (*fn)(void *) = w->fn;
        void *arg = w->arg;
        w->running = true;
        pthread_mutex_unlock(&w->mutex);
        fn(arg);
        pthread_mutex_lock(&w->mutex);
        w->fn = NULL;
        w->running = false;
        pthread_cond_broadcast(&w->cond);
    }
    pthread_mutex_unlock(&w->mutex);
    return NULL;
}

static bool try_start(void *context, void (*fn)(void *arg), void *arg)
{
    struct mf_worker_thread *w = context;
    if (!w->started)
        return false;
    pthread_mutex_lock(&w->mutex);
    bool free_now = !w->owned && !w->stop;
    if (free_now) {
        w->owned = true;
        w->fn = fn;
        w->arg = arg;
        pthread_cond_broadcast(&w->cond);
    }
    pthread_mutex_unlock(&w->mutex);
    return free_now;
}

static void wait_job(void *context)
{
    struct mf_worker_thread *w = context;
    pthread_mutex_lock(&w->mutex);
    while (w->fn || w->running)
        pthread_cond_wait(&w->cond, &w->mutex);
    w->owned = false;
    pthread_mutex_unlock(&w->mutex);
}

static bool withdraw(void *context)
{
    struct mf_worker_thread *w = context;
    pthread_mutex_lock(&w->mutex);
    bool not_begun = w->fn && !w->running; /* the thread takes fn and sets running at once */
    if (not_begun) {
        w->fn = NULL;
        w->owned = false;
    }
    pthread_mutex_unlock(&w->mutex);
    return not_begun;
}

int mf_worker_thread_start(struct mf_worker_thread *w)
{
    memset(w, 0, sizeof *w);
    w->worker = (struct mf_worker){
        .context = w, .try_start = try_start, .wait = wait_job, .withdraw = withdraw};
    pthread_mutex_init(&w->mutex, NULL);
    pthread_cond_init(&w->cond, NULL);
    if (pthread_create(&w->thread, NULL, worker_main, w) != 0)
        return MF_ENOMEM;
    w->started = true;
    return 0;
}

void mf_worker_thread_stop(struct mf_worker_thread *w)
{
    if (w->started) {
        pthread_mutex_lock(&w->mutex);
        w->stop = true;
        pthread_cond_broadcast(&w->cond);
        pthread_mutex_unlock(&w->mutex);
        pthread_join(w->thread, NULL);
        w->started = false;
    }
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->mutex);
}

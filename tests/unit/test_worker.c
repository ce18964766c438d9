/* The platform's worker thread (host/mf_worker_thread.h): a job runs on another thread while the
 * caller goes on, wait() returns once it is done, a second caller finds it busy until the first
 * waited, a job not yet begun can be withdrawn, and stop ends the thread. */
#include "mf_worker_thread.h"

#include <pthread.h>
#include <stdatomic.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <unistd.h>

#include <cmocka.h>

struct job {
    pthread_t ran_on;
    atomic_int done; /* read by the test while the worker may write it */
    unsigned sleep_us;
};

static void run(void *arg)
{
    struct job *j = arg;
    if (j->sleep_us)
        usleep(j->sleep_us);
    j->ran_on = pthread_self();
    j->done++;
}

static void test_jobs_run_on_the_worker(void **state)
{
    (void)state;
    struct mf_worker_thread t;
    assert_int_equal(mf_worker_thread_start(&t), 0);
    const struct mf_worker *w = &t.worker;
    for (int i = 0; i < 1000; i++) {
        struct job j = {0};
        assert_true(w->try_start(w->context, run, &j));
        w->wait(w->context);
        assert_int_equal(j.done, 1);
        assert_false(pthread_equal(j.ran_on, pthread_self()));
    }
    mf_worker_thread_stop(&t);
}

static void test_busy_until_waited(void **state)
{
    (void)state;
    struct mf_worker_thread t;
    assert_int_equal(mf_worker_thread_start(&t), 0);
    const struct mf_worker *w = &t.worker;
    struct job slow = {.sleep_us = 50000}, other = {0};
    assert_true(w->try_start(w->context, run, &slow));
    assert_false(w->try_start(w->context, run, &other)); /* busy: the caller does it itself */
    w->wait(w->context);
    assert_int_equal(slow.done, 1);
    /* Finished but not yet waited for is busy too; after wait it is free again. */
    struct job quick = {0};
    assert_true(w->try_start(w->context, run, &quick));
    while (!quick.done)
        usleep(1000);
    assert_false(w->try_start(w->context, run, &other));
    w->wait(w->context);
    assert_true(w->try_start(w->context, run, &other));
    w->wait(w->context);
    assert_int_equal(other.done, 1);
    mf_worker_thread_stop(&t);
}

/* A job taken back before the thread began it never runs and leaves the worker free; one the
 * thread began cannot be taken back and is waited for. Both happen, whichever the scheduler
 * picks in each round; the rounds that withdrew are checked against a job run after them. */
static void test_withdraw_before_it_begins(void **state)
{
    (void)state;
    struct mf_worker_thread t;
    assert_int_equal(mf_worker_thread_start(&t), 0);
    const struct mf_worker *w = &t.worker;
    unsigned withdrawn = 0;
    for (int i = 0; i < 2000; i++) {
        struct job j = {0}, after = {0};
        assert_true(w->try_start(w->context, run, &j));
        if (w->withdraw(w->context)) {
            withdrawn++;
            assert_true(w->try_start(w->context, run, &after)); /* free again */
            w->wait(w->context);
            assert_int_equal(after.done, 1);
            assert_int_equal(j.done, 0); /* the worker runs jobs in turn: it never had it */
        } else {
            w->wait(w->context);
            assert_int_equal(j.done, 1);
        }
    }
    /* Finished: nothing to take back. */
    struct job j = {0};
    assert_true(w->try_start(w->context, run, &j));
    while (!j.done)
        usleep(1000);
    usleep(1000);
    assert_false(w->withdraw(w->context));
    w->wait(w->context);
    mf_worker_thread_stop(&t);
    print_message("withdrawn in %u of 2000 rounds\n", withdrawn);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jobs_run_on_the_worker),
        cmocka_unit_test(test_busy_until_waited),
        cmocka_unit_test(test_withdraw_before_it_begins),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* The thread pool of the compiled kernels (minigrad/_pool.pyx): mg_pool_run(fn, arg, n) runs
   fn(arg, i, n) for every part i < n, on the calling thread and on worker threads (each part on
   whichever gets to it first), and returns when all are done.

   The workers wait passively, on a condition variable (a futex on Linux), never spinning: a
   worker that the scheduler has not run yet costs the others nothing but the time it needs, so n
   threads on a loaded machine are never much slower than one. They are created on first use and
   live for the process (a fork's child starts with none and creates its own). The caller takes
   parts too, so a worker that is slow to be scheduled delays nothing: the caller runs its parts.

   One job at a time: a call made while another thread's job runs (two Python threads in the
   kernels at once), a call made from inside a part, or any call on a system without POSIX
   threads runs every part on the calling thread, in order. The parts a kernel computes do not
   depend on which thread runs them, so neither do its results. */
#ifndef MG_POOL_H
#define MG_POOL_H

typedef void (*mg_task)(void *arg, int i, int n);

#define MG_POOL_MAX 256

#if defined(_WIN32) || !defined(__unix__) && !defined(__APPLE__)
#define MG_HAVE_POOL 0
static void mg_pool_run(mg_task fn, void *arg, int n) {
    for (int i = 0; i < n; i++) fn(arg, i, n);
}
#else
#define MG_HAVE_POOL 1
#include <pthread.h>
#include <stdint.h>

static pthread_mutex_t mg_pool_mu = PTHREAD_MUTEX_INITIALIZER;   /* guards the fields below */
static pthread_cond_t mg_pool_go = PTHREAD_COND_INITIALIZER;     /* a part is waiting */
static pthread_cond_t mg_pool_done = PTHREAD_COND_INITIALIZER;   /* the last part ended */
static pthread_mutex_t mg_pool_busy = PTHREAD_MUTEX_INITIALIZER; /* held while a job runs */
static int mg_pool_started = 0;        /* workers created */
static mg_task mg_pool_fn;             /* the job: fn(arg, i, n) for i < n */
static void *mg_pool_arg;
static int mg_pool_n = 0, mg_pool_next = 0, mg_pool_ended = 0;  /* parts; claimed; finished */
static int mg_pool_forked_hook = 0;

/* Run the parts nobody has claimed yet, from the caller or a worker (under mg_pool_mu). A part
   is claimed by whichever thread gets to it first: a worker the scheduler runs late finds
   nothing left and goes back to sleep, so the caller never waits for a thread that has not
   started. */
static void mg_pool_claim(void) {
    while (mg_pool_next < mg_pool_n) {
        int i = mg_pool_next++, n = mg_pool_n;
        mg_task fn = mg_pool_fn;
        void *arg = mg_pool_arg;
        pthread_mutex_unlock(&mg_pool_mu);
        fn(arg, i, n);
        pthread_mutex_lock(&mg_pool_mu);
        if (++mg_pool_ended == n) pthread_cond_signal(&mg_pool_done);
    }
}

static void *mg_pool_worker(void *p) {
    (void)p;
    pthread_mutex_lock(&mg_pool_mu);
    for (;;) {
        while (mg_pool_next >= mg_pool_n) pthread_cond_wait(&mg_pool_go, &mg_pool_mu);
        mg_pool_claim();
    }
    return NULL;
}

/* A fork's child has only the forking thread: forget the workers and reset the locks. */
static void mg_pool_after_fork(void) {
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
    mg_pool_mu = mu;
    mg_pool_busy = mu;
    mg_pool_go = cv;
    mg_pool_done = cv;
    mg_pool_started = 0;
    mg_pool_n = mg_pool_next = mg_pool_ended = 0;
}

/* Create workers up to `want` (under mg_pool_mu); returns how many exist. */
static int mg_pool_grow(int want) {
    if (!mg_pool_forked_hook) {
        pthread_atfork(NULL, NULL, mg_pool_after_fork);
        mg_pool_forked_hook = 1;
    }
    while (mg_pool_started < want) {
        pthread_t th;
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        int err = pthread_create(&th, &at, mg_pool_worker, NULL);
        pthread_attr_destroy(&at);
        if (err) break;                                 /* fewer threads: the caller does more */
        mg_pool_started++;
    }
    return mg_pool_started;
}

/* Run fn(arg, i, n) for i < n on the caller and up to n - 1 workers; returns when all are done. */
static void mg_pool_run(mg_task fn, void *arg, int n) {
    if (n > 1 && pthread_mutex_trylock(&mg_pool_busy) == 0) {
        pthread_mutex_lock(&mg_pool_mu);
        int w = mg_pool_grow(n - 1 < MG_POOL_MAX - 1 ? n - 1 : MG_POOL_MAX - 1);
        mg_pool_fn = fn;
        mg_pool_arg = arg;
        mg_pool_n = n;
        mg_pool_next = 0;
        mg_pool_ended = 0;
        for (int i = 0; i < w && i < n - 1; i++) pthread_cond_signal(&mg_pool_go);
        mg_pool_claim();
        while (mg_pool_ended < n) pthread_cond_wait(&mg_pool_done, &mg_pool_mu);
        mg_pool_n = mg_pool_next = 0;
        pthread_mutex_unlock(&mg_pool_mu);
        pthread_mutex_unlock(&mg_pool_busy);
        return;
    }
    for (int i = 0; i < n; i++) fn(arg, i, n);
}
#endif

#endif

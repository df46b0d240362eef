/* The thread pool of the compiled kernels (minigrad/_pool.pyx): mg_pool_run(fn, arg, n) runs
   fn(arg, i, n) for every part i < n, part 0 on the calling thread and parts 1.. on worker
   threads, and returns when all are done.

   The workers wait passively, on a condition variable (a futex on Linux), never spinning: a
   worker that the scheduler has not run yet costs the others nothing but the time it needs, so n
   threads on a loaded machine are never much slower than one. They are created on first use and
   live for the process (a fork's child starts with none and creates its own).

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
static int mg_pool_run(mg_task fn, void *arg, int n) {
    for (int i = 0; i < n; i++) fn(arg, i, n);
    return 1;
}
#else
#define MG_HAVE_POOL 1
#include <pthread.h>
#include <stdint.h>

static pthread_mutex_t mg_pool_mu = PTHREAD_MUTEX_INITIALIZER;   /* guards the fields below */
static pthread_cond_t mg_pool_go = PTHREAD_COND_INITIALIZER;     /* a new job was posted */
static pthread_cond_t mg_pool_done = PTHREAD_COND_INITIALIZER;   /* the last worker part ended */
static pthread_mutex_t mg_pool_busy = PTHREAD_MUTEX_INITIALIZER; /* held while a job runs */
static int mg_pool_started = 0;        /* workers created (ids 1 .. mg_pool_started) */
static unsigned long mg_pool_gen = 0;  /* job number: a worker runs each job once */
static mg_task mg_pool_fn;
static void *mg_pool_arg;
static int mg_pool_n, mg_pool_workers, mg_pool_left;
static int mg_pool_forked_hook = 0;
static unsigned long mg_pool_born[MG_POOL_MAX];  /* each worker's last job seen when created */

static void *mg_pool_worker(void *p) {
    int id = (int)(intptr_t)p;
    pthread_mutex_lock(&mg_pool_mu);
    unsigned long seen = mg_pool_born[id];  /* not mg_pool_gen: the job it was made for is past */
    for (;;) {
        while (mg_pool_gen == seen) pthread_cond_wait(&mg_pool_go, &mg_pool_mu);
        seen = mg_pool_gen;
        if (id > mg_pool_workers) continue;                  /* not needed this time */
        mg_task fn = mg_pool_fn;
        void *arg = mg_pool_arg;
        int n = mg_pool_n;
        pthread_mutex_unlock(&mg_pool_mu);
        fn(arg, id, n);
        pthread_mutex_lock(&mg_pool_mu);
        if (--mg_pool_left == 0) pthread_cond_signal(&mg_pool_done);
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
}

/* Create workers up to ids 1 .. want - 1 (under mg_pool_mu); returns how many exist. */
static int mg_pool_grow(int want) {
    if (!mg_pool_forked_hook) {
        pthread_atfork(NULL, NULL, mg_pool_after_fork);
        mg_pool_forked_hook = 1;
    }
    while (mg_pool_started < want - 1) {
        pthread_t th;
        pthread_attr_t at;
        mg_pool_born[mg_pool_started + 1] = mg_pool_gen;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        int err = pthread_create(&th, &at, mg_pool_worker, (void *)(intptr_t)(mg_pool_started + 1));
        pthread_attr_destroy(&at);
        if (err) break;                                     /* fewer threads: the caller does more */
        mg_pool_started++;
    }
    return mg_pool_started;
}

/* Run fn(arg, i, n) for i < n; returns how many threads ran parts (1: all on the caller). */
static int mg_pool_run(mg_task fn, void *arg, int n) {
    int w = 0;
    if (n > MG_POOL_MAX) n = MG_POOL_MAX;
    if (n > 1 && pthread_mutex_trylock(&mg_pool_busy) == 0) {
        pthread_mutex_lock(&mg_pool_mu);
        w = mg_pool_grow(n);
        if (w > n - 1) w = n - 1;
        if (w > 0) {
            mg_pool_fn = fn;
            mg_pool_arg = arg;
            mg_pool_n = n;
            mg_pool_workers = w;
            mg_pool_left = w;
            mg_pool_gen++;
            pthread_cond_broadcast(&mg_pool_go);
        }
        pthread_mutex_unlock(&mg_pool_mu);
        fn(arg, 0, n);
        for (int i = w + 1; i < n; i++) fn(arg, i, n);      /* parts no worker could take */
        if (w > 0) {
            pthread_mutex_lock(&mg_pool_mu);
            while (mg_pool_left > 0) pthread_cond_wait(&mg_pool_done, &mg_pool_mu);
            pthread_mutex_unlock(&mg_pool_mu);
        }
        pthread_mutex_unlock(&mg_pool_busy);
        return w + 1;
    }
    for (int i = 0; i < n; i++) fn(arg, i, n);
    return 1;
}
#endif

#endif

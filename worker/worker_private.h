#ifndef IMGCACHE_WORKER_PRIVATE_H
#define IMGCACHE_WORKER_PRIVATE_H
/* The worker's internals, shared by its modules and by nothing else (as
 * hiredis's async_private.h): a job per distinct URL in flight, the events
 * it stands for, and struct worker, which owns every job, queue, counter
 * and handle. Users of the worker see only worker.h.
 *
 * Who does what to a job (each module's header says more):
 *   job.c       creates, moves between state queues, finishes, frees
 *   consumer.c  Kafka messages -> events -> jobs; offsets; pause; rebalance
 *   dedup.c     the cache look-up and the Redis leases (JOB_NEW/WAITING)
 *   download.c  downloads and their classification (JOB_READY/FETCHING)
 *   handoff.c   stored images to the committer and back (JOB_COMMIT/COMMITTING)
 *   failure.c   retry/dead-letter policy, publishing, failure rows
 *   revalidate.c  refresh events of cached URLs: conditional downloads (JOB_REVALIDATED)
 *   drain.c     --drain: has the group read everything?
 *   worker_metrics.c  the metrics and the HTTP endpoint: the others call it
 *   worker.c    builds all of it, runs the loop, tears down
 *
 * Ownership: struct worker owns its jobs (w->jobs and the queues); a job
 * owns its events, its copy of the message, its download (blob or body)
 * and every string it points to. */
#include <limits.h>
#include <librdkafka/rdkafka.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <uthash.h>

#include "body.h"
#include "breaker.h"
#include "committer.h"
#include "config.h"
#include "db.h"
#include "fetch.h"
#include "kafka.h"
#include "lease.h"
#include "offsets.h"
#include "outage.h"
#include "resolve.h"
#include "sniff.h"
#include "store.h"
#include "worker_metrics.h"

#define BATCH_MAX 256          /* URLs per look-up, lease round trip or failure batch */
#define CONSUME_BUDGET 512     /* messages taken per loop turn */
#define MAX_RETRIES_LIST CONFIG_RETRY_STEPS_MAX
#define REVOKE_WAIT_MS 3000    /* how long a revoked partition's work may finish */
#define LEAVE_WAIT_MS 5000     /* at shutdown, how long leaving the group may take */
/* dedup_release_leases() takes a committed batch */
_Static_assert(COMMIT_BATCH_MAX <= BATCH_MAX, "a commit batch must fit dedup_release_leases()");
#define COMMIT_PENDING_MAX (2 * COMMIT_BATCH_MAX) /* stored images waiting for the committer */
#define DRAIN_IDLE_MS 250      /* --drain: idle this long before asking the broker */
#define DRAIN_CHECK_EVERY_MS 300 /* --drain: at most one caught-up check this often */
#define BROKER_ASK_TIMEOUT_MS 5000 /* metadata, offsets and flushes asked of the broker */
#define WATERMARK_ASK_TIMEOUT_MS 2000 /* an end offset the consumer has not cached */
#define PROGRESS_EVERY_MS 10000 /* a progress line this often */
#define LOOP_WAIT_MS 100       /* longest sleep of the loop: a stop is seen this fast */
#define LOOP_POLL_MS 20        /* sleep while something timed or unacknowledged waits */
#define PUBLISH_RETRY_MS 1000  /* a publish that failed is tried again after this */
/* jobs waiting for another worker's lease are looked at this many times
 * per IMGCACHE_RECHECK, so each is rechecked at most a quarter late */
#define RECHECK_SCANS 4
#define DRAIN_OFFSETS_TIMEOUT_MS 5000 /* --drain without assignment: the group's offsets */
/* an open circuit's cooldown grows, on each failed probe, up to this */
#define BREAKER_MAX_COOLDOWN_MS (10 * 60 * 1000)
/* with the metrics endpoint on, PostgreSQL is asked this often when
 * nothing else has used it, so /readyz does not wait for the next batch */
#define DB_PROBE_EVERY_MS 2000

enum job_state {
    JOB_HELD,       /* from the retry topic, not due yet */
    JOB_NEW,        /* needs the cache look-up */
    JOB_WAITING,    /* another worker holds the lease: check again later */
    JOB_READY,      /* lease held (or Redis down): may download */
    JOB_BREAKER,    /* its host's circuit is open: waits, no attempt used */
    JOB_FETCHING,   /* with libcurl (or settled this turn) */
    JOB_PUBLISH,    /* failed: to publish to the retry or dead-letter topic */
    JOB_PUBLISHING, /* waiting for that publish's delivery report */
    JOB_COMMIT,     /* stored; to hand to the committer */
    JOB_COMMITTING, /* with the committer: being made durable and recorded */
    JOB_REVALIDATED, /* not modified: its refreshed_at still to write */
    JOB_FAILURE_ROW, /* published: its image_failures row still to write */
};

struct job_event {
    struct offsets_partition *partition; /* its partition's tracker (a reference) */
    uint64_t seq;
    struct job_event *next;
};

struct worker;

/* One URL in flight. The groups of fields below are each written by the
 * module named above them (job.c moves any job between states). */
struct job {
    /* job.c, consumer.c: identity, events, the message retries carry on */
    struct worker *w;
    char *url;                  /* NULL for an undecodable event */
    char *data_url;             /* the data: URL url is the key of, from the event */
    enum job_state state;
    struct job_event *events;
    size_t n_events;
    int leased;                 /* we hold its Redis lease */
    int in_table;               /* in w->jobs: new events of its URL join it */
    int attempts;               /* downloads tried, across retries */
    int from_retry;             /* an event came from the retry topic */
    long long due_ms;           /* timed states: when to go on */
    /* the first event, as received: what retry and dead-letter carry on */
    void *msg_key, *msg_value;
    size_t msg_keylen, msg_valuelen;
    char src_topic[256];
    int32_t src_partition;
    int64_t src_offset;
    long long first_failed_ms;  /* wall clock, 0 before the first failure */
    long long next_attempt_ms;  /* wall clock, for a retry */
    int dead_letter;            /* publishing to -dlt (else to -retry) */
    /* dedup.c, download.c: the lease, the source, the download */
    char *origin;               /* "scheme://host:port", the circuit breaker's key */
    struct resolved res;
    int resolved;
    struct store_blob blob;
    int blob_open;
    int wrote_blob;             /* handoff.c: its commit made the blob's file (image-stored is due) */
    long long fetch_started_ms; /* when libcurl took it (the download-time histogram) */
    struct body body;           /* the download so far, while in_memory */
    int in_memory;              /* held in w->bodies, no file yet (see body.h) */
    struct sniff_result sniff;
    int sniff_done;
    /* set when the job aborts its own download */
    const char *abort_class;
    int abort_permanent;
    char abort_msg[256];
    /* download.c (a stored image), failure.c (a failure): the outcome */
    char sha256[HASH_HEX_LEN + 1];
    char key[STORE_KEY_MAX];
    char etag[FETCH_ETAG_MAX + 1];
    char last_modified[FETCH_LAST_MODIFIED_MAX + 1];
    char error_class[32];
    char error_msg[300];
    int http_status;
    long long retry_after_s;
    int permanent;
    /* consumer.c, revalidate.c: a refresh (see revalidate.h) */
    long long refresh_since_ms; /* the newest refresh event's produced_at; 0: none */
    int revalidating;           /* cached, checked before that: a revalidation */
    char old_sha256[HASH_HEX_LEN + 1];                /* the cached row's, when revalidating */
    char old_etag[FETCH_ETAG_MAX + 1];
    char old_last_modified[FETCH_LAST_MODIFIED_MAX + 1];
    struct job *prev, *next;    /* the queue of its state */
    UT_hash_handle hh;          /* by url */
};

/* A transfer libcurl finished, until the loop settles it. */
struct finished_transfer {
    struct job *job;
    struct fetch_result result;
};

struct worker {
    const struct config *cfg;
    char worker_id[256];
    rd_kafka_t *rk;
    rd_kafka_queue_t *queue;
    int wake[2];                /* the loop's wake pipe: librdkafka and the committer write */
    struct db *db;
    struct lease *lease;
    struct store *store;
    struct fetcher *fetch;
    struct finished_transfer *finished; /* queued by on_done, settled after fetch_perform */
    size_t n_finished, cap_finished;    /* cap: concurrency, the most transfers at once */
    struct committer *committer;
    struct commit_batch *batch;  /* the one batch the committer may hold */
    long long batch_submitted_ms; /* when it was handed over */
    struct body_pool bodies;     /* downloads held in memory for the committer */
    struct netguard *guard;
    struct breaker *breaker;
    struct kafka_producer *publisher;  /* retry and dead-letter publishes */
    char retry_topic[300];
    char dlt_topic[300];
    struct resolve_config resolve_cfg;
    struct offsets offsets;
    long long retry_delays[MAX_RETRIES_LIST];
    int n_retry_delays;
    long long hold_limit_ms;    /* a retry event is held at most this long */
    size_t hold_max;            /* held jobs at which the retry partitions pause */
    long long drain_hold_ms;    /* --drain waits for held retries due within this */
    long long next_held_due_ms; /* the earliest held job's due_ms */

    struct job *jobs;           /* hash by url */
    size_t n_jobs;              /* also counts undecodable events' jobs */
    struct job *q_held, *q_new, *q_waiting, *q_ready, *q_breaker, *q_publish, *q_commit, *q_failure_row,
        *q_revalidated;
    size_t n_in_state[JOB_FAILURE_ROW + 1]; /* jobs per state */
    size_t n_fetching;
    size_t outstanding;         /* events not finished */
    size_t max_outstanding;
    int paused;                 /* every partition paused for backpressure */
    long long over_since_ms;    /* when outstanding reached the cap; 0: below */
    int stopping;
    int closing;                /* consumer_close: no waiting in callbacks */

    int assigned_once;
    /* a cooperative revoke is followed by an assignment (maybe empty):
     * until it comes, and for DRAIN_IDLE_MS after any rebalance call, the
     * assignment is not the one the drain check must judge */
    int rebalance_pending;
    long long last_rebalance_ms;
    long long started_ms;
    long long next_recheck_ms;
    long long next_drain_check_ms;
    long long idle_since_ms;    /* 0 while there is work */
    struct outage db_outage;    /* PostgreSQL unreachable: hold offsets, retry */
    long long next_db_probe_ms; /* dedup_db_probe(), with the metrics endpoint on */
    int redis_down;
    /* our own configured endpoints, whose 401/403 refuses our token, not
     * an image: origins of BEEPER_API_URL and BEEPER_MEDIA_SERVER (NULL
     * when unset), and whether that refusal was logged since it last
     * answered */
    char *api_origin, *media_origin;
    int api_auth_logged, media_auth_logged;

    struct worker_metrics *metrics; /* NULL when IMGCACHE_METRICS_ADDR is empty */
    int lag_from_start;         /* auto.offset.reset is earliest (worker_metrics_kafka_stats) */

    /* counters for progress lines and the summary */
    long long n_consumed, n_bad_events, n_already_cached, n_downloaded, n_new_blobs,
        n_committed, n_failed, n_waited, n_retries, n_dead_letters, n_spilled, n_tombstones;
    long long n_revalidations[4]; /* by enum revalidation_result (revalidate.h) */
    long long next_progress_ms;
};

static inline long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* One loop turn but taking new messages (worker.c); also run by the
 * consumer while a revoke waits for the revoked partitions' work. */
void worker_io_step(struct worker *w);

#endif

#ifndef IMGCACHE_RETRY_H
#define IMGCACHE_RETRY_H
/* The arithmetic of retry timing, kept pure so it can be unit-tested: the
 * delay before the next try, and how long a retry event read from the
 * -retry topic may be held. Nothing is allocated; nothing can overflow for
 * any input (a server's Retry-After and a message's header are hostile). */

#define RETRY_JITTER_MIN_PCT 80  /* a backoff step is scaled by 80..120 % */
#define RETRY_JITTER_MAX_PCT 120
/* The largest step IMGCACHE_RETRY_BACKOFF accepts: keeps every product of
 * a step and a percentage far from overflowing. */
#define RETRY_STEP_MAX_MS (7LL * 24 * 3600 * 1000)

/* The delay before the next try, in ms: backoff_ms scaled by jitter_pct,
 * or a server's Retry-After (seconds; < 0 when there is none) when that is
 * longer, the Retry-After first capped at retry_after_max_ms. backoff_ms is
 * at most RETRY_STEP_MAX_MS and jitter_pct at most RETRY_JITTER_MAX_PCT. */
long long retry_delay_ms(long long backoff_ms, int jitter_pct, long long retry_after_s,
                         long long retry_after_max_ms);

/* The longest a retry event may be held: the longest delay this worker can
 * schedule itself (the longest step with its jitter, or a capped
 * Retry-After). A retry event asking for more is taken as due then. */
long long retry_hold_limit_ms(const long long *steps, int n_steps, long long retry_after_max_ms);

/* When a retry event whose header says due_ms is due: due_ms, but never
 * later than now_ms + hold_limit_ms. All three are wall-clock ms (any
 * values; the header's is parsed from a message anyone can write). */
long long retry_due_clamp(long long due_ms, long long now_ms, long long hold_limit_ms);

#endif

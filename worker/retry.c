#include "retry.h"

#include <limits.h>

long long retry_delay_ms(long long backoff_ms, int jitter_pct, long long retry_after_s,
                         long long retry_after_max_ms)
{
    long long delay = backoff_ms * jitter_pct / 100;
    long long asked;

    if (retry_after_s < 0)
        return delay;
    /* compared in seconds before multiplying: a Retry-After of 2^63/1000
     * would overflow the product */
    if (retry_after_s > retry_after_max_ms / 1000)
        asked = retry_after_max_ms;
    else
        asked = retry_after_s * 1000;
    return asked > delay ? asked : delay;
}

long long retry_hold_limit_ms(const long long *steps, int n_steps, long long retry_after_max_ms)
{
    long long limit = retry_after_max_ms;

    for (int i = 0; i < n_steps; i++) {
        long long longest = steps[i] * RETRY_JITTER_MAX_PCT / 100;
        if (longest > limit)
            limit = longest;
    }
    return limit;
}

long long retry_due_clamp(long long due_ms, long long now_ms, long long hold_limit_ms)
{
    /* no subtraction: due_ms - now_ms could overflow for a hostile due_ms */
    if (hold_limit_ms < 0)
        hold_limit_ms = 0;
    if (due_ms <= now_ms || now_ms > LLONG_MAX - hold_limit_ms || due_ms <= now_ms + hold_limit_ms)
        return due_ms;
    return now_ms + hold_limit_ms;
}

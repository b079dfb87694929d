/* Outage state and backoff (see outage.h). */
#include "outage.h"

void outage_init(struct outage *o)
{
    o->down = 0;
    o->retry_at_ms = 0;
    o->backoff_ms = OUTAGE_BACKOFF_MIN_MS;
}

int outage_failed(struct outage *o, long long now_ms)
{
    int started = !o->down;

    o->down = 1;
    o->retry_at_ms = now_ms + o->backoff_ms;
    o->backoff_ms = o->backoff_ms * 2 > OUTAGE_BACKOFF_MAX_MS ? OUTAGE_BACKOFF_MAX_MS : o->backoff_ms * 2;
    return started;
}

int outage_may_try(const struct outage *o, long long now_ms)
{
    return now_ms >= o->retry_at_ms;
}

int outage_recovered(struct outage *o)
{
    int ended = o->down;

    o->down = 0;
    o->backoff_ms = OUTAGE_BACKOFF_MIN_MS;
    return ended;
}

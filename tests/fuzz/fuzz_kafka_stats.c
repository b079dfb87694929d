/* libFuzzer: kafka_stats_lag() on any bytes, both ways of counting a
 * partition with nothing stored; what it returns must be sorted, in range
 * and publishable into a gauge that then renders.
 * make build/fuzz/fuzz_kafka_stats (links common/metrics.c too) */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kafka_stats.h"
#include "metrics.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_lags(const struct kafka_lag *lags, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (lags[i].lag < 0 || lags[i].partition < 0 || memchr(lags[i].topic, '\0', sizeof lags[i].topic) == NULL)
            abort();
        if (i > 0) {
            int c = strcmp(lags[i - 1].topic, lags[i].topic);
            if (c > 0 || (c == 0 && lags[i - 1].partition > lags[i].partition))
                abort();
        }
    }
}

static void publish(const struct kafka_lag *lags, size_t n)
{
    static const char *const topics[] = { "t", "image-needed", NULL };
    static const char *const parts[] = { "0", "1", "2", NULL };
    struct metric_def def = { .name = "lag", .help = "Lag.", .type = METRIC_GAUGE,
                              .labels = { "topic", "partition" }, .values = { topics, parts }, .sparse = 1 };
    struct metrics *m = NULL;
    struct metric *g = NULL;
    char err[256], *text = NULL;
    size_t len = 0;

    if (metrics_new(&m, err, sizeof err) != 0 || metrics_add(m, &def, &g, err, sizeof err) != 0)
        abort();
    if (kafka_stats_publish(g, lags, n) > n)
        abort();
    if (metrics_render(m, &text, &len, err, sizeof err) != 0 || strlen(text) != len)
        abort();
    free(text);
    metrics_free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    for (int from_start = 0; from_start <= 1; from_start++) {
        struct kafka_lag *lags = NULL;
        size_t n = 0;
        char err[512] = "";

        if (kafka_stats_lag((const char *)data, size, from_start, &lags, &n, err, sizeof err) != 0) {
            if (err[0] == '\0' || lags != NULL || n != 0)
                abort();
            continue;
        }
        if ((n == 0) != (lags == NULL))
            abort();
        check_lags(lags, n);
        publish(lags, n);
        free(lags);
    }
    return 0;
}

#include "metrics.h"

#include "errmsg.h"

#include <dirent.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* A scrape larger than this is a bug (METRICS_MAX_SERIES bounds it far
 * lower); the cap keeps a runaway from eating the process's memory. */
#define RENDER_CAP (16u << 20)

struct metric {
    char *name;
    char *help;
    enum metric_type type;
    int nlabels;
    char *label_names[METRICS_MAX_LABELS];
    char **values[METRICS_MAX_LABELS];     /* copied, NULL-terminated */
    size_t nvalues[METRICS_MAX_LABELS];
    size_t nseries;
    int sparse;
    double *bounds;
    size_t nbounds;
    /* Per series: counters hold the count; gauges the bits of a double. */
    _Atomic uint64_t *value;
    _Atomic int *present;                  /* sparse metrics only */
    /* Histograms: per series nbounds + 1 bucket counts (not cumulative:
     * each observation touches one), and the sum as the bits of a double. */
    _Atomic uint64_t *buckets;
    _Atomic uint64_t *sum;
    struct metric *next;
};

struct metrics {
    struct metric *first;
    struct metric *last;
    int process;
};

/* ---- the output buffer ---------------------------------------------------------- */

struct out {
    char *buf;
    size_t len;
    size_t cap;
    int failed;
};

static void out_printf(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void out_printf(struct out *o, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (o->failed)
        return;
    for (;;) {
        va_start(ap, fmt);
        n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            o->failed = 1;
            return;
        }
        if ((size_t)n < o->cap - o->len) {
            o->len += (size_t)n;
            return;
        }
        size_t want = o->cap * 2;
        while (want - o->len <= (size_t)n)
            want *= 2;
        char *grown = want <= RENDER_CAP ? realloc(o->buf, want) : NULL;
        if (grown == NULL) {
            o->failed = 1;
            return;
        }
        o->buf = grown;
        o->cap = want;
    }
}

/* Label values: backslash, double quote and line feed are escaped (0.0.4).
 * HELP text: backslash and line feed only. */
static void out_escaped(struct out *o, const char *s, int quote)
{
    for (; *s != '\0'; s++) {
        if (*s == '\\')
            out_printf(o, "\\\\");
        else if (*s == '\n')
            out_printf(o, "\\n");
        else if (*s == '"' && quote)
            out_printf(o, "\\\"");
        else
            out_printf(o, "%c", *s);
    }
}

/* The shortest decimal that reads back as v, so a bucket bound 0.1 is
 * written "0.1" and not "0.10000000000000001". */
static void format_double(char *buf, size_t len, double v)
{
    if (isnan(v)) {
        snprintf(buf, len, "NaN");
        return;
    }
    if (isinf(v)) {
        snprintf(buf, len, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    if (v == trunc(v) && fabs(v) < 1e15) {     /* counts and bytes: no exponent */
        snprintf(buf, len, "%.0f", v);
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, len, "%.*g", prec, v);
        if (strtod(buf, NULL) == v)
            return;
    }
}

/* ---- doubles in atomics ---------------------------------------------------------- */

static uint64_t bits_of(double v)
{
    uint64_t b;
    memcpy(&b, &v, sizeof b);
    return b;
}

static double double_of(uint64_t b)
{
    double v;
    memcpy(&v, &b, sizeof v);
    return v;
}

/* A lock-free add: retried only when another thread changed the value in
 * between, which the single event loop rarely or never does. */
static void atomic_add_double(_Atomic uint64_t *slot, double delta)
{
    uint64_t seen = atomic_load_explicit(slot, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(slot, &seen, bits_of(double_of(seen) + delta),
                                                  memory_order_relaxed, memory_order_relaxed))
        ;
}

/* ---- registration ---------------------------------------------------------------- */

int metrics_new(struct metrics **out, char *err, size_t errlen)
{
    struct metrics *m = calloc(1, sizeof *m);

    if (m == NULL) {
        errmsg_set(err, errlen, "metrics: out of memory");
        return -1;
    }
    *out = m;
    return 0;
}

static void free_strings(char **v)
{
    for (size_t i = 0; v != NULL && v[i] != NULL; i++)
        free(v[i]);
    free(v);
}

static void metric_free(struct metric *mt)
{
    if (mt == NULL)
        return;
    free(mt->name);
    free(mt->help);
    for (int i = 0; i < METRICS_MAX_LABELS; i++) {
        free(mt->label_names[i]);
        free_strings(mt->values[i]);
    }
    free(mt->bounds);
    free((void *)mt->value);
    free((void *)mt->present);
    free((void *)mt->buckets);
    free((void *)mt->sum);
    free(mt);
}

void metrics_free(struct metrics *m)
{
    if (m == NULL)
        return;
    for (struct metric *mt = m->first, *next; mt != NULL; mt = next) {
        next = mt->next;
        metric_free(mt);
    }
    free(m);
}

/* [a-zA-Z_:][a-zA-Z0-9_:]* for metric names; no ':' in label names. */
static int valid_name(const char *s, int colon_ok)
{
    if (s == NULL || *s == '\0' || (*s >= '0' && *s <= '9'))
        return 0;
    for (; *s != '\0'; s++) {
        int ok = (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
                 *s == '_' || (*s == ':' && colon_ok);
        if (!ok)
            return 0;
    }
    return 1;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static struct metric *find_metric(const struct metrics *m, const char *name)
{
    for (struct metric *mt = m->first; mt != NULL; mt = mt->next)
        if (strcmp(mt->name, name) == 0)
            return mt;
    return NULL;
}

static int check_def(const struct metrics *m, const struct metric_def *def, char *err, size_t errlen)
{
    if (!valid_name(def->name, 1)) {
        errmsg_set(err, errlen, "metric name \"%s\" is not [a-zA-Z_:][a-zA-Z0-9_:]*",
                   def->name != NULL ? def->name : "");
        return -1;
    }
    if (def->type == METRIC_COUNTER && !ends_with(def->name, "_total")) {
        errmsg_set(err, errlen, "counter \"%s\" must end in _total", def->name);
        return -1;
    }
    if (find_metric(m, def->name) != NULL) {
        errmsg_set(err, errlen, "metric \"%s\" is registered twice", def->name);
        return -1;
    }
    if (def->help == NULL || def->help[0] == '\0') {
        errmsg_set(err, errlen, "metric \"%s\" has no help text", def->name);
        return -1;
    }
    if (def->type == METRIC_HISTOGRAM && (def->nbounds == 0 || def->nbounds > METRICS_MAX_BUCKETS)) {
        errmsg_set(err, errlen, "histogram \"%s\" needs 1 to %d bucket bounds", def->name, METRICS_MAX_BUCKETS);
        return -1;
    }
    for (size_t i = 0; def->type == METRIC_HISTOGRAM && i < def->nbounds; i++) {
        if (!isfinite(def->bounds[i]) || (i > 0 && def->bounds[i] <= def->bounds[i - 1])) {
            errmsg_set(err, errlen, "histogram \"%s\": bucket bounds must be finite and increasing", def->name);
            return -1;
        }
    }
    return 0;
}

static int check_label(const struct metric_def *def, int i, size_t *nvalues, char *err, size_t errlen)
{
    const char *label = def->labels[i];
    size_t n = 0;

    if (!valid_name(label, 0) || strncmp(label, "__", 2) == 0 ||
        (def->type == METRIC_HISTOGRAM && strcmp(label, "le") == 0)) {
        errmsg_set(err, errlen, "metric \"%s\": label name \"%s\" is invalid or reserved", def->name, label);
        return -1;
    }
    if (i == 1 && strcmp(label, def->labels[0]) == 0) {
        errmsg_set(err, errlen, "metric \"%s\": label \"%s\" appears twice", def->name, label);
        return -1;
    }
    while (def->values[i] != NULL && def->values[i][n] != NULL)
        n++;
    if (n == 0 || n > METRICS_MAX_VALUES) {
        errmsg_set(err, errlen, "metric \"%s\": label \"%s\" needs 1 to %d declared values", def->name, label,
                   METRICS_MAX_VALUES);
        return -1;
    }
    for (size_t a = 0; a < n; a++) {
        for (size_t b = a + 1; b < n; b++) {
            if (strcmp(def->values[i][a], def->values[i][b]) == 0) {
                errmsg_set(err, errlen, "metric \"%s\": label \"%s\" declares \"%s\" twice", def->name, label,
                           def->values[i][a]);
                return -1;
            }
        }
    }
    *nvalues = n;
    return 0;
}

static char **copy_strings(const char *const *v, size_t n)
{
    char **c = calloc(n + 1, sizeof *c);

    for (size_t i = 0; c != NULL && i < n; i++) {
        c[i] = strdup(v[i]);
        if (c[i] == NULL) {
            free_strings(c);
            return NULL;
        }
    }
    return c;
}

static int alloc_values(struct metric *mt)
{
    size_t nb = mt->nbounds + 1;

    if (mt->type == METRIC_HISTOGRAM) {
        mt->buckets = calloc(mt->nseries * nb, sizeof *mt->buckets);
        mt->sum = calloc(mt->nseries, sizeof *mt->sum);
        if (mt->buckets == NULL || mt->sum == NULL)
            return -1;
        for (size_t i = 0; i < mt->nseries * nb; i++)
            atomic_init(&mt->buckets[i], 0);
        for (size_t i = 0; i < mt->nseries; i++)
            atomic_init(&mt->sum[i], bits_of(0.0));
    } else {
        mt->value = calloc(mt->nseries, sizeof *mt->value);
        if (mt->value == NULL)
            return -1;
        for (size_t i = 0; i < mt->nseries; i++)
            atomic_init(&mt->value[i], mt->type == METRIC_GAUGE ? bits_of(0.0) : 0);
    }
    if (mt->sparse) {
        mt->present = calloc(mt->nseries, sizeof *mt->present);
        if (mt->present == NULL)
            return -1;
        for (size_t i = 0; i < mt->nseries; i++)
            atomic_init(&mt->present[i], 0);
    }
    return 0;
}

/* Copies def's declarations into mt (already checked). */
static int copy_def(struct metric *mt, const struct metric_def *def, const size_t *nvalues)
{
    mt->name = strdup(def->name);
    mt->help = strdup(def->help);
    if (mt->name == NULL || mt->help == NULL)
        return -1;
    mt->type = def->type;
    mt->sparse = def->sparse;
    mt->nseries = 1;
    for (int i = 0; i < METRICS_MAX_LABELS; i++)
        mt->nvalues[i] = 1;     /* an unused label has one implicit value */
    for (int i = 0; i < mt->nlabels; i++) {
        mt->label_names[i] = strdup(def->labels[i]);
        mt->values[i] = copy_strings(def->values[i], nvalues[i]);
        if (mt->label_names[i] == NULL || mt->values[i] == NULL)
            return -1;
        mt->nvalues[i] = nvalues[i];
        mt->nseries *= nvalues[i];
    }
    if (def->type == METRIC_HISTOGRAM) {
        mt->bounds = malloc(def->nbounds * sizeof *mt->bounds);
        if (mt->bounds == NULL)
            return -1;
        memcpy(mt->bounds, def->bounds, def->nbounds * sizeof *mt->bounds);
        mt->nbounds = def->nbounds;
    }
    return alloc_values(mt);
}

int metrics_add(struct metrics *m, const struct metric_def *def, struct metric **out, char *err, size_t errlen)
{
    struct metric *mt = NULL;
    size_t nvalues[METRICS_MAX_LABELS] = { 1, 1 };
    size_t nseries = 1;
    int nlabels = 0;
    int rc = -1;

    if (check_def(m, def, err, errlen) != 0)
        goto out;
    while (nlabels < METRICS_MAX_LABELS && def->labels[nlabels] != NULL) {
        if (check_label(def, nlabels, &nvalues[nlabels], err, errlen) != 0)
            goto out;
        nseries *= nvalues[nlabels];
        nlabels++;
    }
    if (nseries > METRICS_MAX_SERIES) {
        errmsg_set(err, errlen, "metric \"%s\" would have %zu series, more than %d", def->name, nseries,
                   METRICS_MAX_SERIES);
        goto out;
    }
    mt = calloc(1, sizeof *mt);
    if (mt == NULL)
        goto oom;
    mt->nlabels = nlabels;
    if (copy_def(mt, def, nvalues) != 0)
        goto oom;
    if (m->last != NULL)
        m->last->next = mt;
    else
        m->first = mt;
    m->last = mt;
    *out = mt;
    mt = NULL;      /* the registry's now */
    rc = 0;
    goto out;
oom:
    errmsg_set(err, errlen, "metric \"%s\": out of memory", def->name);
out:
    metric_free(mt);
    return rc;
}

int metrics_add_build_info(struct metrics *m, const char *prefix, const char *version, const char *commit,
                           char *err, size_t errlen)
{
    char name[128];
    const char *versions[] = { version, NULL };
    const char *commits[] = { commit, NULL };
    struct metric *mt = NULL;
    struct metric_def def = {
        .name = name,
        .help = "Always 1: the version and commit this program was built from.",
        .type = METRIC_GAUGE,
        .labels = { "version", "commit" },
        .values = { versions, commits },
    };

    snprintf(name, sizeof name, "%s_build_info", prefix);
    if (metrics_add(m, &def, &mt, err, errlen) != 0)
        return -1;
    metric_set(mt, 0, 1);
    return 0;
}

void metrics_add_process(struct metrics *m)
{
    m->process = 1;
}

/* ---- updates --------------------------------------------------------------------- */

size_t metrics_series(const struct metric *mt, size_t v0, size_t v1)
{
    if (mt == NULL)
        return METRICS_NO_SERIES;
    if (v0 >= mt->nvalues[0] || v1 >= mt->nvalues[1])
        return METRICS_NO_SERIES;
    return v0 * mt->nvalues[1] + v1;
}

size_t metrics_value_index(const struct metric *mt, int label, const char *value)
{
    if (mt == NULL || label < 0 || label >= mt->nlabels || value == NULL)
        return METRICS_NO_SERIES;
    for (size_t i = 0; i < mt->nvalues[label]; i++)
        if (strcmp(mt->values[label][i], value) == 0)
            return i;
    return METRICS_NO_SERIES;
}

size_t metrics_nvalues(const struct metric *mt, int label)
{
    if (mt == NULL || label < 0 || label >= METRICS_MAX_LABELS)
        return 0;
    return mt->nvalues[label];
}

static int usable(const struct metric *mt, size_t series, enum metric_type type)
{
    return mt != NULL && series < mt->nseries && mt->type == type;
}

static void mark_present(struct metric *mt, size_t series)
{
    if (mt->sparse)
        atomic_store_explicit(&mt->present[series], 1, memory_order_relaxed);
}

void metric_add(struct metric *mt, size_t series, uint64_t n)
{
    if (!usable(mt, series, METRIC_COUNTER))
        return;
    atomic_fetch_add_explicit(&mt->value[series], n, memory_order_relaxed);
    mark_present(mt, series);
}

void metric_inc(struct metric *mt, size_t series)
{
    metric_add(mt, series, 1);
}

void metric_set(struct metric *mt, size_t series, double v)
{
    if (!usable(mt, series, METRIC_GAUGE))
        return;
    atomic_store_explicit(&mt->value[series], bits_of(v), memory_order_relaxed);
    mark_present(mt, series);
}

void metric_gauge_add(struct metric *mt, size_t series, double delta)
{
    if (!usable(mt, series, METRIC_GAUGE))
        return;
    atomic_add_double(&mt->value[series], delta);
    mark_present(mt, series);
}

void metric_observe(struct metric *mt, size_t series, double v)
{
    size_t b = 0;

    if (!usable(mt, series, METRIC_HISTOGRAM) || isnan(v))
        return;
    while (b < mt->nbounds && v > mt->bounds[b])
        b++;
    atomic_fetch_add_explicit(&mt->buckets[series * (mt->nbounds + 1) + b], 1, memory_order_relaxed);
    atomic_add_double(&mt->sum[series], v);
    mark_present(mt, series);
}

void metric_clear(struct metric *mt, size_t series)
{
    if (mt == NULL || series >= mt->nseries || !mt->sparse)
        return;
    atomic_store_explicit(&mt->present[series], 0, memory_order_relaxed);
}

double metrics_value(const struct metric *mt, size_t series)
{
    uint64_t total = 0;

    if (mt == NULL || series >= mt->nseries)
        return 0;
    switch (mt->type) {
    case METRIC_COUNTER:
        return (double)atomic_load_explicit(&mt->value[series], memory_order_relaxed);
    case METRIC_GAUGE:
        return double_of(atomic_load_explicit(&mt->value[series], memory_order_relaxed));
    case METRIC_HISTOGRAM:
        for (size_t b = 0; b <= mt->nbounds; b++)
            total += atomic_load_explicit(&mt->buckets[series * (mt->nbounds + 1) + b], memory_order_relaxed);
        return (double)total;
    }
    return 0;
}

/* ---- rendering ------------------------------------------------------------------- */

static const char *type_name(enum metric_type t)
{
    switch (t) {
    case METRIC_COUNTER: return "counter";
    case METRIC_GAUGE: return "gauge";
    case METRIC_HISTOGRAM: return "histogram";
    }
    return "untyped";
}

/* "{a="x",b="y"" without the closing brace, so a histogram can add le. */
static void out_labels_open(struct out *o, const struct metric *mt, size_t series)
{
    size_t idx[METRICS_MAX_LABELS] = { series / mt->nvalues[1], series % mt->nvalues[1] };

    for (int i = 0; i < mt->nlabels; i++) {
        out_printf(o, "%s%s=\"", i == 0 ? "{" : ",", mt->label_names[i]);
        out_escaped(o, mt->values[i][idx[i]], 1);
        out_printf(o, "\"");
    }
}

static void out_labels(struct out *o, const struct metric *mt, size_t series)
{
    if (mt->nlabels == 0)
        return;
    out_labels_open(o, mt, series);
    out_printf(o, "}");
}

static void render_histogram_series(struct out *o, const struct metric *mt, size_t series)
{
    char num[64];
    uint64_t cumulative = 0;

    for (size_t b = 0; b <= mt->nbounds; b++) {
        cumulative += atomic_load_explicit(&mt->buckets[series * (mt->nbounds + 1) + b], memory_order_relaxed);
        if (b < mt->nbounds)
            format_double(num, sizeof num, mt->bounds[b]);
        else
            snprintf(num, sizeof num, "+Inf");
        out_printf(o, "%s_bucket", mt->name);
        out_labels_open(o, mt, series);
        out_printf(o, "%sle=\"%s\"} %" PRIu64 "\n", mt->nlabels > 0 ? "," : "{", num, cumulative);
    }
    format_double(num, sizeof num, double_of(atomic_load_explicit(&mt->sum[series], memory_order_relaxed)));
    out_printf(o, "%s_sum", mt->name);
    out_labels(o, mt, series);
    out_printf(o, " %s\n%s_count", num, mt->name);
    out_labels(o, mt, series);
    out_printf(o, " %" PRIu64 "\n", cumulative);
}

static void render_metric(struct out *o, const struct metric *mt)
{
    char num[64];

    out_printf(o, "# HELP %s ", mt->name);
    out_escaped(o, mt->help, 0);
    out_printf(o, "\n# TYPE %s %s\n", mt->name, type_name(mt->type));
    for (size_t s = 0; s < mt->nseries; s++) {
        if (mt->sparse && !atomic_load_explicit(&mt->present[s], memory_order_relaxed))
            continue;
        if (mt->type == METRIC_HISTOGRAM) {
            render_histogram_series(o, mt, s);
            continue;
        }
        out_printf(o, "%s", mt->name);
        out_labels(o, mt, s);
        if (mt->type == METRIC_COUNTER) {
            out_printf(o, " %" PRIu64 "\n", atomic_load_explicit(&mt->value[s], memory_order_relaxed));
        } else {
            format_double(num, sizeof num, metrics_value(mt, s));
            out_printf(o, " %s\n", num);
        }
    }
}

/* The number of entries of /proc/self/fd, less the one opendir() holds. */
static long open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    long n = 0;

    if (d == NULL)
        return -1;
    while (readdir(d) != NULL)
        n++;
    closedir(d);
    return n - 3;       /* ".", ".." and the directory's own descriptor */
}

static void process_gauge(struct out *o, const char *name, const char *type, const char *help, double v)
{
    char num[64];

    format_double(num, sizeof num, v);
    out_printf(o, "# HELP %s %s\n# TYPE %s %s\n%s %s\n", name, help, name, type, name, num);
}

/* Fields 14 and 15 of /proc/self/stat (user and system time in clock
 * ticks), after the parenthesised command name, which may hold spaces. */
static double cpu_seconds(void)
{
    char line[1024];
    unsigned long utime = 0, stime = 0;
    FILE *f = fopen("/proc/self/stat", "r");
    char *p = NULL;

    if (f == NULL)
        return -1;
    if (fgets(line, sizeof line, f) != NULL)
        p = strrchr(line, ')');
    fclose(f);
    if (p == NULL || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2)
        return -1;
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

static void render_process(struct out *o)
{
    long pages = 0, resident = 0;
    long fds = open_fds();
    double cpu = cpu_seconds();
    struct rlimit rl;
    FILE *f = fopen("/proc/self/statm", "r");

    if (f != NULL) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
            resident = -1;
        fclose(f);
        if (resident >= 0)
            process_gauge(o, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
                          (double)resident * (double)sysconf(_SC_PAGESIZE));
    }
    if (fds >= 0)
        process_gauge(o, "process_open_fds", "gauge", "Number of open file descriptors.", (double)fds);
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        process_gauge(o, "process_max_fds", "gauge", "Maximum number of open file descriptors.",
                      (double)rl.rlim_cur);
    if (cpu >= 0)
        process_gauge(o, "process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.",
                      cpu);
}

int metrics_render(struct metrics *m, char **out, size_t *outlen, char *err, size_t errlen)
{
    struct out o = { .cap = 4096 };

    o.buf = malloc(o.cap);
    if (o.buf == NULL) {
        errmsg_set(err, errlen, "metrics: out of memory");
        return -1;
    }
    o.buf[0] = '\0';
    for (const struct metric *mt = m->first; mt != NULL; mt = mt->next)
        render_metric(&o, mt);
    if (m->process)
        render_process(&o);
    if (o.failed) {
        free(o.buf);
        errmsg_set(err, errlen, "metrics: the scrape did not fit in %u bytes", RENDER_CAP);
        return -1;
    }
    *out = o.buf;
    *outlen = o.len;
    return 0;
}

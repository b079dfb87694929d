#include "producer.h"

#include <stdio.h>

#include "topics.h"

/* topics [options]: creates the main, retry, dead-letter and image-stored topics that do
 * not exist, reports those that do (common/topics.c). */
int cmd_topics(const struct config *cfg)
{
    struct topics_options opts;
    struct topics_plan plan;
    struct topics_result res;
    char err[512];
    int have_plan = 0;
    int rc = PRODUCER_EXIT_USAGE;

    if (topics_options_parse(&opts, cfg->nargs - 1, cfg->args + 1, err, sizeof err) != 0) {
        producer_error("%s", err);
        goto out;
    }
    if (opts.help) {
        topics_usage(stdout);
        rc = PRODUCER_EXIT_OK;
        goto out;
    }
    if (topics_plan_build(&plan, cfg->topic, cfg->stored_topic, &opts, err, sizeof err) != 0) {
        producer_error("%s", err);
        goto out;
    }
    have_plan = 1;
    if (topics_ensure(cfg, &plan, opts.timeout_ms, stdout, stderr, &res, err, sizeof err) != 0) {
        fflush(stdout);
        producer_error("%s", err);
        rc = res.bad_setting ? PRODUCER_EXIT_USAGE : PRODUCER_EXIT_FAIL;
        goto out;
    }
    printf("created=%d existing=%d differing=%d\n", res.created, res.existing, res.notes + res.required);
    fflush(stdout);
    if (res.required > 0) {
        producer_error("topic %s is not configured as imgcache needs (see the warnings above); "
                       "change it with kafka-configs.sh or recreate it", plan.topics[0].name);
        rc = PRODUCER_EXIT_FAIL;
        goto out;
    }
    rc = PRODUCER_EXIT_OK;
out:
    if (have_plan)
        topics_plan_release(&plan);
    topics_options_release(&opts);
    return rc;
}

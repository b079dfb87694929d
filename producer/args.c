#include "producer.h"

#include <string.h>

struct flag_name {
    unsigned bit;
    const char *name;
};

static const struct flag_name flag_names[] = {
    { ARG_QUIET, "--quiet" },
    { ARG_RETRY_FAILED, "--retry-failed" },
    { ARG_JSON, "--json" },
    { ARG_DRY_RUN, "--dry-run" },
};

/* Sets the field of out that bit stands for. */
static void set_flag(struct command_args *out, unsigned bit)
{
    if (bit == ARG_QUIET)
        out->quiet = 1;
    else if (bit == ARG_RETRY_FAILED)
        out->retry_failed = 1;
    else if (bit == ARG_JSON)
        out->json = 1;
    else if (bit == ARG_DRY_RUN)
        out->dry_run = 1;
}


/* Options that take a value. */
struct value_name {
    unsigned bit;
    const char *name;
    const char *wants;      /* the missing-value message's hint */
};

static const struct value_name value_names[] = {
    { ARG_OLDER_THAN, "--older-than", "a duration, e.g. --older-than 7d" },
    { ARG_NETWORK, "--network", "a network name, e.g. --network WhatsApp" },
    { ARG_LIMIT, "--limit", "a number, e.g. --limit 5000" },
    { ARG_GRACE, "--grace", "a duration, e.g. --grace 30d" },
};

/* Sets the field of out that the value option bit stands for; -1 (with
 * the message printed) when the value is not one. */
static int set_value(const char *command, struct command_args *out, unsigned bit, const char *name,
                     const char *value)
{
    long n;

    if (bit == ARG_OLDER_THAN) {
        if (config_parse_duration(value, &out->older_than_ms) != 0 || out->older_than_ms < 0) {
            producer_error("%s: %s wants a duration such as 12h, 7d or 30d, not '%s'", command, name, value);
            return -1;
        }
    } else if (bit == ARG_NETWORK) {
        if (value[0] == '\0') {
            producer_error("%s: %s wants a network name (as in chats.network)", command, name);
            return -1;
        }
        out->network = value;
    } else if (bit == ARG_LIMIT) {
        if (config_parse_long(value, 1, 1000000000L, &n) != 0) {
            producer_error("%s: %s wants a whole number from 1, not '%s'", command, name, value);
            return -1;
        }
        out->limit = n;
    } else if (bit == ARG_GRACE) {
        out->grace = value; /* gc parses it: its message names the value */
    }
    return 0;
}

/* When arg is a value option among allowed ("--limit" or "--limit=5"):
 * its bit, with its value taken from arg or the next argument (*i moves
 * past it). 0 when arg is none; -1 (printed) when its value is missing
 * or bad. */
static int take_value(const struct config *cfg, int *i, unsigned allowed, struct command_args *out)
{
    const char *arg = cfg->args[*i];

    for (size_t k = 0; k < sizeof value_names / sizeof value_names[0]; k++) {
        const char *name = value_names[k].name;
        size_t len = strlen(name);
        const char *value;

        if (!(allowed & value_names[k].bit) || strncmp(arg, name, len) != 0 ||
            (arg[len] != '\0' && arg[len] != '='))
            continue;
        if (arg[len] == '=') {
            value = arg + len + 1;
        } else if (*i + 1 < cfg->nargs) {
            value = cfg->args[++*i];
        } else {
            producer_error("%s: %s needs %s", cfg->args[0], name, value_names[k].wants);
            return -1;
        }
        return set_value(cfg->args[0], out, value_names[k].bit, name, value) == 0 ? 1 : -1;
    }
    return 0;
}

/* The flag bit arg names among allowed, or 0. */
static unsigned flag_of(const char *arg, unsigned allowed)
{
    for (size_t i = 0; i < sizeof flag_names / sizeof flag_names[0]; i++)
        if ((allowed & flag_names[i].bit) && strcmp(arg, flag_names[i].name) == 0)
            return flag_names[i].bit;
    return 0;
}

int command_args_parse(const struct config *cfg, unsigned allowed, int max_positional,
                       struct command_args *out)
{
    const char *command = cfg->args[0];

    memset(out, 0, sizeof *out);
    out->older_than_ms = -1;
    if (max_positional > ARGS_MAX_POSITIONAL)
        max_positional = ARGS_MAX_POSITIONAL;
    for (int i = 1; i < cfg->nargs; i++) {
        const char *arg = cfg->args[i];
        unsigned bit = flag_of(arg, allowed);
        int taken = take_value(cfg, &i, allowed, out);

        if (taken < 0)
            return -1;
        if (taken > 0)
            continue;
        if (bit != 0) {
            set_flag(out, bit);
            continue;
        }
        if (arg[0] == '-' && arg[1] != '\0') {
            /* up to '=': "--token=SECRET" must not be echoed */
            producer_error("%s: unknown option '%.*s' (see --help)", command,
                           (int)strcspn(arg, "="), arg);
            return -1;
        }
        if (out->npositional >= max_positional) {
            if (max_positional == 0)
                producer_error("%s takes no arguments (see --help)", command);
            else
                producer_error("%s: unexpected argument '%.*s' (see --help)", command,
                               (int)strcspn(arg, "="), arg);
            return -1;
        }
        out->positional[out->npositional++] = arg;
    }
    return 0;
}

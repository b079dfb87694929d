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

/* gc --grace D / --grace=D: 1 when arg is that option (its value, from
 * the next argument or after '=', goes to out->grace; *i moves past it),
 * 0 when it is not, -1 (printed) when its value is missing. */
static int take_grace(const struct config *cfg, int *i, unsigned allowed, struct command_args *out)
{
    const char *arg = cfg->args[*i];

    if (!(allowed & ARG_GRACE) || strncmp(arg, "--grace", 7) != 0 || (arg[7] != '\0' && arg[7] != '='))
        return 0;
    if (arg[7] == '=') {
        out->grace = arg + 8;
        return 1;
    }
    if (*i + 1 >= cfg->nargs) {
        producer_error("%s: --grace needs a duration, e.g. --grace 30d", cfg->args[0]);
        return -1;
    }
    out->grace = cfg->args[++*i];
    return 1;
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
    if (max_positional > ARGS_MAX_POSITIONAL)
        max_positional = ARGS_MAX_POSITIONAL;
    for (int i = 1; i < cfg->nargs; i++) {
        const char *arg = cfg->args[i];
        unsigned bit = flag_of(arg, allowed);
        int took = take_grace(cfg, &i, allowed, out);

        if (took < 0)
            return -1;
        if (took > 0)
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

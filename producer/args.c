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

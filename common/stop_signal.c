#include "stop_signal.h"

#include <string.h>

static volatile sig_atomic_t *stop_flag;

/* Only async-signal-safe work here: a store and sigaction(). */
static void on_stop_signal(int sig)
{
    struct sigaction dfl;

    (void)sig;
    *stop_flag = 1;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigaction(SIGTERM, &dfl, NULL);
    sigaction(SIGINT, &dfl, NULL);
}

void stop_signal_install(volatile sig_atomic_t *flag)
{
    struct sigaction sa;

    stop_flag = flag;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

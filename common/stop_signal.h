#ifndef IMGCACHE_STOP_SIGNAL_H
#define IMGCACHE_STOP_SIGNAL_H
/* How the programs stop: the first SIGTERM or SIGINT only sets the
 * caller's flag (the loop polls it and stops gracefully); the handler then
 * gives both signals back their default action, so a second one of either
 * ends the process at once. SIGPIPE is ignored: a peer that went away is
 * an error the code sees, not a reason to die.
 *
 * Ownership: the flag is the caller's and must outlive the process's
 * signal handling (a static or global). */
#include <signal.h>

void stop_signal_install(volatile sig_atomic_t *flag);

#endif

/* backoff.c -- the reconnection delay: Socket.IO's options and jitter,
 * capped before the jitter. See backoff.h. */
#include "backoff.h"

#include <stdlib.h>

long backoff_delay(int attempt, long delay_ms, long delay_max_ms, double factor) {
    /* Doubling in floating point and capping at delay_max cannot overflow,
     * unlike delay << attempt (which reached 0 ms in one Socket.IO port). */
    double ms = (double)delay_ms;
    for (int i = 0; i < attempt && ms < (double)delay_max_ms; i++) {
        ms *= 2;
    }
    if (ms > (double)delay_max_ms) {
        ms = (double)delay_max_ms;
    }
    double r = (double)rand() / ((double)RAND_MAX + 1.0);
    double dev = (double)(long)(r * factor * ms);
    ms = ((long)(r * 10) % 2 == 0) ? ms - dev : ms + dev;
    return ms < (double)delay_max_ms ? (long)ms : delay_max_ms;
}

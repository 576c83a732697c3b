/* backoff.h -- how long a client waits before it reconnects.
 *
 * Socket.IO's options (reconnectionDelay, reconnectionDelayMax,
 * randomizationFactor) and jitter, for attempt n = 0, 1, 2, ...:
 *
 *   ms   = min(delay * 2^n, delay_max)
 *   r    = a random number in [0, 1)
 *   dev  = floor(r * factor * ms)
 *   ms   = ms - dev if floor(r * 10) is even, else ms + dev
 *   wait = min(ms, delay_max)
 *
 * With the defaults (1000, 5000, 0.5): 0.55-1.5 s, then 1.1-3 s,
 * 2.2-5 s, then 2.75-5 s for ever, about half of them exactly 5 s. The jitter spreads out a crowd of clients
 * that lost the same server, so they do not all come back in the same
 * millisecond. Socket.IO caps after the jitter instead, so its late
 * attempts are all exactly delay_max, in step; ours cap first. */
#ifndef CHAT_BACKOFF_H
#define CHAT_BACKOFF_H

long backoff_delay(int attempt, long delay_ms, long delay_max_ms, double factor);

#endif

/* stop.h -- stopping cleanly on Ctrl-C (SIGINT), SIGTERM and SIGHUP.
 *
 * A signal handler may do almost nothing safely: no stdio, no malloc, not
 * even our own data beyond a flag. And a flag alone has a race: a signal
 * that comes after the loop checked the flag, but before select() went to
 * sleep, is seen only when select() wakes for another reason, which may be
 * the next heartbeat, seconds later.
 *
 * The self-pipe trick closes that race. The handler write()s one byte to a
 * pipe (write() is async-signal-safe), and the loop watches the pipe's
 * other end with select(), like any socket: the signal wakes the loop at
 * once, whenever it comes. */
#ifndef CHAT_STOP_H
#define CHAT_STOP_H

/* Install the handlers for SIGINT, SIGTERM and SIGHUP (a closed terminal;
 * not when SIGHUP is ignored, as under nohup). Returns the descriptor to
 * watch for reading (it turns readable when a stop is asked for), or -1
 * with errno set. */
int stop_pipe_open(void);

#endif

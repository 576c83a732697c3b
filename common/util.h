/* util.h -- small helpers every program needs: time, numbers, randomness,
 * and showing untrusted text safely on a terminal. */
#ifndef CHAT_UTIL_H
#define CHAT_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/select.h> /* struct timeval */

/* Milliseconds on the monotonic clock: timers must not jump when someone
 * sets the wall clock. */
long long now_ms(void);

/* A strict decimal number: digits only (no sign, no spaces, no "0x"),
 * at most INT64_MAX. 0 on success, -1 otherwise. */
int parse_int64(const char *s, int64_t *out);

/* A command-line number in [min, max]; -1 if it is not one. */
int parse_long_arg(const char *s, long min, long max, long *out);

/* Cut the next word off a protocol line: the word runs up to the first
 * space, which becomes a NUL, and *rest moves past that space to what is
 * left of the line. When no space is left, the word is all of *rest and
 * *rest becomes NULL; when *rest is NULL already, returns NULL. So after
 * `verb = next_word(&rest)`, rest is the verb's argument, or NULL if the
 * line was the verb alone. */
char *next_word(char **rest);

/* n random bytes from the operating system (/dev/urandom: POSIX systems
 * all have it, unlike getrandom()), kept open after the first call.
 * 0 on success, -1 on failure. */
int random_bytes(void *buf, size_t n);

/* A random id of 20 characters from [A-Za-z0-9_-] (15 random bytes in
 * URL-safe base64, like Socket.IO's socket.id); out has room for 21. */
int random_id20(char out[21]);

/* n random bytes from the operating system, in hex (2n characters and a
 * NUL in out). 0 on success, -1 on failure. */
int random_hex(char *out, size_t n);

/* printf into memory of its own size: formatted once, straight into a
 * malloc()ed string of exactly its length (the caller free()s it). NULL
 * when out of memory. */
char *str_vprintf(const char *fmt, va_list ap);

/* For select(): the time from now until `at` (a now_ms() time), or zero
 * if that has passed. */
struct timeval timeval_until(long long at);

/* Write text so that it cannot drive the terminal, nor read differently
 * from what is stored: control characters, invalid UTF-8 and a backslash
 * are written as \xHH or \\; the invisible characters and bidirectional
 * controls that can hide or reorder text ("Trojan Source", see util.c) as
 * \u{202E}; printable ASCII and all other valid UTF-8 pass unchanged. */
void show_text(FILE *f, const char *text);

/* A program started with fd 0, 1 or 2 closed (`client <&-`, a service
 * manager) would have the first file it opens become its stdin, stdout or
 * stderr: the client would read its own socket as typed input, the server
 * would write its log into the database. This opens /dev/null on each of
 * them that is closed. Call it first in main(), before anything opens a
 * file; if even /dev/null cannot be opened it exits with status 127, as
 * there is nowhere to say why. */
void stdio_ensure_open(void);

/* Writing to a closed socket must be an error (EPIPE), not a signal that
 * kills the process. Call once at start-up. */
void ignore_sigpipe(void);

#endif

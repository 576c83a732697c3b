/* step_server.h -- one step's server.c, included whole, for the programs
 * that drive its loop turn by turn (replay_bound.c, commit_fail.c): its
 * main() is renamed, so that its static handlers and its `server` are
 * reachable. -DSTEP=N picks the step (4 by default). Included once, by a
 * program's .c file. */
#ifndef STEP
#define STEP 4
#endif
#define main server_main
#if STEP == 1
#include "../step1/server.c" /* NOLINT(bugprone-suspicious-include) */
#elif STEP == 2
#include "../step2/server.c" /* NOLINT(bugprone-suspicious-include) */
#elif STEP == 3
#include "../step3/server.c" /* NOLINT(bugprone-suspicious-include) */
#else
#include "../step4/server.c" /* NOLINT(bugprone-suspicious-include) */
#endif
#undef main

/* Remove the database a program made in its own folder, and the folder. */
static void remove_store(const char *dir) {
    static const char *const files[] = {"chat.db", "chat.db-wal", "chat.db-shm"};
    char path[64];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        unlink(path);
    }
    rmdir(dir);
}

/* test_lab.c -- the lab's table, asserted cell by cell.
 *
 * The table in TUTORIAL.md makes claims ("step 1 loses what is typed while
 * the network is down", "step 3 duplicates a message whose ack is lost",
 * "step 4 loses and duplicates nothing"). Each test here runs one cell for
 * real and checks its claim. In every cell the receiver must have printed
 * each stored row once, in id order, and the sender gave nothing up (the
 * retry budget outlasts every fault). At steps 3-4, in every scenario, the
 * rows are in the order typed and the sender had one message in flight:
 * it waits for each ack. */
#include "harness.h"
#include "scenarios.h"
#include "suites.h"

#include <string.h>

#define ANY (-1) /* the mixed run: the count is not a claim */

struct claim {
    const char *scenario;
    int lost[4], dup[4]; /* for steps 1..4 */
};

static const struct claim claims[] = {
    {"down", {3, 0, 0, 0}, {0, 0, 0, 0}},
    {"cut", {1, 1, 0, 0}, {0, 0, 0, 0}},
    {"ack", {0, 0, 0, 0}, {0, 0, 1, 0}},
    {"kill", {1, 1, 0, 0}, {0, 0, 1, 0}},
    {"lock", {3, 3, 0, 0}, {0, 0, 0, 0}},
    {"stall", {2, 2, 0, 0}, {0, 0, 0, 0}},
    /* What a killed sender had not got acked dies with it: the reference
     * clients keep their queue in memory only (an exercise past step 4). */
    {"sender", {2, 2, 2, 2}, {0, 0, 0, 0}},
    {"window", {0, 0, 0, 0}, {0, 0, 0, 0}},
    /* Mixed: steps 1 and 2 never duplicate, steps 3 and 4 never lose,
     * step 4 never duplicates. */
    {"mixed", {ANY, ANY, 0, 0}, {0, 0, ANY, 0}},
};

static int scenario_index(const char *key) {
    for (int i = 0; i < lab_nscenarios; i++) {
        if (strcmp(lab_scenarios[i].key, key) == 0) {
            return i;
        }
    }
    return -1;
}

static void check_cell(const char *key, int step) {
    const struct claim *c = NULL;
    struct outcome out;
    for (size_t i = 0; i < sizeof claims / sizeof claims[0]; i++) {
        c = strcmp(claims[i].scenario, key) == 0 ? &claims[i] : c;
    }
    REQUIRE(c != NULL && scenario_index(key) >= 0);
    lab_run(step, scenario_index(key), 42, &out);
    if (c->lost[step - 1] != ANY) {
        CHECK_EQ_INT(out.lost, c->lost[step - 1]);
    }
    if (c->dup[step - 1] != ANY) {
        CHECK_EQ_INT(out.dup, c->dup[step - 1]);
    }
    CHECK(out.receiver_ok);
    /* Within the retry budget nothing is given up: exit status 0. */
    CHECK_EQ_INT(out.gave_up, 0);
    CHECK_EQ_INT(out.recovered, 0);
    CHECK_EQ_INT(out.sender_status, 0);
    if (step >= 3) {
        CHECK(out.order_kept);
        CHECK_EQ_INT(out.inflight, 1);
    }
}

#define CELL(key, step)                                                                                      \
    static void cell_##key##_##step(void) {                                                                  \
        check_cell(#key, step);                                                                              \
    }
#define ROW(key) CELL(key, 1) CELL(key, 2) CELL(key, 3) CELL(key, 4)
ROW(down)
ROW(cut)
ROW(ack)
ROW(kill)
ROW(lock)
ROW(stall)
ROW(sender)
ROW(window)
ROW(mixed)

#define T(key, step, claim)                                                                                  \
    { "lab step" #step " " #key ": " claim, cell_##key##_##step }
const struct test lab_tests[] = {
    T(down, 1, "lines typed while the network is down are lost"),
    T(down, 2, "nothing typed while down is lost"),
    T(down, 3, "nothing typed while down is lost"),
    T(down, 4, "nothing typed while down is lost"),
    T(cut, 1, "a line cut on the wire is lost, nothing duplicated"),
    T(cut, 2, "a line cut on the wire is lost"),
    T(cut, 3, "a line cut on the wire is resent"),
    T(cut, 4, "a line cut on the wire is resent"),
    T(ack, 1, "no ack to lose: nothing lost"),
    T(ack, 2, "no ack to lose: nothing lost"),
    T(ack, 3, "a lost ack gives exactly one duplicate"),
    T(ack, 4, "a lost ack gives no duplicate"),
    T(kill, 1, "a line in the dead connection is lost"),
    T(kill, 2, "a line in the dead connection is lost"),
    T(kill, 3, "stored but unacked: one duplicate"),
    T(kill, 4, "stored but unacked: no duplicate"),
    T(lock, 1, "inserts into a locked db are lost"),
    T(lock, 2, "inserts into a locked db are lost"),
    T(lock, 3, "retried until the lock is gone"),
    T(lock, 4, "retried until the lock is gone"),
    T(stall, 1, "lines into a half-open connection are lost"),
    T(stall, 2, "lines into a half-open connection are lost"),
    T(stall, 3, "resent after the heartbeat drops the connection"),
    T(stall, 4, "resent after the heartbeat drops the connection"),
    T(sender, 1, "lines typed while down die with a killed sender"),
    T(sender, 2, "the buffer dies with a killed sender"),
    T(sender, 3, "unacked lines die with a killed sender, the rest in order"),
    T(sender, 4, "unacked lines die with a killed sender, the rest in order"),
    T(window, 1, "late acks: nothing lost"),
    T(window, 2, "late acks: nothing lost"),
    T(window, 3, "late acks: nothing lost or duplicated, one message in flight"),
    T(window, 4, "late acks: nothing lost or duplicated, one message in flight"),
    T(mixed, 1, "all faults: nothing duplicated"),
    T(mixed, 2, "all faults: nothing duplicated"),
    T(mixed, 3, "all faults: nothing lost, in order"),
    T(mixed, 4, "all faults: nothing lost, nothing duplicated, in order"),
};
const int lab_count = sizeof lab_tests / sizeof lab_tests[0];

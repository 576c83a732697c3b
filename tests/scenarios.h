/* scenarios.h -- the delivery lab's fault scenarios.
 *
 * One run = one scenario against one step: a server, a sender and a
 * receiver (each client through a fault proxy of its own, both proxies
 * given every fault), numbered messages typed into the sender, faults
 * injected at exact points, then a count of what the database holds. Shared by the lab (make demo), which
 * prints the table, and by test_lab.c, which asserts its cells. */
#ifndef SCENARIOS_H
#define SCENARIOS_H

struct outcome {
    int typed; /* messages typed into the sender */
    int lost; /* typed, but in no row */
    int dup; /* extra rows: a message stored n times adds n-1 */
    int rows; /* rows in the table at the end */
    int receiver_ok; /* the receiver printed every row once, in id order */
    int sender_status; /* the sender's exit status after stdin closed */
    int gave_up; /* typed messages the sender said it gave up on */
    int recovered; /* of those, the ones stored anyway */
    int order_kept; /* stored in typed order (each message's first row) */
    int inflight; /* most MSGs the sender had unanswered on a connection */
};

struct lab;

struct scenario {
    const char *key; /* for the command line: lab --scenario KEY */
    const char *title; /* the table's row label */
    const char *why; /* one line: what happens at the weakest step */
    void (*phase)(struct lab *l); /* the fault; NULL: every fault, shuffled */
    int flags; /* NOT_MIXED, SHOW_INFLIGHT */
};

enum {
    NOT_MIXED = 1, /* left out of the shuffled run: its claims differ */
    SHOW_INFLIGHT = 2, /* the table shows the most messages in flight */
};

extern const struct scenario lab_scenarios[];
extern const int lab_nscenarios;

/* The steps the lab knows, one column each. A new step adds a line here;
 * the scenarios stay as they are. */
struct lab_step {
    int step;
    const char *guarantee;
    int acks; /* the client keeps a message until the server acks it */
};

extern const struct lab_step lab_steps[];
extern const int lab_nsteps;

/* Run scenario `index` against `step` (mixed runs shuffle with `seed`).
 * Must run inside a harness test or subtest: a run that breaks (a wait
 * past its deadline) ends that test. */
/* Set: every step runs as a step without acks (no --ack-timeout and
 * --retries; no wait for each message to be stored or given up). For
 * the grader, with a client that does not take the ack flags. */
extern int lab_no_acks;

void lab_run(int step, int index, unsigned seed, struct outcome *out);

#endif

/* test_proxy.c -- the fault proxy, one fault at a time.
 *
 * The lab trusts the proxy to break the network at exact protocol lines;
 * these tests check each command on its own, between a raw client and a
 * fake server of the test's own (a listening socket it accepts on), so
 * that every byte on both sides is visible. Negative claims ("the server
 * never got b") are checked once the connection is over, or after a later
 * line that TCP would have delivered after it. */
#include "harness.h"
#include "suites.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <unistd.h>

#define WAIT_MS 5000

struct rig {
    int listen_fd; /* the fake server */
    struct proc *proxy;
    int proxy_port, control;
};

static int control_port(struct proc *p) {
    const char *s = strstr(p->err, "control on ");
    const char *colon = s ? strchr(s, ':') : NULL;
    return colon ? atoi(colon + 1) : 0;
}

static struct rig start_rig(void) {
    struct rig r;
    int server_port;
    char port[16];
    r.listen_fd = tcp_listen(&server_port);
    snprintf(port, sizeof port, "%d", server_port);
    const char *argv[] = {bin_path("tests/proxy"), "--server-port", port, NULL};
    r.proxy = proc_start("proxy", argv);
    WAIT_UNTIL(proc_port(r.proxy) > 0 && control_port(r.proxy) > 0, WAIT_MS);
    r.proxy_port = proc_port(r.proxy);
    r.control = tcp_connect(control_port(r.proxy));
    return r;
}

static void command(struct rig *r, const char *cmd, const char *reply) {
    tcp_send_str(r->control, cmd);
    tcp_send_str(r->control, "\n");
    REQUIRE(tcp_wait_line(r->control, reply, WAIT_MS));
}

/* A number from the last "status" reply: "held=" and so on. */
static long status_field(struct rig *r, const char *key) {
    command(r, "status", "OK conns=");
    const char *s = tcp_log(r->control), *last = NULL;
    while ((s = strstr(s, key)) != NULL) {
        last = s++;
    }
    return last ? atol(last + strlen(key)) : -1;
}

/* A client connection through the proxy, and its server side. */
static void connect_pair(struct rig *r, int *client, int *server) {
    *client = tcp_connect(r->proxy_port);
    *server = tcp_accept(r->listen_fd, WAIT_MS);
    tcp_adopt(*server);
}

static void forwards_both_ways(void) {
    struct rig r = start_rig();
    int c, s;
    connect_pair(&r, &c, &s);
    tcp_send_str(c, "HELLO 0\nMSG one\n");
    CHECK(tcp_wait_line(s, "MSG one", WAIT_MS));
    tcp_send_str(s, "CHAT 1 one\n");
    CHECK(tcp_wait_line(c, "CHAT 1 one", WAIT_MS));
    CHECK_EQ_INT(status_field(&r, "msgs="), 1); /* HELLO is not a MSG line */
    CHECK_EQ_INT(status_field(&r, "conns="), 1);
}

static void down_and_up(void) {
    struct rig r = start_rig();
    int c, s;
    connect_pair(&r, &c, &s);
    command(&r, "down", "OK");
    CHECK(tcp_wait_closed(c, WAIT_MS)); /* the open connection is cut */
    CHECK(tcp_wait_closed(s, WAIT_MS));
    int refused = tcp_connect(r.proxy_port); /* accepted, then closed */
    CHECK(tcp_wait_closed(refused, WAIT_MS));
    CHECK_EQ_INT(status_field(&r, "down="), 1);
    CHECK_EQ_INT(status_field(&r, "refused="), 1);
    command(&r, "up", "OK");
    connect_pair(&r, &c, &s);
    tcp_send_str(c, "MSG back\n");
    CHECK(tcp_wait_line(s, "MSG back", WAIT_MS));
}

static void down_for_a_while(void) {
    struct rig r = start_rig();
    command(&r, "down 300", "OK");
    CHECK_EQ_INT(status_field(&r, "down="), 1);
    WAIT_UNTIL(status_field(&r, "down=") == 0, WAIT_MS); /* up by itself */
    int c, s;
    connect_pair(&r, &c, &s);
    tcp_send_str(c, "MSG again\n");
    CHECK(tcp_wait_line(s, "MSG again", WAIT_MS));
}

static void cut_before(void) {
    struct rig r = start_rig();
    int c, s;
    connect_pair(&r, &c, &s);
    command(&r, "cut-before 2", "OK");
    tcp_send_str(c, "HELLO 0\nMSG a\nMSG b\nMSG c\n");
    CHECK(tcp_wait_closed(c, WAIT_MS));
    CHECK(tcp_wait_closed(s, WAIT_MS));
    CHECK(strcmp(tcp_log(s), "HELLO 0\nMSG a\n") == 0); /* b and after: never forwarded */
    CHECK_EQ_INT(status_field(&r, "fired="), 1);
}

static void cut_after(void) {
    struct rig r = start_rig();
    int c, s;
    connect_pair(&r, &c, &s);
    command(&r, "cut-after 2", "OK");
    tcp_send_str(c, "MSG a\nMSG b\nMSG c\n");
    CHECK(tcp_wait_line(s, "MSG b", WAIT_MS));
    tcp_send_str(s, "ACK 2\n"); /* the server's reply to b... */
    CHECK(tcp_wait_closed(c, WAIT_MS));
    CHECK(strstr(tcp_log(c), "ACK") == NULL); /* ...never reaches the client */
    CHECK(tcp_wait_closed(s, WAIT_MS));
    CHECK(strcmp(tcp_log(s), "MSG a\nMSG b\n") == 0);
}

static void hold_after(void) {
    struct rig r = start_rig();
    int c, s;
    connect_pair(&r, &c, &s);
    command(&r, "hold-after 1", "OK");
    tcp_send_str(c, "MSG a\n");
    CHECK(tcp_wait_line(s, "MSG a", WAIT_MS));
    tcp_send_str(c, "MSG b\n");
    tcp_send_str(s, "ACK 1\n");
    WAIT_UNTIL(status_field(&r, "held=") == 2, WAIT_MS); /* both frozen in the proxy */
    CHECK(strstr(tcp_log(s), "MSG b") == NULL);
    CHECK(strstr(tcp_log(c), "ACK 1") == NULL);
    command(&r, "clear", "OK"); /* held bytes go on */
    CHECK(tcp_wait_line(s, "MSG b", WAIT_MS));
    CHECK(tcp_wait_line(c, "ACK 1", WAIT_MS));
}

static void blackhole(void) {
    struct rig r = start_rig();
    int c, s;
    connect_pair(&r, &c, &s);
    command(&r, "blackhole", "OK");
    tcp_send_str(c, "MSG lost\n");
    tcp_send_str(s, "PING\n");
    CHECK_EQ_INT(status_field(&r, "conns="), 1); /* nothing is closed */
    command(&r, "clear", "OK");
    tcp_send_str(c, "MSG after\n");
    CHECK(tcp_wait_line(s, "MSG after", WAIT_MS));
    CHECK(strstr(tcp_log(s), "MSG lost") == NULL); /* it would have come first */
    tcp_send_str(s, "PONG?\n");
    CHECK(tcp_wait_line(c, "PONG?", WAIT_MS));
    CHECK(strstr(tcp_log(c), "PING") == NULL);
}

static void delay(void) {
    struct rig r = start_rig();
    int c, s;
    connect_pair(&r, &c, &s);
    command(&r, "delay 300", "OK");
    long long t0 = now_ms();
    tcp_send_str(c, "MSG slow\n");
    CHECK(tcp_wait_line(s, "MSG slow", WAIT_MS));
    CHECK(now_ms() - t0 >= 300); /* a lower bound: never early */
    t0 = now_ms();
    tcp_send_str(s, "CHAT 1 slow\n");
    CHECK(tcp_wait_line(c, "CHAT 1 slow", WAIT_MS));
    CHECK(now_ms() - t0 >= 300);
}

/* Only the server's lines wait. No upper bound on the client's line: the
 * claim is checked only if it came back well before the delay ended. */
static void delay_replies(void) {
    struct rig r = start_rig();
    int c, s;
    connect_pair(&r, &c, &s);
    command(&r, "delay-replies 1000", "OK");
    long long t0 = now_ms();
    tcp_send_str(s, "ACK 1\n");
    tcp_send_str(c, "MSG 2 early\n");
    CHECK(tcp_wait_line(s, "MSG 2 early", WAIT_MS));
    if (now_ms() - t0 < 900) {
        CHECK(strstr(tcp_log(c), "ACK 1") == NULL);
    }
    CHECK(tcp_wait_line(c, "ACK 1", WAIT_MS));
    CHECK(now_ms() - t0 >= 1000);
    command(&r, "clear", "OK");
}

/* Each line is checked for at its peer before "status": the proxy counts
 * a line when it forwards it. */
static void counts_inflight(void) {
    struct rig r = start_rig();
    int c, s;
    connect_pair(&r, &c, &s);
    tcp_send_str(c, "HELLO 0\nMSG 1 a\nMSG 2 b\n");
    CHECK(tcp_wait_line(s, "MSG 2 b", WAIT_MS));
    CHECK_EQ_INT(status_field(&r, "inflight="), 2);
    tcp_send_str(s, "ACK 1\n");
    CHECK(tcp_wait_line(c, "ACK 1", WAIT_MS));
    CHECK_EQ_INT(status_field(&r, "inflight="), 1);
    tcp_send_str(c, "MSG 3 b\n"); /* b again, a new ack id: a resend */
    CHECK(tcp_wait_line(s, "MSG 3 b", WAIT_MS));
    CHECK_EQ_INT(status_field(&r, "inflight="), 1);
    tcp_send_str(s, "ACK 2\n"); /* the abandoned attempt: b is still unanswered */
    CHECK(tcp_wait_line(c, "ACK 2", WAIT_MS));
    CHECK_EQ_INT(status_field(&r, "inflight="), 1);
    tcp_send_str(s, "REJECT 3 message too long\n");
    CHECK(tcp_wait_line(c, "REJECT 3", WAIT_MS));
    CHECK_EQ_INT(status_field(&r, "inflight="), 0);
    CHECK_EQ_INT(status_field(&r, "inflight-max="), 2);
}

static void bad_commands(void) {
    struct rig r = start_rig();
    command(&r, "explode", "ERR");
    command(&r, "cut-before zero", "ERR");
    command(&r, "delay -5", "ERR");
    command(&r, "status", "OK conns=0 msgs=0 held=0 fired=0 down=0");
}

const struct test proxy_tests[] = {
    {"proxy: forwards both ways and counts MSG lines", forwards_both_ways},
    {"proxy: down cuts and refuses connections (counted), up lets them in again", down_and_up},
    {"proxy: down MS comes back up by itself", down_for_a_while},
    {"proxy: cut-before N drops the Nth MSG and what follows, and closes", cut_before},
    {"proxy: cut-after N forwards the Nth MSG, then closes: the reply is lost", cut_after},
    {"proxy: hold-after N freezes both ways; clear lets the held bytes go", hold_after},
    {"proxy: blackhole swallows both ways and closes nothing", blackhole},
    {"proxy: delay MS holds every line at least MS, both ways", delay},
    {"proxy: a bad command gets ERR; status reports the counters", bad_commands},
    {"proxy: delay-replies MS holds only the server's lines", delay_replies},
    {"proxy: inflight counts MSGs not yet acked or rejected; a resend is not one more", counts_inflight},
};
const int proxy_count = sizeof proxy_tests / sizeof proxy_tests[0];

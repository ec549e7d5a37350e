/*
 * The gateway benchmark's floor: its three processes with no work in them, in C.
 *
 *   floor relay LISTEN_PORT EXCHANGE_PORT   a gateway that checks nothing: LOGON -> LOGON_ACK, each
 *                                           NEW_ORDER to the exchange as it came and back to the
 *                                           broker as ACCEPTED (the exchange's write first, as the
 *                                           gateway's), every frame from the exchange to the broker
 *                                           logged on (a past one's late fills are dropped)
 *   floor exchange LISTEN_PORT              fills every NEW_ORDER in full at its price
 *   floor load PORT RATE SECONDS FRAMES     the open-loop load generator of bench/gateway_load.py:
 *                                           FRAMES holds a LOGON, then the NEW_ORDERs; order i is due
 *                                           at t0 + i / RATE, its latency runs from then to its
 *                                           verdict; prints the same JSON object
 *
 * A listener prints its port on stdout. The relay and the exchange serve one connection at a time,
 * the next when it closes, until killed. What the gateway's latency has on top of this program's,
 * on the same machine at the same rate, is the gateway's own.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { LOGON = 1, LOGON_ACK = 2, NEW_ORDER = 16, ACCEPTED = 32, REJECTED = 33, FILL = 48 };
enum { HEADER = 8, ORDER = 64, EXEC = 80, PRICE_AT = 40 };

static const unsigned char logon_ack[16] = {LOGON_ACK, 1, 16, 0, 1, 0, 0, 0, 0x60, 0xea};

static void die(const char *what) {
    fprintf(stderr, "floor: %s: %s\n", what, errno ? strerror(errno) : "failed");
    exit(1);
}

static unsigned frame_len(const unsigned char *p) { return p[2] | (unsigned)p[3] << 8; }

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

static struct sockaddr_in loopback(int port) {
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    return a;
}

static int tcp_setup(int fd, int nonblocking) {
    int one = 1;
    if (fd < 0) die("socket");
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (nonblocking) fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

static int listen_on(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in a = loopback(port);
    socklen_t size = sizeof a;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) || listen(fd, 8)) die("listen");
    getsockname(fd, (struct sockaddr *)&a, &size);
    printf("%d\n", ntohs(a.sin_port));
    fflush(stdout);
    return fd;
}

static int connect_to(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = loopback(port);
    if (connect(fd, (struct sockaddr *)&a, sizeof a)) die("connect");
    return fd;
}

/* ------------------------------------------------------------------ relay */

typedef struct {
    int fd;
    size_t in_n, out_n;
    unsigned char in[1 << 20], out[1 << 22];
} Conn;

static Conn broker, exch;
static int logged_on; /* the broker's LOGON answered: the exchange's frames before are a past run's */

static void put(Conn *c, const unsigned char *p, size_t n) {
    if (c->out_n + n > sizeof c->out) {
        errno = 0;
        die("relay: a peer stopped reading");
    }
    memcpy(c->out + c->out_n, p, n);
    c->out_n += n;
}

static void write_out(Conn *c) {
    size_t done = 0;
    while (done < c->out_n) {
        ssize_t k = write(c->fd, c->out + done, c->out_n - done);
        if (k < 0 && errno == EAGAIN) break;
        if (k < 0) {
            c->out_n = 0; /* the broker went away: what it was owed goes with it */
            return;
        }
        done += (size_t)k;
    }
    memmove(c->out, c->out + done, c->out_n - done);
    c->out_n -= done;
}

/* Frames read from c; 0 when it closed. */
static int relay_read(Conn *c) {
    ssize_t k = read(c->fd, c->in + c->in_n, sizeof c->in - c->in_n);
    if (k == 0 || (k < 0 && errno != EAGAIN)) return 0;
    if (k > 0) c->in_n += (size_t)k;
    size_t pos = 0;
    while (c->in_n - pos >= HEADER) {
        unsigned char *f = c->in + pos;
        unsigned len = frame_len(f);
        if (len < HEADER) {
            errno = 0;
            die("relay: a frame shorter than its header");
        }
        if (c->in_n - pos < len) break;
        if (c == &exch) {
            if (logged_on) put(&broker, f, len);
        } else if (f[0] == LOGON) {
            put(&broker, logon_ack, sizeof logon_ack);
            logged_on = 1;
        } else if (f[0] == NEW_ORDER) {
            put(&exch, f, len);
            f[0] = ACCEPTED;
            put(&broker, f, len);
        }
        pos += len;
    }
    memmove(c->in, c->in + pos, c->in_n - pos);
    c->in_n -= pos;
    return 1;
}

static void watch(int ep, int op, Conn *c) {
    struct epoll_event e = {.events = EPOLLIN | (c->out_n ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(ep, op, c->fd, &e);
}

static _Noreturn void relay(int listen_port, int exchange_port) {
    exch.fd = tcp_setup(connect_to(exchange_port), 1);
    int ls = listen_on(listen_port), ep = epoll_create1(0);
    watch(ep, EPOLL_CTL_ADD, &exch);
    for (;;) {
        broker.fd = tcp_setup(accept(ls, NULL, NULL), 1);
        broker.in_n = broker.out_n = 0;
        logged_on = 0;
        watch(ep, EPOLL_CTL_ADD, &broker);
        for (int open = 1; open;) {
            struct epoll_event ev[2];
            int n = epoll_wait(ep, ev, 2, -1);
            for (int i = 0; i < n; i++) {
                Conn *c = ev[i].data.ptr;
                if (!(ev[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) continue;
                if (relay_read(c)) continue;
                if (c == &exch) {
                    errno = 0;
                    die("relay: the exchange closed its connection");
                }
                open = 0;
            }
            write_out(&exch); /* the exchange's first, as the gateway writes them */
            write_out(&broker);
            watch(ep, EPOLL_CTL_MOD, &exch);
            if (open) watch(ep, EPOLL_CTL_MOD, &broker);
        }
        epoll_ctl(ep, EPOLL_CTL_DEL, broker.fd, NULL);
        close(broker.fd);
    }
}

/* ------------------------------------------------------------------ exchange */

static _Noreturn void exchange(int listen_port) {
    static unsigned char in[1 << 20], out[(1 << 20) / ORDER * EXEC];
    int ls = listen_on(listen_port);
    for (;;) {
        int fd = tcp_setup(accept(ls, NULL, NULL), 0);
        size_t n = 0;
        ssize_t k;
        while ((k = read(fd, in + n, sizeof in - n)) > 0) {
            size_t pos = 0, o = 0;
            n += (size_t)k;
            while (n - pos >= HEADER && n - pos >= frame_len(in + pos)) {
                unsigned len = frame_len(in + pos);
                if (len < HEADER) break;
                if (in[pos] == NEW_ORDER && len == ORDER) {
                    memcpy(out + o, in + pos, ORDER);
                    out[o] = FILL;
                    out[o + 2] = EXEC;
                    memcpy(out + o + ORDER, in + pos + PRICE_AT, 16); /* exec_price, exec_quantity */
                    o += EXEC;
                }
                pos += len;
            }
            memmove(in, in + pos, n - pos);
            n -= pos;
            for (size_t w = 0; w < o;) {
                ssize_t m = write(fd, out + w, o - w);
                if (m <= 0) break;
                w += (size_t)m;
            }
        }
        close(fd);
    }
}

/* ------------------------------------------------------------------ load generator */

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* {"p50": ..., ..., "max": ...} of n sorted values in ns, printed in µs as bench.gateway_load's */
static void percentiles(const int64_t *v, long n) {
    static const double at[] = {0.5, 0.9, 0.99, 0.999};
    static const char *name[] = {"p50", "p90", "p99", "p99_9"};
    printf("{");
    for (int i = 0; n && i < 4; i++) {
        long j = (long)(at[i] * (double)n);
        printf("\"%s\": %.1f, ", name[i], v[j < n ? j : n - 1] / 1e3);
    }
    if (n) printf("\"max\": %.1f", v[n - 1] / 1e3);
    printf("}");
}

static int load(int port, double rate, double seconds, const char *frames_path) {
    FILE *f = fopen(frames_path, "rb");
    if (!f) die(frames_path);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    rewind(f);
    unsigned char *file = malloc((size_t)size);
    if (fread(file, 1, (size_t)size, f) != (size_t)size) die(frames_path);
    fclose(f);
    unsigned logon = frame_len(file);
    unsigned char *orders = file + logon;
    long n = (long)(rate * seconds), have = (size - logon) / ORDER;
    if (n < 1 || n > have) {
        errno = 0;
        die("load: the frames file holds fewer orders than RATE x SECONDS");
    }
    int64_t first_id;
    memcpy(&first_id, orders + 8, sizeof first_id);
    prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0); /* waits end when asked, not 50 µs later */

    int fd = tcp_setup(connect_to(port), 0);
    static unsigned char buf[1 << 20];
    size_t got_n = 0;
    if (write(fd, file, logon) != (ssize_t)logon) die("load: LOGON");
    while (got_n < HEADER || got_n < frame_len(buf)) {
        ssize_t k = read(fd, buf + got_n, sizeof buf - got_n);
        if (k <= 0) die("load: the connection closed at LOGON");
        got_n += (size_t)k;
    }
    if (buf[0] != LOGON_ACK) {
        errno = 0;
        die("load: LOGON not answered with LOGON_ACK");
    }
    memmove(buf, buf + frame_len(buf), got_n - frame_len(buf));
    got_n -= frame_len(buf);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);

    int64_t *answered = calloc((size_t)n, sizeof *answered), *late = calloc((size_t)n, sizeof *late);
    unsigned char *verdict = calloc((size_t)n, 1);
    long sent = 0, got = 0, fills = 0, max_behind = 0;
    size_t out_at = 0, out_end = 0;
    double period = 1e9 / rate;
    int64_t t0 = now_ns() + 1000000, end = (int64_t)((double)(n - 1) * period + 2e9);
    while (got < n) {
        int64_t t = now_ns() - t0;
        if (t > end) break;
        long due = t >= 0 ? (long)((double)t / period) + 1 : 0;
        if (due > n) due = n;
        if (due > sent) {
            if (due - sent > max_behind) max_behind = due - sent;
            for (long i = sent; i < due; i++) late[i] = t - (int64_t)((double)i * period);
            out_end = (size_t)due * ORDER;
            sent = due;
        }
        if (out_at < out_end) {
            ssize_t k = write(fd, orders + out_at, out_end - out_at);
            if (k > 0) out_at += (size_t)k;
        }
        int64_t wait = out_at < out_end ? 0
                       : sent < n       ? (int64_t)((double)sent * period) - (now_ns() - t0)
                                        : 10000000;
        if (wait < 0) wait = 0;
        struct pollfd p = {fd, POLLIN, 0};
        struct timespec ts = {wait / 1000000000, wait % 1000000000};
        if (ppoll(&p, 1, &ts, NULL) <= 0) continue;
        ssize_t k = read(fd, buf + got_n, sizeof buf - got_n);
        if (k == 0) {
            errno = 0;
            die("load: the gateway closed the connection");
        }
        if (k < 0) continue;
        int64_t at = now_ns() - t0;
        size_t pos = 0;
        got_n += (size_t)k;
        while (got_n - pos >= HEADER && got_n - pos >= frame_len(buf + pos)) {
            unsigned char *fr = buf + pos;
            if (frame_len(fr) < HEADER) die("load: a frame shorter than its header");
            if (fr[0] == ACCEPTED || fr[0] == REJECTED) {
                int64_t id;
                memcpy(&id, fr + 8, sizeof id);
                long i = (long)(id - first_id);
                if (i >= 0 && i < n && !answered[i]) {
                    answered[i] = at;
                    verdict[i] = fr[0] == ACCEPTED ? 1 : 2;
                    got++;
                }
            } else if (fr[0] == FILL) {
                fills++;
            }
            pos += frame_len(fr);
        }
        memmove(buf, buf + pos, got_n - pos);
        got_n -= pos;
    }
    close(fd);

    long accepted = 0, m = 0;
    int64_t last = 0, *lat = calloc((size_t)n, sizeof *lat);
    for (long i = 0; i < n; i++) {
        if (!answered[i]) continue;
        accepted += verdict[i] == 1;
        lat[m++] = answered[i] - (int64_t)((double)i * period);
        if (answered[i] > last) last = answered[i];
    }
    qsort(lat, (size_t)m, sizeof *lat, cmp_i64);
    qsort(late, (size_t)sent, sizeof *late, cmp_i64);
    printf("{\"rate\": %.1f, \"seconds\": %.1f, \"orders\": %ld, \"answered\": %ld, \"lost\": %ld, ", rate,
           seconds, n, got, n - got);
    printf("\"accepted\": %ld, \"rejected\": %ld, \"fills_seen\": %ld, \"max_orders_sent_late_at_once\": %ld, ",
           accepted, got - accepted, fills, max_behind);
    printf("\"send_late_us\": ");
    percentiles(late, sent);
    if (got)
        printf(", \"last_answer_after_last_due_ms\": %.3f, \"achieved_rate\": %.1f",
               (double)(last - (int64_t)((double)(n - 1) * period)) / 1e6, (double)got / ((double)last / 1e9));
    else
        printf(", \"last_answer_after_last_due_ms\": null, \"achieved_rate\": 0.0");
    printf(", \"latency_us\": ");
    percentiles(lat, m);
    printf("}\n");
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 4 && !strcmp(argv[1], "relay")) relay(atoi(argv[2]), atoi(argv[3]));
    if (argc == 3 && !strcmp(argv[1], "exchange")) exchange(atoi(argv[2]));
    if (argc == 6 && !strcmp(argv[1], "load")) return load(atoi(argv[2]), atof(argv[3]), atof(argv[4]), argv[5]);
    fprintf(stderr,
            "usage: floor relay LISTEN_PORT EXCHANGE_PORT | floor exchange LISTEN_PORT | "
            "floor load PORT RATE SECONDS FRAMES\n");
    return 2;
}

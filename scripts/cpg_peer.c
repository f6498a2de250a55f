/*
 * cpg_peer: corosync's CPG measured the way scripts/bench_totem.py measures
 * our Totem (coro bench corosync builds and runs it, one per node namespace).
 *
 *   cpg_peer saturate SIZE WARMUP_S DURATION_S
 *       Keep cpg_mcast_joined busy with SIZE-byte AGREED messages and count
 *       our own deliveries inside the measured window.
 *       -> {"delivered": n, "seconds": s, "submitted": k, "try_again": t, "cpu_s": c}
 *   cpg_peer latency SIZE SAMPLES GAP_MS
 *       One message at a time, submit to own delivery, in microseconds;
 *       GAP_MS 0 is a closed loop, otherwise a seeded pause of
 *       0.5-1.5 x GAP_MS before each message (sparse traffic).
 *       -> {"values_us": [sorted samples]}
 *
 * Built at benchmark time: gcc -O2 -o cpg_peer cpg_peer.c -lcpg
 * Every wait is bounded; errors go to stderr with a non-zero exit.
 */

#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <corosync/cpg.h>

#define GROUP "coro-bench"
#define CONNECT_TRIES 100      /* x 100 ms: corosync may still be starting its services */
#define JOIN_WAIT_NS (10 * 1000000000LL)
#define DRAIN_WAIT_NS (30 * 1000000000LL)
#define SAMPLE_WAIT_NS (5 * 1000000000LL)
#define FULL_POLL_MS 5         /* a refused send waits this long for deliveries at most */

static cpg_handle_t handle;
static int cpg_fd = -1;
static unsigned int my_nodeid;
static uint32_t my_pid;
static int joined;

/* saturate: own deliveries in all, and inside [window_start, window_end) */
static uint64_t own_total;
static uint64_t own_counted;
static int64_t window_start = INT64_MAX;
static int64_t window_end = INT64_MAX;

/* latency: the sequence number awaited and when it arrived */
static uint64_t awaited_seq;
static int awaited_seen;
static int64_t awaited_at;

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static double cpu_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what, cs_error_t err)
{
	fprintf(stderr, "cpg_peer: %s failed (cs_error %d)\n", what, (int)err);
	exit(1);
}

static void on_deliver(cpg_handle_t h, const struct cpg_name *group, uint32_t nodeid,
		       uint32_t pid, void *msg, size_t msg_len)
{
	int64_t t;
	uint64_t seq;

	(void)h;
	(void)group;
	if (nodeid != my_nodeid || pid != my_pid)
		return;
	own_total++;
	if (window_start != INT64_MAX) {
		t = now_ns();
		if (t >= window_start && t < window_end)
			own_counted++;
	}
	/* Own messages come back in the order sent; the number in the payload
	 * checks that (too short a message to carry one: the count does). */
	if (msg_len >= sizeof(seq)) {
		memcpy(&seq, msg, sizeof(seq));
	} else {
		seq = own_total;
	}
	if (seq == awaited_seq && !awaited_seen) {
		awaited_at = now_ns();
		awaited_seen = 1;
	}
}

static void on_confchg(cpg_handle_t h, const struct cpg_name *group,
		       const struct cpg_address *members, size_t n_members,
		       const struct cpg_address *left, size_t n_left,
		       const struct cpg_address *joined_list, size_t n_joined)
{
	size_t i;

	(void)h;
	(void)group;
	(void)members;
	(void)n_members;
	(void)left;
	(void)n_left;
	for (i = 0; i < n_joined; i++) {
		if (joined_list[i].nodeid == my_nodeid && joined_list[i].pid == my_pid)
			joined = 1;
	}
}

static cpg_callbacks_t callbacks = {
	.cpg_deliver_fn = on_deliver,
	.cpg_confchg_fn = on_confchg,
};

/* Wait up to timeout_ms for events on the CPG fd, then dispatch what came. */
static void pump(int timeout_ms)
{
	struct pollfd pfd = { .fd = cpg_fd, .events = POLLIN };
	cs_error_t err;
	int ready;

	ready = poll(&pfd, 1, timeout_ms);
	if (ready < 0 && errno != EINTR) {
		perror("cpg_peer: poll");
		exit(1);
	}
	if (ready <= 0)
		return; /* libqb writes a byte on this socket for every event: none is pending */
	if ((pfd.revents & (POLLERR | POLLHUP | POLLNVAL)) && !(pfd.revents & POLLIN)) {
		fprintf(stderr, "cpg_peer: the connection to corosync closed\n");
		exit(1);
	}
	err = cpg_dispatch(handle, CS_DISPATCH_ALL);
	if (err != CS_OK && err != CS_ERR_TRY_AGAIN)
		die("cpg_dispatch", err);
}

static void connect_and_join(void)
{
	struct cpg_name group;
	cs_error_t err = CS_ERR_TRY_AGAIN;
	int64_t deadline;
	int i;

	for (i = 0; i < CONNECT_TRIES; i++) {
		err = cpg_initialize(&handle, &callbacks);
		if (err != CS_ERR_TRY_AGAIN)
			break;
		usleep(100000);
	}
	if (err != CS_OK)
		die("cpg_initialize", err);
	err = cpg_fd_get(handle, &cpg_fd);
	if (err != CS_OK)
		die("cpg_fd_get", err);
	err = cpg_local_get(handle, &my_nodeid);
	if (err != CS_OK)
		die("cpg_local_get", err);
	my_pid = (uint32_t)getpid();

	memset(&group, 0, sizeof(group));
	group.length = strlen(GROUP);
	memcpy(group.value, GROUP, group.length);
	for (i = 0; i < CONNECT_TRIES; i++) {
		err = cpg_join(handle, &group);
		if (err != CS_ERR_TRY_AGAIN)
			break;
		usleep(100000);
	}
	if (err != CS_OK)
		die("cpg_join", err);
	/* Messages go to the group's members as of their place in the total
	 * order: start once our own join is in that order. */
	deadline = now_ns() + JOIN_WAIT_NS;
	while (!joined) {
		if (now_ns() >= deadline) {
			fprintf(stderr, "cpg_peer: our join of %s was not seen within 10 s\n", GROUP);
			exit(1);
		}
		pump(100);
	}
}

static void finish(void)
{
	cs_error_t err = cpg_finalize(handle);

	if (err != CS_OK)
		die("cpg_finalize", err);
}

static int saturate(size_t size, double warmup_s, double duration_s)
{
	struct sched_param param = { .sched_priority = 0 };
	struct iovec iov;
	char *payload;
	uint64_t submitted = 0, try_again = 0, seq;
	int64_t start, deadline;
	double cpu_start;
	cs_error_t err;

	/* Batch work, as our own saturating sender: its wake-ups should not
	 * preempt the daemons (corosync runs SCHED_RR anyway). Refused: as is. */
	(void)sched_setscheduler(0, SCHED_BATCH, &param);

	payload = calloc(1, size);
	if (payload == NULL) {
		perror("cpg_peer: calloc");
		return 1;
	}
	connect_and_join();
	iov.iov_base = payload;
	iov.iov_len = size;

	cpu_start = cpu_seconds();
	start = now_ns();
	window_start = start + (int64_t)(warmup_s * 1e9);
	window_end = window_start + (int64_t)(duration_s * 1e9);
	while (now_ns() < window_end) {
		seq = submitted + 1;
		if (size >= sizeof(seq))
			memcpy(payload, &seq, sizeof(seq));
		err = cpg_mcast_joined(handle, CPG_TYPE_AGREED, &iov, 1);
		if (err == CS_OK) {
			submitted++;
			pump(0);
		} else if (err == CS_ERR_TRY_AGAIN) {
			/* Flow control: corosync's queue is full; our deliveries make room. */
			try_again++;
			pump(FULL_POLL_MS);
		} else {
			die("cpg_mcast_joined", err);
		}
	}
	/* Deliver what is still in flight, so that the next run starts clean. */
	deadline = now_ns() + DRAIN_WAIT_NS;
	while (own_total < submitted && now_ns() < deadline)
		pump(100);
	if (own_total < submitted) {
		fprintf(stderr, "cpg_peer: %llu of %llu messages undelivered after 30 s\n",
			(unsigned long long)(submitted - own_total), (unsigned long long)submitted);
		return 1;
	}
	printf("{\"delivered\": %llu, \"seconds\": %.6f, \"submitted\": %llu, \"try_again\": %llu, "
	       "\"cpu_s\": %.3f}\n",
	       (unsigned long long)own_counted, (double)(window_end - window_start) / 1e9,
	       (unsigned long long)submitted, (unsigned long long)try_again,
	       cpu_seconds() - cpu_start);
	finish();
	free(payload);
	return 0;
}

static int compare_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static int latency(size_t size, int samples, double gap_ms)
{
	struct iovec iov;
	struct timespec pause;
	char *payload;
	double *values;
	int rounds = samples + samples / 10, warm = samples / 10, i;
	int64_t started, deadline;
	double gap;
	cs_error_t err;

	payload = calloc(1, size);
	values = calloc((size_t)rounds, sizeof(*values));
	if (payload == NULL || values == NULL) {
		perror("cpg_peer: calloc");
		return 1;
	}
	connect_and_join();
	iov.iov_base = payload;
	iov.iov_len = size;
	srand48((long)size); /* the same pauses in every run of a size */

	for (i = 0; i < rounds; i++) {
		if (gap_ms > 0) {
			gap = (0.5 + drand48()) * gap_ms / 1000.0;
			pause.tv_sec = (time_t)gap;
			pause.tv_nsec = (long)((gap - (double)pause.tv_sec) * 1e9);
			nanosleep(&pause, NULL);
		}
		awaited_seq = own_total + 1;
		awaited_seen = 0;
		if (size >= sizeof(awaited_seq))
			memcpy(payload, &awaited_seq, sizeof(awaited_seq));
		started = now_ns();
		deadline = started + SAMPLE_WAIT_NS;
		while ((err = cpg_mcast_joined(handle, CPG_TYPE_AGREED, &iov, 1)) == CS_ERR_TRY_AGAIN) {
			if (now_ns() >= deadline) {
				fprintf(stderr, "cpg_peer: corosync refused message %llu for 5 s\n",
					(unsigned long long)awaited_seq);
				return 1;
			}
			pump(1);
		}
		if (err != CS_OK)
			die("cpg_mcast_joined", err);
		while (!awaited_seen) {
			int64_t left = deadline - now_ns();

			if (left <= 0) {
				fprintf(stderr, "cpg_peer: message %llu was not delivered within 5 s\n",
					(unsigned long long)awaited_seq);
				return 1;
			}
			pump((int)(left / 1000000) + 1);
		}
		values[i] = (double)(awaited_at - started) / 1000.0;
	}
	/* The first tenth warms up. */
	qsort(values + warm, (size_t)(rounds - warm), sizeof(*values), compare_double);
	printf("{\"values_us\": [");
	for (i = warm; i < rounds; i++)
		printf("%s%.1f", i > warm ? ", " : "", values[i]);
	printf("]}\n");
	finish();
	free(values);
	free(payload);
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: cpg_peer saturate SIZE WARMUP_S DURATION_S\n"
			"       cpg_peer latency SIZE SAMPLES GAP_MS\n");
	exit(2);
}

int main(int argc, char **argv)
{
	long size;

	if (argc != 5)
		usage();
	size = strtol(argv[2], NULL, 10);
	if (size < 1 || size > 1024 * 1024)
		usage();
	if (strcmp(argv[1], "saturate") == 0) {
		double warmup = strtod(argv[3], NULL), duration = strtod(argv[4], NULL);

		if (warmup < 0 || duration <= 0 || duration > 3600)
			usage();
		return saturate((size_t)size, warmup, duration);
	}
	if (strcmp(argv[1], "latency") == 0) {
		long samples = strtol(argv[3], NULL, 10);
		double gap = strtod(argv[4], NULL);

		if (samples < 1 || samples > 1000000 || gap < 0 || gap > 60000)
			usage();
		return latency((size_t)size, (int)samples, gap);
	}
	usage();
	return 2;
}

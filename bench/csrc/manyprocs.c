/*
 * manyprocs: make procmesh cache N distinct processes, for the memory
 * scenario of the benchmark suite (bench/README.md).
 *
 *   manyprocs N SOCKET HOST
 *
 * Forks N children in batches. Each child connects to SOCKET, sends one
 * HTTP/1.1 GET with Host: HOST, reads the response head, closes the
 * connection, reports on a pipe and then sleeps until killed, so that
 * procmesh keeps it in its process cache (exited processes are dropped).
 * The parent prints "ready ok=N failed=M" once every child has reported,
 * then waits; the harness kills the whole process group. A small C program
 * keeps the per-child cost to a few pages, so 10,000 of them fit.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define BATCH 128

static int one_request(const char *path, const char *host) {
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (fd < 0)
		return -1;
	struct sockaddr_un addr;
	memset(&addr, 0, sizeof addr);
	addr.sun_family = AF_UNIX;
	strncpy(addr.sun_path, path, sizeof addr.sun_path - 1);
	if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
		close(fd);
		return -1;
	}
	char req[512];
	int n = snprintf(req, sizeof req, "GET /1k HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", host);
	if (write(fd, req, n) != n) {
		close(fd);
		return -1;
	}
	char buf[4096];
	ssize_t got = 0, r;
	while ((r = read(fd, buf + got, sizeof buf - 1 - got)) > 0) {
		got += r;
		buf[got] = 0;
		if (strstr(buf, "\r\n\r\n") || got >= (ssize_t)sizeof buf - 1)
			break;
	}
	close(fd);
	return (got >= 12 && strncmp(buf + 9, "200", 3) == 0) ? 0 : -1;
}

int main(int argc, char **argv) {
	if (argc != 4) {
		fprintf(stderr, "usage: manyprocs N SOCKET HOST\n");
		return 2;
	}
	long n = strtol(argv[1], NULL, 10);
	int report[2];
	if (n <= 0 || pipe(report) < 0) {
		perror("manyprocs");
		return 1;
	}
	signal(SIGPIPE, SIG_IGN);
	long ok = 0, failed = 0, started = 0;
	while (started < n) {
		long batch = n - started < BATCH ? n - started : BATCH;
		long forked = 0;
		for (long i = 0; i < batch; i++) {
			pid_t pid = fork();
			if (pid < 0) {
				fprintf(stderr, "manyprocs: fork after %ld children: %s\n", started + i, strerror(errno));
				break;
			}
			if (pid == 0) {
				close(report[0]);
				char c = one_request(argv[2], argv[3]) == 0 ? 'o' : 'f';
				if (write(report[1], &c, 1) != 1)
					_exit(1);
				close(report[1]);
				for (;;)
					pause();
			}
			forked++;
		}
		for (long i = 0; i < forked; i++) {
			char c;
			if (read(report[0], &c, 1) != 1) {
				perror("manyprocs: read");
				return 1;
			}
			if (c == 'o')
				ok++;
			else
				failed++;
		}
		started += forked;
		if (forked < batch)
			break;
	}
	printf("ready ok=%ld failed=%ld\n", ok, failed);
	fflush(stdout);
	for (;;)
		pause();
}

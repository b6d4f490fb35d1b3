/* SPDX-License-Identifier: MIT */
/*
 * A minimal runner for the Criterion API subset our tests use, compiled in
 * place of Criterion only for ThreadSanitizer builds: Criterion cannot start
 * under TSan (its BoxFort arena cannot be mapped: "Could not initialize
 * inheritable arena", upstream issue Snaipe/Criterion#274, open).
 *
 * The tests and their assertions are the same code; only the runner differs.
 * Each test runs in a forked child, as under Criterion, with its .timeout
 * enforced by alarm(); a failed cr_assert ends the test, a failed cr_expect
 * marks it failed and goes on, cr_skip_test exits with 77 (skipped). Exit
 * status 66 from TSan (halt_on_error) is reported as a TSan failure. The last
 * line is a Criterion-style synthesis. Usage: test_x [substring of test name].
 */
#ifndef SPATE_TESTS_TSAN_CRITERION_H
#define SPATE_TESTS_TSAN_CRITERION_H

#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct tsr_opts {
	int unused_; /* takes the positional 0, so .timeout = N overrides nothing */
	double timeout;
};

struct tsr_test {
	const char *suite, *name;
	void (*fn)(void);
	struct tsr_opts opts;
	struct tsr_test *next;
};

static struct tsr_test *tsr_head;
static int tsr_expect_failed;

/* A suite's options (Criterion's TestSuite): none are needed here. */
#define TestSuite(suite, ...) extern int tsr_suite_##suite

#define Test(suite, name, ...)                                                        \
	static void suite##_##name(void);                                             \
	static struct tsr_test tsr_t_##suite##_##name = {                             \
		#suite, #name, suite##_##name, { 0, __VA_ARGS__ }, 0 };               \
	__attribute__((constructor)) static void tsr_reg_##suite##_##name(void)       \
	{                                                                             \
		tsr_t_##suite##_##name.next = tsr_head;                               \
		tsr_head = &tsr_t_##suite##_##name;                                   \
	}                                                                             \
	static void suite##_##name(void)

__attribute__((format(printf, 5, 6))) static void tsr_fail(int fatal, const char *file, int line,
							    const char *expr, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "  %s:%d: assertion failed: %s\n   ", file, line, expr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\n");
	fflush(stderr);
	if (fatal)
		_exit(1);
	tsr_expect_failed = 1;
}

#define tsr_check(fatal, cond, ...)                                                   \
	do {                                                                          \
		if (!(cond))                                                          \
			tsr_fail(fatal, __FILE__, __LINE__, #cond, " " __VA_ARGS__);  \
	} while (0)

#define cr_assert(cond, ...) tsr_check(1, cond, __VA_ARGS__)
#define cr_assert_eq(a, b, ...) tsr_check(1, (a) == (b), __VA_ARGS__)
#define cr_assert_neq(a, b, ...) tsr_check(1, (a) != (b), __VA_ARGS__)
#define cr_assert_lt(a, b, ...) tsr_check(1, (a) < (b), __VA_ARGS__)
#define cr_assert_leq(a, b, ...) tsr_check(1, (a) <= (b), __VA_ARGS__)
#define cr_assert_gt(a, b, ...) tsr_check(1, (a) > (b), __VA_ARGS__)
#define cr_assert_geq(a, b, ...) tsr_check(1, (a) >= (b), __VA_ARGS__)
#define cr_assert_null(a, ...) tsr_check(1, (a) == NULL, __VA_ARGS__)
#define cr_assert_not_null(a, ...) tsr_check(1, (a) != NULL, __VA_ARGS__)
#define cr_assert_str_eq(a, b, ...) tsr_check(1, strcmp((a), (b)) == 0, __VA_ARGS__)
#define cr_expect_eq(a, b, ...) tsr_check(0, (a) == (b), __VA_ARGS__)
#define cr_assert_not(cond, ...) tsr_check(1, !(cond), __VA_ARGS__)
#define cr_assert_str_neq(a, b, ...) tsr_check(1, strcmp((a), (b)) != 0, __VA_ARGS__)
#define cr_expect(cond, ...) tsr_check(0, cond, __VA_ARGS__)
#define cr_expect_not(cond, ...) tsr_check(0, !(cond), __VA_ARGS__)
#define cr_expect_neq(a, b, ...) tsr_check(0, (a) != (b), __VA_ARGS__)
#define cr_expect_lt(a, b, ...) tsr_check(0, (a) < (b), __VA_ARGS__)
#define cr_expect_leq(a, b, ...) tsr_check(0, (a) <= (b), __VA_ARGS__)
#define cr_expect_gt(a, b, ...) tsr_check(0, (a) > (b), __VA_ARGS__)
#define cr_expect_geq(a, b, ...) tsr_check(0, (a) >= (b), __VA_ARGS__)
#define cr_expect_not_null(a, ...) tsr_check(0, (a) != NULL, __VA_ARGS__)
#define cr_expect_str_eq(a, b, ...) tsr_check(0, strcmp((a), (b)) == 0, __VA_ARGS__)
#define cr_expect_str_neq(a, b, ...) tsr_check(0, strcmp((a), (b)) != 0, __VA_ARGS__)
#define cr_expect_null(a, ...) tsr_check(0, (a) == NULL, __VA_ARGS__)
#define cr_log_info(...) (fprintf(stderr, "  info: " __VA_ARGS__), fputc('\n', stderr))
#define cr_skip_test(...)                                                             \
	do {                                                                          \
		fprintf(stderr, "  skipped: " __VA_ARGS__);                           \
		fputc('\n', stderr);                                                  \
		fflush(stderr);                                                       \
		_exit(77);                                                            \
	} while (0)

int main(int argc, char **argv)
{
	int tested = 0, pass = 0, fail = 0, crash = 0, skip = 0;

	for (struct tsr_test *t = tsr_head; t; t = t->next) {
		if (argc > 1 && argv[argc - 1][0] != '-' && !strstr(t->name, argv[argc - 1]))
			continue;
		struct timespec a, b;
		clock_gettime(CLOCK_MONOTONIC, &a);
		fflush(NULL);
		pid_t pid = fork();
		if (pid < 0) {
			perror("fork");
			return 2;
		}
		if (pid == 0) {
			alarm(t->opts.timeout > 0 ? (unsigned)t->opts.timeout + 1 : 900);
			t->fn();
			fflush(NULL);
			_exit(tsr_expect_failed ? 1 : 0);
		}
		int st = 0;
		waitpid(pid, &st, 0);
		clock_gettime(CLOCK_MONOTONIC, &b);
		double dt = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
		const char *what;
		if (WIFEXITED(st) && WEXITSTATUS(st) == 77) {
			what = "SKIP";
			skip++;
			tested--;
		} else if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
			what = "PASS";
			pass++;
		} else if (WIFSIGNALED(st)) {
			what = WTERMSIG(st) == SIGALRM ? "TIMEOUT" : "CRASH";
			crash++;
		} else {
			what = WEXITSTATUS(st) == 66 ? "FAIL (TSan report)" : "FAIL";
			fail++;
		}
		tested++;
		fprintf(stderr, "[%s] %s::%s (%.2fs)\n", what, t->suite, t->name, dt);
	}
	fprintf(stderr, "[====] Synthesis: Tested: %d | Passing: %d | Failing: %d | Crashing: %d | Skipped: %d\n",
		tested, pass, fail, crash, skip);
	return (fail || crash) ? 1 : 0;
}
#endif

/* SPDX-License-Identifier: MIT */
/* Tests for spate/shm.h: create/attach, permissions, header validation, backings. */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "spate/shm.h"

#define KIB ((size_t)1024)
#define MIB (KIB * 1024)

/* A name unique to this process and test. */
static void uname_for(char *buf, size_t len, const char *tag)
{
	snprintf(buf, len, "t-%d-%s", (int)getpid(), tag);
}

static int path_exists(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0;
}

static void fill(void *p, size_t n, unsigned seed)
{
	unsigned char *b = p;

	for (size_t i = 0; i < n; i++)
		b[i] = (unsigned char)(i * 31u + seed);
}

static int check(const void *p, size_t n, unsigned seed)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < n; i++)
		if (b[i] != (unsigned char)(i * 31u + seed))
			return 0;
	return 1;
}

static struct spate_shm *create_shm(const char *name, size_t size, uint32_t flags)
{
	struct spate_shm_opts o = { .flags = flags };
	struct spate_shm *s = NULL;
	int r = spate_shm_create(name, size, &o, &s);

	cr_assert_eq(r, 0, "create %s: %s", name, strerror(-r));
	cr_assert_not_null(s);
	return s;
}

Test(shm, create_attach_same_process)
{
	char name[64];
	struct spate_shm *a, *b = NULL;
	const struct spate_shm_hdr *h;
	size_t n = 3 * MIB + 123;

	uname_for(name, sizeof(name), "same");
	a = create_shm(name, n, 0);
	h = spate_shm_header(a);
	cr_assert_eq(h->magic, SPATE_SHM_MAGIC);
	cr_assert_eq(h->layout_version, SPATE_SHM_LAYOUT_VERSION);
	cr_assert_eq(h->hdr_size, sizeof(*h));
	cr_assert_eq(h->user_size, n);
	cr_assert_eq(h->creator_pid, (uint32_t)getpid());
	cr_assert_neq(h->created_ns, 0);
	cr_assert_neq(h->creator_start, 0);
	cr_assert_eq(h->ready, SPATE_SHM_READY);
	cr_assert_str_eq(h->name, name);
	cr_assert_eq(spate_shm_user_size(a), n);
	cr_assert_eq((uintptr_t)spate_shm_user(a) % 4096, 0, "user area page aligned");
	cr_assert_geq(h->user_off, h->hdr_size);
	cr_assert_leq(h->user_off + h->user_size, h->total_size);
	cr_assert_gt(strlen(spate_shm_backing_str(a)), 0);
	cr_log_info("backing: %s", spate_shm_backing_str(a));

	/* Fresh memory is zero. */
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(((unsigned char *)spate_shm_user(a))[i], 0, "byte %zu not zero", i);

	fill(spate_shm_user(a), n, 7);
	cr_assert_eq(spate_shm_attach(name, 0, &b), 0);
	cr_assert_str_eq(spate_shm_path(a), spate_shm_path(b));
	cr_assert_eq(spate_shm_user_size(b), n);
	cr_assert_eq(spate_shm_backing(a), spate_shm_backing(b));
	cr_assert_gt(strlen(spate_shm_backing_str(b)), 0);
	cr_assert(check(spate_shm_user(b), n, 7), "attached mapping sees creator's bytes");
	((unsigned char *)spate_shm_user(b))[n - 1] = 0xAB;
	cr_assert_eq(((unsigned char *)spate_shm_user(a))[n - 1], 0xAB);

	spate_shm_detach(b);
	spate_shm_detach(a);
	cr_assert_eq(spate_shm_unlink(name), 0);
}

Test(shm, attach_from_forked_child, .timeout = 30)
{
	char name[64];
	struct spate_shm *a;
	size_t n = 256 * KIB;
	int status;
	pid_t pid;

	uname_for(name, sizeof(name), "fork");
	a = create_shm(name, n, 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct spate_shm *c = NULL;

		if (spate_shm_attach(name, 0, &c) != 0)
			_exit(2);
		if (spate_shm_user_size(c) != n)
			_exit(3);
		fill(spate_shm_user(c), n, 42);
		spate_shm_detach(c);
		_exit(0);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %#x", status);
	cr_assert(check(spate_shm_user(a), n, 42), "parent sees child's pattern");
	spate_shm_detach(a);
	cr_assert_eq(spate_shm_unlink(name), 0);
}

Test(shm, mode_default_0600)
{
	char name[64];
	struct spate_shm *a;
	struct stat st;

	uname_for(name, sizeof(name), "mode0");
	umask(0);
	a = create_shm(name, 4096, 0);
	cr_assert_eq(stat(spate_shm_path(a), &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0600, "mode %o", (unsigned)(st.st_mode & 07777));
	spate_shm_detach(a);
	cr_assert_eq(spate_shm_unlink(name), 0);
}

Test(shm, mode_custom_beats_umask)
{
	char name[64];
	struct spate_shm_opts o = { .flags = SPATE_SHM_F_NO_HUGE, .mode = 0640 };
	struct spate_shm *a = NULL;
	struct stat st;

	uname_for(name, sizeof(name), "mode1");
	umask(077);
	cr_assert_eq(spate_shm_create(name, 4096, &o, &a), 0);
	cr_assert_eq(stat(spate_shm_path(a), &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0640, "mode %o", (unsigned)(st.st_mode & 07777));
	spate_shm_detach(a);
	cr_assert_eq(spate_shm_unlink(name), 0);
}

Test(shm, gid_option)
{
	char name[64];
	struct spate_shm_opts o = { .flags = SPATE_SHM_F_NO_HUGE, .gid = 1 };
	struct spate_shm *a = NULL;
	struct stat st;

	if (geteuid() != 0)
		cr_skip_test("fchown to an arbitrary group needs root");
	uname_for(name, sizeof(name), "gid");
	cr_assert_eq(spate_shm_create(name, 4096, &o, &a), 0);
	cr_assert_eq(stat(spate_shm_path(a), &st), 0);
	cr_assert_eq(st.st_gid, 1);
	spate_shm_detach(a);
	cr_assert_eq(spate_shm_unlink(name), 0);
}

Test(shm, eexist_and_replace)
{
	char name[64];
	struct spate_shm_opts o = { .flags = SPATE_SHM_F_NO_HUGE };
	struct spate_shm *a, *b = NULL, *c = NULL;

	uname_for(name, sizeof(name), "excl");
	a = create_shm(name, 8192, SPATE_SHM_F_NO_HUGE);
	fill(spate_shm_user(a), 8192, 1);
	cr_assert_eq(spate_shm_create(name, 8192, &o, &b), -EEXIST);
	cr_assert_null(b);
	/* Taken in any search directory, whatever backing the new one would get. */
	cr_assert_eq(spate_shm_create(name, 8192, NULL, &b), -EEXIST);

	o.flags |= SPATE_SHM_F_REPLACE;
	cr_assert_eq(spate_shm_create(name, 16384, &o, &b), 0);
	cr_assert_eq(spate_shm_attach(name, 0, &c), 0);
	cr_assert_eq(spate_shm_user_size(c), 16384, "attach finds the replacement");
	cr_assert_eq(((unsigned char *)spate_shm_user(c))[0], 0);
	cr_assert(check(spate_shm_user(a), 8192, 1), "old mapping stays valid");
	spate_shm_detach(a);
	spate_shm_detach(b);
	spate_shm_detach(c);
	cr_assert_eq(spate_shm_unlink(name), 0);
	cr_assert_eq(spate_shm_unlink(name), -ENOENT);
}

Test(shm, replace_removes_shadow_in_other_dir)
{
	char name[64], old_path[4096];
	struct spate_shm_opts o = { .flags = SPATE_SHM_F_REQUIRE_HUGE | SPATE_SHM_F_REPLACE };
	struct spate_shm *a, *b = NULL;
	int r;

	uname_for(name, sizeof(name), "shadow");
	a = create_shm(name, 4096, SPATE_SHM_F_NO_HUGE);
	snprintf(old_path, sizeof(old_path), "%s", spate_shm_path(a));
	spate_shm_detach(a);
	fflush(stderr);
	r = spate_shm_create(name, 4096, &o, &b);
	if (r != 0)
		spate_shm_unlink(name);
	if (r == -ENOMEM || r == -EACCES || r == -EPERM)
		cr_skip_test("huge pages not available: SPATE_SHM_F_REQUIRE_HUGE gave %s", strerror(-r));
	cr_assert_eq(r, 0, "%s", strerror(-r));
	cr_assert(!path_exists(old_path), "/dev/shm copy removed by REPLACE");
	spate_shm_detach(b);
	cr_assert_eq(spate_shm_attach(name, 0, &b), 0);
	cr_assert_eq(spate_shm_backing(b), SPATE_SHM_BACKING_HUGETLBFS);
	spate_shm_detach(b);
	cr_assert_eq(spate_shm_unlink(name), 0);
}

Test(shm, bad_names_and_args)
{
	static const char *const bad[] = {
		"", ".hidden", "a/b", "a b", "x\n", "ä", "a:b", "..",
		"1234567890123456789012345678901234567890123456789012345678901234", /* 64 */
	};
	char ok63[SPATE_SHM_NAME_MAX + 1];
	struct spate_shm_opts o = { 0 };
	struct spate_shm *s = NULL;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_assert_eq(spate_shm_create(bad[i], 4096, NULL, &s), -EINVAL, "create '%s'", bad[i]);
		cr_assert_null(s);
		cr_assert_eq(spate_shm_attach(bad[i], 0, &s), -EINVAL, "attach '%s'", bad[i]);
		cr_assert_eq(spate_shm_unlink(bad[i]), -EINVAL, "unlink '%s'", bad[i]);
	}
	cr_assert_eq(spate_shm_create(NULL, 4096, NULL, &s), -EINVAL);
	cr_assert_eq(spate_shm_attach(NULL, 0, &s), -EINVAL);
	cr_assert_eq(spate_shm_create("ok", 4096, NULL, NULL), -EINVAL);
	cr_assert_eq(spate_shm_create("ok", 0, NULL, &s), -EINVAL, "zero size");
	cr_assert_eq(spate_shm_create("ok", SIZE_MAX, NULL, &s), -EINVAL, "huge size");
	o.flags = 1u << 20;
	cr_assert_eq(spate_shm_create("ok", 4096, &o, &s), -EINVAL, "unknown flag");
	o.flags = SPATE_SHM_F_RDONLY;
	cr_assert_eq(spate_shm_create("ok", 4096, &o, &s), -EINVAL, "attach flag on create");
	o.flags = SPATE_SHM_F_REQUIRE_HUGE | SPATE_SHM_F_NO_HUGE;
	cr_assert_eq(spate_shm_create("ok", 4096, &o, &s), -EINVAL, "contradictory flags");
	o.flags = 0;
	o.mode = 01777;
	cr_assert_eq(spate_shm_create("ok", 4096, &o, &s), -EINVAL, "mode beyond 0777");
	cr_assert_eq(spate_shm_attach("ok", 1u << 20, &s), -EINVAL, "unknown attach flag");

	/* 63 characters of every allowed kind is fine. */
	snprintf(ok63, sizeof(ok63), "t-%d.", (int)getpid());
	for (size_t i = strlen(ok63); i < SPATE_SHM_NAME_MAX; i++)
		ok63[i] = "aZ9._-"[i % 6];
	ok63[SPATE_SHM_NAME_MAX] = '\0';
	s = create_shm(ok63, 4096, SPATE_SHM_F_NO_HUGE);
	spate_shm_detach(s);
	cr_assert_eq(spate_shm_unlink(ok63), 0);
}

Test(shm, attach_nonexistent)
{
	char name[64];
	struct spate_shm *s = (void *)name; /* must be reset to NULL */

	uname_for(name, sizeof(name), "none");
	cr_assert_eq(spate_shm_attach(name, 0, &s), -ENOENT);
	cr_assert_null(s);
	cr_assert_eq(spate_shm_unlink(name), -ENOENT);
}

Test(shm, unlink_keeps_mappings)
{
	char name[64];
	struct spate_shm *a, *b = NULL;

	uname_for(name, sizeof(name), "unl");
	a = create_shm(name, 4096, 0);
	cr_assert_eq(spate_shm_attach(name, 0, &b), 0);
	cr_assert_eq(spate_shm_unlink(name), 0);
	fill(spate_shm_user(a), 4096, 9);
	cr_assert(check(spate_shm_user(b), 4096, 9));
	spate_shm_detach(a);
	spate_shm_detach(b);
	cr_assert_eq(spate_shm_attach(name, 0, &b), -ENOENT);
	spate_shm_detach(NULL);
}

/* ---- header validation: create in /dev/shm, patch the file, attach */

static void corrupt_and_expect(const char *tag, size_t off, const void *val, size_t len, int expect)
{
	char name[64];
	struct spate_shm *a, *b = NULL;
	int fd, r;

	uname_for(name, sizeof(name), tag);
	a = create_shm(name, 64 * KIB, SPATE_SHM_F_NO_HUGE);
	fd = open(spate_shm_path(a), O_RDWR);
	cr_assert_geq(fd, 0);
	cr_assert_eq(pwrite(fd, val, len, (off_t)off), (ssize_t)len);
	close(fd);
	r = spate_shm_attach(name, 0, &b);
	cr_expect_eq(r, expect, "%s: got %d (%s), want %d (%s)", tag, r, strerror(-r), expect,
		     strerror(-expect));
	cr_expect_null(b);
	spate_shm_detach(b);
	spate_shm_detach(a);
	cr_assert_eq(spate_shm_unlink(name), 0);
}

#define CORRUPT(tag, field, type, value, expect) do { \
		type v_ = (value); \
		corrupt_and_expect(tag, offsetof(struct spate_shm_hdr, field), &v_, sizeof(v_), expect); \
	} while (0)

Test(shm, corrupt_magic)
{
	CORRUPT("magic", magic, uint64_t, 0x1122334455667788ull, -EBADMSG);
}

Test(shm, corrupt_version)
{
	CORRUPT("version", layout_version, uint32_t, SPATE_SHM_LAYOUT_VERSION + 1, -EPROTO);
}

Test(shm, corrupt_hdr_size)
{
	CORRUPT("hdrsz", hdr_size, uint32_t, sizeof(struct spate_shm_hdr) + 8, -EBADMSG);
}

Test(shm, corrupt_total_size)
{
	CORRUPT("total-big", total_size, uint64_t, 1ull << 40, -EBADMSG);
	CORRUPT("total-small", total_size, uint64_t, 4096, -EBADMSG);
}

Test(shm, corrupt_user_off)
{
	CORRUPT("uoff-zero", user_off, uint64_t, 0, -EBADMSG);
	CORRUPT("uoff-unaligned", user_off, uint64_t, 4096 + 8, -EBADMSG);
	CORRUPT("uoff-past-end", user_off, uint64_t, 1ull << 40, -EBADMSG);
	CORRUPT("uoff-wrap", user_off, uint64_t, UINT64_MAX & ~4095ull, -EBADMSG);
}

Test(shm, corrupt_user_size)
{
	CORRUPT("usize-big", user_size, uint64_t, 1ull << 30, -EBADMSG);
	CORRUPT("usize-wrap", user_size, uint64_t, UINT64_MAX - 100, -EBADMSG);
	CORRUPT("usize-zero", user_size, uint64_t, 0, -EBADMSG);
}

Test(shm, corrupt_not_ready)
{
	CORRUPT("ready0", ready, uint32_t, 0, -EAGAIN);
	CORRUPT("ready-junk", ready, uint32_t, 0xdeadbeef, -EAGAIN);
}

Test(shm, corrupt_backing_page_size_name)
{
	CORRUPT("backing0", backing, uint32_t, 0, -EBADMSG);
	CORRUPT("backing99", backing, uint32_t, 99, -EBADMSG);
	CORRUPT("pgsz", page_size, uint64_t, 12345, -EBADMSG);
	CORRUPT("name", name, char, 'X', -EBADMSG);
}

static void truncate_and_expect(const char *tag, off_t (*new_size)(off_t))
{
	char name[64];
	struct spate_shm *a, *b = NULL;
	struct stat st;
	int fd;

	uname_for(name, sizeof(name), tag);
	a = create_shm(name, 64 * KIB, SPATE_SHM_F_NO_HUGE);
	fd = open(spate_shm_path(a), O_RDWR);
	cr_assert_geq(fd, 0);
	cr_assert_eq(fstat(fd, &st), 0);
	cr_assert_eq(ftruncate(fd, new_size(st.st_size)), 0);
	close(fd);
	cr_expect_eq(spate_shm_attach(name, 0, &b), -EBADMSG, "%s", tag);
	cr_expect_eq(spate_shm_attach(name, SPATE_SHM_F_RDONLY, &b), -EBADMSG, "%s ro", tag);
	spate_shm_detach(b);
	spate_shm_detach(a);
	cr_assert_eq(spate_shm_unlink(name), 0);
}

static off_t to_100(off_t s) { (void)s; return 100; }
static off_t to_half(off_t s) { return s / 2; }
static off_t to_zero(off_t s) { (void)s; return 0; }
static off_t to_bigger(off_t s) { return s + 4096; }
static off_t to_hdr(off_t s) { (void)s; return (off_t)sizeof(struct spate_shm_hdr); }

Test(shm, truncated_100_bytes)
{
	truncate_and_expect("trunc100", to_100);
}

Test(shm, truncated_half)
{
	truncate_and_expect("trunchalf", to_half);
}

Test(shm, truncated_to_header)
{
	truncate_and_expect("trunchdr", to_hdr);
}

Test(shm, truncated_to_zero)
{
	truncate_and_expect("trunc0", to_zero);
}

Test(shm, grown_file)
{
	truncate_and_expect("grown", to_bigger);
}

Test(shm, empty_file_and_directory)
{
	char name[64], path[4096];
	struct spate_shm *b = NULL;
	int fd;

	uname_for(name, sizeof(name), "empty");
	snprintf(path, sizeof(path), "/dev/shm/spate.%s", name);
	fd = open(path, O_CREAT | O_EXCL | O_RDWR, 0600);
	cr_assert_geq(fd, 0, "%s", strerror(errno));
	close(fd);
	cr_expect_eq(spate_shm_attach(name, 0, &b), -EBADMSG);
	cr_expect_null(b);
	cr_assert_eq(spate_shm_unlink(name), 0);

	cr_assert_eq(mkdir(path, 0700), 0);
	cr_expect_eq(spate_shm_attach(name, SPATE_SHM_F_RDONLY, &b), -EBADMSG);
	rmdir(path);
}

Test(shm, rdonly_attach_is_read_only, .timeout = 30)
{
	char name[64];
	struct spate_shm *a, *r = NULL;
	int status;
	pid_t pid;

	uname_for(name, sizeof(name), "ro");
	a = create_shm(name, 64 * KIB, 0);
	fill(spate_shm_user(a), 64 * KIB, 3);
	cr_assert_eq(spate_shm_attach(name, SPATE_SHM_F_RDONLY, &r), 0);
	cr_assert(check(spate_shm_user(r), 64 * KIB, 3));

	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		/* Default action, not a sanitizer's handler: we want to die by the signal. */
		signal(SIGSEGV, SIG_DFL);
		signal(SIGBUS, SIG_DFL);
		((volatile unsigned char *)spate_shm_user(r))[0] = 1;
		_exit(0);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV,
		  "write to read-only mapping: status %#x", status);
	cr_assert(check(spate_shm_user(a), 64 * KIB, 3), "data unchanged");
	spate_shm_detach(r);
	spate_shm_detach(a);
	cr_assert_eq(spate_shm_unlink(name), 0);
}

Test(shm, rdonly_attach_of_0400_file)
{
	char name[64];
	struct spate_shm_opts o = { .flags = SPATE_SHM_F_NO_HUGE, .mode = 0400 };
	struct spate_shm *a = NULL, *r = NULL;

	uname_for(name, sizeof(name), "ro400");
	cr_assert_eq(spate_shm_create(name, 4096, &o, &a), 0);
	cr_assert_eq(spate_shm_attach(name, SPATE_SHM_F_RDONLY, &r), 0);
	spate_shm_detach(r);
	if (geteuid() != 0)
		cr_assert_eq(spate_shm_attach(name, 0, &r), -EACCES);
	spate_shm_detach(a);
	cr_assert_eq(spate_shm_unlink(name), 0);
}

Test(shm, require_huge)
{
	char name[64];
	struct spate_shm_opts o = { .flags = SPATE_SHM_F_REQUIRE_HUGE };
	struct spate_shm *a = NULL, *b = NULL;
	int r;

	uname_for(name, sizeof(name), "huge");
	r = spate_shm_create(name, 3 * MIB, &o, &a);
	if (r == -ENOMEM || r == -EACCES || r == -EPERM)
		cr_skip_test("huge pages not available: SPATE_SHM_F_REQUIRE_HUGE gave %s (mount "
			     "hugetlbfs with pagesize=2M, make it writable and reserve pages to run this)",
			     strerror(-r));
	cr_assert_eq(r, 0, "%s", strerror(-r));
	cr_assert_eq(spate_shm_backing(a), SPATE_SHM_BACKING_HUGETLBFS);
	cr_assert_eq(spate_shm_header(a)->page_size, 2 * MIB);
	cr_assert_eq(spate_shm_header(a)->total_size % (2 * MIB), 0);
	cr_assert_not_null(strstr(spate_shm_backing_str(a), "hugetlbfs, 2 MiB pages ("),
			   "%s", spate_shm_backing_str(a));
	cr_log_info("backing: %s", spate_shm_backing_str(a));
	fill(spate_shm_user(a), 3 * MIB, 5);
	cr_assert_eq(spate_shm_attach(name, 0, &b), 0);
	cr_assert_eq(spate_shm_backing(b), SPATE_SHM_BACKING_HUGETLBFS);
	cr_assert(check(spate_shm_user(b), 3 * MIB, 5));
	spate_shm_detach(b);
	spate_shm_detach(a);
	cr_assert_eq(spate_shm_unlink(name), 0);
}

/* Asking for more huge pages than any machine has: -ENOMEM and a how-to on stderr. */
Test(shm, require_huge_too_many_pages_explains)
{
	char name[64], msg[1024] = "";
	struct spate_shm_opts o = { .flags = SPATE_SHM_F_REQUIRE_HUGE };
	struct spate_shm *a = NULL;
	FILE *tmp = tmpfile();
	int saved, r;
	size_t n;

	cr_assert_not_null(tmp);
	uname_for(name, sizeof(name), "hugeno");
	fflush(stderr);
	saved = dup(2);
	dup2(fileno(tmp), 2);
	r = spate_shm_create(name, (size_t)1 << 40, &o, &a);
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	rewind(tmp);
	n = fread(msg, 1, sizeof(msg) - 1, tmp);
	msg[n] = '\0';
	fclose(tmp);
	cr_assert_eq(r, -ENOMEM);
	cr_assert_null(a);
	cr_assert_not_null(strstr(msg, "spate: huge pages required but unavailable"), "stderr: %s", msg);
	cr_assert_not_null(strstr(msg, "nr_hugepages"), "stderr: %s", msg);
	cr_assert_eq(spate_shm_attach(name, 0, &a), -ENOENT, "nothing left behind");
}

Test(shm, no_huge_gives_shm_backing)
{
	char name[64];
	struct spate_shm *a;
	enum spate_shm_backing b;

	uname_for(name, sizeof(name), "nohuge");
	a = create_shm(name, 4 * MIB, SPATE_SHM_F_NO_HUGE);
	b = spate_shm_backing(a);
	cr_assert(b == SPATE_SHM_BACKING_SHM || b == SPATE_SHM_BACKING_SHM_THP, "backing %d", b);
	cr_assert_eq(strncmp(spate_shm_path(a), "/dev/shm/", 9), 0, "%s", spate_shm_path(a));
	cr_assert_eq(strncmp(spate_shm_backing_str(a), "/dev/shm, ", 10), 0, "%s",
		     spate_shm_backing_str(a));
	cr_log_info("backing: %s", spate_shm_backing_str(a));
	spate_shm_detach(a);
	cr_assert_eq(spate_shm_unlink(name), 0);
}

Test(shm, mlock_flag)
{
	char name[64];
	struct spate_shm_opts o = { .flags = SPATE_SHM_F_NO_HUGE | SPATE_SHM_F_MLOCK };
	struct spate_shm *a = NULL;
	int r;

	uname_for(name, sizeof(name), "mlock");
	r = spate_shm_create(name, 64 * KIB, &o, &a);
	if (r == -EPERM || r == -ENOMEM)
		cr_skip_test("mlock not permitted here (%s); RLIMIT_MEMLOCK too small", strerror(-r));
	cr_assert_eq(r, 0, "%s", strerror(-r));
	spate_shm_detach(a);
	cr_assert_eq(spate_shm_unlink(name), 0);
}

Test(shm, creator_alive_self)
{
	char name[64];
	struct spate_shm *a, *b = NULL;

	uname_for(name, sizeof(name), "alive");
	a = create_shm(name, 4096, 0);
	cr_assert_eq(spate_shm_creator_alive(a), 1);
	cr_assert_eq(spate_shm_attach(name, 0, &b), 0);
	cr_assert_eq(spate_shm_creator_alive(b), 1);
	spate_shm_detach(b);
	spate_shm_detach(a);
	cr_assert_eq(spate_shm_unlink(name), 0);
}

Test(shm, creator_dead_after_exit, .timeout = 30)
{
	char name[64];
	struct spate_shm *b = NULL;
	int status;
	pid_t pid;

	uname_for(name, sizeof(name), "dead");
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct spate_shm_opts o = { .flags = SPATE_SHM_F_NO_HUGE };
		struct spate_shm *c = NULL;

		_exit(spate_shm_create(name, 4096, &o, &c) == 0 ? 0 : 1);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %#x", status);
	cr_assert_eq(spate_shm_attach(name, 0, &b), 0);
	cr_assert_eq(spate_shm_header(b)->creator_pid, (uint32_t)pid);
	cr_assert_eq(spate_shm_creator_alive(b), 0);
	spate_shm_detach(b);
	cr_assert_eq(spate_shm_unlink(name), 0);
}

Test(shm, env_dir_overrides_search)
{
	char dir[] = "/dev/shm/spate-test-XXXXXX", name[64];
	struct spate_shm *a, *b = NULL;

	cr_assert_not_null(mkdtemp(dir));
	uname_for(name, sizeof(name), "env");
	cr_assert_eq(setenv("SPATE_SHM_DIR", dir, 1), 0);
	a = create_shm(name, 4096, 0);
	cr_assert_eq(strncmp(spate_shm_path(a), dir, strlen(dir)), 0, "%s", spate_shm_path(a));
	cr_assert_eq(spate_shm_attach(name, 0, &b), 0);
	cr_assert_str_eq(spate_shm_path(a), spate_shm_path(b));
	spate_shm_detach(b);
	spate_shm_detach(a);
	cr_assert_eq(spate_shm_unlink(name), 0);
	unsetenv("SPATE_SHM_DIR");
	cr_assert_eq(rmdir(dir), 0, "directory empty after unlink");
}

Test(shm, opts_dir)
{
	char dir[] = "/dev/shm/spate-test-XXXXXX", name[64], path[4096];
	struct spate_shm_opts o = { 0 };
	struct spate_shm *a = NULL, *b = NULL;

	cr_assert_not_null(mkdtemp(dir));
	uname_for(name, sizeof(name), "dir");
	o.dir = dir;
	cr_assert_eq(spate_shm_create(name, 4096, &o, &a), 0);
	snprintf(path, sizeof(path), "%s/spate.%s", dir, name);
	cr_assert_str_eq(spate_shm_path(a), path);
	cr_assert_neq(spate_shm_backing(a), SPATE_SHM_BACKING_HUGETLBFS);
	cr_assert_eq(spate_shm_create(name, 4096, &o, &b), -EEXIST);
	o.flags = SPATE_SHM_F_REQUIRE_HUGE;
	cr_assert_eq(spate_shm_create("other", 4096, &o, &b), -ENOMEM, "tmpfs dir is not hugetlbfs");
	cr_assert_eq(spate_shm_attach(name, 0, &b), -ENOENT, "not in the default search path");
	cr_assert_eq(setenv("SPATE_SHM_DIR", dir, 1), 0);
	cr_assert_eq(spate_shm_attach(name, 0, &b), 0);
	spate_shm_detach(b);
	cr_assert_eq(spate_shm_unlink(name), 0);
	unsetenv("SPATE_SHM_DIR");
	spate_shm_detach(a);
	cr_assert_eq(rmdir(dir), 0);
}

Test(shm, opts_dir_hugetlbfs)
{
	static const char *const mnts[] = { "/dev/hugepages", "/mnt/huge", "/hugepages" };
	struct spate_shm_opts o = { 0 };
	struct spate_shm *a = NULL;
	char name[64];
	int r;

	for (size_t i = 0; i < sizeof(mnts) / sizeof(mnts[0]) && !o.dir; i++) {
		struct stat st;

		if (stat(mnts[i], &st) == 0 && access(mnts[i], W_OK) == 0)
			o.dir = mnts[i];
	}
	if (!o.dir)
		cr_skip_test("no writable hugetlbfs mount at a usual place");
	uname_for(name, sizeof(name), "hdir");
	o.flags = SPATE_SHM_F_NO_HUGE;
	r = spate_shm_create(name, 4096, &o, &a);
	if (r != -EINVAL)
		cr_skip_test("%s is not hugetlbfs (NO_HUGE there gave %d)", o.dir, r);
	o.flags = 0;
	r = spate_shm_create(name, 4096, &o, &a);
	if (r == -ENOMEM)
		cr_skip_test("huge pages not available in %s: -ENOMEM", o.dir);
	cr_assert_eq(r, 0, "%s", strerror(-r));
	cr_assert_eq(spate_shm_backing(a), SPATE_SHM_BACKING_HUGETLBFS);
	spate_shm_detach(a);
	cr_assert_eq(spate_shm_unlink(name), 0, "hugetlbfs mount is in the default search path");
}

/* An attacher racing a creator sees the region fully built or not at all. */
struct race {
	char name[64];
	atomic_int stop;
	int bad;
	int seen;
};

static void *attacher(void *arg)
{
	struct race *rc = arg;

	while (!atomic_load(&rc->stop)) {
		struct spate_shm *s = NULL;
		int r = spate_shm_attach(rc->name, 0, &s);

		if (r == 0) {
			rc->seen++;
			if (spate_shm_user_size(s) != 4096)
				rc->bad++;
			spate_shm_detach(s);
		} else if (r != -ENOENT) {
			rc->bad++;
		}
	}
	return NULL;
}

Test(shm, attach_never_sees_half_built_region, .timeout = 60)
{
	struct race rc = { 0 };
	pthread_t t;

	uname_for(rc.name, sizeof(rc.name), "race");
	cr_assert_eq(pthread_create(&t, NULL, attacher, &rc), 0);
	for (int i = 0; i < 300; i++) {
		struct spate_shm *a = create_shm(rc.name, 4096, SPATE_SHM_F_NO_HUGE);

		spate_shm_detach(a);
		cr_assert_eq(spate_shm_unlink(rc.name), 0);
	}
	atomic_store(&rc.stop, 1);
	pthread_join(t, NULL);
	cr_log_info("attacher saw the region %d times", rc.seen);
	cr_assert_eq(rc.bad, 0, "attach returned something other than 0 or -ENOENT");
}

struct excl {
	const char *name;
	int r;
	struct spate_shm *s;
};

static void *excl_creator(void *arg)
{
	struct excl *e = arg;
	struct spate_shm_opts o = { .flags = SPATE_SHM_F_NO_HUGE };

	e->r = spate_shm_create(e->name, 4096, &o, &e->s);
	return NULL;
}

Test(shm, concurrent_create_one_winner, .timeout = 60)
{
	char name[64];
	struct excl e[8];
	pthread_t t[8];

	uname_for(name, sizeof(name), "excl8");
	for (int round = 0; round < 20; round++) {
		int wins = 0;

		for (int i = 0; i < 8; i++) {
			e[i] = (struct excl){ .name = name };
			cr_assert_eq(pthread_create(&t[i], NULL, excl_creator, &e[i]), 0);
		}
		for (int i = 0; i < 8; i++) {
			pthread_join(t[i], NULL);
			if (e[i].r == 0) {
				wins++;
				spate_shm_detach(e[i].s);
			} else {
				cr_assert_eq(e[i].r, -EEXIST, "loser got %d", e[i].r);
			}
		}
		cr_assert_eq(wins, 1, "round %d: %d winners", round, wins);
		cr_assert_eq(spate_shm_unlink(name), 0);
	}
}

/* ------------------------------------------------ owner and mode on attach */

#define OTHER_UID 65534 /* nobody */

/* Create @p name with @p flags; NULL when the backing is unavailable. */
static struct spate_shm *create_or_skip(const char *name, uint32_t flags)
{
	struct spate_shm_opts o = { .flags = flags };
	struct spate_shm *s = NULL;
	int r = spate_shm_create(name, 64 * KIB, &o, &s);

	if (r == -ENOMEM || r == -EACCES || r == -EPERM)
		return NULL;
	cr_assert_eq(r, 0, "create %s: %s", name, strerror(-r));
	return s;
}

/* Attach must refuse a region owned by another user, whatever its mode, and
 * (with group access configured) accept it only for a group we are in. */
static void check_foreign_owner(const char *name, uint32_t flags)
{
	struct spate_shm *a = create_or_skip(name, flags), *b = NULL;
	const char *path;

	if (!a) {
		cr_log_info("%s backing unavailable here: not checked", flags & SPATE_SHM_F_REQUIRE_HUGE ?
			    "hugetlbfs" : "/dev/shm");
		return;
	}
	path = spate_shm_path(a);
	cr_log_info("checking %s", path);
	cr_assert_eq(chown(path, OTHER_UID, OTHER_UID), 0, "chown %s: %s", path, strerror(errno));
	cr_assert_eq(spate_shm_attach(name, 0, &b), -EPERM, "a region of uid %d attached", OTHER_UID);
	cr_assert_null(b);
	cr_assert_eq(spate_shm_attach(name, SPATE_SHM_F_RDONLY, &b), -EPERM);
	cr_assert_eq(chmod(path, 0666), 0);
	cr_assert_eq(spate_shm_attach(name, 0, &b), -EPERM, "a 0666 region of uid %d attached",
		     OTHER_UID);
	struct spate_shm_opts g = { .mode = 0660, .gid = (gid_t)-1 };
	cr_assert_eq(spate_shm_attach_opts(name, &g, &b), -EPERM,
		     "group access configured, but the file's group is not ours");
	/* Another user's file in our group, group access configured: shared. */
	cr_assert_eq(chown(path, OTHER_UID, getegid()), 0);
	cr_assert_eq(spate_shm_attach_opts(name, &g, &b), -EACCES, "0666: others may write");
	cr_assert_eq(chmod(path, 0660), 0);
	cr_assert_eq(spate_shm_attach(name, 0, &b), -EPERM, "group access not configured");
	cr_assert_eq(spate_shm_attach_opts(name, &g, &b), 0, "our group, configured");
	spate_shm_detach(b);
	b = NULL;
	g.gid = getegid() + 1;
	cr_assert_eq(spate_shm_attach_opts(name, &g, &b), -EPERM, "a group other than the configured one");
	spate_shm_detach(a);
	cr_assert_eq(spate_shm_unlink(name), 0);
}

Test(shm, attach_refuses_foreign_owner)
{
	char name[64];

	if (geteuid() != 0)
		cr_skip_test("chown to uid %d needs root", OTHER_UID);
	uname_for(name, sizeof(name), "own-shm");
	check_foreign_owner(name, SPATE_SHM_F_NO_HUGE);
	uname_for(name, sizeof(name), "own-huge");
	check_foreign_owner(name, SPATE_SHM_F_REQUIRE_HUGE);
}

/* The attack itself: another local user creates spate.<name> first, mode
 * 0666, with a valid header; the victim's attach must refuse it. */
Test(shm, attach_refuses_region_planted_by_other_user, .timeout = 30)
{
	char name[64];
	struct spate_shm *b = NULL;
	int status;
	pid_t pid;

	if (geteuid() != 0)
		cr_skip_test("acting as uid %d needs root", OTHER_UID);
	uname_for(name, sizeof(name), "plant");
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct spate_shm_opts o = { .flags = SPATE_SHM_F_NO_HUGE, .mode = 0644 };
		struct spate_shm *s = NULL;

		if (setgid(OTHER_UID) != 0 || setuid(OTHER_UID) != 0)
			_exit(2);
		if (spate_shm_create(name, 4096, &o, &s) != 0)
			_exit(3);
		if (chmod(spate_shm_path(s), 0666) != 0)
			_exit(4);
		_exit(0);
	}
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "planter status %#x", status);
	cr_assert_eq(spate_shm_attach(name, 0, &b), -EPERM);
	cr_assert_null(b);
	cr_assert_eq(spate_shm_unlink(name), 0);
}

Test(shm, attach_refuses_writable_by_others)
{
	char name[64];
	struct spate_shm *a, *b = NULL;
	struct spate_shm_opts g = { .mode = 0660, .gid = (gid_t)-1 };
	struct spate_shm_opts r644 = { .mode = 0644, .gid = (gid_t)-1 };

	uname_for(name, sizeof(name), "o-w");
	a = create_shm(name, 4096, SPATE_SHM_F_NO_HUGE);
	cr_assert_eq(chmod(spate_shm_path(a), 0666), 0);
	cr_assert_eq(spate_shm_attach(name, 0, &b), -EACCES, "0666 region attached");
	cr_assert_eq(spate_shm_attach(name, SPATE_SHM_F_RDONLY, &b), -EACCES);
	cr_assert_eq(spate_shm_attach_opts(name, &g, &b), -EACCES);
	cr_assert_null(b);
	cr_assert_eq(chmod(spate_shm_path(a), 0602), 0);
	cr_assert_eq(spate_shm_attach(name, 0, &b), -EACCES, "0602 region attached");
	/* Readable by others only when that is the configured mode. */
	cr_assert_eq(chmod(spate_shm_path(a), 0644), 0);
	cr_assert_eq(spate_shm_attach(name, 0, &b), -EACCES, "0644 region attached by default");
	cr_assert_eq(spate_shm_attach_opts(name, &r644, &b), 0);
	spate_shm_detach(b);
	b = NULL;
	/* Group access only when configured. */
	cr_assert_eq(chmod(spate_shm_path(a), 0660), 0);
	cr_assert_eq(spate_shm_attach(name, 0, &b), -EACCES, "group access not configured");
	cr_assert_eq(spate_shm_attach_opts(name, &g, &b), 0);
	spate_shm_detach(b);
	b = NULL;
	cr_assert_eq(chmod(spate_shm_path(a), 0600), 0);
	cr_assert_eq(spate_shm_attach(name, 0, &b), 0);
	spate_shm_detach(b);
	spate_shm_detach(a);
	cr_assert_eq(spate_shm_unlink(name), 0);
}

Test(shm, never_writable_by_others)
{
	char name[64];
	struct spate_shm_opts o = { .flags = SPATE_SHM_F_NO_HUGE, .mode = 0666 };
	struct spate_shm *a = NULL;

	uname_for(name, sizeof(name), "c666");
	cr_assert_eq(spate_shm_create(name, 4096, &o, &a), -EINVAL);
	cr_assert_null(a);
	cr_assert_eq(spate_shm_attach_opts(name, &o, &a), -EINVAL, "attach policy 0666");
	o.mode = 0600;
	o.dir = "/tmp";
	cr_assert_eq(spate_shm_attach_opts(name, &o, &a), -EINVAL, "dir is for create only");
}

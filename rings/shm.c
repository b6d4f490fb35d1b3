/* SPDX-License-Identifier: MIT */
/*
 * Named shared-memory regions (API and header layout in include/spate/shm.h).
 *
 * Design
 *  - A region is one file "spate.<name>" in a directory: a hugetlbfs mount
 *    with 2 MiB pages if there is one (found via /proc/self/mounts, page size
 *    taken from statfs f_bsize), else /dev/shm.  The environment variable
 *    SPATE_SHM_DIR, if set and non-empty, replaces that choice for create,
 *    attach and unlink alike; opts->dir overrides both for create only (so a
 *    region created there is attachable only with SPATE_SHM_DIR pointing at
 *    the same directory).
 *  - Creation is atomic as seen by attachers.  The file is built unnamed
 *    (O_TMPFILE; a hidden ".spate-tmp.*" file where the filesystem lacks it),
 *    sized, mapped, populated, its header written and `ready` stored last;
 *    only then is it given its name with link() (which fails with EEXIST
 *    atomically, giving O_EXCL semantics) or, for SPATE_SHM_F_REPLACE,
 *    unlink+link (rename() for the hidden-file fallback).  An attacher
 *    therefore never sees a half-built region, and a creator that dies
 *    before publishing leaks nothing (O_TMPFILE case).  The creator then
 *    maps the pages once more through the new name, so that /proc/PID/maps
 *    names the region rather than "#<ino> (deleted)"; this costs a second
 *    page-table population, not a second allocation.
 *  - Memory is populated with MADV_POPULATE_WRITE, which reports failure
 *    (no free huge pages, hugetlb cgroup limit, full tmpfs) as an error
 *    instead of a later SIGBUS.  Before trying hugetlbfs the free pool is
 *    checked (sysfs hugepages-2048kB, else /proc/meminfo) so the common
 *    "no pages reserved" case never reaches mmap.  Kernels before 5.14 lack
 *    MADV_POPULATE_WRITE: we then fallocate() (which reports ENOSPC) and touch
 *    every page.
 *  - /dev/shm regions get MADV_HUGEPAGE before being populated.  Whether that
 *    yields transparent huge pages depends on the tmpfs mount option huge=
 *    (always/within_size/advise) unless shmem_enabled is "force" or "deny";
 *    shmem_enabled's other words only govern the kernel-internal shm mount,
 *    not /dev/shm.  The backing (SHM_THP vs SHM) is reported accordingly, and
 *    the size is rounded to 2 MiB only when THP can apply (4 KiB otherwise).
 *  - user_off is 4096 on every backing: the header sits in the first 4 KiB
 *    and the user area starts right after it.  On hugetlbfs the user area is
 *    thus 4 KiB but not 2 MiB aligned; this saves a whole huge page per
 *    region.  header.user_size is the size the creator asked for; the mapping
 *    may extend past it up to the next page boundary.
 *  - Attach maps the whole file only after checking that it is a regular file
 *    at least one header long, then validates the header against the fstat
 *    size before the user area is touched, so a corrupt or truncated file
 *    gives -EBADMSG and never SIGBUS.  The validated values are kept in the
 *    handle; the mapped header is not trusted afterwards.
 *
 *  - Attach checks who may share the file before mapping it (fstat of the
 *    open descriptor, so no rename race): the owner must be our effective
 *    uid, or a group we are in when the attacher configured group access
 *    (spate_shm_attach_opts: group bits in opts.mode, opts.gid); nobody
 *    else may write it, and it may grant nothing beyond the configured mode
 *    (0600 by default).  A region another local user created first under
 *    our name, or one made 0666, is refused (-EPERM / -EACCES) with a
 *    message naming the file, owner and mode.  Create never makes a file
 *    writable by others.  docs/security.md has the threat model.
 *
 * Limits
 *  - A process that can write the file can still truncate it while others
 *    have it mapped and make them SIGBUS; protect regions with file modes
 *    (the checks above keep writers to our user and a configured group).
 *  - Creation checks every search directory for an existing name first, but
 *    two creators racing for one name in different directories can both win.
 *  - creator_alive() compares pid and start time in our pid namespace; a
 *    creator in another pid namespace looks dead.
 *  - SPATE_SHM_DIR is read with getenv(); do not setenv() concurrently.
 */
#include "spate/shm.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/magic.h>
#include <mntent.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <time.h>
#include <unistd.h>

#include "rings/proc.h"

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#define SHM_DEV_DIR "/dev/shm"
#define SHM_ENV_DIR "SPATE_SHM_DIR"
#define SHM_PREFIX "spate."
#define SHM_TMP_PREFIX ".spate-tmp."
#define SHM_HUGE_2M ((size_t)2 << 20)
#define SHM_USER_OFF 4096u
#define SHM_MAX_DIRS 2

#define SHM_CREATE_FLAGS (SPATE_SHM_F_REQUIRE_HUGE | SPATE_SHM_F_NO_HUGE | \
			  SPATE_SHM_F_MLOCK | SPATE_SHM_F_REPLACE)
#define SHM_ATTACH_FLAGS (SPATE_SHM_F_RDONLY)

_Static_assert(sizeof(struct spate_shm_hdr) == 168, "header layout changed: bump SPATE_SHM_LAYOUT_VERSION");
_Static_assert(offsetof(struct spate_shm_hdr, ready) == 136, "header layout changed");
_Static_assert(sizeof(struct spate_shm_hdr) <= SHM_USER_OFF, "header must fit below user_off");

struct spate_shm {
	struct spate_shm_hdr *hdr; /* == mapping base */
	size_t map_size;
	void *user;
	size_t user_size;
	enum spate_shm_backing backing;
	uint32_t creator_pid;
	uint64_t creator_start;
	char path[PATH_MAX];
	char backing_str[PATH_MAX + 96];
};

/* A candidate directory and what backs it. */
struct shm_dir {
	const char *path;
	enum spate_shm_backing backing;
	size_t page_size; /* huge page size on hugetlbfs, else the base page */
	char why[48];     /* THP reason for the backing string, may be "" */
};

/* hugetlb pool counters for one page size. */
struct shm_hpool {
	unsigned long long nr, free, resv, overcommit, surplus;
};

/* ---------------------------------------------------------------- helpers */

static int shm_name_valid(const char *name)
{
	size_t i;

	if (!name || name[0] == '\0' || name[0] == '.')
		return 0;
	for (i = 0; name[i]; i++) {
		char c = name[i];

		if (i >= SPATE_SHM_NAME_MAX)
			return 0;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		      (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
			return 0;
	}
	return 1;
}

static int shm_join(char *buf, size_t len, const char *dir, const char *name)
{
	int n = snprintf(buf, len, "%s/" SHM_PREFIX "%s", dir, name);

	return (n < 0 || (size_t)n >= len) ? -ENAMETOOLONG : 0;
}

static int shm_read_file(const char *path, char *buf, size_t len)
{
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	n = read(fd, buf, len - 1);
	if (n < 0)
		n = -errno;
	close(fd);
	if (n < 0)
		return (int)n;
	buf[n] = '\0';
	return 0;
}

static int shm_read_ull(const char *path, unsigned long long *v)
{
	char buf[64], *end;
	int r = shm_read_file(path, buf, sizeof(buf));

	if (r)
		return r;
	errno = 0;
	*v = strtoull(buf, &end, 10);
	return (errno || end == buf) ? -EINVAL : 0;
}

/* Value of "key:   value" from /proc/meminfo. */
static int shm_meminfo(const char *key, unsigned long long *v)
{
	char buf[8192], *p;
	size_t klen = strlen(key);
	int r = shm_read_file("/proc/meminfo", buf, sizeof(buf));

	if (r)
		return r;
	for (p = buf; *p; p++) {
		if (strncmp(p, key, klen) == 0 && p[klen] == ':') {
			*v = strtoull(p + klen + 1, NULL, 10);
			return 0;
		}
		p = strchr(p, '\n');
		if (!p)
			break;
	}
	return -ENOENT;
}

static int shm_hpool_read(size_t page_size, struct shm_hpool *p)
{
	char path[128];
	unsigned long long def_kb;
	int n;

	memset(p, 0, sizeof(*p));
	n = snprintf(path, sizeof(path), "/sys/kernel/mm/hugepages/hugepages-%zukB/", page_size >> 10);
	if (n > 0 && (size_t)n < sizeof(path) - 32) {
		char *leaf = path + n;

		strcpy(leaf, "free_hugepages");
		if (shm_read_ull(path, &p->free) == 0) {
			strcpy(leaf, "nr_hugepages");
			shm_read_ull(path, &p->nr);
			strcpy(leaf, "resv_hugepages");
			shm_read_ull(path, &p->resv);
			strcpy(leaf, "nr_overcommit_hugepages");
			shm_read_ull(path, &p->overcommit);
			strcpy(leaf, "surplus_hugepages");
			shm_read_ull(path, &p->surplus);
			return 0;
		}
	}
	/* No sysfs: /proc/meminfo describes the default huge page size only. */
	if (shm_meminfo("Hugepagesize", &def_kb) || def_kb << 10 != page_size ||
	    shm_meminfo("HugePages_Free", &p->free))
		return -ENOENT;
	shm_meminfo("HugePages_Total", &p->nr);
	shm_meminfo("HugePages_Rsvd", &p->resv);
	shm_meminfo("HugePages_Surp", &p->surplus);
	shm_read_ull("/proc/sys/vm/nr_overcommit_hugepages", &p->overcommit);
	return 0;
}

/* Pages a new mapping can still get: free minus reserved, plus overcommit headroom. */
static unsigned long long shm_hpool_avail(const struct shm_hpool *p)
{
	unsigned long long a = p->free > p->resv ? p->free - p->resv : 0;

	if (p->overcommit > p->surplus)
		a += p->overcommit - p->surplus;
	return a;
}

static void shm_fmt_size(char *buf, size_t len, size_t sz)
{
	if (sz >= ((size_t)1 << 30) && !(sz & (((size_t)1 << 30) - 1)))
		snprintf(buf, len, "%zu GiB", sz >> 30);
	else if (sz >= ((size_t)1 << 20) && !(sz & (((size_t)1 << 20) - 1)))
		snprintf(buf, len, "%zu MiB", sz >> 20);
	else
		snprintf(buf, len, "%zu KiB", sz >> 10);
}

/* First hugetlbfs mount with 2 MiB pages, copied to buf. */
static int shm_find_hugetlbfs(char *buf, size_t len)
{
	struct mntent ent;
	char line[4096];
	int r = -ENOENT;
	FILE *f = setmntent("/proc/self/mounts", "re");

	if (!f)
		return -errno;
	while (getmntent_r(f, &ent, line, sizeof(line))) {
		struct statfs sfs;

		if (strcmp(ent.mnt_type, "hugetlbfs") != 0)
			continue;
		if (statfs(ent.mnt_dir, &sfs) != 0 || (unsigned long)sfs.f_type != HUGETLBFS_MAGIC ||
		    (size_t)sfs.f_bsize != SHM_HUGE_2M)
			continue;
		if (strlen(ent.mnt_dir) >= len)
			continue;
		strcpy(buf, ent.mnt_dir);
		r = 0;
		break;
	}
	endmntent(f);
	return r;
}

/* The huge= option of the mount holding dir (longest matching mount point). */
static void shm_tmpfs_huge(const char *dir, char *buf, size_t len)
{
	char real[PATH_MAX], line[4096];
	struct mntent ent;
	size_t best = 0;
	FILE *f;

	snprintf(buf, len, "never");
	if (!realpath(dir, real))
		return;
	f = setmntent("/proc/self/mounts", "re");
	if (!f)
		return;
	while (getmntent_r(f, &ent, line, sizeof(line))) {
		size_t ml = strlen(ent.mnt_dir);
		const char *opt;

		if (strcmp(ent.mnt_dir, "/") == 0)
			ml = 0;
		else if (strncmp(real, ent.mnt_dir, ml) != 0 || (real[ml] != '/' && real[ml] != '\0'))
			continue;
		if (ml < best)
			continue;
		best = ml; /* later entries over-mount earlier ones: >= keeps the last */
		snprintf(buf, len, "never");
		opt = hasmntopt(&ent, "huge");
		if (opt && opt[4] == '=')
			snprintf(buf, len, "%.*s", (int)strcspn(opt + 5, ","), opt + 5);
	}
	endmntent(f);
}

/* Whether MADV_HUGEPAGE on a file in the tmpfs at dir gets transparent huge pages. */
static bool shm_thp_applies(const char *dir, char *why, size_t len)
{
	char buf[128], huge[32];
	const char *l, *rb;

	if (shm_read_file("/sys/kernel/mm/transparent_hugepage/shmem_enabled", buf, sizeof(buf))) {
		snprintf(why, len, "kernel without shmem THP");
		return false;
	}
	l = strchr(buf, '[');
	rb = l ? strchr(l, ']') : NULL;
	if (l && rb && rb - l - 1 == 4 && strncmp(l + 1, "deny", 4) == 0) {
		snprintf(why, len, "shmem_enabled=deny");
		return false;
	}
	if (l && rb && rb - l - 1 == 5 && strncmp(l + 1, "force", 5) == 0) {
		snprintf(why, len, "shmem_enabled=force");
		return true;
	}
	shm_tmpfs_huge(dir, huge, sizeof(huge));
	snprintf(why, len, "tmpfs huge=%s", huge);
	return strcmp(huge, "always") == 0 || strcmp(huge, "within_size") == 0 ||
	       strcmp(huge, "advise") == 0;
}

static int shm_classify(const char *path, struct shm_dir *d)
{
	struct statfs sfs;
	long pg = sysconf(_SC_PAGESIZE);

	memset(d, 0, sizeof(*d));
	d->path = path;
	if (statfs(path, &sfs) != 0)
		return -errno;
	if ((unsigned long)sfs.f_type == HUGETLBFS_MAGIC) {
		d->backing = SPATE_SHM_BACKING_HUGETLBFS;
		d->page_size = (size_t)sfs.f_bsize;
		return 0;
	}
	d->page_size = pg > 0 ? (size_t)pg : 4096;
	if ((unsigned long)sfs.f_type != TMPFS_MAGIC) {
		snprintf(d->why, sizeof(d->why), "not tmpfs");
		d->backing = SPATE_SHM_BACKING_SHM;
	} else {
		d->backing = shm_thp_applies(path, d->why, sizeof(d->why)) ?
			     SPATE_SHM_BACKING_SHM_THP : SPATE_SHM_BACKING_SHM;
	}
	return 0;
}

/* Directory holding path (path is "<dir>/spate.<name>"). */
static void shm_dirname(const char *path, char *buf, size_t len)
{
	const char *slash = strrchr(path, '/');
	size_t n = slash ? (size_t)(slash - path) : 0;

	if (n >= len)
		n = len - 1;
	memcpy(buf, path, n);
	buf[n] = '\0';
}

static void shm_set_backing_str(struct spate_shm *sh, size_t page_size, const char *why)
{
	char dir[PATH_MAX], sz[32];

	shm_dirname(sh->path, dir, sizeof(dir));
	switch (sh->backing) {
	case SPATE_SHM_BACKING_HUGETLBFS:
		shm_fmt_size(sz, sizeof(sz), page_size);
		snprintf(sh->backing_str, sizeof(sh->backing_str), "hugetlbfs, %s pages (%s)", sz, dir);
		break;
	case SPATE_SHM_BACKING_SHM_THP:
		snprintf(sh->backing_str, sizeof(sh->backing_str), "%s, transparent huge pages advised%s%s%s",
			 dir, why && *why ? " (" : "", why ? why : "", why && *why ? ")" : "");
		break;
	default:
		shm_fmt_size(sz, sizeof(sz), page_size);
		snprintf(sh->backing_str, sizeof(sh->backing_str), "%s, %s pages (shmem THP disabled%s%s)",
			 dir, sz, why && *why ? ": " : "", why ? why : "");
		break;
	}
}

/* Directories attach/unlink look in, in order; returns how many. */
static int shm_search_dirs(const char *dirs[SHM_MAX_DIRS], char *huge_buf, size_t len)
{
	const char *env = getenv(SHM_ENV_DIR);
	int n = 0;

	if (env && *env) {
		dirs[n++] = env;
		return n;
	}
	if (shm_find_hugetlbfs(huge_buf, len) == 0)
		dirs[n++] = huge_buf;
	dirs[n++] = SHM_DEV_DIR;
	return n;
}

/*
 * Fault in every page for writing so that a lack of memory (empty hugetlb
 * pool, hugetlb cgroup limit, full tmpfs) is an error here, not a SIGBUS later.
 */
static int shm_populate(int fd, void *base, size_t len, size_t page)
{
	size_t off;

	if (madvise(base, len, MADV_POPULATE_WRITE) == 0)
		return 0;
	if (errno == EFAULT || errno == EHWPOISON)
		return -ENOMEM; /* the fault would have raised SIGBUS */
	if (errno != EINVAL)
		return -errno;
	/* Kernel < 5.14: reserve blocks first; fallocate reports ENOSPC. */
	if (fallocate(fd, 0, 0, (off_t)len) != 0 && errno != EOPNOTSUPP)
		return -errno;
	for (off = 0; off < len; off += page)
		((volatile char *)base)[off] = 0;
	return 0;
}

/*
 * Explain on stderr why huge pages could not be had and how to get them.
 * mnt is the hugetlbfs directory tried (NULL: none mounted); err is the
 * error of the attempt when the pool looked big enough.
 */
static void shm_huge_hint(const char *mnt, size_t page_size, unsigned long long need, int err)
{
	static const char pre[] = "spate: huge pages required but unavailable";
	struct shm_hpool pool;
	unsigned long long have;
	char sz[32], nr_path[96], mount_cmd[128];

	shm_fmt_size(sz, sizeof(sz), page_size);
	snprintf(mount_cmd, sizeof(mount_cmd), "mount -t hugetlbfs -o pagesize=%.*s nodev /dev/hugepages",
		 (int)strcspn(sz, " "), sz);
	if (page_size == SHM_HUGE_2M)
		snprintf(nr_path, sizeof(nr_path), "/proc/sys/vm/nr_hugepages");
	else
		snprintf(nr_path, sizeof(nr_path), "/sys/kernel/mm/hugepages/hugepages-%zukB/nr_hugepages",
			 page_size >> 10);

	if (shm_hpool_read(page_size, &pool) != 0) {
		fprintf(stderr, "%s: the kernel has no %s hugetlb pool (CONFIG_HUGETLBFS?)\n", pre, sz);
		return;
	}
	have = shm_hpool_avail(&pool);
	if (have < need)
		fprintf(stderr, "%s: need %llu free %s pages, have %llu; reserve them with: "
			"echo %llu > %s%s%s\n", pre, need, sz, have, pool.nr + need - have, nr_path,
			mnt ? "" : " and mount hugetlbfs: ", mnt ? "" : mount_cmd);
	else if (!mnt)
		fprintf(stderr, "%s: no hugetlbfs mount with %s pages; mount one: %s\n", pre, sz, mount_cmd);
	else
		fprintf(stderr, "%s: mapping %llu pages of %s in %s failed: %s; check hugetlb "
			"cgroup limits, the mount's size= option and %s\n", pre, need, sz, mnt,
			strerror(err), nr_path);
}

/* ----------------------------------------------------------------- create */

static int shm_exists_any(const char *const *dirs, int n, const char *name)
{
	char path[PATH_MAX];
	struct stat st;
	int i;

	for (i = 0; i < n; i++) {
		if (shm_join(path, sizeof(path), dirs[i], name) == 0 &&
		    fstatat(AT_FDCWD, path, &st, AT_SYMLINK_NOFOLLOW) == 0)
			return 1;
	}
	return 0;
}

/* Give the finished file its name. */
static int shm_publish(int fd, const char *tmp, const char *final, bool replace)
{
	char proc[64];
	int tries, r;

	if (tmp[0]) { /* hidden-file fallback */
		r = replace ? rename(tmp, final) : link(tmp, final);
		r = r ? -errno : 0;
		unlink(tmp);
		return r;
	}
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	for (tries = 0;; tries++) {
		if (linkat(AT_FDCWD, proc, AT_FDCWD, final, AT_SYMLINK_FOLLOW) == 0)
			return 0;
		if (errno != EEXIST || !replace || tries >= 16)
			return -errno;
		if (unlink(final) != 0 && errno != ENOENT)
			return -errno;
	}
}

/*
 * Cosmetic, best effort: the mapping was made through the unnamed O_TMPFILE
 * file, so /proc/PID/maps would show "#<ino> (deleted)".  Map the same pages
 * again through the published name and drop the first mapping.  Returns the
 * mapping to use; any failure keeps the old one, which is equally valid.
 */
static void *shm_remap_named(int fd, const char *path, void *base, size_t len,
			     enum spate_shm_backing backing, uint32_t flags)
{
	struct stat a, b;
	void *nb = MAP_FAILED;
	int fd2 = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);

	if (fd2 < 0)
		return base;
	if (fstat(fd, &a) == 0 && fstat(fd2, &b) == 0 && a.st_dev == b.st_dev &&
	    a.st_ino == b.st_ino)
		nb = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd2, 0);
	close(fd2);
	if (nb == MAP_FAILED)
		return base;
	if (backing != SPATE_SHM_BACKING_HUGETLBFS)
		(void)madvise(nb, len, MADV_HUGEPAGE);
	if ((flags & SPATE_SHM_F_MLOCK) && mlock(nb, len) != 0) {
		munmap(nb, len);
		return base;
	}
	munmap(base, len);
	return nb;
}

/* A constructor: create, size, map (huge pages or not), lock, format the
 * header, publish; each step undone by the goto labels at its end. */
static int shm_create_in(const struct shm_dir *d, const char *name, size_t user_size,
			 mode_t mode, gid_t gid, uint32_t flags, struct spate_shm **out)
{
	static unsigned int tmp_seq;
	struct spate_shm *sh;
	struct spate_shm_hdr *hdr;
	struct timespec ts;
	char tmp[PATH_MAX] = "";
	size_t align, total;
	uint64_t start = 0;
	char state;
	void *base;
	int fd, r;

	align = d->backing == SPATE_SHM_BACKING_SHM ? d->page_size :
		d->backing == SPATE_SHM_BACKING_SHM_THP ? SHM_HUGE_2M : d->page_size;
	if (user_size > SIZE_MAX - SHM_USER_OFF - align)
		return -EINVAL;
	total = (SHM_USER_OFF + user_size + align - 1) & ~(align - 1);
	if (total > (size_t)INT64_MAX)
		return -EINVAL;

	sh = calloc(1, sizeof(*sh));
	if (!sh)
		return -ENOMEM;
	r = shm_join(sh->path, sizeof(sh->path), d->path, name);
	if (r)
		goto err_free;

	if (d->backing != SPATE_SHM_BACKING_HUGETLBFS) {
		struct statfs sfs;

		if (statfs(d->path, &sfs) == 0 && sfs.f_blocks &&
		    (unsigned long long)sfs.f_bavail * (unsigned long long)sfs.f_bsize < total) {
			r = -ENOSPC;
			goto err_free;
		}
	}

	fd = open(d->path, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
		unsigned int seq = __atomic_fetch_add(&tmp_seq, 1, __ATOMIC_RELAXED);
		int n = snprintf(tmp, sizeof(tmp), "%s/" SHM_TMP_PREFIX "%s.%d.%u",
				 d->path, name, (int)getpid(), seq);

		if (n < 0 || (size_t)n >= sizeof(tmp)) {
			r = -ENAMETOOLONG;
			goto err_free;
		}
		fd = open(tmp, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (fd < 0)
			tmp[0] = '\0';
	}
	if (fd < 0) {
		r = -errno;
		goto err_free;
	}
	/* fchmod, not the open mode, so the umask cannot narrow it. */
	if (fchmod(fd, mode) != 0 ||
	    (gid != 0 && gid != (gid_t)-1 && fchown(fd, (uid_t)-1, gid) != 0) ||
	    ftruncate(fd, (off_t)total) != 0) {
		r = -errno;
		goto err_close;
	}
	base = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (base == MAP_FAILED) {
		r = -errno;
		goto err_close;
	}
	/* Before the first fault, or tmpfs huge=advise allocates small pages. */
	if (d->backing != SPATE_SHM_BACKING_HUGETLBFS)
		(void)madvise(base, total, MADV_HUGEPAGE);
	r = shm_populate(fd, base, total, d->page_size);
	if (r)
		goto err_unmap;
	if ((flags & SPATE_SHM_F_MLOCK) && mlock(base, total) != 0) {
		r = -errno;
		goto err_unmap;
	}

	if (spate_proc_stat(getpid(), &state, &start) != 0)
		start = 0;
	clock_gettime(CLOCK_REALTIME, &ts);
	hdr = base;
	hdr->magic = SPATE_SHM_MAGIC;
	hdr->layout_version = SPATE_SHM_LAYOUT_VERSION;
	hdr->hdr_size = sizeof(*hdr);
	hdr->total_size = total;
	hdr->user_off = SHM_USER_OFF;
	hdr->user_size = user_size;
	hdr->page_size = d->page_size;
	hdr->backing = (uint32_t)d->backing;
	hdr->creator_pid = (uint32_t)getpid();
	hdr->creator_start = start;
	hdr->created_ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
	strcpy(hdr->name, name);
	/* Last: pairs with the acquire load of `ready` in shm_map_validate(). */
	__atomic_store_n(&hdr->ready, SPATE_SHM_READY, __ATOMIC_RELEASE);

	r = shm_publish(fd, tmp, sh->path, flags & SPATE_SHM_F_REPLACE);
	tmp[0] = '\0';
	if (r)
		goto err_unmap;
	base = shm_remap_named(fd, sh->path, base, total, d->backing, flags);
	hdr = base;
	close(fd);

	sh->hdr = hdr;
	sh->map_size = total;
	sh->user = (char *)base + SHM_USER_OFF;
	sh->user_size = user_size;
	sh->backing = d->backing;
	sh->creator_pid = hdr->creator_pid;
	sh->creator_start = start;
	shm_set_backing_str(sh, d->page_size, d->why);
	*out = sh;
	return 0;

err_unmap:
	munmap(base, total);
err_close:
	close(fd);
	if (tmp[0])
		unlink(tmp);
err_free:
	free(sh);
	return r;
}

static bool shm_resource_err(int r)
{
	return r == -ENOMEM || r == -ENOSPC || r == -EINVAL || r == -EFBIG;
}

/*
 * Create in the hugetlbfs directory d if its pool has enough free pages.
 * With must set (no fallback possible or wanted), print why on failure.
 */
static int shm_create_huge(const struct shm_dir *d, const char *name, size_t user_size,
			   const struct spate_shm_opts *o, mode_t mode, bool must,
			   struct spate_shm **out)
{
	struct shm_hpool pool;
	unsigned long long need;
	int r;

	need = ((unsigned long long)SHM_USER_OFF + user_size + d->page_size - 1) / d->page_size;
	if (shm_hpool_read(d->page_size, &pool) != 0 || shm_hpool_avail(&pool) < need) {
		if (must)
			shm_huge_hint(d->path, d->page_size, need, ENOMEM);
		return -ENOMEM;
	}
	r = shm_create_in(d, name, user_size, mode, o->gid, o->flags, out);
	if (r == 0 || r == -EEXIST || !must)
		return r;
	if (shm_resource_err(r)) {
		shm_huge_hint(d->path, d->page_size, need, -r);
		return -ENOMEM;
	}
	fprintf(stderr, "spate: huge pages required but unavailable: cannot create %s/" SHM_PREFIX
		"%s: %s\n", d->path, name, strerror(-r));
	return r;
}

int spate_shm_create(const char *name, size_t user_size,
		     const struct spate_shm_opts *opts, struct spate_shm **out)
{
	static const struct spate_shm_opts defaults;
	const struct spate_shm_opts *o = opts ? opts : &defaults;
	const char *dirs[SHM_MAX_DIRS];
	const char *env = getenv(SHM_ENV_DIR);
	const char *explicit_dir = o->dir ? o->dir : (env && *env ? env : NULL);
	char huge_mnt[PATH_MAX];
	struct shm_dir d;
	mode_t mode = o->mode ? o->mode : 0600;
	int ndirs, r, i;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!shm_name_valid(name) || user_size == 0 || user_size > ((size_t)1 << 62) ||
	    (o->flags & ~SHM_CREATE_FLAGS) || (mode & ~(mode_t)0777) || (mode & S_IWOTH) ||
	    (o->dir && !*o->dir))
		return -EINVAL;
	if ((o->flags & SPATE_SHM_F_REQUIRE_HUGE) && (o->flags & SPATE_SHM_F_NO_HUGE))
		return -EINVAL;

	if (explicit_dir) {
		r = shm_classify(explicit_dir, &d);
		if (r)
			return r;
		if (d.backing == SPATE_SHM_BACKING_HUGETLBFS && (o->flags & SPATE_SHM_F_NO_HUGE))
			return -EINVAL;
		if (d.backing != SPATE_SHM_BACKING_HUGETLBFS && (o->flags & SPATE_SHM_F_REQUIRE_HUGE)) {
			fprintf(stderr, "spate: huge pages required but unavailable: %s is not a "
				"hugetlbfs mount\n", explicit_dir);
			return -ENOMEM;
		}
		if (!(o->flags & SPATE_SHM_F_REPLACE) && shm_exists_any(&explicit_dir, 1, name))
			return -EEXIST;
		if (d.backing == SPATE_SHM_BACKING_HUGETLBFS)
			return shm_create_huge(&d, name, user_size, o, mode, true, out);
		return shm_create_in(&d, name, user_size, mode, o->gid, o->flags, out);
	}

	ndirs = shm_search_dirs(dirs, huge_mnt, sizeof(huge_mnt));
	if (!(o->flags & SPATE_SHM_F_REPLACE) && shm_exists_any(dirs, ndirs, name))
		return -EEXIST;

	if (!(o->flags & SPATE_SHM_F_NO_HUGE) && ndirs == 2) {
		/* Any failure but EEXIST falls back: e.g. EACCES on a root-only mount. */
		r = shm_classify(dirs[0], &d);
		if (r == 0)
			r = shm_create_huge(&d, name, user_size, o, mode,
					    o->flags & SPATE_SHM_F_REQUIRE_HUGE, out);
		if (r == 0 || r == -EEXIST || (o->flags & SPATE_SHM_F_REQUIRE_HUGE))
			goto done;
	} else if (o->flags & SPATE_SHM_F_REQUIRE_HUGE) {
		shm_huge_hint(NULL, SHM_HUGE_2M, ((unsigned long long)SHM_USER_OFF + user_size +
						  SHM_HUGE_2M - 1) / SHM_HUGE_2M, ENOENT);
		return -ENOMEM;
	}
	r = shm_classify(SHM_DEV_DIR, &d);
	if (r == 0)
		r = shm_create_in(&d, name, user_size, mode, o->gid, o->flags, out);
done:
	if (r == 0 && (o->flags & SPATE_SHM_F_REPLACE)) {
		/* Drop same-named regions elsewhere in the search path: attach would find them. */
		char other[PATH_MAX];

		for (i = 0; i < ndirs; i++) {
			if (shm_join(other, sizeof(other), dirs[i], name) == 0 &&
			    strcmp(other, (*out)->path) != 0)
				unlink(other);
		}
	}
	return r;
}

/* ----------------------------------------------------------------- attach */

/* Whether this process is in group @p gid (effective or supplementary). */
static bool shm_in_group(gid_t gid)
{
	gid_t groups[256];
	int n;

	if (gid == getegid())
		return true;
	n = getgroups((int)(sizeof(groups) / sizeof(groups[0])), groups);
	for (int i = 0; i < n; i++)
		if (groups[i] == gid)
			return true;
	return false;
}

/*
 * Who may share the file @p st (opened as @p path): its owner must be us, or,
 * when @p o configures group access (group bits in o->mode), a group we are in
 * (o->gid if set).  Nobody else may write it, and it may grant no access
 * beyond o->mode (0 = 0600).  Checked on the open descriptor, before mapping:
 * a region another user created first, or made writable by others, is refused
 * with a message naming the file, its owner and its mode.
 */
static int shm_check_access(const struct stat *st, const char *path,
			    const struct spate_shm_opts *o)
{
	const mode_t allowed = o->mode ? o->mode : 0600;
	const mode_t m = st->st_mode & 07777;
	const bool group_cfg = (allowed & S_IRWXG) != 0;
	const bool gid_cfg = o->gid != 0 && o->gid != (gid_t)-1;
	const char *why = NULL;
	int r = 0;

	if (st->st_uid != geteuid()) {
		if (!group_cfg || (gid_cfg && st->st_gid != o->gid) || !shm_in_group(st->st_gid) ||
		    !(m & S_IRWXG)) {
			why = group_cfg ? "neither our user nor a configured group we are in"
					: "not our user (configure a group to share regions)";
			r = -EPERM;
		}
	} else if (gid_cfg && (m & S_IRWXG) && st->st_gid != o->gid) {
		why = "group access for a group other than the configured one";
		r = -EACCES;
	}
	if (!r && (m & S_IWOTH)) {
		why = "writable by other users";
		r = -EACCES;
	} else if (!r && (m & 0777 & ~allowed)) {
		mode_t extra = m & 0777 & ~allowed;

		why = (extra & S_IRWXO) ? "access for other users beyond the configured mode"
		      : group_cfg ? "more access than the configured mode"
				  : "group access, which is not configured";
		r = -EACCES;
	}
	if (r)
		fprintf(stderr, "spate: refusing shared memory %s: owner uid %u gid %u, mode %04o "
			"(we are uid %u; allowed mode %04o): %s\n", path, (unsigned)st->st_uid,
			(unsigned)st->st_gid, (unsigned)m, (unsigned)geteuid(), (unsigned)allowed, why);
	return r;
}

static int shm_map_validate(int fd, const char *name, const struct spate_shm_opts *o,
			    struct spate_shm *sh)
{
	const bool ro = o->flags & SPATE_SHM_F_RDONLY;
	struct spate_shm_hdr h;
	struct stat st;
	uint32_t ready;
	long pg = sysconf(_SC_PAGESIZE);
	void *base;
	size_t len;
	int r = -EBADMSG;

	if (fstat(fd, &st) != 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EBADMSG;
	r = shm_check_access(&st, sh->path, o);
	if (r)
		return r;
	r = -EBADMSG;
	if (st.st_size < (off_t)sizeof(h))
		return -EBADMSG;
	if ((uint64_t)st.st_size > SIZE_MAX)
		return -EFBIG;
	len = (size_t)st.st_size;
	/* Only the header is read until it has been checked against st_size. */
	base = mmap(NULL, len, ro ? PROT_READ : PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (base == MAP_FAILED)
		return -errno;
	/* Pairs with the release store of `ready` in shm_create_in(). */
	ready = __atomic_load_n(&((struct spate_shm_hdr *)base)->ready, __ATOMIC_ACQUIRE);
	memcpy(&h, base, sizeof(h));

	if (h.magic != SPATE_SHM_MAGIC)
		goto err;
	if (h.layout_version != SPATE_SHM_LAYOUT_VERSION) {
		r = -EPROTO;
		goto err;
	}
	if (h.hdr_size != sizeof(h))
		goto err;
	if (ready != SPATE_SHM_READY) {
		r = -EAGAIN;
		goto err;
	}
	if (h.total_size != (uint64_t)st.st_size ||
	    h.user_off < h.hdr_size || (pg > 0 && h.user_off % (uint64_t)pg) ||
	    h.user_off > h.total_size || h.user_size == 0 ||
	    h.user_size > h.total_size - h.user_off)
		goto err;
	if (h.page_size < 4096 || (h.page_size & (h.page_size - 1)) || h.total_size % h.page_size)
		goto err;
	if (h.backing != SPATE_SHM_BACKING_HUGETLBFS && h.backing != SPATE_SHM_BACKING_SHM_THP &&
	    h.backing != SPATE_SHM_BACKING_SHM)
		goto err;
	if (!memchr(h.name, '\0', sizeof(h.name)) || strcmp(h.name, name) != 0)
		goto err;

	/* Page tables now rather than on first touch; failure is harmless. */
	(void)madvise(base, len, MADV_POPULATE_READ);
	sh->hdr = base;
	sh->map_size = len;
	sh->user = (char *)base + h.user_off;
	sh->user_size = (size_t)h.user_size;
	sh->backing = (enum spate_shm_backing)h.backing;
	sh->creator_pid = h.creator_pid;
	sh->creator_start = h.creator_start;
	shm_set_backing_str(sh, (size_t)h.page_size, NULL);
	return 0;
err:
	munmap(base, len);
	return r;
}

int spate_shm_attach(const char *name, uint32_t flags, struct spate_shm **out)
{
	const struct spate_shm_opts o = { .flags = flags, .gid = (gid_t)-1 };

	return spate_shm_attach_opts(name, &o, out);
}

int spate_shm_attach_opts(const char *name, const struct spate_shm_opts *opts,
			  struct spate_shm **out)
{
	static const struct spate_shm_opts defaults = { .gid = (gid_t)-1 };
	const struct spate_shm_opts *o = opts ? opts : &defaults;
	const uint32_t flags = o->flags;
	const char *dirs[SHM_MAX_DIRS];
	char huge_mnt[PATH_MAX];
	struct spate_shm *sh;
	int ndirs, i, fd = -1, r;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!shm_name_valid(name) || (flags & ~SHM_ATTACH_FLAGS) || (o->mode & ~(mode_t)0777) ||
	    (o->mode & S_IWOTH) || o->dir)
		return -EINVAL;
	sh = calloc(1, sizeof(*sh));
	if (!sh)
		return -ENOMEM;

	r = -ENOENT;
	ndirs = shm_search_dirs(dirs, huge_mnt, sizeof(huge_mnt));
	for (i = 0; i < ndirs && fd < 0; i++) {
		r = shm_join(sh->path, sizeof(sh->path), dirs[i], name);
		if (r)
			goto err_free;
		fd = open(sh->path, ((flags & SPATE_SHM_F_RDONLY) ? O_RDONLY : O_RDWR) |
			  O_CLOEXEC | O_NOFOLLOW);
		r = fd < 0 ? -errno : 0;
		if (fd < 0 && r != -ENOENT)
			goto err_free;
	}
	if (fd < 0)
		goto err_free;

	r = shm_map_validate(fd, name, o, sh);
	close(fd);
	if (r)
		goto err_free;
	*out = sh;
	return 0;

err_free:
	free(sh);
	return r;
}

/* ------------------------------------------------------------ the rest */

void spate_shm_detach(struct spate_shm *shm)
{
	if (!shm)
		return;
	munmap(shm->hdr, shm->map_size);
	free(shm);
}

int spate_shm_unlink(const char *name)
{
	const char *dirs[SHM_MAX_DIRS];
	char huge_mnt[PATH_MAX], path[PATH_MAX];
	int ndirs, i, found = 0, r = 0;

	if (!shm_name_valid(name))
		return -EINVAL;
	ndirs = shm_search_dirs(dirs, huge_mnt, sizeof(huge_mnt));
	for (i = 0; i < ndirs; i++) {
		if (shm_join(path, sizeof(path), dirs[i], name) != 0)
			continue;
		if (unlink(path) == 0)
			found = 1;
		else if (errno != ENOENT && !r)
			r = -errno;
	}
	if (r)
		return r;
	return found ? 0 : -ENOENT;
}

void *spate_shm_user(const struct spate_shm *shm)
{
	return shm ? shm->user : NULL;
}

size_t spate_shm_user_size(const struct spate_shm *shm)
{
	return shm ? shm->user_size : 0;
}

const struct spate_shm_hdr *spate_shm_header(const struct spate_shm *shm)
{
	return shm ? shm->hdr : NULL;
}

enum spate_shm_backing spate_shm_backing(const struct spate_shm *shm)
{
	return shm ? shm->backing : SPATE_SHM_BACKING_SHM;
}

const char *spate_shm_backing_str(const struct spate_shm *shm)
{
	return shm ? shm->backing_str : "";
}

const char *spate_shm_path(const struct spate_shm *shm)
{
	return shm ? shm->path : "";
}

int spate_shm_creator_alive(const struct spate_shm *shm)
{
	if (!shm || shm->creator_pid == 0 || shm->creator_pid > (uint32_t)INT_MAX)
		return 0;
	return spate_proc_alive((pid_t)shm->creator_pid, shm->creator_start);
}

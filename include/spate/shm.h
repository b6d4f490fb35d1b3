/* SPDX-License-Identifier: MIT */
/**
 * @file spate/shm.h
 * @brief Named shared-memory regions that other processes attach by name.
 *
 * A region is one file, "spate.<name>", either on a hugetlbfs mount (2 MiB
 * pages) or in /dev/shm (4 KiB pages, with MADV_HUGEPAGE so transparent huge
 * pages are used where the tmpfs mount allows it: huge=always/within_size/
 * advise). The first bytes hold a versioned header (struct spate_shm_hdr); the
 * user area follows at a page-aligned offset recorded in the header (4096).
 * Everything inside the user area must be position independent: offsets,
 * never pointers.
 *
 * Where regions live: create uses the first hugetlbfs mount with 2 MiB pages
 * (if it has enough free pages) else /dev/shm; attach and unlink look in that
 * mount, then /dev/shm. The environment variable SPATE_SHM_DIR, if set and
 * non-empty, replaces this: create, attach and unlink all use that directory
 * only. spate_shm_opts.dir overrides both for create only.
 *
 * A region becomes visible under its name only once fully built, so attach
 * sees either no region (-ENOENT) or a complete one.
 *
 * Thread safety: create/attach/detach/unlink may be called from any thread;
 * a struct spate_shm handle is not shared between threads while it is being
 * destroyed.
 */
#ifndef SPATE_SHM_H
#define SPATE_SHM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Magic at offset 0 of every region: "SPATESHM" little-endian. */
#define SPATE_SHM_MAGIC 0x4d48534554415053ULL
/** Layout version of struct spate_shm_hdr; bumped on any incompatible change. */
#define SPATE_SHM_LAYOUT_VERSION 1u
/** Longest region name, without the terminating NUL. */
#define SPATE_SHM_NAME_MAX 63

/* Flags for spate_shm_create(). */
/** Fail with -ENOMEM (and a message saying how to reserve pages) unless the
 *  region can be backed by 2 MiB huge pages. */
#define SPATE_SHM_F_REQUIRE_HUGE (1u << 0)
/** Never use hugetlbfs; ordinary shared memory with MADV_HUGEPAGE. */
#define SPATE_SHM_F_NO_HUGE (1u << 1)
/** mlock() the mapping; failure is an error (-ENOMEM or -EPERM). */
#define SPATE_SHM_F_MLOCK (1u << 2)
/** Replace an existing region of the same name instead of failing -EEXIST. */
#define SPATE_SHM_F_REPLACE (1u << 3)

/* Flags for spate_shm_attach(). */
/** Map the region read-only (for readers that must not write to it). */
#define SPATE_SHM_F_RDONLY (1u << 8)

/** What backs a region; reported by spate_shm_backing(). */
enum spate_shm_backing {
	SPATE_SHM_BACKING_HUGETLBFS = 1, /**< files on a hugetlbfs mount, 2 MiB pages */
	SPATE_SHM_BACKING_SHM_THP = 2,   /**< tmpfs whose huge= option (or shmem_enabled=force) honours MADV_HUGEPAGE */
	SPATE_SHM_BACKING_SHM = 3,       /**< tmpfs (or other fs), 4 KiB pages: THP does not apply */
};

/**
 * Header at offset 0 of every region. Written once by the creator; `ready`
 * is stored last (release) and attachers refuse a region whose `ready` is not
 * SPATE_SHM_READY (acquire).
 */
struct spate_shm_hdr {
	uint64_t magic;          /**< SPATE_SHM_MAGIC */
	uint32_t layout_version; /**< SPATE_SHM_LAYOUT_VERSION */
	uint32_t hdr_size;       /**< sizeof(struct spate_shm_hdr) */
	uint64_t total_size;     /**< bytes of the whole file */
	uint64_t user_off;       /**< offset of the user area from the region start */
	uint64_t user_size;      /**< bytes of the user area, as requested at creation */
	uint64_t page_size;      /**< page size of the backing (huge page size on hugetlbfs, else the base page size) */
	uint32_t backing;        /**< enum spate_shm_backing */
	uint32_t creator_pid;    /**< pid of the creating process */
	uint64_t creator_start;  /**< its start time (clock ticks since boot, /proc/PID/stat field 22) */
	uint64_t created_ns;     /**< CLOCK_REALTIME at creation */
	char name[SPATE_SHM_NAME_MAX + 1];
	uint32_t ready;          /**< SPATE_SHM_READY once the creator finished */
	uint32_t reserved[7];
};

#define SPATE_SHM_READY 0x52454459u /* "REDY" */

struct spate_shm;

/** Options for spate_shm_create() and spate_shm_attach_opts();
 *  zero-initialise and set what you need. */
struct spate_shm_opts {
	uint32_t flags; /**< SPATE_SHM_F_* */
	mode_t mode;    /**< create: file mode; attach: the most access the file may
			 *   grant (group bits = group access configured); 0 means
			 *   0600; never writable by others (S_IWOTH: -EINVAL) */
	gid_t gid;      /**< create: group to chown the file to; attach: the group
			 *   allowed to share it; (gid_t)-1 or 0 keeps / any of ours */
	const char *dir; /**< create only: directory override (tests); NULL picks
			  *   hugetlbfs or /dev/shm */
};

/**
 * Create a region of at least @p user_size usable bytes named @p name
 * ([A-Za-z0-9._-], 1..SPATE_SHM_NAME_MAX characters, not starting with '.').
 * The memory is zeroed and prefaulted; a lack of memory is reported here,
 * never as a later SIGBUS. @p opts may be NULL.
 *
 * The file is never writable by others (a mode with S_IWOTH is -EINVAL).
 *
 * @return 0, or -EINVAL (bad name, size, flags or mode), -EEXIST (name taken
 *         in any directory attach searches, and no SPATE_SHM_F_REPLACE),
 *         -ENOMEM (huge pages required but missing; a message on stderr says
 *         how to reserve them), -ENOSPC (tmpfs full), -EPERM / -EACCES, or
 *         another -errno from the system.
 */
int spate_shm_create(const char *name, size_t user_size,
		     const struct spate_shm_opts *opts, struct spate_shm **out);

/**
 * Attach an existing region by name, validating its header: magic, layout
 * version, header size, sizes and offsets against the real file size. A
 * corrupt or truncated file is an error, never a crash.
 *
 * Before mapping, the file's owner and mode are checked (see
 * spate_shm_attach_opts(); here with no group access configured): it must
 * belong to this process's effective uid and grant no access beyond 0600.
 *
 * @return 0, or -ENOENT (no such region), -EPERM (owned by another user),
 *         -EACCES (writable by others or more access than allowed; both
 *         with a message on stderr naming the file, owner and mode),
 *         -EBADMSG (bad magic or inconsistent header), -EPROTO (layout
 *         version mismatch), -EAGAIN (creator has not finished), -EINVAL,
 *         or another -errno.
 */
int spate_shm_attach(const char *name, uint32_t flags, struct spate_shm **out);

/**
 * spate_shm_attach() with the sharing policy of @p opts (NULL: the
 * defaults): opts->flags takes the attach flags (SPATE_SHM_F_RDONLY);
 * opts->mode is the most access the file may grant (0: 0600); group bits in
 * it configure group access: then a file owned by another user is accepted
 * if its group is one we are in (and is opts->gid, when that is set) and it
 * grants that group access. A file writable by others is always refused.
 * opts->dir must be NULL.
 *
 * @return as spate_shm_attach(); -EINVAL also for opts->mode beyond 0777 or
 *         with S_IWOTH, or opts->dir set.
 */
int spate_shm_attach_opts(const char *name, const struct spate_shm_opts *opts,
			  struct spate_shm **out);

/** Unmap and free the handle; the region itself stays until unlinked. */
void spate_shm_detach(struct spate_shm *shm);

/** Remove the region's name from every directory attach searches; attached
 *  mappings stay valid. @return 0, -ENOENT (no such region), -EINVAL or -errno. */
int spate_shm_unlink(const char *name);

/** Start of the user area (page aligned). */
void *spate_shm_user(const struct spate_shm *shm);
/** Usable bytes in the user area. */
size_t spate_shm_user_size(const struct spate_shm *shm);
/** The region's header. */
const struct spate_shm_hdr *spate_shm_header(const struct spate_shm *shm);
/** What backs the region. */
enum spate_shm_backing spate_shm_backing(const struct spate_shm *shm);
/** A human-readable description of the backing and its directory, e.g.
 *  "hugetlbfs, 2 MiB pages (/dev/hugepages)",
 *  "/dev/shm, transparent huge pages advised (tmpfs huge=advise)" or
 *  "/dev/shm, 4 KiB pages (shmem THP disabled: tmpfs huge=never)". */
const char *spate_shm_backing_str(const struct spate_shm *shm);
/** Path of the backing file. */
const char *spate_shm_path(const struct spate_shm *shm);
/** Whether the region's creator process (pid and start time) is still alive:
 *  1 alive, 0 dead (or a zombie, or in another pid namespace). */
int spate_shm_creator_alive(const struct spate_shm *shm);

#ifdef __cplusplus
}
#endif
#endif /* SPATE_SHM_H */

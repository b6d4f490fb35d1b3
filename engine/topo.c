/* SPDX-License-Identifier: MIT */
/*
 * topo.c - machine topology and thread pinning, on hwloc 2.
 *
 * Design. spate_topo_open() loads the hwloc topology once and remembers the
 * CPUs the process may run on (its binding at open time, intersected with the
 * machine's allowed set). Placement works on cores, not PUs: it looks for the
 * closest cache (L1, then L2, then L3 ...) that holds at least n allowed
 * cores and takes the first allowed PU of the first n of them; if no cache
 * does, it takes the first n cores. With fewer cores than threads, threads are
 * dealt round-robin over the cores (using a core's further PUs first, if it
 * has hyperthreads) and the placement says the cores are shared.
 *
 * Trade-offs and limits. The allowed set is a snapshot: binding the process
 * differently after open is not seen. At most 8 threads per placement (the
 * size of struct spate_topo_placement). Without hwloc the functions return
 * -ENOTSUP (or 0 counts) and callers pin with sched_setaffinity() themselves.
 */
#include "spate_config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spate/topo.h"

#if SPATE_HAVE_HWLOC
#include <hwloc.h>

struct spate_topo {
	hwloc_topology_t topo;
	hwloc_bitmap_t allowed; /* PUs this process may use */
	unsigned ncores;
	unsigned npus;
	hwloc_obj_t *cores; /* allowed cores, in logical order */
};

int spate_topo_open(struct spate_topo **out)
{
	struct spate_topo *t;
	int rc = -ENOMEM;

	if (!out)
		return -EINVAL;
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	if (hwloc_topology_init(&t->topo) < 0)
		goto err_free;
	if (hwloc_topology_load(t->topo) < 0) {
		rc = -EIO;
		goto err_topo;
	}
	t->allowed = hwloc_bitmap_dup(hwloc_topology_get_allowed_cpuset(t->topo));
	if (!t->allowed)
		goto err_topo;
	hwloc_bitmap_t bind = hwloc_bitmap_alloc();
	if (!bind)
		goto err_allowed;
	/* The process's binding; if hwloc cannot tell, every allowed PU. */
	if (hwloc_get_cpubind(t->topo, bind, HWLOC_CPUBIND_PROCESS) == 0 &&
	    hwloc_bitmap_intersects(bind, t->allowed))
		hwloc_bitmap_and(t->allowed, t->allowed, bind);
	hwloc_bitmap_free(bind);

	int n = hwloc_get_nbobjs_by_type(t->topo, HWLOC_OBJ_CORE);
	if (n <= 0) {
		rc = -EIO;
		goto err_allowed;
	}
	t->cores = calloc((size_t)n, sizeof(*t->cores));
	if (!t->cores)
		goto err_allowed;
	for (int i = 0; i < n; i++) {
		hwloc_obj_t c = hwloc_get_obj_by_type(t->topo, HWLOC_OBJ_CORE, (unsigned)i);
		if (c && c->cpuset && hwloc_bitmap_intersects(c->cpuset, t->allowed))
			t->cores[t->ncores++] = c;
	}
	int w = hwloc_bitmap_weight(t->allowed);
	t->npus = w > 0 ? (unsigned)w : 0;
	if (!t->ncores || !t->npus) {
		rc = -EIO;
		goto err_cores;
	}
	*out = t;
	return 0;
err_cores:
	free(t->cores);
err_allowed:
	hwloc_bitmap_free(t->allowed);
err_topo:
	hwloc_topology_destroy(t->topo);
err_free:
	free(t);
	return rc;
}

void spate_topo_close(struct spate_topo *t)
{
	if (!t)
		return;
	free(t->cores);
	hwloc_bitmap_free(t->allowed);
	hwloc_topology_destroy(t->topo);
	free(t);
}

unsigned spate_topo_cores(const struct spate_topo *t)
{
	return t ? t->ncores : 0;
}

unsigned spate_topo_pus(const struct spate_topo *t)
{
	return t ? t->npus : 0;
}

/* The @p k-th allowed PU of @p core (wrapping), or -1. */
static int core_pu(const struct spate_topo *t, hwloc_obj_t core, unsigned k)
{
	hwloc_bitmap_t s = hwloc_bitmap_alloc();
	int cpu = -1;

	if (!s)
		return -1;
	hwloc_bitmap_and(s, core->cpuset, t->allowed);
	int w = hwloc_bitmap_weight(s);
	if (w > 0) {
		unsigned want = k % (unsigned)w, i = 0;
		int id;
		hwloc_bitmap_foreach_begin(id, s)
			if (i++ == want) {
				cpu = id;
				break;
			}
		hwloc_bitmap_foreach_end();
	}
	hwloc_bitmap_free(s);
	return cpu;
}

/* Closest data (or unified) cache above @p o, inclusive; NULL if none. */
static hwloc_obj_t cache_above(hwloc_obj_t o)
{
	for (; o; o = o->parent)
		if (hwloc_obj_type_is_dcache(o->type))
			return o;
	return NULL;
}

static void fmt_size(char *buf, size_t len, unsigned long long bytes)
{
	if (bytes >= (1ull << 20) && bytes % (1ull << 20) == 0)
		snprintf(buf, len, "%llu MiB", bytes >> 20);
	else if (bytes >= 1024)
		snprintf(buf, len, "%llu KiB", bytes >> 10);
	else
		snprintf(buf, len, "%llu B", bytes);
}

int spate_topo_place(const struct spate_topo *t, unsigned n, struct spate_topo_placement *p)
{
	hwloc_obj_t pick[8];
	unsigned npick = 0;

	if (!t || !p || n == 0 || n > 8)
		return -EINVAL;
	memset(p, 0, sizeof(*p));
	for (unsigned i = 0; i < 8; i++)
		p->cpu[i] = p->core[i] = -1;

	if (t->ncores >= n) {
		/* The closest cache holding n allowed cores. */
		for (hwloc_obj_type_t ty = HWLOC_OBJ_L1CACHE; ty <= HWLOC_OBJ_L5CACHE && !npick; ty++) {
			hwloc_obj_t c = NULL;
			while (!npick && (c = hwloc_get_next_obj_by_type(t->topo, ty, c))) {
				if (!c->cpuset || c->attr->cache.type == HWLOC_OBJ_CACHE_INSTRUCTION)
					continue;
				unsigned k = 0;
				for (unsigned i = 0; i < t->ncores && k < n; i++)
					if (hwloc_bitmap_isincluded(t->cores[i]->cpuset, c->cpuset))
						pick[k++] = t->cores[i];
				if (k == n)
					npick = n;
			}
		}
		if (!npick)
			for (npick = 0; npick < n; npick++)
				pick[npick] = t->cores[npick];
		p->distinct_cores = 1;
	} else {
		npick = t->ncores;
		for (unsigned i = 0; i < npick && i < 8; i++)
			pick[i] = t->cores[i];
		p->distinct_cores = 0;
	}

	/* Deal threads over the picked cores (one each, or round-robin). */
	hwloc_obj_t common = NULL;
	for (unsigned i = 0; i < n; i++) {
		hwloc_obj_t core = pick[i % npick];
		p->cpu[i] = core_pu(t, core, i / npick);
		p->core[i] = (int)core->logical_index;
		if (p->cpu[i] < 0)
			return -EINVAL; /* cannot happen: the core has an allowed PU */
		hwloc_obj_t pu = hwloc_get_pu_obj_by_os_index(t->topo, (unsigned)p->cpu[i]);
		if (pu)
			common = common ? hwloc_get_common_ancestor_obj(t->topo, common, pu) : pu;
	}
	p->n = n;
	hwloc_obj_t cache = cache_above(common);
	if (cache) {
		p->shared_cache_kib = (unsigned)(cache->attr->cache.size >> 10);
		p->shared_cache_level = (int)cache->attr->cache.depth;
	}

	/* "cpu0 (core 0) + cpu1 (core 1), sharing L3 32 MiB" */
	size_t off = 0;
	for (unsigned i = 0; i < n && off < sizeof(p->desc); i++) {
		int r = snprintf(p->desc + off, sizeof(p->desc) - off, "%scpu%d (core %d)",
				 i ? " + " : "", p->cpu[i], p->core[i]);
		off += r > 0 ? (size_t)r : 0;
	}
	if (off < sizeof(p->desc)) {
		char sz[32];
		int r;
		if (cache) {
			fmt_size(sz, sizeof(sz), (unsigned long long)cache->attr->cache.size);
			r = snprintf(p->desc + off, sizeof(p->desc) - off, ", sharing L%d %s",
				     p->shared_cache_level, sz);
		} else {
			r = snprintf(p->desc + off, sizeof(p->desc) - off, ", no shared cache");
		}
		off += r > 0 ? (size_t)r : 0;
	}
	if (!p->distinct_cores && off < sizeof(p->desc))
		snprintf(p->desc + off, sizeof(p->desc) - off,
			 "; %u threads on %u cores: cores are shared", n, t->ncores);
	return 0;
}

int spate_topo_pin_self(const struct spate_topo *t, int cpu)
{
	if (!t || cpu < 0 || !hwloc_bitmap_isset(t->allowed, (unsigned)cpu))
		return -EINVAL;
	hwloc_bitmap_t s = hwloc_bitmap_alloc();
	if (!s)
		return -ENOMEM;
	hwloc_bitmap_only(s, (unsigned)cpu);
	int rc = hwloc_set_cpubind(t->topo, s, HWLOC_CPUBIND_THREAD) < 0 ? -errno : 0;
	hwloc_bitmap_free(s);
	return rc;
}

void spate_topo_describe(const struct spate_topo *t, char *buf, size_t len)
{
	if (!buf || !len)
		return;
	if (!t) {
		snprintf(buf, len, "topology unknown");
		return;
	}
	size_t off = 0;
	int r = snprintf(buf, len, "%u cores, %u PUs", t->ncores, t->npus);
	off = r > 0 ? (size_t)r : 0;
	/* Each data cache level: its size and whether one instance spans all. */
	for (hwloc_obj_type_t ty = HWLOC_OBJ_L1CACHE; ty <= HWLOC_OBJ_L5CACHE && off < len; ty++) {
		hwloc_obj_t c = NULL, first = NULL;
		unsigned count = 0;
		while ((c = hwloc_get_next_obj_by_type(t->topo, ty, c))) {
			if (c->attr->cache.type == HWLOC_OBJ_CACHE_INSTRUCTION || !c->cpuset ||
			    !hwloc_bitmap_intersects(c->cpuset, t->allowed))
				continue;
			if (!first)
				first = c;
			count++;
		}
		if (!first)
			continue;
		char sz[32], how[32];
		fmt_size(sz, sizeof(sz), (unsigned long long)first->attr->cache.size);
		if (count == 1 && t->ncores > 1)
			snprintf(how, sizeof(how), "shared");
		else if (count == t->ncores)
			snprintf(how, sizeof(how), "per core");
		else
			snprintf(how, sizeof(how), "x%u", count);
		r = snprintf(buf + off, len - off, ", L%u %s %s", first->attr->cache.depth, sz, how);
		off += r > 0 ? (size_t)r : 0;
	}
}

#else /* !SPATE_HAVE_HWLOC */

int spate_topo_open(struct spate_topo **out)
{
	(void)out;
	return -ENOTSUP;
}

void spate_topo_close(struct spate_topo *t)
{
	(void)t;
}

unsigned spate_topo_cores(const struct spate_topo *t)
{
	(void)t;
	return 0;
}

unsigned spate_topo_pus(const struct spate_topo *t)
{
	(void)t;
	return 0;
}

int spate_topo_place(const struct spate_topo *t, unsigned n, struct spate_topo_placement *p)
{
	(void)t;
	(void)p;
	return n == 0 || n > 8 ? -EINVAL : -ENOTSUP;
}

int spate_topo_pin_self(const struct spate_topo *t, int cpu)
{
	(void)t;
	(void)cpu;
	return -ENOTSUP;
}

void spate_topo_describe(const struct spate_topo *t, char *buf, size_t len)
{
	(void)t;
	if (buf && len)
		snprintf(buf, len, "topology unknown (built without hwloc)");
}

#endif /* SPATE_HAVE_HWLOC */

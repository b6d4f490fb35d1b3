/* SPDX-License-Identifier: MIT */
/*
 * provider.c - the registry of plugin providers (spate/provider.h) and the
 * one place the engine gets a consumer's plugin: from a provider that
 * serves the consumer (a door: functions, isolated processes), or by
 * loading its .so (plugin.c).
 *
 * Design. The core never includes a door: a door registers a versioned
 * struct spate_plugin_provider (copied here, up to its struct_size) and the
 * engine asks it for an instance per consumer through that struct only.
 * What the instance gives is wrapped as a struct spate_plugin_lib
 * (spate_plugin_lib_provided), so the consumer runtime, the watchdog, the
 * crash lines, hot deploy and the counters treat it as a loaded plugin.
 *
 * Limits. At most SPATE_PROVIDER_MAX providers; the first that serves a
 * consumer wins (registration order). Registering while an engine opens is
 * not supported (the lock covers the list, not the providers' code).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "engine/plugin_host.h"
#include "engine/provider_pvt.h"
#include "spate/provider.h"
#include "spate/stream.h"

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct spate_plugin_provider reg[SPATE_PROVIDER_MAX];
static uint32_t n_reg;

/* The smallest provider struct of version 1: up to and including arg. */
#define PROVIDER_MIN_SIZE (offsetof(struct spate_plugin_provider, arg) + sizeof(void *))

int spate_engine_register_provider(const struct spate_plugin_provider *p)
{
	int rc = 0;

	if (!p || p->struct_size < PROVIDER_MIN_SIZE || !p->name || !p->name[0] || !p->serves ||
	    !p->open)
		return -EINVAL;
	if (p->version != SPATE_PROVIDER_VERSION)
		return -EPROTO;
	pthread_mutex_lock(&reg_lock);
	for (uint32_t i = 0; i < n_reg; i++)
		if (strcmp(reg[i].name, p->name) == 0) {
			rc = -EEXIST;
			goto out;
		}
	if (n_reg == SPATE_PROVIDER_MAX) {
		rc = -ENOSPC;
		goto out;
	}
	memset(&reg[n_reg], 0, sizeof(reg[n_reg]));
	memcpy(&reg[n_reg], p, p->struct_size < sizeof(*p) ? p->struct_size : sizeof(*p));
	n_reg++;
out:
	pthread_mutex_unlock(&reg_lock);
	return rc;
}

int spate_engine_unregister_provider(const char *name)
{
	int rc = -ENOENT;

	if (!name)
		return -ENOENT;
	pthread_mutex_lock(&reg_lock);
	for (uint32_t i = 0; i < n_reg; i++)
		if (strcmp(reg[i].name, name) == 0) {
			memmove(&reg[i], &reg[i + 1], (n_reg - i - 1) * sizeof(reg[0]));
			n_reg--;
			rc = 0;
			break;
		}
	pthread_mutex_unlock(&reg_lock);
	return rc;
}

/* Whether @p k can only run through a provider. */
static const char *needs_provider(const struct spate_config_consumer *k)
{
	if (k->function)
		return "function";
	if (k->isolation == SPATE_CONFIG_ISOLATION_PROCESS)
		return "isolation: process";
	return NULL;
}

int spate_provider_plugin(const struct spate_config *cfg, const struct spate_config_consumer *k,
			  struct spate_stream *s, const char *spec, struct spate_plugin_lib **out,
			  char *err, size_t errlen)
{
	struct spate_plugin_provider p;
	bool found = false;
	int rc;

	*out = NULL;
	pthread_mutex_lock(&reg_lock);
	for (uint32_t i = 0; i < n_reg && !found; i++)
		if (reg[i].serves(k)) {
			p = reg[i];
			found = true;
		}
	pthread_mutex_unlock(&reg_lock);
	if (!found) {
		const char *why = needs_provider(k);
		if (why) {
			snprintf(err, errlen,
				 "%s: no provider in this program runs it (`spate run` has one; a "
				 "program embedding the engine registers it with "
				 "spate_engine_register_provider())",
				 why);
			return -ENOPROTOOPT;
		}
		return spate_plugin_load(spec ? spec : k->plugin, out, err, errlen);
	}

	struct spate_provider_ctx ctx = {
		.struct_size = sizeof(ctx),
		.tasks = spate_stream_shards(s) * (k->parallelization ? k->parallelization : 1),
		.cfg = cfg,
		.k = k,
		.stream = s,
		.spec = spec,
	};
	struct spate_provided got;
	char why[400] = "";

	memset(&got, 0, sizeof(got));
	got.struct_size = sizeof(got);
	rc = p.open(p.arg, &ctx, &got, why, sizeof(why));
	if (rc < 0) {
		snprintf(err, errlen, "%s: %s", p.name, why[0] ? why : strerror(-rc));
		return rc;
	}
	got.path[sizeof(got.path) - 1] = 0;
	struct spate_plugin_given g = {
		.desc = got.plugin,
		.path = got.path,
		.flags = got.flags,
		.watchdog_ns = got.watchdog_ns,
		.inst = got.inst,
		/* Both halves or none: a half pipe is process() only. */
		.pipe = got.pipe && got.pipe->submit && got.pipe->complete ? got.pipe : NULL,
		.close = p.close,
		.arg = p.arg,
	};
	rc = spate_plugin_lib_provided(&g, out, err, errlen);
	if (rc < 0 && p.close)
		p.close(p.arg, got.inst);
	return rc;
}

/* SPDX-License-Identifier: MIT */
/*
 * main.c - the `spate` command line.
 *
 * Design: a command is a row {name, function, help} in a table; a row whose
 * function is NULL and whose `sub` points to another table is a command
 * group (`spate bench ring`). dispatch() walks one table for argv[0], so new
 * commands (run, put, tail, demo, bench pipeline) are one row and one
 * function each. Command functions take argv with argv[0] = their own name
 * and return 0 or -errno; -EINVAL means a usage error (exit status 2), any
 * other error exits with 1.
 */
#include "spate_config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "spate/slog.h"
#include "spate/spate.h"
#include "bench/bench.h"
#include "engine/cli.h"

struct spate_cmd {
	const char *name;
	int (*fn)(int argc, char **argv);
	const struct spate_cmd *sub; /* a group: its table, NULL-terminated */
	const char *help;
	/* Set for commands that do not answer -h/--help themselves: dispatch()
	 * prints "usage: spate NAME <usage>" and the help line instead. */
	const char *usage;
};

static int cmd_version(int argc, char **argv);
static int cmd_help(int argc, char **argv);

static const struct spate_cmd bench_cmds[] = {
	{ "ring", spate_bench_ring_main, NULL,
	  "ring throughput and latency vs DPDK rte_ring and ck_ring", NULL },
	{ "functions", spate_bench_functions_main, NULL,
	  "a consumer in-process vs isolated (isolation: process) vs a function, --json", NULL },
	{ "pipeline", spate_bench_pipeline_main, NULL,
	  "producer -> stream -> count plugin, end to end (--json)", NULL },
	{ "persist", spate_bench_persist_main, NULL,
	  "raw disk bandwidth vs the shard log per durability policy (--json)", NULL },
	{ "replay", spate_bench_replay_main, NULL,
	  "history reads from a shard log: io_uring read-ahead vs pread, cold and warm (--json)", NULL },
	{ "api", spate_bench_api_main, NULL,
	  "Kinesis API front: signed PutRecords/GetRecords vs kinesalite, same run (--json)", NULL },
#if SPATE_HAVE_NATS
	{ "bridge", spate_bench_bridge_main, NULL,
	  "bus A -> NATS JetStream -> bus B vs plain libnats, 64 B and 1 KiB (--json)", NULL },
#endif
#if SPATE_HAVE_DPDK
	{ "ingress", spate_bench_ingress_main, NULL,
	  "packets/s from a DPDK port into a stream vs a bare rx_burst loop (--json)", NULL },
#endif
	{ NULL, NULL, NULL, NULL, NULL },
};

static const struct spate_cmd top_cmds[] = {
	{ "version", cmd_version, NULL, "print the version", "" },
	{ "help", cmd_help, NULL, "list the commands (help CMD: the commands of a group)", "[CMD]" },
	{ "demo", spate_demo_main, NULL,
	  "a real pipeline for ~10 s: producer -> stream -> count plugin, with numbers", NULL },
	{ "run", spate_cli_run, NULL, "run the bus of a config file (SIGINT/SIGTERM: drain, checkpoint)",
	  NULL },
	{ "put", spate_cli_put, NULL, "append records: put CONFIG STREAM [-k KEY] [DATA...|stdin lines]",
	  NULL },
	{ "tail", spate_cli_tail, NULL, "print records: tail CONFIG STREAM [--from P] [-n N] [-f]", NULL },
	{ "deploy", spate_cli_deploy, NULL, "hot deploy: deploy CONFIG CONSUMER PLUGIN.so",
	  "CONFIG CONSUMER PLUGIN.so\n  the engine running CONFIG loads PLUGIN.so for CONSUMER "
	  "(flush, swap, init) and answers" },
	{ "rm", spate_cli_rm, NULL, "remove the streams of a config: rm CONFIG [STREAM...]",
	  "CONFIG [STREAM...]\n  remove the shared memory of the named streams (all, and the "
	  "bus's counters, without STREAM)" },
	{ "log", spate_cli_log, NULL, "a shard log on disk: log verify|dump|stats|export DIR",
	  "verify|dump|stats|repair DIR [--from SEQ|--at TIME] [-n N]\n"
	  "  spate log export DIR|CONFIG STREAM --pcapng FILE [--from SEQ] [--shard N] [-n N]\n"
	  "  DIR is a shard's log "
	  "directory, e.g. STATE_DIR/log/STREAM/0000" },
	{ "stat", spate_cli_stat, NULL, "a running bus's counters once: stat BUS [--json] [--interval MS]",
	  NULL },
	{ "top", spate_cli_top, NULL, "a running bus live, refreshed every second: top BUS", NULL },
	{ "bench", NULL, bench_cmds, "benchmarks (spate bench ring --help)", NULL },
	{ NULL, NULL, NULL, NULL, NULL },
};

static void list_cmds(FILE *f, const char *prefix, const struct spate_cmd *t)
{
	for (; t->name; t++) {
		char full[128];
		int n = snprintf(full, sizeof(full), "%s%s", prefix, t->name);
		if (n < 0 || (size_t)n >= sizeof(full) - 1)
			continue; /* names are short; never happens */
		if (t->sub) {
			full[n] = ' ';
			full[n + 1] = 0;
			list_cmds(f, full, t->sub);
		} else {
			fprintf(f, "  spate %-18s %s\n", full, t->help);
		}
	}
}

static void usage(FILE *f)
{
	fprintf(f, "usage: spate [--log-format text|json] COMMAND [options]\n\n"
		"  --log-format F  diagnostics as text lines (default) or JSON lines\n"
		"                  (also SPATE_LOG_FORMAT=json)\n\ncommands:\n");
	list_cmds(f, "", top_cmds);
}

/* Options before the command: --log-format F, --log-format=F. Consumes
 * them from *argc / *argv (argv[0] stays). 0 or -EINVAL. */
static int global_opts(int *argc, char ***argv)
{
	while (*argc > 1 && !strncmp((*argv)[1], "--log-format", 12)) {
		const char *v = (*argv)[1] + 12;
		int used = 1;
		if (*v == '=')
			v++;
		else if (!*v && *argc > 2) {
			v = (*argv)[2];
			used = 2;
		} else if (*v || *argc <= 2) {
			v = NULL;
		}
		enum spate_slog_format f;
		if (!v || spate_slog_parse_format(v, &f) < 0) {
			fprintf(stderr, "spate: --log-format takes text or json\n");
			return -EINVAL;
		}
		spate_slog_set_format(f);
		(*argv)[used] = (*argv)[0];
		*argv += used;
		*argc -= used;
	}
	return 0;
}

static const struct spate_cmd *find_cmd(const struct spate_cmd *t, const char *name)
{
	for (; t->name; t++)
		if (!strcmp(t->name, name))
			return t;
	return NULL;
}

static int is_help(const char *a)
{
	return !strcmp(a, "-h") || !strcmp(a, "--help");
}

/* Whether argv[1..] asks for help (-h or --help before any "--"); for a
 * group, only its first word counts (the subcommand handles the rest). */
static int wants_help(const struct spate_cmd *c, int argc, char **argv)
{
	if (c->sub)
		return argc > 1 && is_help(argv[1]);
	for (int i = 1; i < argc && strcmp(argv[i], "--"); i++)
		if (is_help(argv[i]))
			return 1;
	return 0;
}

/* Run argv[0] from table @p t; @p path names the group for messages. */
static int dispatch(const struct spate_cmd *t, const char *path, int argc, char **argv)
{
	if (argc < 1) {
		char p[128];
		snprintf(p, sizeof(p), "%s%s", path, *path ? " " : "");
		fprintf(stderr, "spate%s%s: a command is needed:\n", *path ? " " : "", path);
		list_cmds(stderr, p, t);
		return -EINVAL;
	}
	const struct spate_cmd *c = find_cmd(t, argv[0]);
	if (!c) {
		fprintf(stderr, "spate%s%s: unknown command '%s'\n", *path ? " " : "", path,
			argv[0]);
		list_cmds(stderr, "", t);
		return -EINVAL;
	}
	if (wants_help(c, argc, argv)) {
		if (c->sub) {
			printf("spate%s%s %s commands:\n", *path ? " " : "", path, c->name);
			char p[64];
			snprintf(p, sizeof(p), "%s ", c->name);
			list_cmds(stdout, p, c->sub);
			return 0;
		}
		if (c->usage) {
			printf("usage: spate%s%s %s %s\n  %s\n", *path ? " " : "", path, c->name, c->usage,
			       c->help);
			return 0;
		}
	}
	if (c->sub) {
		char p[64];
		snprintf(p, sizeof(p), "%s%s%s", path, *path ? " " : "", c->name);
		return dispatch(c->sub, p, argc - 1, argv + 1);
	}
	return c->fn(argc, argv);
}

static int cmd_version(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	printf("spate %s (library %s)\n", SPATE_VERSION_STRING, spate_version());
	return 0;
}

static int cmd_help(int argc, char **argv)
{
	(void)argv;
	if (argc > 1) {
		const struct spate_cmd *c = find_cmd(top_cmds, argv[1]);
		if (c && c->sub) {
			printf("spate %s commands:\n", c->name);
			char p[64];
			snprintf(p, sizeof(p), "%s ", c->name);
			list_cmds(stdout, p, c->sub);
			return 0;
		}
	}
	usage(stdout);
	return 0;
}

int main(int argc, char **argv)
{
	if (global_opts(&argc, &argv) < 0)
		return 2;
	if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	if (!strcmp(argv[1], "--version"))
		return cmd_version(0, NULL) ? 1 : 0;
	spate_cli_default_plugin_path();
	int rc = dispatch(top_cmds, "", argc - 1, argv + 1);
	if (rc == -EINVAL)
		return 2;
	return rc < 0 ? 1 : 0;
}

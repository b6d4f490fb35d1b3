/* SPDX-License-Identifier: MIT */
/* Internal: the engine commands of the `spate` CLI (engine/cli.c). */
#ifndef SPATE_ENGINE_CLI_H
#define SPATE_ENGINE_CLI_H

int spate_cli_run(int argc, char **argv);
int spate_cli_put(int argc, char **argv);
int spate_cli_tail(int argc, char **argv);
int spate_cli_deploy(int argc, char **argv);
int spate_cli_rm(int argc, char **argv);
/** `spate log verify|dump|stats DIR` (engine/cli_log.c). */
int spate_cli_log(int argc, char **argv);
/** `spate stat BUS [--json]` and `spate top BUS` (engine/cli_stat.c). */
int spate_cli_stat(int argc, char **argv);
int spate_cli_top(int argc, char **argv);
/** Point SPATE_PLUGIN_PATH at <exe dir>/../plugins when it is unset and that
 *  directory holds the bundled plugins (running from a build tree). */
void spate_cli_default_plugin_path(void);

#endif

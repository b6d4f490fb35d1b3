/* SPDX-License-Identifier: MIT */
/* version.c - the library's version string, for checks against the headers. */
#include "spate_config.h"
#include "spate/spate.h"

const char *spate_version(void)
{
	return SPATE_VERSION_STRING;
}

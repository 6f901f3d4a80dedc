// SPDX-License-Identifier: GPL-2.0
/*
 * vgpu's string module parameter: the kernel crate's `module!` has integer and bool
 * parameters only. Read-only (0444), so it cannot change after load.
 */
#include <linux/moduleparam.h>

#include "bindings.h"

static char *links;
module_param(links, charp, 0444);
MODULE_PARM_DESC(links,
		 "Interconnect links between the GPUs: \"all\" (default), \"none\", or pairs of GPU indices such as \"0-1,2-3\"; GPUs that reach every member of a group share its device-private owner");

/* The string given at load, or NULL if none was. */
const char *vgpu_param_links(void)
{
	return links;
}

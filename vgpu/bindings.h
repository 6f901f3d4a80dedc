/* SPDX-License-Identifier: GPL-2.0 */
/* vgpu's own uAPI, for the crate's bindgen step. */
#include <drm/drm.h>
#include "../uapi/vgpu_drm.h"
/* The HMM selftest interface vgpu also speaks (see dmirror.rs). */
#include <test_hmm_uapi.h>
/* vgpu/params.c */
const char *vgpu_param_links(void);

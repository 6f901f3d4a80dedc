/* SPDX-License-Identifier: GPL-2.0 */
/* pagemap_util's C glue (helpers.c), for the crate's bindgen step. */
#ifndef SVM_PAGEMAP_UTIL_BINDINGS_H
#define SVM_PAGEMAP_UTIL_BINDINGS_H

struct file;

/* A new pagemap file holding the reference `pagemap`, or an ERR_PTR. */
struct file *svm_pagemap_file_create(void *pagemap);
/* The reference a pagemap file holds, or NULL if `file` is not a pagemap file. */
void *svm_pagemap_file_data(struct file *file);
/* Closes `fd` of the current task. */
int svm_close_fd(unsigned int fd);
/* Defined in Rust (fd.rs): gives back the reference of a pagemap file closed for good. */
void svm_pagemap_file_put(void *pagemap);

/* The idle reaper and shrinker (helpers.c). */
int svm_idle_init(void);
void svm_idle_fini(void);
void svm_idle_arm(unsigned int ms);
/* Defined in Rust (cache.rs). */
void svm_pagemap_idle_reap(void);
unsigned long svm_pagemap_idle_count(void);
unsigned long svm_pagemap_idle_scan(unsigned long nr);

#endif

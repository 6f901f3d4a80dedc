// SPDX-License-Identifier: GPL-2.0
/*
 * The file operations of a pagemap file descriptor (fd.rs): an anonymous-inode file whose
 * private data is one counted reference on a pagemap, given back on the last close. The
 * owner is this module, so it stays loaded while such a file is open.
 */
#include <linux/anon_inodes.h>
#include <linux/err.h>
#include <linux/fcntl.h>
#include <linux/fdtable.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/module.h>

#include "bindings.h"

static int svm_pagemap_file_release(struct inode *inode, struct file *file)
{
	svm_pagemap_file_put(file->private_data);
	return 0;
}

static const struct file_operations svm_pagemap_fops = {
	.owner = THIS_MODULE,
	.release = svm_pagemap_file_release,
};

struct file *svm_pagemap_file_create(void *pagemap)
{
	return anon_inode_getfile("[drm_pagemap]", &svm_pagemap_fops, pagemap, O_RDWR);
}

void *svm_pagemap_file_data(struct file *file)
{
	return file->f_op == &svm_pagemap_fops ? file->private_data : NULL;
}

/* Closes `fd` of the current task (KUnit tests of fd.rs). */
int svm_close_fd(unsigned int fd)
{
	return close_fd(fd);
}

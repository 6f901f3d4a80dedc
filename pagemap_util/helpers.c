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
#include <linux/shrinker.h>
#include <linux/spinlock.h>
#include <linux/workqueue.h>

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

/*
 * The idle reaper and the shrinker of cached pagemaps (cache.rs): a delayed work that
 * destroys pagemaps idle for longer than the delay, and a shrinker that destroys idle ones
 * early under memory pressure. Both call into Rust; both are torn down by svm_idle_fini()
 * before the module goes.
 */
static void svm_idle_reap_fn(struct work_struct *work)
{
	svm_pagemap_idle_reap();
}

static DECLARE_DELAYED_WORK(svm_idle_reaper, svm_idle_reap_fn);
static struct shrinker *svm_idle_shrinker;

static unsigned long svm_idle_count(struct shrinker *s, struct shrink_control *sc)
{
	unsigned long n = svm_pagemap_idle_count();

	return n ? n : SHRINK_EMPTY;
}

static unsigned long svm_idle_scan(struct shrinker *s, struct shrink_control *sc)
{
	/* Returns SHRINK_STOP itself when its list is busy. */
	return svm_pagemap_idle_scan(sc->nr_to_scan);
}

int svm_idle_init(void)
{
	svm_idle_shrinker = shrinker_alloc(0, "pagemap_util-idle");
	if (!svm_idle_shrinker)
		return -ENOMEM;
	svm_idle_shrinker->count_objects = svm_idle_count;
	svm_idle_shrinker->scan_objects = svm_idle_scan;
	svm_idle_shrinker->seeks = DEFAULT_SEEKS;
	shrinker_register(svm_idle_shrinker);
	return 0;
}

void svm_idle_fini(void)
{
	shrinker_free(svm_idle_shrinker);
	cancel_delayed_work_sync(&svm_idle_reaper);
}

static DEFINE_SPINLOCK(svm_idle_arm_lock);

/* Runs the reaper in `ms` milliseconds, or earlier if it is already due (any context). */
void svm_idle_arm(unsigned int ms)
{
	unsigned long delay = msecs_to_jiffies(ms), flags;

	/* Brings a reaper armed for later forward; never postpones one armed for earlier. */
	spin_lock_irqsave(&svm_idle_arm_lock, flags);
	if (!delayed_work_pending(&svm_idle_reaper) ||
	    time_before(jiffies + delay, READ_ONCE(svm_idle_reaper.timer.expires)))
		mod_delayed_work(system_unbound_wq, &svm_idle_reaper, delay);
	spin_unlock_irqrestore(&svm_idle_arm_lock, flags);
}

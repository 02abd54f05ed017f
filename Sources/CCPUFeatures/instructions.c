// Instructions retired, from the kernel's performance counters (perf_event_open; Linux only:
// elsewhere the counter is unavailable and the metric absent).
#define _GNU_SOURCE
#include "cpu_features.h"
#if defined(__linux__)
#include <linux/perf_event.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <errno.h>
#include "cpu_features.h"

int prunecheck_instructions_open(void) {
    struct perf_event_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.size = sizeof attr;
    attr.type = PERF_TYPE_HARDWARE;
    attr.config = PERF_COUNT_HW_INSTRUCTIONS;
    attr.exclude_kernel = 1;
    attr.exclude_hv = 1;
    attr.disabled = 1;
    long fd = syscall(SYS_perf_event_open, &attr, 0 /* this thread */, -1 /* any CPU */, -1, 0);
    if (fd < 0) return -errno;
    ioctl((int)fd, PERF_EVENT_IOC_RESET, 0);
    ioctl((int)fd, PERF_EVENT_IOC_ENABLE, 0);
    return (int)fd;
}

long long prunecheck_instructions_read(int fd) {
    long long value = 0;
    if (read(fd, &value, sizeof value) != (ssize_t)sizeof value) return -1;
    return value;
}

void prunecheck_instructions_close(int fd) { close(fd); }
#else
#include <errno.h>
int prunecheck_instructions_open(void) { return -ENOSYS; }
long long prunecheck_instructions_read(int fd) { (void)fd; return -1; }
void prunecheck_instructions_close(int fd) { (void)fd; }
#endif

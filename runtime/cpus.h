/* How many CPUs this process may actually run on. */
#ifndef PARLUA_CPUS_H
#define PARLUA_CPUS_H

/*
** PARLUA_WORKERS when it is set to a positive integer; otherwise the CPUs
** in this process's affinity mask, limited by a cgroup CPU quota. At least 1.
*/
int cpus_available(void);

/* The CPUs in the affinity mask, limited by a cgroup CPU quota, whatever PARLUA_WORKERS says. */
int cpus_usable(void);

#endif

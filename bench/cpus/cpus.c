/*
 * `make bench-memory` only (issue #13): an LD_PRELOAD library that makes sysconf() report
 * BENCH_CPUS processors to the process it is loaded into, to see how Envoy's memory grows with
 * the machine it runs on. V8's default platform sizes its worker pool (the threads that
 * compile a Wasm module) from sysconf(_SC_NPROCESSORS_ONLN): one thread fewer than the
 * processors, at most 16. On a 2-core bench machine that is one compile thread; a Kubernetes
 * node with 64 cores gives every Envoy 16, whatever the pod's CPU limit (sysconf counts the
 * node's processors, not the cgroup's). Nothing else changes: the threads still share the
 * cores the process is pinned to.
 *
 * Built by mk/bench.mk into target/bench/; never part of the module or the CLI.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <unistd.h>

long sysconf(int name) {
    static long (*real)(int);
    if (!real) {
        real = (long (*)(int))dlsym(RTLD_NEXT, "sysconf");
    }
    if (name == _SC_NPROCESSORS_ONLN || name == _SC_NPROCESSORS_CONF) {
        const char *v = getenv("BENCH_CPUS");
        long n = v ? atol(v) : 0;
        if (n > 0) {
            return n;
        }
    }
    return real ? real(name) : -1;
}

#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/mman.h>
/* LD_PRELOAD for scripts/profile-hot-code.sh: takes execute permission from
 * the main program's code and gives each page back on its first execution (a
 * SIGSEGV caught here), so /proc/PID/maps afterwards lists the pages that ran
 * (r-xp) and those that never did (---p). With the profile link script every
 * function starts a page of its own, so pages name functions.
 *
 * Rust's runtime installs its stack-overflow SIGSEGV handler only when none
 * is set, so this one stays. Anything else that faults gets the default
 * action back and faults again, as it would have without us. */
static unsigned long lo, hi;
static void on_segv(int sig, siginfo_t *si, void *uc) {
  unsigned long a = (unsigned long)si->si_addr;
  if (a >= lo && a < hi) {
    mprotect((void *)(a & ~4095UL), 4096, PROT_READ | PROT_EXEC);
    return;
  }
  signal(SIGSEGV, SIG_DFL);
}
__attribute__((constructor)) static void trace_text(void) {
  char exe[4096]; ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) return; exe[n] = 0;
  FILE *f = fopen("/proc/self/maps", "r"); char line[8192];
  while (fgets(line, sizeof line, f)) {
    unsigned long a, b; char perm[8];
    if (sscanf(line, "%lx-%lx %7s", &a, &b, perm) != 3) continue;
    if (strstr(line, exe) && strchr(perm, 'x')) { lo = a; hi = b; }
  }
  fclose(f);
  if (!lo) return;
  struct sigaction sa; memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_segv; sa.sa_flags = SA_SIGINFO | SA_NODEFER;
  sigaction(SIGSEGV, &sa, 0);
  mprotect((void *)lo, hi - lo, PROT_NONE);
}

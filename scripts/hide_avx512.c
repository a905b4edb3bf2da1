/* Hide AVX-512, AVX-VNNI and AMX from a process: an AVX2 machine made of an AVX-512 one, so
 * that neo and onnxruntime can be compared on their AVX2 code side by side (scripts/hide-avx512).
 *
 * Preloaded (LD_PRELOAD), it turns on CPUID faulting (arch_prctl ARCH_SET_CPUID, Linux on CPUs
 * or hypervisors with "cpuid_fault" in /proc/cpuinfo): every CPUID then raises SIGSEGV, which is
 * answered here with the real result minus the feature bits below. Everything that picks kernels
 * by CPUID (onnxruntime's MLAS, oneDNN, OpenBLAS, LLVM's host detection) then picks its AVX2 ones.
 * The setting survives fork and clone, and execve resets it, where the preload re-arms it. */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#define BIT(n) (1u << (n))

static void cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4]) {
    __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(sub));
}

static void on_segv(int sig, siginfo_t *info, void *context) {
    (void)sig; (void)info;
    greg_t *reg = ((ucontext_t *)context)->uc_mcontext.gregs;
    const unsigned char *ip = (const unsigned char *)reg[REG_RIP];
    if (ip[0] != 0x0f || ip[1] != 0xa2) { /* a real fault: crash as without us */
        signal(SIGSEGV, SIG_DFL);
        return;
    }
    uint32_t r[4], leaf = (uint32_t)reg[REG_RAX], sub = (uint32_t)reg[REG_RCX];
    syscall(SYS_arch_prctl, ARCH_SET_CPUID, 1);
    cpuid(leaf, sub, r);
    syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0);
    if (leaf == 7 && sub == 0) {
        /* EBX: AVX512 F, DQ, IFMA, PF, ER, CD, BW, VL */
        r[1] &= ~(BIT(16) | BIT(17) | BIT(21) | BIT(26) | BIT(27) | BIT(28) | BIT(30) | BIT(31));
        /* ECX: AVX512 VBMI, VBMI2, VNNI, BITALG, VPOPCNTDQ */
        r[2] &= ~(BIT(1) | BIT(6) | BIT(11) | BIT(12) | BIT(14));
        /* EDX: AVX512 4VNNIW, 4FMAPS, VP2INTERSECT, AMX-BF16, AVX512-FP16, AMX-TILE, AMX-INT8 */
        r[3] &= ~(BIT(2) | BIT(3) | BIT(8) | BIT(22) | BIT(23) | BIT(24) | BIT(25));
    } else if (leaf == 7 && sub == 1) {
        /* EAX: AVX-VNNI, AVX512-BF16, AMX-FP16, AVX-IFMA (none on an AVX2-only CPU) */
        r[0] &= ~(BIT(4) | BIT(5) | BIT(21) | BIT(23));
    }
    reg[REG_RAX] = r[0]; reg[REG_RBX] = r[1]; reg[REG_RCX] = r[2]; reg[REG_RDX] = r[3];
    reg[REG_RIP] += 2;
}

__attribute__((constructor)) static void hide_avx512(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigaction(SIGSEGV, &sa, 0);
    syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0);
}

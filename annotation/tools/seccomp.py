"""The sandbox's seccomp filter: a classic-BPF program assembled here, for bubblewrap's
`--seccomp FD`.

No library is needed: the filter is a short list of "this system call number: refuse" checks,
so it is written out by hand (libseccomp's Python bindings are a Debian package for the
system Python, not installable into our venv; the PyPI wrappers need the C library's headers
or a compiler). What it refuses, with EPERM, are calls that Python, Node.js and C/C++ programs
never need and that widen the kernel's attack surface: ptrace and process_vm_*, mount and the
new mount API, pivot_root, chroot, keyctl/add_key/request_key, bpf, perf_event_open,
userfaultfd, unshare and setns, clone with any CLONE_NEW* flag, kexec, module loading,
swapon/off, reboot, acct, quotactl, the handle-based open calls, iopl/ioperm and syslog.
clone3 answers ENOSYS, since its flags sit in memory a filter cannot read; the C library then
falls back to clone, whose flags it can. A call from another ABI (32-bit or x32 on x86_64) is
refused whole, so no second syscall table slips past the numbers checked.

Supported machines: x86_64 and aarch64. Elsewhere `filter_program()` answers None and the
sandbox runs without this layer (its namespaces, dropped capabilities and limits still apply).
"""

from __future__ import annotations

import errno
import platform
import struct
from functools import cache

# struct sock_filter { __u16 code; __u8 jt; __u8 jf; __u32 k; }
_LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_JGE_K = 0x35  # BPF_JMP | BPF_JGE | BPF_K
_JSET_K = 0x45  # BPF_JMP | BPF_JSET | BPF_K
_RET_K = 0x06  # BPF_RET | BPF_K

_RET_ALLOW = 0x7FFF0000
_RET_ERRNO = 0x00050000

# struct seccomp_data: int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6];
_OFFSET_NR = 0
_OFFSET_ARCH = 4
_OFFSET_ARG0_LOW = 16  # little-endian: the low half of args[0] comes first

_X32_SYSCALL_BIT = 0x40000000
# CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID
# | CLONE_NEWNET (CLONE_NEWTIME shares its bit with clone's exit signal and needs clone3).
_CLONE_NEW_FLAGS = 0x7E020000

BLOCKED = (
    "ptrace", "process_vm_readv", "process_vm_writev",
    "mount", "umount2", "pivot_root", "chroot", "open_tree", "move_mount", "fsopen",
    "fsconfig", "fsmount", "fspick", "mount_setattr",
    "keyctl", "add_key", "request_key",
    "bpf", "perf_event_open", "userfaultfd",
    "unshare", "setns",
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
    "swapon", "swapoff", "reboot", "acct", "quotactl",
    "name_to_handle_at", "open_by_handle_at", "syslog",
)  # fmt: skip

_MACHINES: dict[str, tuple[int, dict[str, int]]] = {
    "x86_64": (
        0xC000003E,  # AUDIT_ARCH_X86_64
        {
            "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311,
            "mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161,
            "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431,
            "fsmount": 432, "fspick": 433, "mount_setattr": 442,
            "keyctl": 250, "add_key": 248, "request_key": 249,
            "bpf": 321, "perf_event_open": 298, "userfaultfd": 323,
            "unshare": 272, "setns": 308,
            "kexec_load": 246, "kexec_file_load": 320, "init_module": 175,
            "finit_module": 313, "delete_module": 176,
            "swapon": 167, "swapoff": 168, "reboot": 169, "acct": 163, "quotactl": 179,
            "name_to_handle_at": 303, "open_by_handle_at": 304, "syslog": 103,
            "iopl": 172, "ioperm": 173,
            "clone": 56, "clone3": 435,
        },
    ),
    "aarch64": (
        0xC00000B7,  # AUDIT_ARCH_AARCH64
        {
            "ptrace": 117, "process_vm_readv": 270, "process_vm_writev": 271,
            "mount": 40, "umount2": 39, "pivot_root": 41, "chroot": 51,
            "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431,
            "fsmount": 432, "fspick": 433, "mount_setattr": 442,
            "keyctl": 219, "add_key": 217, "request_key": 218,
            "bpf": 280, "perf_event_open": 241, "userfaultfd": 282,
            "unshare": 97, "setns": 268,
            "kexec_load": 104, "kexec_file_load": 294, "init_module": 105,
            "finit_module": 273, "delete_module": 106,
            "swapon": 224, "swapoff": 225, "reboot": 142, "acct": 89, "quotactl": 60,
            "name_to_handle_at": 264, "open_by_handle_at": 265, "syslog": 116,
            "clone": 220, "clone3": 435,
        },
    ),
}  # fmt: skip


def syscall_numbers(machine: str | None = None) -> dict[str, int] | None:
    entry = _MACHINES.get(machine or platform.machine())
    return dict(entry[1]) if entry else None


def _assemble(arch: int, numbers: dict[str, int], *, x32_check: bool) -> bytes:
    """Labels resolved to forward jumps; every jump lands on one of the three returns or the
    clone check at the end."""
    blocked = [numbers[name] for name in (*BLOCKED, "iopl", "ioperm") if name in numbers]
    # (code, jump-if-true target, jump-if-false target, k); targets are labels or None (next).
    program: list[tuple[int, str | None, str | None, int]] = [
        (_LD_W_ABS, None, None, _OFFSET_ARCH),
        (_JEQ_K, None, "deny", arch),
        (_LD_W_ABS, None, None, _OFFSET_NR),
    ]
    if x32_check:
        program.append((_JGE_K, "deny", None, _X32_SYSCALL_BIT))
    program += [(_JEQ_K, "deny", None, number) for number in blocked]
    program += [
        (_JEQ_K, "nosys", None, numbers["clone3"]),
        (_JEQ_K, None, "allow", numbers["clone"]),
        (_LD_W_ABS, None, None, _OFFSET_ARG0_LOW),
        (_JSET_K, "deny", "allow", _CLONE_NEW_FLAGS),
    ]
    labels = {"allow": len(program), "deny": len(program) + 1, "nosys": len(program) + 2}
    program += [
        (_RET_K, None, None, _RET_ALLOW),
        (_RET_K, None, None, _RET_ERRNO | errno.EPERM),
        (_RET_K, None, None, _RET_ERRNO | errno.ENOSYS),
    ]
    out = bytearray()
    for index, (code, true_label, false_label, k) in enumerate(program):
        jt = labels[true_label] - index - 1 if true_label else 0
        jf = labels[false_label] - index - 1 if false_label else 0
        if not (0 <= jt <= 255 and 0 <= jf <= 255):
            raise ValueError("seccomp filter too long for 8-bit jumps")
        out += struct.pack("<HBBI", code, jt, jf, k)
    return bytes(out)


@cache
def filter_program(machine: str | None = None) -> bytes | None:
    """The compiled filter for this machine (None where unsupported)."""
    machine = machine or platform.machine()
    entry = _MACHINES.get(machine)
    if entry is None:
        return None
    arch, numbers = entry
    return _assemble(arch, numbers, x32_check=machine == "x86_64")

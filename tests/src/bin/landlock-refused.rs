//! A stand-in for `pack-confine` whose kernel "has Landlock but will not take a ruleset": it
//! installs a seccomp filter that makes `landlock_create_ruleset` fail with EOPNOTSUPP (what
//! a kernel booted with Landlock compiled in but disabled answers), then executes the real
//! `pack-confine` beside it with the same arguments. The daemon's own probe, outside the
//! filter, still sees Landlock; every sandbox the helper makes gets a ruleset that is not
//! enforced. Used by the fail-closed tests (tests/fail_closed.rs).

use std::os::unix::process::CommandExt;

fn main() {
    let nr = libc::SYS_landlock_create_ruleset as u32;
    #[cfg(target_arch = "x86_64")]
    const ARCH: u32 = 0xc000_003e; // AUDIT_ARCH_X86_64
    #[cfg(target_arch = "aarch64")]
    const ARCH: u32 = 0xc000_00b7; // AUDIT_ARCH_AARCH64
    let stmt = |code: u16, k: u32| libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    };
    let jump = |k: u32, jt: u8, jf: u8| libc::sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt,
        jf,
        k,
    };
    let load = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    let ret = (libc::BPF_RET | libc::BPF_K) as u16;
    let filter = [
        stmt(load, 4), // seccomp_data.arch
        jump(ARCH, 0, 3),
        stmt(load, 0), // seccomp_data.nr
        jump(nr, 0, 1),
        stmt(ret, libc::SECCOMP_RET_ERRNO | libc::EOPNOTSUPP as u32),
        stmt(ret, libc::SECCOMP_RET_ALLOW),
    ];
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut _,
    };
    // SAFETY: prctl with a filter program that lives until the call returns (the kernel
    // copies it). Root holds CAP_SYS_ADMIN, so no_new_privs is not needed (and not set: the
    // real helper must behave as it would without this wrapper).
    let rc = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &prog as *const libc::sock_fprog,
        )
    };
    if rc != 0 {
        eprintln!(
            "landlock-refused: cannot install the filter: {}",
            std::io::Error::last_os_error()
        );
        std::process::exit(125);
    }
    let exe = std::env::current_exe().expect("own path");
    let real = exe.with_file_name("pack-confine");
    let err = std::process::Command::new(&real)
        .args(std::env::args_os().skip(1))
        .exec();
    eprintln!("landlock-refused: cannot run {}: {err}", real.display());
    std::process::exit(125);
}

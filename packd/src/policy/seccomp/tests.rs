//! The policy as data, and as enforced by the kernel: each blocked syscall is tried in a forked
//! child that loaded the compiled profile, and must fail with EPERM (clone3: ENOSYS). No root
//! is needed: seccomp filters only need no_new_privs.

use std::collections::BTreeSet;

use super::*;

const MUST_BE_ABSENT: &[&str] = &[
    "mount",
    "umount2",
    "open_tree",
    "move_mount",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "pivot_root",
    "chroot",
    "setns",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "pidfd_getfd",
    "kcmp",
    "keyctl",
    "add_key",
    "request_key",
    "init_module",
    "finit_module",
    "delete_module",
    "kexec_load",
    "kexec_file_load",
    "reboot",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "swapon",
    "swapoff",
    "acct",
    "open_by_handle_at",
    "name_to_handle_at",
    "quotactl",
    "syslog",
    "iopl",
    "ioperm",
    "modify_ldt",
    "bind",
    "listen",
    "accept",
    "accept4",
    "clone3",
];

fn names(t: &Template) -> BTreeSet<String> {
    t.allow
        .iter()
        .filter_map(|r| r["syscall"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn both_architectures_compile_strict_and_devmode() {
    for arch in [Arch::X86_64, Arch::Aarch64] {
        for devmode in [false, true] {
            let p = compile(arch, &[], devmode).unwrap();
            assert_eq!(p.filters.len(), 1, "{arch:?}");
            assert!(
                p.filters[0].len() < confine::seccomp::bpf::MAX_INSNS,
                "{arch:?}"
            );
        }
    }
}

#[test]
fn every_rule_says_why() {
    for arch in [Arch::X86_64, Arch::Aarch64] {
        let t = template(arch).unwrap();
        assert!(t.comment.len() > 100);
        for rule in t.allow.iter().chain(&t.enosys) {
            let why = rule["comment"].as_str().unwrap_or("");
            assert!(why.len() > 3, "{arch:?}: {rule} has no comment");
        }
    }
}

#[test]
fn dangerous_syscalls_are_not_allowed_on_either_architecture() {
    for arch in [Arch::X86_64, Arch::Aarch64] {
        let allowed = names(&template(arch).unwrap());
        for s in MUST_BE_ABSENT {
            assert!(!allowed.contains(*s), "{arch:?} allows {s}");
        }
    }
}

#[test]
fn aarch64_lists_nothing_x86_64_lacks() {
    let x86 = names(&template(Arch::X86_64).unwrap());
    let arm = names(&template(Arch::Aarch64).unwrap());
    let extra: Vec<_> = arm.difference(&x86).collect();
    assert!(extra.is_empty(), "only on aarch64: {extra:?}");
    // And what x86_64 has beyond aarch64 is the legacy calls aarch64 never had.
    for legacy in [
        "open", "stat", "fork", "pipe", "poll", "select", "mkdir", "unlink",
    ] {
        assert!(x86.contains(legacy) && !arm.contains(legacy), "{legacy}");
    }
}

#[cfg(target_arch = "x86_64")]
mod enforced {
    use super::*;

    /// Runs `f` in a forked child after loading the host's strict profile; returns what the
    /// child reports (`f`'s value), or `-(signal)` if it was killed.
    fn in_filtered_child(f: fn() -> i64) -> i64 {
        let profile = compile(Arch::X86_64, &[], false).unwrap();
        let mut fds = [0; 2];
        // SAFETY: plain pipe creation.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: the child only loads the filter (prepared above), runs `f` (a raw syscall)
        // and writes its result before _exit.
        match unsafe { libc::fork() } {
            0 => {
                let code = match profile.load() {
                    Ok(()) => f(),
                    Err(_) => -9999,
                };
                let bytes = code.to_le_bytes();
                // SAFETY: writing 8 bytes from a local buffer to our pipe.
                unsafe {
                    libc::write(fds[1], bytes.as_ptr().cast(), 8);
                    libc::_exit(0)
                }
            }
            pid => {
                // SAFETY: closing our copy of the write end, then reading 8 bytes.
                unsafe { libc::close(fds[1]) };
                let mut buf = [0u8; 8];
                let n = unsafe { libc::read(fds[0], buf.as_mut_ptr().cast(), 8) };
                let mut status = 0;
                unsafe {
                    libc::waitpid(pid, &mut status, 0);
                    libc::close(fds[0]);
                }
                if n == 8 {
                    i64::from_le_bytes(buf)
                } else {
                    assert!(libc::WIFSIGNALED(status), "child died without a report");
                    -i64::from(libc::WTERMSIG(status))
                }
            }
        }
    }

    /// The errno of a failed raw syscall, or the return value when it succeeded.
    fn errno_of(ret: libc::c_long) -> i64 {
        if ret == -1 {
            i64::from(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
        } else {
            1000 + ret
        }
    }

    macro_rules! blocked {
        ($name:ident, $errno:expr, $call:expr) => {
            #[test]
            fn $name() {
                fn attempt() -> i64 {
                    // SAFETY: raw syscalls with harmless arguments; the filter answers first.
                    let ret = unsafe { $call };
                    if ret == 0 {
                        // A forking call that got through: leave at once.
                        unsafe { libc::_exit(0) };
                    }
                    errno_of(ret)
                }
                assert_eq!(
                    in_filtered_child(attempt),
                    i64::from($errno),
                    stringify!($name)
                );
            }
        };
    }

    use libc::{EPERM, SYS_ioctl, syscall};
    const NULL: usize = 0;

    blocked!(
        mount,
        EPERM,
        syscall(libc::SYS_mount, NULL, NULL, NULL, 0, NULL)
    );
    blocked!(umount2, EPERM, syscall(libc::SYS_umount2, c"/".as_ptr(), 0));
    blocked!(open_tree, EPERM, syscall(libc::SYS_open_tree, -1, NULL, 0));
    blocked!(
        move_mount,
        EPERM,
        syscall(libc::SYS_move_mount, -1, NULL, -1, NULL, 0)
    );
    blocked!(
        fsopen,
        EPERM,
        syscall(libc::SYS_fsopen, c"tmpfs".as_ptr(), 0)
    );
    blocked!(
        fsconfig,
        EPERM,
        syscall(libc::SYS_fsconfig, -1, 0, NULL, NULL, 0)
    );
    blocked!(fsmount, EPERM, syscall(libc::SYS_fsmount, -1, 0, 0));
    blocked!(fspick, EPERM, syscall(libc::SYS_fspick, -1, NULL, 0));
    blocked!(
        mount_setattr,
        EPERM,
        syscall(libc::SYS_mount_setattr, -1, NULL, 0, NULL, 0)
    );
    blocked!(
        pivot_root,
        EPERM,
        syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr())
    );
    blocked!(chroot, EPERM, syscall(libc::SYS_chroot, c"/".as_ptr()));
    blocked!(setns, EPERM, syscall(libc::SYS_setns, -1, 0));
    blocked!(
        unshare_user,
        EPERM,
        syscall(libc::SYS_unshare, libc::CLONE_NEWUSER)
    );
    blocked!(
        unshare_mount,
        EPERM,
        syscall(libc::SYS_unshare, libc::CLONE_NEWNS)
    );
    blocked!(
        clone_new_pid,
        EPERM,
        syscall(
            libc::SYS_clone,
            libc::CLONE_NEWPID | libc::SIGCHLD,
            NULL,
            NULL,
            NULL,
            NULL
        )
    );
    blocked!(
        clone3_is_enosys,
        libc::ENOSYS,
        syscall(libc::SYS_clone3, NULL, 0)
    );
    blocked!(keyctl, EPERM, syscall(libc::SYS_keyctl, 0, 0, 0, 0, 0));
    blocked!(
        add_key,
        EPERM,
        syscall(libc::SYS_add_key, NULL, NULL, NULL, 0, 0)
    );
    blocked!(
        request_key,
        EPERM,
        syscall(libc::SYS_request_key, NULL, NULL, NULL, 0)
    );
    blocked!(bpf, EPERM, syscall(libc::SYS_bpf, 0, NULL, 0));
    blocked!(
        perf_event_open,
        EPERM,
        syscall(libc::SYS_perf_event_open, NULL, 0, -1, -1, 0)
    );
    blocked!(userfaultfd, EPERM, syscall(libc::SYS_userfaultfd, 0));
    blocked!(
        io_uring_setup,
        EPERM,
        syscall(libc::SYS_io_uring_setup, 1, NULL)
    );
    blocked!(
        ptrace,
        EPERM,
        syscall(libc::SYS_ptrace, libc::PTRACE_TRACEME, 0, 0, 0)
    );
    blocked!(
        process_vm_readv,
        EPERM,
        syscall(libc::SYS_process_vm_readv, 1, NULL, 0, NULL, 0, 0)
    );
    blocked!(
        process_vm_writev,
        EPERM,
        syscall(libc::SYS_process_vm_writev, 1, NULL, 0, NULL, 0, 0)
    );
    blocked!(
        init_module,
        EPERM,
        syscall(libc::SYS_init_module, NULL, 0, NULL)
    );
    blocked!(
        finit_module,
        EPERM,
        syscall(libc::SYS_finit_module, -1, NULL, 0)
    );
    blocked!(
        delete_module,
        EPERM,
        syscall(libc::SYS_delete_module, c"x".as_ptr(), 0)
    );
    blocked!(
        kexec_load,
        EPERM,
        syscall(libc::SYS_kexec_load, 0, 0, NULL, 0)
    );
    blocked!(
        kexec_file_load,
        EPERM,
        syscall(libc::SYS_kexec_file_load, -1, -1, 0, NULL, 0)
    );
    blocked!(reboot, EPERM, syscall(libc::SYS_reboot, 0, 0, 0, NULL));
    blocked!(
        settimeofday,
        EPERM,
        syscall(libc::SYS_settimeofday, NULL, NULL)
    );
    blocked!(
        clock_settime,
        EPERM,
        syscall(libc::SYS_clock_settime, 0, NULL)
    );
    blocked!(
        clock_adjtime,
        EPERM,
        syscall(libc::SYS_clock_adjtime, 0, NULL)
    );
    blocked!(adjtimex, EPERM, syscall(libc::SYS_adjtimex, NULL));
    blocked!(swapon, EPERM, syscall(libc::SYS_swapon, NULL, 0));
    blocked!(swapoff, EPERM, syscall(libc::SYS_swapoff, NULL));
    blocked!(acct, EPERM, syscall(libc::SYS_acct, NULL));
    blocked!(
        open_by_handle_at,
        EPERM,
        syscall(libc::SYS_open_by_handle_at, -1, NULL, 0)
    );
    blocked!(
        name_to_handle_at,
        EPERM,
        syscall(libc::SYS_name_to_handle_at, -1, NULL, NULL, NULL, 0)
    );
    blocked!(
        mknod_char_device,
        EPERM,
        syscall(
            libc::SYS_mknod,
            c"/tmp/x".as_ptr(),
            libc::S_IFCHR | 0o600,
            0x0103
        )
    );
    blocked!(
        mknodat_block_device,
        EPERM,
        syscall(
            libc::SYS_mknodat,
            -100,
            c"/tmp/x".as_ptr(),
            libc::S_IFBLK | 0o600,
            0x0800
        )
    );
    blocked!(
        packet_socket,
        EPERM,
        syscall(libc::SYS_socket, libc::AF_PACKET, libc::SOCK_RAW, 0)
    );
    blocked!(
        raw_ip_socket,
        EPERM,
        syscall(
            libc::SYS_socket,
            libc::AF_INET,
            libc::SOCK_RAW,
            libc::IPPROTO_ICMP
        )
    );
    blocked!(
        raw_ip6_socket,
        EPERM,
        syscall(
            libc::SYS_socket,
            libc::AF_INET6,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            0
        )
    );
    blocked!(
        tiocsti,
        EPERM,
        syscall(SYS_ioctl, 0, libc::TIOCSTI, c"x".as_ptr())
    );
    blocked!(
        tiocsti_high_bits,
        EPERM,
        syscall(
            SYS_ioctl,
            0,
            0x1_0000_0000u64 | libc::TIOCSTI,
            c"x".as_ptr()
        )
    );
    blocked!(tioclinux, EPERM, syscall(SYS_ioctl, 0, 0x541C, NULL));
    blocked!(bind, EPERM, syscall(libc::SYS_bind, -1, NULL, 0));
    blocked!(listen, EPERM, syscall(libc::SYS_listen, -1, 0));
    blocked!(
        accept4,
        EPERM,
        syscall(libc::SYS_accept4, -1, NULL, NULL, 0)
    );
    blocked!(x32_abi_call, EPERM, syscall(0x4000_0000 | libc::SYS_getpid));
    blocked!(
        personality_without_aslr,
        EPERM,
        syscall(libc::SYS_personality, 0x0040000u64)
    );
    blocked!(
        personality_read_implies_exec,
        EPERM,
        syscall(libc::SYS_personality, 0x0400000u64)
    );

    /// Runs `$body` (0 for success) in a filtered child and expects success.
    macro_rules! allowed {
        ($name:ident, $body:block) => {
            #[test]
            fn $name() {
                fn attempt() -> i64 {
                    // SAFETY: raw syscalls on our own descriptors and children.
                    unsafe { $body }
                }
                assert_eq!(in_filtered_child(attempt), 0, stringify!($name));
            }
        };
    }

    // What must keep working.
    allowed!(getpid_works, {
        if syscall(libc::SYS_getpid) > 0 { 0 } else { -1 }
    });
    allowed!(unix_socket_works, {
        if syscall(libc::SYS_socket, libc::AF_UNIX, libc::SOCK_STREAM, 0) >= 0 {
            0
        } else {
            -1
        }
    });
    allowed!(tcp_socket_works, {
        let fd = syscall(
            libc::SYS_socket,
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
        );
        if fd >= 0 { 0 } else { -1 }
    });
    allowed!(fork_without_namespaces_works, {
        let r = syscall(libc::SYS_clone, libc::SIGCHLD, NULL, NULL, NULL, NULL);
        if r == 0 {
            libc::_exit(0)
        }
        if r > 0 {
            libc::waitpid(r as i32, std::ptr::null_mut(), 0);
            0
        } else {
            -1
        }
    });
    allowed!(personality_can_be_queried_and_set_to_linux, {
        let now = syscall(libc::SYS_personality, 0xffff_ffffu64);
        if now >= 0 && syscall(libc::SYS_personality, 0u64) >= 0 {
            0
        } else {
            -1
        }
    });
    // These reach the kernel (which then refuses them for its own reasons).
    blocked!(
        fifo_mknod_reaches_the_kernel,
        libc::EEXIST,
        syscall(
            libc::SYS_mknodat,
            -100,
            c"/".as_ptr(),
            libc::S_IFIFO | 0o600,
            0
        )
    );
    blocked!(
        terminal_ioctl_reaches_the_kernel,
        libc::EBADF,
        syscall(SYS_ioctl, -1, libc::TCGETS, NULL)
    );

    /// A 32-bit (i386) syscall from a 64-bit process fails the architecture check: the
    /// process is killed, not just refused.
    #[test]
    fn i386_abi_syscall_kills() {
        fn attempt() -> i64 {
            let ret: i64;
            // SAFETY: int 0x80 with eax = 20 (i386 getpid); the filter kills before the kernel
            // would run it.
            unsafe { std::arch::asm!("int 0x80", inlateout("rax") 20i64 => ret) };
            ret
        }
        assert_eq!(in_filtered_child(attempt), -i64::from(libc::SIGSYS));
    }
}

/// Every rule an interface can add compiles for both architectures.
#[test]
fn interface_rules_compile_for_every_arch() {
    let mut rules = Vec::new();
    for name in ["network", "network-bind", "mount-observe"] {
        let port = packfmt::meta::Port {
            name: name.into(),
            interface: name.into(),
            attrs: Default::default(),
        };
        let slot = interfaces::system_slot(name).unwrap();
        let side = |port| interfaces::Side {
            pack: "app",
            revision: "x1".into(),
            port,
            host_pack: Default::default(),
            host_data: Default::default(),
            host_common: Default::default(),
        };
        let g = interfaces::Connection {
            plug: side(&port),
            slot: side(&slot),
            host_root: std::path::Path::new("/"),
        }
        .grants()
        .unwrap();
        rules.extend(g.seccomp);
    }
    assert!(rules.len() >= 7);
    for arch in [Arch::X86_64, Arch::Aarch64] {
        compile(arch, &rules, false).unwrap_or_else(|e| panic!("{arch:?}: {e}"));
    }
}

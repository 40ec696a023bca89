//! The device allowlist of a v2 cgroup: a `BPF_PROG_TYPE_CGROUP_DEVICE` program, assembled
//! here from the rules and attached to the cgroup (v2 has no `devices.allow` file). The cgroup
//! holds the program; removing the cgroup releases it.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use super::DeviceRule;

const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    code: u8,
    regs: u8, // dst in the low nibble, src in the high one
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | dst,
        off,
        imm,
    }
}

// Opcodes used below.
const LDX_W: u8 = 0x61; // dst = *(u32 *)(src + off)
const MOV64_X: u8 = 0xbf; // dst = src
const MOV64_K: u8 = 0xb7; // dst = imm
const AND64_K: u8 = 0x57; // dst &= imm
const RSH64_K: u8 = 0x77; // dst >>= imm
const JNE_K: u8 = 0x55; // if dst != imm goto pc + off
const EXIT: u8 = 0x95;

/// Device types and access bits of `struct bpf_cgroup_dev_ctx`.
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;
const ACC_MKNOD: i32 = 1;
const ACC_READ: i32 = 2;
const ACC_WRITE: i32 = 4;

/// Assembles the program: allow (return 1) when a rule matches the device's type, major, minor
/// and every requested access; otherwise deny (return 0).
pub fn assemble(rules: &[DeviceRule]) -> Vec<Insn> {
    // r1 = ctx: { u32 access_type (type | access << 16), u32 major, u32 minor }
    let mut prog = vec![
        insn(LDX_W, 2, 1, 0, 0),        // r2 = access_type
        insn(MOV64_X, 3, 2, 0, 0),      // r3 = r2
        insn(AND64_K, 3, 0, 0, 0xffff), // r3 = device type
        insn(RSH64_K, 2, 0, 0, 16),     // r2 = requested access
        insn(LDX_W, 4, 1, 4, 0),        // r4 = major
        insn(LDX_W, 5, 1, 8, 0),        // r5 = minor
    ];
    for rule in rules {
        let kind = if rule.kind == 'b' {
            DEV_BLOCK
        } else {
            DEV_CHAR
        };
        let mut allowed = 0;
        for c in rule.access.chars() {
            allowed |= match c {
                'r' => ACC_READ,
                'w' => ACC_WRITE,
                'm' => ACC_MKNOD,
                _ => 0,
            };
        }
        // Each check jumps to the end of this rule's block when it does not match.
        let mut checks: Vec<(u8, i32)> = vec![(3, kind)];
        if let Some(major) = rule.major {
            checks.push((4, major as i32));
        }
        if let Some(minor) = rule.minor {
            checks.push((5, minor as i32));
        }
        let block_len = checks.len() + 5;
        for (i, (reg, value)) in checks.iter().enumerate() {
            prog.push(insn(JNE_K, *reg, 0, (block_len - i - 1) as i16, *value));
        }
        let after = checks.len();
        prog.extend([
            insn(MOV64_X, 6, 2, 0, 0),              // r6 = requested access
            insn(AND64_K, 6, 0, 0, !allowed & 0x7), // r6 = access not allowed
            insn(JNE_K, 6, 0, (block_len - after - 3) as i16, 0), // some of it: next rule
            insn(MOV64_K, 0, 0, 0, 1),              // allow
            insn(EXIT, 0, 0, 0, 0),
        ]);
    }
    prog.extend([insn(MOV64_K, 0, 0, 0, 0), insn(EXIT, 0, 0, 0, 0)]);
    prog
}

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
    _rest: [u64; 8],
}

#[repr(C)]
#[derive(Default)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
    _rest: [u32; 11],
}

fn bpf<T>(cmd: libc::c_int, attr: &mut T) -> Result<libc::c_long, String> {
    // SAFETY: `attr` is a properly sized, initialised bpf_attr prefix for `cmd`.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if rc < 0 {
        Err(std::io::Error::last_os_error().to_string())
    } else {
        Ok(rc)
    }
}

/// Loads the program for `rules` and attaches it to the v2 cgroup `dir`.
pub fn attach_device_filter(dir: &Path, rules: &[DeviceRule]) -> Result<(), String> {
    let prog = assemble(rules);
    let license = CString::new("Apache-2.0").map_err(|e| e.to_string())?;
    let mut name = [0u8; 16];
    name[..12].copy_from_slice(b"packd_device");
    let load = |log: Option<&mut Vec<u8>>| {
        let mut attr = ProgLoadAttr {
            prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
            insn_cnt: prog.len() as u32,
            insns: prog.as_ptr() as u64,
            license: license.as_ptr() as u64,
            prog_name: name,
            ..Default::default()
        };
        if let Some(log) = log {
            attr.log_level = 1;
            attr.log_size = log.len() as u32;
            attr.log_buf = log.as_mut_ptr() as u64;
        }
        bpf(BPF_PROG_LOAD, &mut attr)
    };
    // Without a log first: a verbose log that overflows its buffer fails the load itself.
    let prog_fd = match load(None) {
        Ok(fd) => fd,
        Err(e) => {
            let mut log = vec![0u8; 1 << 16];
            let _ = load(Some(&mut log));
            let verifier = String::from_utf8_lossy(&log);
            let last = verifier
                .trim_end_matches('\0')
                .lines()
                .last()
                .unwrap_or("")
                .to_string();
            return Err(format!("the kernel refused the program ({e}): {last}"));
        }
    };
    // SAFETY: the kernel returned a fresh descriptor we now own.
    let prog_fd = unsafe { OwnedFd::from_raw_fd(prog_fd as i32) };
    let cgroup =
        std::fs::File::open(dir).map_err(|e| format!("cannot open {}: {e}", dir.display()))?;
    let mut attach = ProgAttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog_fd.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        ..Default::default()
    };
    bpf(BPF_PROG_ATTACH, &mut attach).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the program the way the kernel would, for a device request.
    fn run(prog: &[Insn], kind: i32, access: i32, major: u32, minor: u32) -> u64 {
        let ctx = [(kind | (access << 16)) as u32, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = prog[pc];
            let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
            pc += 1;
            match i.code {
                LDX_W => r[dst] = u64::from(ctx[(i.off / 4) as usize]),
                MOV64_X => r[dst] = r[src],
                MOV64_K => r[dst] = i.imm as u64,
                AND64_K => r[dst] &= i.imm as i64 as u64,
                RSH64_K => r[dst] >>= i.imm,
                JNE_K => {
                    if r[dst] != i.imm as i64 as u64 {
                        pc = (pc as i64 + i64::from(i.off)) as usize;
                    }
                }
                EXIT => return r[0],
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    #[test]
    fn program_allows_exactly_the_rules() {
        let rules = vec![
            DeviceRule::char(1, Some(3)),
            DeviceRule {
                kind: 'c',
                major: Some(136),
                minor: None,
                access: "rw".into(),
            },
        ];
        let p = assemble(&rules);
        let rw = ACC_READ | ACC_WRITE;
        assert_eq!(run(&p, DEV_CHAR, rw, 1, 3), 1, "/dev/null");
        assert_eq!(
            run(&p, DEV_CHAR, ACC_MKNOD, 1, 3),
            1,
            "mknod of null allowed by rwm"
        );
        assert_eq!(run(&p, DEV_CHAR, rw, 1, 5), 0, "/dev/zero not listed");
        assert_eq!(
            run(&p, DEV_BLOCK, rw, 1, 3),
            0,
            "block device with the same numbers"
        );
        assert_eq!(run(&p, DEV_CHAR, rw, 136, 7), 1, "any pts");
        assert_eq!(run(&p, DEV_CHAR, ACC_MKNOD, 136, 7), 0, "pts: no mknod");
        assert_eq!(run(&p, DEV_BLOCK, ACC_READ, 8, 0), 0, "/dev/sda");
        assert_eq!(
            run(&assemble(&[]), DEV_CHAR, ACC_READ, 1, 3),
            0,
            "no rules: nothing"
        );
    }
}

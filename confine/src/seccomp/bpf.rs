//! Compiling seccomp rules to one classic-BPF filter laid out as a binary search over syscall
//! numbers: a syscall costs about 2·log2(n) instructions instead of a walk down a chain, and the
//! kernel's per-syscall action cache (built at load by running the filter for every syscall
//! number) is cheap to build.
//!
//! Layout:
//!
//! ```text
//!   ld arch; jeq ARCH, +1; ret KILL_PROCESS        foreign ABI (i386 on x86_64, arm32 on arm64)
//!   ld nr
//!   tree:    jge start, +0, +1; ja RIGHT; LEFT…; RIGHT…      over intervals of numbers
//!   leaf:    ret ACTION | for each alternative: conditions (fail → next); ret ACTION; … ret DEFAULT
//! ```
//!
//! x32 numbers (0x40000000 and up) lie past the last entry, in the final default interval.
//!
//! Every conditional jump goes at most one alternative forward; far jumps use `ja`, whose offset
//! is 32 bits, so no jump ever overflows the 8-bit conditional offsets.

use std::collections::BTreeMap;

use super::{Arch, Cond, Len, Op, SeccompError};

/// One instruction (`struct sock_filter`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

const LD_W_ABS: u16 = 0x20; // A = *(u32 *)(data + k)
const AND_K: u16 = 0x54; // A &= k
const JEQ_K: u16 = 0x15;
const JGE_K: u16 = 0x35;
const JA: u16 = 0x05;
const RET_K: u16 = 0x06;

pub const RET_KILL_PROCESS: u32 = 0x8000_0000;
pub const RET_ALLOW: u32 = 0x7fff_0000;
pub const RET_LOG: u32 = 0x7ffc_0000;
pub const RET_ERRNO: u32 = 0x0005_0000;

/// Offsets in `struct seccomp_data`.
const NR: u32 = 0;
const ARCH: u32 = 4;
fn arg_lo(i: u8) -> u32 {
    16 + 8 * u32::from(i)
}
fn arg_hi(i: u8) -> u32 {
    arg_lo(i) + 4
}

/// The kernel's limit on filter length.
pub const MAX_INSNS: usize = 4096;

/// What to do with one syscall: an action, possibly only when one of the alternatives (each an
/// AND of conditions) holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub action: u32,
    /// Empty: unconditional.
    pub alternatives: Vec<Vec<Cond>>,
}

fn stmt(code: u16, k: u32) -> Insn {
    Insn {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> Insn {
    Insn { code, jt, jf, k }
}

/// What an interval of syscall numbers does.
#[derive(Clone, Copy)]
enum Leaf<'a> {
    Ret(u32),
    Rules(&'a Entry),
}

/// Assembles the filter for `arch`: `entries` by syscall number, `default` for everything else.
///
/// The number space is cut into intervals of identical behaviour — a run of consecutive
/// unconditionally allowed syscalls is one interval, a gap is one, a syscall with conditions is
/// its own — and the tree searches the intervals: a small filter (the kernel JIT-compiles it at
/// every load) and a short path for every syscall.
pub fn assemble(
    arch: Arch,
    entries: &BTreeMap<u32, Entry>,
    default: u32,
) -> Result<Vec<Insn>, SeccompError> {
    let mut p = vec![
        stmt(LD_W_ABS, ARCH),
        jump(JEQ_K, arch.audit(), 1, 0),
        stmt(RET_K, RET_KILL_PROCESS),
        stmt(LD_W_ABS, NR),
    ];
    let intervals = intervals(entries, default);
    tree(&mut p, &intervals, default)?;
    if p.len() > MAX_INSNS {
        return Err(SeccompError::Compile(format!(
            "the filter has {} instructions; the kernel allows {MAX_INSNS}",
            p.len()
        )));
    }
    Ok(p)
}

/// `(first syscall number, behaviour)`, ascending, covering 0..=u32::MAX: numbers past the last
/// entry (x32's, for one) get `default`.
fn intervals(entries: &BTreeMap<u32, Entry>, default: u32) -> Vec<(u32, Leaf<'_>)> {
    let mut out: Vec<(u32, Leaf<'_>)> = vec![(0, Leaf::Ret(default))];
    let mut next = 0u32; // first number not yet covered by an entry
    for (&nr, entry) in entries {
        if nr > next && !matches!(out.last(), Some((_, Leaf::Ret(a))) if *a == default) {
            out.push((next, Leaf::Ret(default)));
        }
        let leaf = if entry.alternatives.is_empty() {
            Leaf::Ret(entry.action)
        } else {
            Leaf::Rules(entry)
        };
        let extends = matches!(
            (out.last(), leaf),
            (Some((_, Leaf::Ret(a))), Leaf::Ret(b)) if *a == b && nr == next
        );
        if !extends {
            if out.last().is_some_and(|(start, _)| *start == nr) {
                out.pop();
            }
            out.push((nr, leaf));
        }
        next = nr.saturating_add(1);
    }
    if !matches!(out.last(), Some((_, Leaf::Ret(a))) if *a == default) {
        out.push((next, Leaf::Ret(default)));
    }
    out
}

fn tree(
    p: &mut Vec<Insn>,
    intervals: &[(u32, Leaf<'_>)],
    default: u32,
) -> Result<(), SeccompError> {
    if let [(_, leaf)] = intervals {
        return match leaf {
            Leaf::Ret(action) => {
                p.push(stmt(RET_K, *action));
                Ok(())
            }
            Leaf::Rules(entry) => handler(p, entry, default),
        };
    }
    let mid = intervals.len() / 2;
    let pivot = intervals[mid].0;
    // nr >= pivot: fall onto the `ja` to the right half; else skip it into the left half.
    p.push(jump(JGE_K, pivot, 0, 1));
    let ja_at = p.len();
    p.push(stmt(JA, 0));
    tree(p, &intervals[..mid], default)?;
    p[ja_at].k = (p.len() - ja_at - 1) as u32;
    tree(p, &intervals[mid..], default)
}

fn handler(p: &mut Vec<Insn>, entry: &Entry, default: u32) -> Result<(), SeccompError> {
    for alt in &entry.alternatives {
        // Conditional jumps that fail the condition are patched to the end of this alternative.
        let mut fails: Vec<(usize, bool)> = Vec::new();
        for c in alt {
            condition(p, c, &mut fails);
        }
        p.push(stmt(RET_K, entry.action));
        let end = p.len();
        for (at, on_true) in fails {
            let off = u8::try_from(end - at - 1).map_err(|_| {
                SeccompError::Compile(format!(
                    "a rule with {} conditions is too long for one jump",
                    alt.len()
                ))
            })?;
            if on_true {
                p[at].jt = off;
            } else {
                p[at].jf = off;
            }
        }
    }
    p.push(stmt(RET_K, default));
    Ok(())
}

/// Emits the test of one condition; jumps that fail it are recorded in `fails` (index, and
/// whether it is the true branch that fails).
fn condition(p: &mut Vec<Insn>, c: &Cond, fails: &mut Vec<(usize, bool)>) {
    let lo = (c.val & 0xffff_ffff) as u32;
    let hi = (c.val >> 32) as u32;
    match (c.len, c.op) {
        (Len::Dword, Op::Eq) => {
            p.push(stmt(LD_W_ABS, arg_lo(c.index)));
            fails.push((p.len(), false));
            p.push(jump(JEQ_K, lo, 0, 0));
        }
        (Len::Dword, Op::Ne) => {
            p.push(stmt(LD_W_ABS, arg_lo(c.index)));
            fails.push((p.len(), true));
            p.push(jump(JEQ_K, lo, 0, 0));
        }
        (Len::Dword, Op::MaskedEq(mask)) => {
            p.push(stmt(LD_W_ABS, arg_lo(c.index)));
            p.push(stmt(AND_K, (mask & 0xffff_ffff) as u32));
            fails.push((p.len(), false));
            p.push(jump(JEQ_K, lo, 0, 0));
        }
        (Len::Qword, Op::Eq) => {
            p.push(stmt(LD_W_ABS, arg_hi(c.index)));
            fails.push((p.len(), false));
            p.push(jump(JEQ_K, hi, 0, 0));
            p.push(stmt(LD_W_ABS, arg_lo(c.index)));
            fails.push((p.len(), false));
            p.push(jump(JEQ_K, lo, 0, 0));
        }
        (Len::Qword, Op::Ne) => {
            // Different high words pass at once; equal ones fail on equal low words.
            p.push(stmt(LD_W_ABS, arg_hi(c.index)));
            p.push(jump(JEQ_K, hi, 0, 2));
            p.push(stmt(LD_W_ABS, arg_lo(c.index)));
            fails.push((p.len(), true));
            p.push(jump(JEQ_K, lo, 0, 0));
        }
        (Len::Qword, Op::MaskedEq(mask)) => {
            p.push(stmt(LD_W_ABS, arg_hi(c.index)));
            p.push(stmt(AND_K, (mask >> 32) as u32));
            fails.push((p.len(), false));
            p.push(jump(JEQ_K, hi, 0, 0));
            p.push(stmt(LD_W_ABS, arg_lo(c.index)));
            p.push(stmt(AND_K, (mask & 0xffff_ffff) as u32));
            fails.push((p.len(), false));
            p.push(jump(JEQ_K, lo, 0, 0));
        }
    }
}

/// Runs a filter the way the kernel does (for tests): `data` is `struct seccomp_data`.
#[cfg(test)]
pub fn run(prog: &[Insn], nr: u32, arch: u32, args: [u64; 6]) -> u32 {
    run_counting(prog, nr, arch, args).0
}

/// [`run`], also counting the instructions executed.
#[cfg(test)]
pub fn run_counting(prog: &[Insn], nr: u32, arch: u32, args: [u64; 6]) -> (u32, usize) {
    let mut data = [0u8; 64];
    data[0..4].copy_from_slice(&nr.to_le_bytes());
    data[4..8].copy_from_slice(&arch.to_le_bytes());
    for (i, a) in args.iter().enumerate() {
        data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
    }
    let (mut acc, mut pc, mut steps) = (0u32, 0usize, 0usize);
    loop {
        let i = prog[pc];
        pc += 1;
        steps += 1;
        match i.code {
            LD_W_ABS => {
                let k = i.k as usize;
                acc = u32::from_le_bytes([data[k], data[k + 1], data[k + 2], data[k + 3]]);
            }
            AND_K => acc &= i.k,
            JEQ_K => pc += usize::from(if acc == i.k { i.jt } else { i.jf }),
            JGE_K => pc += usize::from(if acc >= i.k { i.jt } else { i.jf }),
            JA => pc += i.k as usize,
            RET_K => return (i.k, steps),
            other => panic!("unexpected opcode {other:#x}"),
        }
    }
}

//! A small, typed eBPF instruction builder with forward labels and map references.
//!
//! The program is written in Rust as a sequence of calls on [`Asm`] and assembled into raw
//! 8-byte instructions (`[opcode, dst | src << 4, off: i16 LE, imm: i32 LE]`, a 64-bit immediate
//! load taking two slots), which is exactly what the kernel and the ELF loader (aya) consume.
//! There is no text syntax to parse: registers, sizes, operations and helpers are Rust enums, so
//! an ill-formed instruction does not compile. Jumps name a [`Label`]; [`Asm::finish`] resolves
//! them into relative offsets and reports labels that were used but never placed. Map loads
//! ([`Asm::ld_map`]) are recorded as relocations against a map *name*; the ELF writer turns each
//! into an `R_BPF_64_64` relocation and the loader patches in the map's file descriptor.
//!
//! Instruction encoding follows the kernel's `Documentation/bpf/standardization/instruction-set.rst`;
//! only what the LiteObs programs use is provided.

use std::fmt;

/// The eleven eBPF registers. `R0` holds helper return values and the program's exit code,
/// `R1`–`R5` are helper arguments (clobbered by every call), `R6`–`R9` survive calls,
/// `R10` is the read-only frame pointer (the stack grows down from it, 512 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Reg {
    R0 = 0,
    R1,
    R2,
    R3,
    R4,
    R5,
    R6,
    R7,
    R8,
    R9,
    R10,
}

/// Width of a memory access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// 1 byte.
    B,
    /// 2 bytes.
    H,
    /// 4 bytes.
    W,
    /// 8 bytes.
    DW,
}

impl Size {
    fn code(self) -> u8 {
        match self {
            Size::W => 0x00,
            Size::H => 0x08,
            Size::B => 0x10,
            Size::DW => 0x18,
        }
    }

    /// The access width in bytes.
    pub fn bytes(self) -> usize {
        match self {
            Size::B => 1,
            Size::H => 2,
            Size::W => 4,
            Size::DW => 8,
        }
    }

    /// The access size for a field of `bytes` bytes, if it is one the ISA has.
    pub fn of_bytes(bytes: usize) -> Option<Size> {
        match bytes {
            1 => Some(Size::B),
            2 => Some(Size::H),
            4 => Some(Size::W),
            8 => Some(Size::DW),
            _ => None,
        }
    }
}

/// 64-bit arithmetic operations (`BPF_ALU64` class).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alu {
    Add,
    Sub,
    Mul,
    Div,
    Or,
    And,
    Lsh,
    Rsh,
    Mod,
    Xor,
    Mov,
    Arsh,
}

impl Alu {
    fn code(self) -> u8 {
        match self {
            Alu::Add => 0x00,
            Alu::Sub => 0x10,
            Alu::Mul => 0x20,
            Alu::Div => 0x30,
            Alu::Or => 0x40,
            Alu::And => 0x50,
            Alu::Lsh => 0x60,
            Alu::Rsh => 0x70,
            Alu::Mod => 0x90,
            Alu::Xor => 0xa0,
            Alu::Mov => 0xb0,
            Alu::Arsh => 0xc0,
        }
    }
}

/// Conditions of 64-bit conditional jumps (`BPF_JMP` class). `S*` compare as signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cond {
    Eq,
    Gt,
    Ge,
    /// Jump when `dst & src != 0`.
    Set,
    Ne,
    Sgt,
    Sge,
    Lt,
    Le,
    Slt,
    Sle,
}

impl Cond {
    fn code(self) -> u8 {
        match self {
            Cond::Eq => 0x10,
            Cond::Gt => 0x20,
            Cond::Ge => 0x30,
            Cond::Set => 0x40,
            Cond::Ne => 0x50,
            Cond::Sgt => 0x60,
            Cond::Sge => 0x70,
            Cond::Lt => 0xa0,
            Cond::Le => 0xb0,
            Cond::Slt => 0xc0,
            Cond::Sle => 0xd0,
        }
    }
}

/// Kernel helper functions the programs call, with their stable IDs (`enum bpf_func_id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum Helper {
    /// `void *bpf_map_lookup_elem(map, key)`: pointer to the value or NULL.
    MapLookupElem = 1,
    /// `long bpf_map_update_elem(map, key, value, flags)`.
    MapUpdateElem = 2,
    /// `long bpf_map_delete_elem(map, key)`.
    MapDeleteElem = 3,
    /// `u64 bpf_get_current_pid_tgid(void)`: `tgid << 32 | tid`.
    GetCurrentPidTgid = 14,
    /// `long bpf_get_current_comm(buf, size)`: the current thread's name, NUL padded.
    GetCurrentComm = 16,
    /// `u64 bpf_get_current_task(void)`: the current `struct task_struct *`, as a number.
    GetCurrentTask = 35,
    /// `u64 bpf_get_current_cgroup_id(void)`: the current task's cgroup v2 id (tracing
    /// programs, Linux 4.18).
    GetCurrentCgroupId = 80,
    /// `long bpf_probe_read_user(dst, size, unsafe_user_ptr)`.
    ProbeReadUser = 112,
    /// `long bpf_probe_read_kernel(dst, size, unsafe_ptr)`: zeroes `dst` on a fault.
    ProbeReadKernel = 113,
}

// Instruction classes and modes.
const CLASS_LD: u8 = 0x00;
const CLASS_LDX: u8 = 0x01;
const CLASS_ST: u8 = 0x02;
const CLASS_STX: u8 = 0x03;
const CLASS_ALU: u8 = 0x04;
const CLASS_JMP: u8 = 0x05;
const CLASS_ALU64: u8 = 0x07;
const MODE_IMM: u8 = 0x00;
const MODE_MEM: u8 = 0x60;
const MODE_ATOMIC: u8 = 0xc0;
const SRC_K: u8 = 0x00;
const SRC_X: u8 = 0x08;
const OP_END: u8 = 0xd0;
const OP_JA: u8 = 0x00;
const OP_CALL: u8 = 0x80;
const OP_EXIT: u8 = 0x90;
/// `BPF_ATOMIC` operation "add" (imm field), without `BPF_FETCH`.
const ATOMIC_ADD: i32 = 0x00;

/// One raw instruction slot.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    pub dst: u8,
    pub src: u8,
    pub off: i16,
    pub imm: i32,
}

impl Insn {
    /// The 8 bytes the kernel reads, in little-endian (the only byte order LiteObs builds for:
    /// the object is loaded on the machine that generated it, and x86-64/arm64 are LE).
    pub fn to_bytes(self) -> [u8; 8] {
        let off = self.off.to_le_bytes();
        let imm = self.imm.to_le_bytes();
        [self.code, (self.dst & 0x0f) | (self.src << 4), off[0], off[1], imm[0], imm[1], imm[2], imm[3]]
    }
}

impl fmt::Debug for Insn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Insn {{ code: {:#04x}, dst: r{}, src: r{}, off: {}, imm: {} }}",
            self.code, self.dst, self.src, self.off, self.imm
        )
    }
}

/// A jump target, created by [`Asm::label`] and placed with [`Asm::bind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Label(usize);

/// Errors found while assembling.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AsmError {
    #[error("label {0} is jumped to but never placed")]
    Unbound(usize),
    #[error("label {0} is placed twice")]
    BoundTwice(usize),
    #[error("jump from slot {from} to slot {to} does not fit in 16 bits")]
    JumpTooFar { from: usize, to: usize },
}

/// A map reference left for the loader: the `lddw` at instruction slot `slot` must be patched
/// with the file descriptor of map `map`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapReloc {
    /// Index of the first slot of the `lddw` (byte offset = slot * 8).
    pub slot: usize,
    pub map: String,
}

/// An assembled program: instruction slots and the map relocations inside them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    pub insns: Vec<Insn>,
    pub relocs: Vec<MapReloc>,
}

impl Program {
    /// The program text as the kernel reads it.
    pub fn bytes(&self) -> Vec<u8> {
        self.insns.iter().flat_map(|i| i.to_bytes()).collect()
    }
}

/// Builds one program. Every emitting method appends one instruction (two for 64-bit
/// immediates) and returns `&mut Self` so that short sequences read as one statement.
#[derive(Debug, Default)]
pub struct Asm {
    insns: Vec<Insn>,
    relocs: Vec<MapReloc>,
    /// Slot each label is bound to, once placed.
    labels: Vec<Option<usize>>,
    /// (jump slot, label) pairs to patch in `finish`.
    fixups: Vec<(usize, Label)>,
    error: Option<AsmError>,
}

impl Asm {
    pub fn new() -> Asm {
        Asm::default()
    }

    /// Number of slots emitted so far.
    pub fn len(&self) -> usize {
        self.insns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.insns.is_empty()
    }

    fn push(&mut self, code: u8, dst: Reg, src: Reg, off: i16, imm: i32) -> &mut Self {
        self.insns.push(Insn { code, dst: dst as u8, src: src as u8, off, imm });
        self
    }

    /// A new, not yet placed, jump target.
    pub fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    /// Places `label` at the next instruction.
    pub fn bind(&mut self, label: Label) -> &mut Self {
        let here = self.insns.len();
        match self.labels.get_mut(label.0) {
            Some(slot @ None) => *slot = Some(here),
            _ => {
                self.error.get_or_insert(AsmError::BoundTwice(label.0));
            }
        }
        self
    }

    /// `dst = imm` (sign-extended to 64 bits).
    pub fn mov_imm(&mut self, dst: Reg, imm: i32) -> &mut Self {
        self.alu_imm(Alu::Mov, dst, imm)
    }

    /// `dst = src`.
    pub fn mov_reg(&mut self, dst: Reg, src: Reg) -> &mut Self {
        self.alu_reg(Alu::Mov, dst, src)
    }

    /// `dst = dst <op> imm`, 64-bit.
    pub fn alu_imm(&mut self, op: Alu, dst: Reg, imm: i32) -> &mut Self {
        self.push(CLASS_ALU64 | op.code() | SRC_K, dst, Reg::R0, 0, imm)
    }

    /// `dst = dst <op> src`, 64-bit.
    pub fn alu_reg(&mut self, op: Alu, dst: Reg, src: Reg) -> &mut Self {
        self.push(CLASS_ALU64 | op.code() | SRC_X, dst, src, 0, 0)
    }

    /// Converts the low 16 bits of `dst` between host and network (big-endian) byte order and
    /// clears the rest (`be16`: a byte swap on little-endian hosts, a truncation on big-endian).
    pub fn be16(&mut self, dst: Reg) -> &mut Self {
        self.push(CLASS_ALU | OP_END | SRC_X, dst, Reg::R0, 0, 16)
    }

    /// `dst = 64-bit immediate` (two slots).
    pub fn ld_imm64(&mut self, dst: Reg, imm: u64) -> &mut Self {
        // Truncating casts are the encoding: low half in the first slot, high in the second.
        self.push(CLASS_LD | MODE_IMM | Size::DW.code(), dst, Reg::R0, 0, imm as u32 as i32);
        self.push(0, Reg::R0, Reg::R0, 0, (imm >> 32) as u32 as i32)
    }

    /// `dst = &map` (two slots), relocated by the loader to the map's file descriptor.
    pub fn ld_map(&mut self, dst: Reg, map: &str) -> &mut Self {
        self.relocs.push(MapReloc { slot: self.insns.len(), map: map.to_owned() });
        self.ld_imm64(dst, 0)
    }

    /// `dst = *(size *)(src + off)`, zero-extended.
    pub fn ldx(&mut self, size: Size, dst: Reg, src: Reg, off: i16) -> &mut Self {
        self.push(CLASS_LDX | MODE_MEM | size.code(), dst, src, off, 0)
    }

    /// `*(size *)(dst + off) = src`.
    pub fn stx(&mut self, size: Size, dst: Reg, off: i16, src: Reg) -> &mut Self {
        self.push(CLASS_STX | MODE_MEM | size.code(), dst, src, off, 0)
    }

    /// `*(size *)(dst + off) = imm` (sign-extended to the access width).
    pub fn st_imm(&mut self, size: Size, dst: Reg, off: i16, imm: i32) -> &mut Self {
        self.push(CLASS_ST | MODE_MEM | size.code(), dst, Reg::R0, off, imm)
    }

    /// `lock *(u64 *)(dst + off) += src` (atomic add, no fetch).
    pub fn atomic_add64(&mut self, dst: Reg, off: i16, src: Reg) -> &mut Self {
        self.push(CLASS_STX | MODE_ATOMIC | Size::DW.code(), dst, src, off, ATOMIC_ADD)
    }

    fn jump(&mut self, code: u8, dst: Reg, src: Reg, imm: i32, target: Label) -> &mut Self {
        self.fixups.push((self.insns.len(), target));
        self.push(code, dst, src, 0, imm)
    }

    /// `goto target`.
    pub fn ja(&mut self, target: Label) -> &mut Self {
        self.jump(CLASS_JMP | OP_JA, Reg::R0, Reg::R0, 0, target)
    }

    /// `if dst <cond> imm goto target` (64-bit compare, imm sign-extended).
    pub fn jmp_imm(&mut self, cond: Cond, dst: Reg, imm: i32, target: Label) -> &mut Self {
        self.jump(CLASS_JMP | cond.code() | SRC_K, dst, Reg::R0, imm, target)
    }

    /// `if dst <cond> src goto target` (64-bit compare).
    pub fn jmp_reg(&mut self, cond: Cond, dst: Reg, src: Reg, target: Label) -> &mut Self {
        self.jump(CLASS_JMP | cond.code() | SRC_X, dst, src, 0, target)
    }

    /// `r0 = helper(r1, ..., r5)`; clobbers r1–r5.
    pub fn call(&mut self, helper: Helper) -> &mut Self {
        self.push(CLASS_JMP | OP_CALL, Reg::R0, Reg::R0, 0, helper as i32)
    }

    /// `return r0`.
    pub fn exit(&mut self) -> &mut Self {
        self.push(CLASS_JMP | OP_EXIT, Reg::R0, Reg::R0, 0, 0)
    }

    /// Resolves labels into jump offsets (counted in slots from the slot after the jump).
    pub fn finish(mut self) -> Result<Program, AsmError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        for &(from, label) in &self.fixups {
            let to = self.labels.get(label.0).copied().flatten().ok_or(AsmError::Unbound(label.0))?;
            let delta = to as i64 - from as i64 - 1;
            let off = i16::try_from(delta).map_err(|_| AsmError::JumpTooFar { from, to })?;
            self.insns[from].off = off;
        }
        Ok(Program { insns: self.insns, relocs: self.relocs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(build: impl FnOnce(&mut Asm)) -> Vec<u8> {
        let mut a = Asm::new();
        build(&mut a);
        a.finish().map(|p| p.bytes()).unwrap_or_default()
    }

    /// Hand-encoded from the ISA document (and identical to what `llvm-mc -triple bpfel` and
    /// rbpf's assembler emit for the same text).
    #[test]
    fn encodes_known_instructions() {
        let cases: Vec<(&str, Vec<u8>, [u8; 8])> = vec![
            ("mov64 r0, 0", bytes(|a| _ = a.mov_imm(Reg::R0, 0)), [0xb7, 0, 0, 0, 0, 0, 0, 0]),
            ("mov64 r6, r1", bytes(|a| _ = a.mov_reg(Reg::R6, Reg::R1)), [0xbf, 0x16, 0, 0, 0, 0, 0, 0]),
            (
                "add64 r2, -8",
                bytes(|a| _ = a.alu_imm(Alu::Add, Reg::R2, -8)),
                [0x07, 0x02, 0, 0, 0xf8, 0xff, 0xff, 0xff],
            ),
            ("rsh64 r0, 32", bytes(|a| _ = a.alu_imm(Alu::Rsh, Reg::R0, 32)), [0x77, 0, 0, 0, 32, 0, 0, 0]),
            (
                "ldxdw r1, [r6+8]",
                bytes(|a| _ = a.ldx(Size::DW, Reg::R1, Reg::R6, 8)),
                [0x79, 0x61, 8, 0, 0, 0, 0, 0],
            ),
            (
                "ldxh r3, [r6+24]",
                bytes(|a| _ = a.ldx(Size::H, Reg::R3, Reg::R6, 24)),
                [0x69, 0x63, 24, 0, 0, 0, 0, 0],
            ),
            (
                "ldxw r7, [r6+16]",
                bytes(|a| _ = a.ldx(Size::W, Reg::R7, Reg::R6, 16)),
                [0x61, 0x67, 16, 0, 0, 0, 0, 0],
            ),
            (
                "stxdw [r10-8], r1",
                bytes(|a| _ = a.stx(Size::DW, Reg::R10, -8, Reg::R1)),
                [0x7b, 0x1a, 0xf8, 0xff, 0, 0, 0, 0],
            ),
            (
                "stxb [r10-1], r2",
                bytes(|a| _ = a.stx(Size::B, Reg::R10, -1, Reg::R2)),
                [0x73, 0x2a, 0xff, 0xff, 0, 0, 0, 0],
            ),
            (
                "stw [r10-4], 0xffff0000",
                bytes(|a| _ = a.st_imm(Size::W, Reg::R10, -4, 0xffff_0000u32 as i32)),
                [0x62, 0x0a, 0xfc, 0xff, 0x00, 0x00, 0xff, 0xff],
            ),
            ("call 1", bytes(|a| _ = a.call(Helper::MapLookupElem)), [0x85, 0, 0, 0, 1, 0, 0, 0]),
            ("call 112", bytes(|a| _ = a.call(Helper::ProbeReadUser)), [0x85, 0, 0, 0, 112, 0, 0, 0]),
            ("exit", bytes(|a| _ = a.exit()), [0x95, 0, 0, 0, 0, 0, 0, 0]),
            ("be16 r1", bytes(|a| _ = a.be16(Reg::R1)), [0xdc, 0x01, 0, 0, 16, 0, 0, 0]),
            (
                "lock xadd [r9+16], r1",
                bytes(|a| _ = a.atomic_add64(Reg::R9, 16, Reg::R1)),
                [0xdb, 0x19, 16, 0, 0, 0, 0, 0],
            ),
        ];
        for (text, got, want) in cases {
            assert_eq!(got, want, "{text}");
        }
    }

    #[test]
    fn lddw_takes_two_slots_and_records_the_map() {
        let mut a = Asm::new();
        a.mov_imm(Reg::R0, 0).ld_map(Reg::R1, "flow_owner").exit();
        let p = a.finish().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.insns.len(), 4);
        assert_eq!(p.relocs, vec![MapReloc { slot: 1, map: "flow_owner".into() }]);
        assert_eq!(&p.bytes()[8..24], &[0x18, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn ld_imm64_splits_the_immediate() {
        let got = bytes(|a| _ = a.ld_imm64(Reg::R2, 0x1122_3344_5566_7788));
        assert_eq!(got, [0x18, 0x02, 0, 0, 0x88, 0x77, 0x66, 0x55, 0, 0, 0, 0, 0x44, 0x33, 0x22, 0x11]);
    }

    #[test]
    fn resolves_forward_and_backward_labels() {
        let mut a = Asm::new();
        let top = a.label();
        let out = a.label();
        a.bind(top);
        a.jmp_imm(Cond::Eq, Reg::R1, 0, out); // slot 0 → slot 3: off +2
        a.ld_imm64(Reg::R2, 7); // slots 1, 2
        a.bind(out);
        a.ja(top); // slot 3 → slot 0: off -4
        a.exit();
        let p = a.finish().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.insns[0].to_bytes(), [0x15, 0x01, 2, 0, 0, 0, 0, 0]);
        assert_eq!(p.insns[3].to_bytes(), [0x05, 0, 0xfc, 0xff, 0, 0, 0, 0]);
    }

    #[test]
    fn jmp_reg_encodes_both_registers() {
        let mut a = Asm::new();
        let l = a.label();
        a.jmp_reg(Cond::Sgt, Reg::R3, Reg::R4, l).bind(l).exit();
        let p = a.finish().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.insns[0].to_bytes(), [0x6d, 0x43, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn reports_label_mistakes() {
        let mut a = Asm::new();
        let l = a.label();
        a.ja(l);
        assert_eq!(a.finish(), Err(AsmError::Unbound(0)));

        let mut a = Asm::new();
        let l = a.label();
        a.bind(l).exit().bind(l);
        assert_eq!(a.finish(), Err(AsmError::BoundTwice(0)));
    }
}

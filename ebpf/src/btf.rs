//! The two `task_struct` offsets the programs need, read from the kernel's BTF
//! (`/sys/kernel/btf/vmlinux`).
//!
//! What it is for: naming an owner by its *process* (the thread-group leader's `comm`, what
//! `/proc/<pid>/comm` shows), not by the thread that happened to connect or serve. The program
//! reads `current->group_leader->comm` with `bpf_probe_read_kernel`, which needs the byte
//! offsets of `group_leader` and `comm` in this kernel's `struct task_struct`; they change
//! with the kernel's version and configuration, so they are read at load time, like the
//! tracepoint layouts in [`crate::format`].
//!
//! What it is not: a general BTF library. It walks the type section just far enough to find
//! one struct's members (descending into anonymous structs and unions, which is where
//! randomized or grouped fields live), and checks that the members have the expected shapes
//! (a pointer, a 16-byte array). Parsing is pure ([`TaskOffsets::from_btf`] takes bytes);
//! reading the file is [`TaskOffsets::from_file`].

use std::path::{Path, PathBuf};

/// Where the running kernel exposes its BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Byte offsets in `struct task_struct`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskOffsets {
    /// `struct task_struct *group_leader`.
    pub group_leader: u32,
    /// `char comm[16]`.
    pub comm: u32,
}

/// Why the offsets could not be found.
#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("not BTF data (bad magic or header)")]
    Header,
    #[error("BTF type section is truncated or has an unknown kind {0}")]
    Types(u32),
    #[error("BTF has no struct task_struct")]
    NoTaskStruct,
    #[error("struct task_struct has no usable member `{0}`")]
    Member(&'static str),
}

const MAGIC: u16 = 0xeb9f;
const KIND_INT: u32 = 1;
const KIND_PTR: u32 = 2;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FWD: u32 = 7;
const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_FLOAT: u32 = 16;
const KIND_DECL_TAG: u32 = 17;
const KIND_TYPE_TAG: u32 = 18;
const KIND_ENUM64: u32 = 19;

/// One type record's common header.
struct Ty<'a> {
    kind: u32,
    kind_flag: bool,
    vlen: usize,
    name: &'a [u8],
    /// The size (structs, ints) or the referenced type (pointers, typedefs, qualifiers).
    size_or_type: u32,
    /// Offset of the record in the type section.
    at: usize,
}

/// A parsed BTF blob: the byte order, the type records by ID and the string section.
struct Btf<'a> {
    big: bool,
    types: &'a [u8],
    strings: &'a [u8],
    /// Offset in `types` of each type's record; index = type ID (0 is `void`, unused).
    at: Vec<usize>,
}

impl<'a> Btf<'a> {
    fn parse(b: &'a [u8]) -> Result<Btf<'a>, BtfError> {
        let magic = b.get(0..2).ok_or(BtfError::Header)?;
        let big = match [magic[0], magic[1]] {
            m if u16::from_le_bytes(m) == MAGIC => false,
            m if u16::from_be_bytes(m) == MAGIC => true,
            _ => return Err(BtfError::Header),
        };
        let u32_at = |at: usize| read_u32(b, at, big).ok_or(BtfError::Header);
        let hdr_len = u32_at(4)? as usize;
        let section = |off: usize, len: usize| {
            let start = hdr_len.checked_add(u32_at(off)? as usize).ok_or(BtfError::Header)?;
            let end = start.checked_add(u32_at(len)? as usize).ok_or(BtfError::Header)?;
            b.get(start..end).ok_or(BtfError::Header)
        };
        let types = section(8, 12)?;
        let strings = section(16, 20)?;
        let mut at = vec![0];
        let mut pos = 0;
        while pos < types.len() {
            at.push(pos);
            let info = read_u32(types, pos + 4, big).ok_or(BtfError::Types(0))?;
            let (kind, vlen) = ((info >> 24) & 0x1f, (info & 0xffff) as usize);
            let extra = match kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => 4,
                KIND_ARRAY => 12,
                KIND_STRUCT | KIND_UNION | KIND_DATASEC | KIND_ENUM64 => 12 * vlen,
                KIND_ENUM | KIND_FUNC_PROTO => 8 * vlen,
                KIND_PTR | KIND_FWD | KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT
                | KIND_FUNC | KIND_FLOAT | KIND_TYPE_TAG => 0,
                other => return Err(BtfError::Types(other)),
            };
            pos += 12 + extra;
        }
        if pos != types.len() {
            return Err(BtfError::Types(0));
        }
        Ok(Btf { big, types, strings, at })
    }

    fn u32(&self, at: usize) -> u32 {
        read_u32(self.types, at, self.big).unwrap_or(0)
    }

    /// The header of type `id`'s record.
    fn ty(&self, id: u32) -> Option<Ty<'a>> {
        let at = *self.at.get(id as usize).filter(|_| id != 0)?;
        let info = self.u32(at + 4);
        Some(Ty {
            kind: (info >> 24) & 0x1f,
            kind_flag: info >> 31 == 1,
            vlen: (info & 0xffff) as usize,
            name: self.name(self.u32(at)),
            size_or_type: self.u32(at + 8),
            at,
        })
    }

    fn name(&self, off: u32) -> &'a [u8] {
        let rest = self.strings.get(off as usize..).unwrap_or_default();
        &rest[..rest.iter().position(|&c| c == 0).unwrap_or(rest.len())]
    }

    /// Follows typedefs and qualifiers.
    fn resolve(&self, mut id: u32) -> Option<u32> {
        for _ in 0..32 {
            let t = self.ty(id)?;
            match t.kind {
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = t.size_or_type
                }
                _ => return Some(id),
            }
        }
        None
    }

    /// The byte offset and the (resolved) type of member `name` of struct/union `id`,
    /// searching anonymous struct/union members too.
    fn member(&self, id: u32, name: &[u8], depth: u32) -> Option<(u32, u32)> {
        let Ty { kind, kind_flag, vlen, at, .. } = self.ty(id)?;
        if (kind != KIND_STRUCT && kind != KIND_UNION) || depth > 8 {
            return None;
        }
        for i in 0..vlen {
            let m = at + 12 + 12 * i;
            let (mname, mtype, moff) = (self.name(self.u32(m)), self.u32(m + 4), self.u32(m + 8));
            let bits = if kind_flag { moff & 0x00ff_ffff } else { moff };
            if mname == name {
                return (bits % 8 == 0).then(|| Some((bits / 8, self.resolve(mtype)?))).flatten();
            }
            if mname.is_empty()
                && let Some(inner) = self.resolve(mtype)
                && let Some((off, ty)) = self.member(inner, name, depth + 1)
            {
                return Some((bits / 8 + off, ty));
            }
        }
        None
    }
}

fn read_u32(b: &[u8], at: usize, big: bool) -> Option<u32> {
    let w: [u8; 4] = b.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(if big { u32::from_be_bytes(w) } else { u32::from_le_bytes(w) })
}

impl TaskOffsets {
    /// Finds the offsets in a BTF blob (the bytes of `/sys/kernel/btf/vmlinux`).
    pub fn from_btf(bytes: &[u8]) -> Result<TaskOffsets, BtfError> {
        let btf = Btf::parse(bytes)?;
        let task = (1..btf.at.len() as u32)
            .find(|&id| {
                btf.ty(id).is_some_and(|t| t.kind == KIND_STRUCT && t.vlen > 0 && t.name == b"task_struct")
            })
            .ok_or(BtfError::NoTaskStruct)?;
        let (group_leader, leader_ty) =
            btf.member(task, b"group_leader", 0).ok_or(BtfError::Member("group_leader"))?;
        if btf.ty(leader_ty).map(|t| t.kind) != Some(KIND_PTR) {
            return Err(BtfError::Member("group_leader"));
        }
        let (comm, comm_ty) = btf.member(task, b"comm", 0).ok_or(BtfError::Member("comm"))?;
        // An array: its record's extra part is (elem type, index type, nelems).
        let is_16_bytes = btf.ty(comm_ty).is_some_and(|t| t.kind == KIND_ARRAY && btf.u32(t.at + 20) == 16);
        if !is_16_bytes {
            return Err(BtfError::Member("comm"));
        }
        Ok(TaskOffsets { group_leader, comm })
    }

    /// Reads and parses a BTF file (usually [`VMLINUX_BTF`]).
    pub fn from_file(path: &Path) -> Result<TaskOffsets, BtfError> {
        let bytes =
            std::fs::read(path).map_err(|source| BtfError::Read { path: path.to_path_buf(), source })?;
        TaskOffsets::from_btf(&bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-built BTF blob: `int`, `char`, `char[16]`, a pointer to `task_struct`, an
    /// anonymous struct holding `group_leader`, and `task_struct { int pid; <anon>; comm }`.
    fn blob(comm_len: u32, kind_flag: bool) -> Vec<u8> {
        let mut strings = b"\0int\0char\0task_struct\0pid\0group_leader\0comm\0".to_vec();
        let s = |name: &str, strings: &[u8]| -> u32 {
            let needle = [name.as_bytes(), b"\0"].concat();
            strings.windows(needle.len()).position(|w| w == needle).map_or(0, |p| p as u32)
        };
        let mut t = Vec::new();
        let rec = |t: &mut Vec<u8>, words: &[u32]| words.iter().for_each(|w| t.extend(w.to_le_bytes()));
        let info = |kind: u32, vlen: u32| {
            (kind << 24) | vlen | if kind_flag && kind == KIND_STRUCT { 1 << 31 } else { 0 }
        };
        rec(&mut t, &[s("int", &strings), info(KIND_INT, 0), 4, 32]); // 1
        rec(&mut t, &[s("char", &strings), info(KIND_INT, 0), 1, 8]); // 2
        rec(&mut t, &[0, info(KIND_ARRAY, 0), 0, 2, 1, comm_len]); // 3: char[comm_len]
        rec(&mut t, &[0, info(KIND_PTR, 0), 6]); // 4: task_struct *
        rec(&mut t, &[0, info(KIND_STRUCT, 1), 8, s("group_leader", &strings), 4, 0]); // 5: anon
        rec(
            &mut t,
            &[
                s("task_struct", &strings),
                info(KIND_STRUCT, 3),
                2048,
                s("pid", &strings),
                1,
                0,
                0,
                5,
                64 * 8, // the anonymous struct at byte 64
                s("comm", &strings),
                3,
                1000 * 8,
            ],
        ); // 6
        strings.push(0);
        let mut b = Vec::new();
        b.extend(MAGIC.to_le_bytes());
        b.extend([1, 0]);
        for w in [24u32, 0, t.len() as u32, t.len() as u32, strings.len() as u32] {
            b.extend(w.to_le_bytes());
        }
        b.extend(t);
        b.extend(strings);
        b
    }

    #[test]
    fn finds_the_members_also_inside_anonymous_structs() {
        for kind_flag in [false, true] {
            let got = TaskOffsets::from_btf(&blob(16, kind_flag)).unwrap();
            assert_eq!(got, TaskOffsets { group_leader: 64, comm: 1000 });
        }
    }

    #[test]
    fn rejects_other_shapes_and_garbage() {
        assert!(matches!(TaskOffsets::from_btf(&blob(8, false)), Err(BtfError::Member("comm"))));
        assert!(matches!(TaskOffsets::from_btf(b"nope"), Err(BtfError::Header)));
        let mut cut = blob(16, false);
        cut.truncate(40);
        assert!(TaskOffsets::from_btf(&cut).is_err());
        for len in 0..blob(16, false).len() {
            let _ = TaskOffsets::from_btf(&blob(16, false)[..len]); // never panics
        }
    }

    /// The running kernel's BTF, when readable, has both members (the privileged tests check
    /// that the program reads the right bytes with them).
    #[test]
    fn the_running_kernel_has_the_members_when_readable() {
        match TaskOffsets::from_file(Path::new(VMLINUX_BTF)) {
            Ok(o) => assert!(o.group_leader > 0 && o.comm > 0, "{o:?}"),
            Err(e) => eprintln!("SKIPPED live BTF check: {e}"),
        }
    }
}

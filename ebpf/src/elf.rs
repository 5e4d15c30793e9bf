//! Writes the programs and map definitions as a relocatable eBPF ELF object, the format
//! `aya::Ebpf::load` (and `bpftool`, `llvm-objdump`) read.
//!
//! Layout of the object (64-bit, little-endian, `e_machine = EM_BPF`, `ET_REL`):
//! - one executable section per program, named `tracepoint/<category>/<name>`, holding a
//!   global FUNC symbol (the program's name) that covers the whole section;
//! - `maps`: the legacy `struct bpf_map_def` records, 28 bytes each (seven u32: type,
//!   key_size, value_size, max_entries, map_flags, id, pinning), one global OBJECT symbol per
//!   map naming it;
//! - `license`: `"GPL\0"`, required for the GPL-only helpers (`probe_read_user`);
//! - a `.rel` section per program: one `R_BPF_64_64` relocation (type 1) against the map's
//!   symbol, addend 0, at the byte offset of every `lddw` that loads a map. The loader turns
//!   each into `src_reg = BPF_PSEUDO_MAP_FD, imm = fd`.
//!
//! No BTF is emitted: the programs use no CO-RE relocations and legacy map definitions.

use object::write::{Object, Relocation, Symbol, SymbolSection};
use object::{
    Architecture, BinaryFormat, Endianness, RelocationFlags, SectionKind, SymbolFlags, SymbolKind,
    SymbolScope,
};

use crate::program::ProgramDef;

/// `BPF_MAP_TYPE_*` values the object uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum MapType {
    Hash = 1,
    Array = 2,
    LruHash = 9,
}

/// One map definition (a `struct bpf_map_def`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapDef {
    pub name: &'static str,
    pub kind: MapType,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
}

impl MapDef {
    /// The 28-byte legacy record (flags, id and pinning zero), in the object's byte order.
    pub fn record(&self) -> [u8; 28] {
        let fields = [self.kind as u32, self.key_size, self.value_size, self.max_entries, 0, 0, 0];
        let mut out = [0u8; 28];
        for (chunk, v) in out.chunks_exact_mut(4).zip(fields) {
            chunk.copy_from_slice(&v.to_le_bytes());
        }
        out
    }
}

/// `R_BPF_64_64`: a 64-bit immediate load of a symbol's address (here: a map).
const R_BPF_64_64: u32 = 1;

/// Errors writing the object.
#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    #[error("program {program} references map `{map}`, which is not defined")]
    UnknownMap { program: &'static str, map: String },
    #[error("writing the ELF object")]
    Write(#[from] object::write::Error),
}

/// Builds the object. Deterministic: the same programs and maps give the same bytes.
pub fn write(programs: &[ProgramDef], maps: &[MapDef]) -> Result<Vec<u8>, ElfError> {
    let mut obj = Object::new(BinaryFormat::Elf, Architecture::Bpf, Endianness::Little);

    let license = obj.add_section(Vec::new(), b"license".to_vec(), SectionKind::Data);
    obj.append_section_data(license, b"GPL\0", 1);

    let maps_section = obj.add_section(Vec::new(), b"maps".to_vec(), SectionKind::Data);
    let mut map_symbols = Vec::with_capacity(maps.len());
    for m in maps {
        let at = obj.append_section_data(maps_section, &m.record(), 4);
        let sym = obj.add_symbol(Symbol {
            name: m.name.as_bytes().to_vec(),
            value: at,
            size: 28,
            kind: SymbolKind::Data,
            scope: SymbolScope::Dynamic,
            weak: false,
            section: SymbolSection::Section(maps_section),
            flags: SymbolFlags::None,
        });
        map_symbols.push((m.name, sym));
    }

    for p in programs {
        let code = p.program.bytes();
        let section = obj.add_section(Vec::new(), p.section().into_bytes(), SectionKind::Text);
        obj.append_section_data(section, &code, 8);
        obj.add_symbol(Symbol {
            name: p.name.as_bytes().to_vec(),
            value: 0,
            size: code.len() as u64,
            kind: SymbolKind::Text,
            scope: SymbolScope::Dynamic,
            weak: false,
            section: SymbolSection::Section(section),
            flags: SymbolFlags::None,
        });
        for r in &p.program.relocs {
            let symbol = map_symbols
                .iter()
                .find(|(name, _)| *name == r.map)
                .map(|(_, s)| *s)
                .ok_or_else(|| ElfError::UnknownMap { program: p.name, map: r.map.clone() })?;
            obj.add_relocation(
                section,
                Relocation {
                    offset: (r.slot * 8) as u64,
                    symbol,
                    addend: 0,
                    flags: RelocationFlags::Elf { r_type: R_BPF_64_64 },
                },
            )?;
        }
    }
    Ok(obj.write()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asm::{Asm, Reg};
    use object::{Object as _, ObjectSection as _, ObjectSymbol as _};

    fn tiny() -> Vec<ProgramDef> {
        let mut a = Asm::new();
        a.ld_map(Reg::R1, "m").mov_imm(Reg::R0, 0).exit();
        let program = a.finish().unwrap();
        vec![ProgramDef { name: "p", category: "sock", tracepoint: "inet_sock_set_state", program }]
    }

    fn map() -> MapDef {
        MapDef { name: "m", kind: MapType::LruHash, key_size: 36, value_size: 20, max_entries: 1024 }
    }

    #[test]
    fn map_record_is_the_legacy_bpf_map_def() {
        let r = map().record();
        assert_eq!(r[0..4], [9, 0, 0, 0]);
        assert_eq!(r[4..8], [36, 0, 0, 0]);
        assert_eq!(r[8..12], [20, 0, 0, 0]);
        assert_eq!(r[12..16], [0, 4, 0, 0]);
        assert_eq!(r[16..28], [0; 12]);
    }

    #[test]
    fn object_has_sections_symbols_and_relocations() {
        let bytes = write(&tiny(), &[map()]).unwrap();
        let file = object::File::parse(&*bytes).unwrap();
        assert_eq!(file.architecture(), Architecture::Bpf);
        assert!(file.is_little_endian());
        let license = file.section_by_name("license").unwrap();
        assert_eq!(license.data().unwrap(), b"GPL\0");
        let maps = file.section_by_name("maps").unwrap();
        assert_eq!(maps.data().unwrap(), map().record());
        let prog = file.section_by_name("tracepoint/sock/inet_sock_set_state").unwrap();
        assert_eq!(prog.size(), 32);
        let relocs: Vec<_> = prog.relocations().collect();
        assert_eq!(relocs.len(), 1);
        let (offset, rel) = &relocs[0];
        assert_eq!(*offset, 0);
        assert_eq!(rel.flags(), RelocationFlags::Elf { r_type: R_BPF_64_64 });
        let object::RelocationTarget::Symbol(idx) = rel.target() else { panic!("target") };
        assert_eq!(file.symbol_by_index(idx).unwrap().name().unwrap(), "m");
        let p = file.symbols().find(|s| s.name() == Ok("p")).unwrap();
        assert_eq!((p.kind(), p.size()), (SymbolKind::Text, 32));
    }

    #[test]
    fn unknown_map_is_an_error() {
        assert!(matches!(write(&tiny(), &[]), Err(ElfError::UnknownMap { .. })));
    }
}

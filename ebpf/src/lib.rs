//! LiteObs's process-attribution eBPF program, written in Rust as eBPF instructions and
//! emitted as an ELF object that aya loads. No C, no clang, no BPF compiler target.
//!
//! What it is for: recording, in kernel maps, which process owns each TCP connection (client
//! side: the process that called `connect`; server side: the process that called `accept`),
//! keyed so that the agent can look a connection up by the 4-tuple it sees in captured packets.
//! See [`program`] for what each tracepoint does and [`layout`] for the maps' keys and values.
//!
//! What it is not: a loader. This crate only produces bytes; the agent (`liteobs-agent`'s
//! `pidmap` module) generates the object at run time with the tracepoint offsets read from the
//! running kernel's tracefs, loads it with aya, attaches it and reads the maps.
//!
//! Modules, in the order data flows through them:
//! [`format`](mod@format) (tracepoint record layouts) → [`asm`] (instruction builder) → [`program`] (the
//! programs) → [`elf`] (the object file). [`layout`] is shared with the agent.

pub mod asm;
pub mod btf;
pub mod elf;
pub mod format;
pub mod layout;
pub mod program;

pub use btf::{BtfError, TaskOffsets};
pub use elf::{MapDef, MapType};
pub use format::{Fields, FormatError};

use layout::{
    ACCEPT_ARGS, ACCEPT_PENDING, CONFIG, Endpoint, FLOW_OWNER, FlowKey, LISTEN_OWNER, Owner, PASSIVE_SK,
    PORT_FILTER, SOCK_OWNER, STATS, Stat,
};

/// Sizes (max_entries) of the bounded maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapSizes {
    /// `flow_owner`: connections remembered (LRU). The one that matters for hit rate.
    pub flows: u32,
    /// `sock_owner`: connects in progress (SYN_SENT), LRU.
    pub sockets: u32,
    /// `listen_owner`: listening sockets, LRU (learnt at `listen()` and seeded by the agent's
    /// scan of every network namespace, so a node with many pods needs thousands).
    pub listeners: u32,
    /// `passive_sk`: accepted connections whose server side has not sent yet, LRU.
    pub passive: u32,
    /// `accept_args` (threads inside accept) and `accept_pending` (handshakes not yet
    /// accepted), LRU each.
    pub accepts: u32,
    /// `port_filter`: most ports the filter can hold (a plain hash; the agent fills it).
    pub ports: u32,
}

impl MapSizes {
    /// Sizes derived from the number of connections to remember.
    pub fn for_flows(flows: u32) -> MapSizes {
        let flows = flows.max(64);
        MapSizes {
            flows,
            sockets: flows / 4 + 16,
            listeners: (flows / 4).clamp(1024, 16_384),
            passive: flows / 4 + 16,
            accepts: flows / 4 + 16,
            ports: 1024,
        }
    }
}

impl Default for MapSizes {
    /// 65 536 connections: about 4.5 MiB of `flow_owner` (36 + 32 bytes per entry plus the
    /// kernel's per-element overhead), ample for a busy node.
    fn default() -> MapSizes {
        MapSizes::for_flows(65_536)
    }
}

/// Everything the object depends on. The object is a pure function of this value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ObjectConfig {
    pub sizes: MapSizes,
    /// Tracepoint record layouts; use [`Fields::from_tracefs`] on the target machine.
    pub fields: Fields,
    /// Where `group_leader` and `comm` are in this kernel's `task_struct` (from its BTF, see
    /// [`TaskOffsets::from_file`]); `None` names owners by the current thread instead of the
    /// process.
    pub task: Option<TaskOffsets>,
}

/// Errors building the object.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("assembling the program")]
    Asm(#[from] asm::AsmError),
    #[error(transparent)]
    Elf(#[from] elf::ElfError),
}

/// The maps of the object, with their layouts (see [`layout`] for keys and values).
pub fn maps(sizes: &MapSizes) -> Vec<MapDef> {
    let m = |name, kind, key_size: usize, value_size: usize, max_entries: u32| MapDef {
        name,
        kind,
        key_size: key_size as u32,
        value_size: value_size as u32,
        max_entries: max_entries.max(1),
    };
    vec![
        m(SOCK_OWNER, MapType::LruHash, 8, Owner::SIZE, sizes.sockets),
        m(FLOW_OWNER, MapType::LruHash, FlowKey::SIZE, Owner::SIZE, sizes.flows),
        m(LISTEN_OWNER, MapType::LruHash, Endpoint::SIZE, Owner::SIZE, sizes.listeners),
        m(ACCEPT_ARGS, MapType::LruHash, 8, 8, sizes.accepts),
        m(ACCEPT_PENDING, MapType::LruHash, Endpoint::SIZE, FlowKey::SIZE, sizes.accepts),
        m(PASSIVE_SK, MapType::LruHash, 8, FlowKey::SIZE, sizes.passive),
        m(PORT_FILTER, MapType::Hash, 2, 1, sizes.ports),
        m(CONFIG, MapType::Array, 4, 4, 1),
        m(STATS, MapType::Array, 4, Stat::COUNT * 8, 1),
    ]
}

/// The ELF object: every program of [`program::programs`] and every map of [`maps`].
pub fn object(cfg: &ObjectConfig) -> Result<Vec<u8>, BuildError> {
    let programs = program::programs(&cfg.fields, cfg.task)?;
    Ok(elf::write(&programs, &maps(&cfg.sizes))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_is_deterministic_and_depends_on_its_config() {
        let cfg = ObjectConfig::default();
        let a = object(&cfg).unwrap();
        assert_eq!(a, object(&cfg).unwrap());
        let mut other = cfg;
        other.sizes.flows = 128;
        assert_ne!(a, object(&other).unwrap());
    }

    #[test]
    fn map_sizes_are_bounded_and_non_zero() {
        for m in maps(&MapSizes::for_flows(0)) {
            assert!(m.max_entries >= 1, "{}", m.name);
        }
        assert_eq!(MapSizes::for_flows(0).flows, 64);
    }
}

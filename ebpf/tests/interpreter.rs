//! The attribution programs' logic, run in an eBPF interpreter (rbpf) with the kernel's maps
//! and helpers stubbed in Rust: no root, no kernel, every machine. What the kernel tests
//! (`tests/kernel.rs`, root) add is the verifier and real tracepoints; what these add is the
//! state machine itself, event by event: the IPv4-mapped address bytes of every key, the
//! listener fallbacks (exact address, `::ffff:0.0.0.0`, `::`), the accept refinement, the
//! port filter and the clean-up transitions, the socket I/O override (the process that
//! reads and answers on an accepted socket owns it, also after a NULL-address accept or a
//! descriptor handed to another process), and the owner's name read as
//! `current->group_leader->comm` from fake kernel memory (the thread's name without BTF).
//!
//! How the programs are adapted to the interpreter, and why that keeps them the same:
//! - each map `lddw` (a relocation in the object) is given a handle the stub helpers know
//!   (aya writes a map fd there; the program never looks at the value itself);
//! - rbpf has no atomic instructions, and the programs' only one is the counter increment
//!   `lock *(u64 *)(r9 + off) += r1` on the `stats` value (r9 is always the stats pointer:
//!   asserted). It is replaced by a call of a stub that adds r1 to that counter. A call
//!   clobbers r0–r5, which no count site reads afterwards (each is followed by an exit or by
//!   code that writes the registers it reads; a wrong guess here would make these tests fail,
//!   not pass).

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use liteobs_ebpf::asm::Insn;
use liteobs_ebpf::format::Fields;
use liteobs_ebpf::layout::{
    ACCEPT_ARGS, ACCEPT_PENDING, AF_INET, AF_INET6, ByteOrder, CONFIG, CONFIG_FILTER_PORTS, Endpoint,
    FLOW_OWNER, FlowKey, IPPROTO_TCP, LISTEN_OWNER, Owner, PASSIVE_SK, PORT_FILTER, SOCK_OWNER, STATS, Stat,
    tcp_state,
};
use liteobs_ebpf::program::{ProgramDef, programs};
use liteobs_ebpf::{MapDef, MapSizes, MapType, TaskOffsets, maps};

/// The `task_struct` offsets the simulated kernel lays its fake tasks out with.
const TASK_OFFSETS: TaskOffsets = TaskOffsets { group_leader: 0x9a8, comm: 0xbe0 };
/// Fake `task_struct` addresses: this plus the task ID times a page.
const TASK_BASE: u64 = 0xffff_8880_1000_0000;

const ORDER: ByteOrder = ByteOrder::NATIVE;
/// Map handles start here (index in [`maps`] added), so a handle is never a small number.
const HANDLE_BASE: u64 = 0x4c4f_0000;
/// Helper ids of the counter stubs: this plus the counter's byte offset.
const XADD_BASE: u32 = 0x1_0000;
const EFAULT: i64 = -14;
const E2BIG: i64 = -7;
const ENOENT: i64 = -2;
const EINVAL: i64 = -22;

/// One stubbed map: entries live in a fixed arena (slot `i` at `i * value_size`), so a value
/// pointer handed to the program stays valid and can be registered with the interpreter as
/// memory the program may read and write, as the kernel's map values are.
struct StubMap {
    def: MapDef,
    arena: Box<[u8]>,
    /// key → (slot, last use), for hash maps.
    slots: HashMap<Vec<u8>, (usize, u64)>,
    free: Vec<usize>,
}

impl StubMap {
    fn new(def: MapDef) -> StubMap {
        let n = def.max_entries as usize;
        StubMap {
            arena: vec![0u8; n * def.value_size as usize].into_boxed_slice(),
            free: (0..n).rev().collect(),
            slots: HashMap::new(),
            def,
        }
    }

    fn value_size(&self) -> usize {
        self.def.value_size as usize
    }

    fn value(&self, slot: usize) -> &[u8] {
        &self.arena[slot * self.value_size()..(slot + 1) * self.value_size()]
    }

    fn slot_of(&mut self, key: &[u8], clock: u64) -> Option<usize> {
        match self.def.kind {
            MapType::Array => {
                let i = u32::from_ne_bytes(key.try_into().ok()?) as usize;
                (i < self.def.max_entries as usize).then_some(i)
            }
            _ => self.slots.get_mut(key).map(|e| {
                e.1 = clock;
                e.0
            }),
        }
    }

    fn update(&mut self, key: &[u8], value: &[u8], clock: u64) -> i64 {
        let slot = match self.slot_of(key, clock) {
            Some(s) => s,
            None if self.def.kind == MapType::Array => return E2BIG,
            None => {
                if self.free.is_empty() {
                    if self.def.kind != MapType::LruHash {
                        return E2BIG;
                    }
                    // LRU: evict the least recently used entry.
                    let Some(oldest) =
                        self.slots.iter().min_by_key(|(_, (_, used))| *used).map(|(k, _)| k.clone())
                    else {
                        return E2BIG;
                    };
                    if let Some((s, _)) = self.slots.remove(&oldest) {
                        self.free.push(s);
                    }
                }
                let Some(s) = self.free.pop() else { return E2BIG };
                self.slots.insert(key.to_vec(), (s, clock));
                s
            }
        };
        let size = self.value_size();
        self.arena[slot * size..(slot + 1) * size].copy_from_slice(value);
        0
    }

    fn delete(&mut self, key: &[u8]) -> i64 {
        if self.def.kind == MapType::Array {
            return EINVAL;
        }
        match self.slots.remove(key) {
            Some((s, _)) => {
                self.free.push(s);
                0
            }
            None => ENOENT,
        }
    }

    fn entries(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out: Vec<_> =
            self.slots.iter().map(|(k, (s, _))| (k.clone(), self.value(*s).to_vec())).collect();
        out.sort();
        out
    }
}

/// The task the helpers report as "current": a thread `tid` named `comm` of process `tgid`,
/// whose leader (the thread whose ID is `tgid`) is named `process`.
#[derive(Clone)]
struct Task {
    tgid: u32,
    tid: u32,
    comm: String,
    process: String,
    /// What `bpf_get_current_cgroup_id` answers while this task is current.
    cgroup: u64,
}

/// The stubbed kernel of one test (helpers are plain functions, so it lives in a thread local;
/// every test runs on its own thread).
struct Kernel {
    maps: Vec<StubMap>,
    current: Task,
    /// Fake user memory of the current process: address → bytes.
    user: HashMap<u64, Vec<u8>>,
    /// Fake kernel memory: the current task's and its leader's `group_leader` and `comm`.
    kmem: HashMap<u64, Vec<u8>>,
    clock: u64,
}

thread_local! {
    static KERNEL: RefCell<Option<Kernel>> = const { RefCell::new(None) };
}

fn with_kernel<T>(f: impl FnOnce(&mut Kernel) -> T) -> T {
    KERNEL.with(|k| f(k.borrow_mut().as_mut().expect("kernel stub installed")))
}

fn map_index(handle: u64) -> Option<usize> {
    handle.checked_sub(HANDLE_BASE).map(|i| i as usize)
}

/// # Safety (test stub)
/// `ptr` is a pointer the interpreted program passed to a helper: into the interpreter's stack
/// or a map value arena, both alive during the call.
fn read_raw(ptr: u64, len: usize) -> Vec<u8> {
    assert_ne!(ptr, 0, "helper given a NULL pointer");
    unsafe { std::slice::from_raw_parts(ptr as *const u8, len).to_vec() }
}

fn helper_lookup(map: u64, key: u64, _: u64, _: u64, _: u64) -> u64 {
    with_kernel(|k| {
        k.clock += 1;
        let clock = k.clock;
        let Some(m) = map_index(map).and_then(|i| k.maps.get_mut(i)) else { return 0 };
        let key = read_raw(key, m.def.key_size as usize);
        match m.slot_of(&key, clock) {
            Some(slot) => m.arena.as_ptr() as u64 + (slot * m.value_size()) as u64,
            None => 0,
        }
    })
}

fn helper_update(map: u64, key: u64, value: u64, _flags: u64, _: u64) -> u64 {
    with_kernel(|k| {
        k.clock += 1;
        let clock = k.clock;
        let Some(m) = map_index(map).and_then(|i| k.maps.get_mut(i)) else { return EINVAL as u64 };
        let key = read_raw(key, m.def.key_size as usize);
        let value = read_raw(value, m.value_size());
        m.update(&key, &value, clock) as u64
    })
}

fn helper_delete(map: u64, key: u64, _: u64, _: u64, _: u64) -> u64 {
    with_kernel(|k| {
        let Some(m) = map_index(map).and_then(|i| k.maps.get_mut(i)) else { return EINVAL as u64 };
        let key = read_raw(key, m.def.key_size as usize);
        m.delete(&key) as u64
    })
}

fn helper_pid_tgid(_: u64, _: u64, _: u64, _: u64, _: u64) -> u64 {
    with_kernel(|k| (u64::from(k.current.tgid) << 32) | u64::from(k.current.tid))
}

fn helper_comm(buf: u64, size: u64, _: u64, _: u64, _: u64) -> u64 {
    with_kernel(|k| {
        let mut comm = [0u8; 16];
        let name = k.current.comm.as_bytes();
        let n = name.len().min(15);
        comm[..n].copy_from_slice(&name[..n]);
        let size = (size as usize).min(16);
        // SAFETY: the program passes a pointer to `size` bytes of its stack.
        unsafe { std::ptr::copy_nonoverlapping(comm.as_ptr(), buf as *mut u8, size) };
        0
    })
}

fn helper_cgroup_id(_: u64, _: u64, _: u64, _: u64, _: u64) -> u64 {
    with_kernel(|k| k.current.cgroup)
}

fn helper_current_task(_: u64, _: u64, _: u64, _: u64, _: u64) -> u64 {
    with_kernel(|k| TASK_BASE + u64::from(k.current.tid) * 0x4000)
}

fn helper_probe_read_user(dst: u64, size: u64, src: u64, _: u64, _: u64) -> u64 {
    probe_read(dst, size, src, false)
}

fn helper_probe_read_kernel(dst: u64, size: u64, src: u64, _: u64, _: u64) -> u64 {
    probe_read(dst, size, src, true)
}

fn probe_read(dst: u64, size: u64, src: u64, kernel: bool) -> u64 {
    with_kernel(|k| {
        let size = size as usize;
        // Find the fake mapping that holds [src, src + size).
        let mem = if kernel { &k.kmem } else { &k.user };
        let found = mem.iter().find_map(|(base, bytes)| {
            let off = src.checked_sub(*base)? as usize;
            bytes.get(off..off + size).map(<[u8]>::to_vec)
        });
        match found {
            Some(bytes) => {
                // SAFETY: the program passes a pointer to `size` bytes of its stack.
                unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), dst as *mut u8, size) };
                0
            }
            None => {
                // The kernel zeroes the destination on a fault.
                unsafe { std::ptr::write_bytes(dst as *mut u8, 0, size) };
                EFAULT as u64
            }
        }
    })
}

/// `stats[OFF / 8] += r1`: the stand-in for `lock *(u64 *)(r9 + OFF) += r1`.
fn helper_xadd<const OFF: usize>(r1: u64, _: u64, _: u64, _: u64, _: u64) -> u64 {
    with_kernel(|k| {
        let stats = k.maps.iter_mut().find(|m| m.def.name == STATS).expect("stats map");
        let cell = &mut stats.arena[OFF..OFF + 8];
        let v = u64::from_ne_bytes(cell.try_into().expect("8 bytes")).wrapping_add(r1);
        cell.copy_from_slice(&v.to_ne_bytes());
        0
    })
}

/// A helper as rbpf calls it: r1..r5 in, r0 out.
type HelperFn = fn(u64, u64, u64, u64, u64) -> u64;

const XADD_HELPERS: [(usize, HelperFn); Stat::COUNT] = [
    (0, helper_xadd::<0>),
    (8, helper_xadd::<8>),
    (16, helper_xadd::<16>),
    (24, helper_xadd::<24>),
    (32, helper_xadd::<32>),
    (40, helper_xadd::<40>),
    (48, helper_xadd::<48>),
    (56, helper_xadd::<56>),
    (64, helper_xadd::<64>),
    (72, helper_xadd::<72>),
    (80, helper_xadd::<80>),
    (88, helper_xadd::<88>),
    (96, helper_xadd::<96>),
];

/// A program's bytes as the interpreter runs them (see the module docs).
fn interpretable(def: &ProgramDef, map_defs: &[MapDef]) -> Vec<u8> {
    let mut insns: Vec<Insn> = def.program.insns.clone();
    for r in &def.program.relocs {
        let idx = map_defs.iter().position(|m| m.name == r.map).expect("relocation against a known map");
        let handle = HANDLE_BASE + idx as u64;
        insns[r.slot].imm = handle as u32 as i32;
        insns[r.slot + 1].imm = (handle >> 32) as i32;
    }
    for insn in &mut insns {
        if insn.code == 0xdb {
            // STX | ATOMIC | DW with imm BPF_ADD: the counter increment.
            assert_eq!(
                (insn.dst, insn.src, insn.imm),
                (9, 1, 0),
                "{}: an atomic other than stats += r1",
                def.name
            );
            let off = usize::try_from(insn.off).expect("counter offset");
            assert!(off % 8 == 0 && off < Stat::COUNT * 8, "counter offset {off}");
            *insn = Insn { code: 0x85, dst: 0, src: 0, off: 0, imm: (XADD_BASE + off as u32) as i32 };
        }
    }
    insns.iter().flat_map(|i| i.to_bytes()).collect()
}

/// The programs and their stubbed kernel.
struct Sim {
    progs: Vec<(ProgramDef, Vec<u8>)>,
    fields: Fields,
    map_defs: Vec<MapDef>,
}

/// In softirq, "current" is whatever task was interrupted: its cgroup is junk the program must
/// never record.
const SOFTIRQ: Task = Task { tgid: 0, tid: 0, comm: String::new(), process: String::new(), cgroup: 0xbad };

impl Sim {
    fn new() -> Sim {
        Sim::with_task_offsets(Some(TASK_OFFSETS))
    }

    /// The programs as built when the kernel's BTF is unavailable (`None`).
    fn with_task_offsets(task: Option<TaskOffsets>) -> Sim {
        let fields = Fields::default();
        let map_defs = maps(&MapSizes::for_flows(64));
        let progs = programs(&fields, task)
            .expect("programs assemble")
            .into_iter()
            .map(|p| {
                let bytes = interpretable(&p, &map_defs);
                (p, bytes)
            })
            .collect();
        let kernel = Kernel {
            maps: map_defs.iter().cloned().map(StubMap::new).collect(),
            current: SOFTIRQ,
            user: HashMap::new(),
            kmem: HashMap::new(),
            clock: 0,
        };
        KERNEL.with(|k| *k.borrow_mut() = Some(kernel));
        Sim { progs, fields, map_defs }
    }

    fn run(&self, name: &str, record: &mut [u8]) {
        let (_, bytes) = self.progs.iter().find(|(p, _)| p.name == name).expect("program exists");
        let mut vm = rbpf::EbpfVmRaw::new(Some(bytes)).expect("rbpf accepts the program");
        for (id, f) in [
            (1, helper_lookup as HelperFn),
            (2, helper_update),
            (3, helper_delete),
            (14, helper_pid_tgid),
            (16, helper_comm),
            (35, helper_current_task),
            (80, helper_cgroup_id),
            (112, helper_probe_read_user),
            (113, helper_probe_read_kernel),
        ] {
            vm.register_helper(id, f).expect("helper registers");
        }
        for (off, f) in XADD_HELPERS {
            vm.register_helper(XADD_BASE + off as u32, f).expect("helper registers");
        }
        with_kernel(|k| {
            for m in &k.maps {
                let start = m.arena.as_ptr() as u64;
                vm.register_allowed_memory(start..start + m.arena.len() as u64);
            }
        });
        let ret = vm.execute_program(record).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(ret, 0, "{name} returns 0");
    }

    /// Makes `task` current, with its `task_struct` and its leader's in kernel memory.
    fn as_task(&self, task: &Task) {
        let name = |s: &str| {
            let mut c = vec![0u8; 16];
            let n = s.len().min(15);
            c[..n].copy_from_slice(&s.as_bytes()[..n]);
            c
        };
        with_kernel(|k| {
            k.current = task.clone();
            k.kmem.clear();
            if task.tid == 0 {
                return; // softirq: no task the program may use
            }
            let me = TASK_BASE + u64::from(task.tid) * 0x4000;
            let leader = TASK_BASE + u64::from(task.tgid) * 0x4000;
            let (gl, comm) = (u64::from(TASK_OFFSETS.group_leader), u64::from(TASK_OFFSETS.comm));
            k.kmem.insert(me + gl, leader.to_ne_bytes().to_vec());
            k.kmem.insert(me + comm, name(&task.comm));
            k.kmem.insert(leader + comm, name(&task.process));
        });
    }

    /// One `sock/sock_recv_length` (`send = false`) or `sock_send_length` event by `task` on
    /// socket `sk`, in the layout of [`Fields::default`].
    fn io(&self, task: &Task, sk: u64, send: bool, family: u16, protocol: u16, ret: i32) {
        self.as_task(task);
        let f = self.fields.sock_io.expect("sock_io fields");
        let mut rec = vec![0u8; 32];
        rec[f.sk.offset as usize..][..8].copy_from_slice(&sk.to_ne_bytes());
        rec[f.family.offset as usize..][..2].copy_from_slice(&family.to_ne_bytes());
        rec[f.protocol.offset as usize..][..2].copy_from_slice(&protocol.to_ne_bytes());
        rec[f.ret.offset as usize..][..4].copy_from_slice(&ret.to_ne_bytes());
        self.run(if send { "sock_send_length" } else { "sock_recv_length" }, &mut rec);
    }

    fn recv(&self, task: &Task, sk: u64, ret: i32) {
        self.io(task, sk, false, AF_INET, IPPROTO_TCP, ret);
    }

    fn send(&self, task: &Task, sk: u64, ret: i32) {
        self.io(task, sk, true, AF_INET, IPPROTO_TCP, ret);
    }

    /// One `sock/inet_sock_set_state` event, in the layout of [`Fields::default`]. For AF_INET
    /// the `*_v6` fields are filled with junk: the program must build the mapped form from the
    /// 4-byte fields (a kernel without IPv6 leaves them unset).
    fn state(&self, task: &Task, skaddr: u64, old: i32, new: i32, local: SocketAddr, remote: SocketAddr) {
        self.as_task(task);
        let f = &self.fields.sock_state;
        let mut rec = vec![0u8; 72];
        let put =
            |rec: &mut [u8], at: u16, b: &[u8]| rec[at as usize..at as usize + b.len()].copy_from_slice(b);
        put(&mut rec, f.skaddr.offset, &skaddr.to_ne_bytes());
        put(&mut rec, f.oldstate.offset, &old.to_ne_bytes());
        put(&mut rec, f.newstate.offset, &new.to_ne_bytes());
        put(&mut rec, f.sport.offset, &local.port().to_ne_bytes());
        put(&mut rec, f.dport.offset, &remote.port().to_ne_bytes());
        put(&mut rec, f.protocol.offset, &IPPROTO_TCP.to_ne_bytes());
        match (local.ip(), remote.ip()) {
            (IpAddr::V4(l), IpAddr::V4(r)) => {
                put(&mut rec, f.family.offset, &AF_INET.to_ne_bytes());
                put(&mut rec, f.saddr.offset, &l.octets());
                put(&mut rec, f.daddr.offset, &r.octets());
                put(&mut rec, f.saddr_v6.offset, &[0xa5; 16]);
                put(&mut rec, f.daddr_v6.offset, &[0x5a; 16]);
            }
            (l, r) => {
                let v6 = |ip: IpAddr| match ip {
                    IpAddr::V6(a) => a,
                    IpAddr::V4(a) => a.to_ipv6_mapped(),
                };
                put(&mut rec, f.family.offset, &AF_INET6.to_ne_bytes());
                put(&mut rec, f.saddr_v6.offset, &v6(l).octets());
                put(&mut rec, f.daddr_v6.offset, &v6(r).octets());
            }
        }
        self.run("inet_sock_set_state", &mut rec);
    }

    /// `accept4(fd, addr, &len, 0)` by `task`: the enter and exit programs, with the peer's
    /// sockaddr (as the kernel writes it) in the task's user memory. `peer = None` is
    /// `accept4(fd, NULL, NULL, 0)`.
    fn accept4(&self, task: &Task, peer: Option<SocketAddr>, ret: i64) {
        self.as_task(task);
        let user_ptr: u64 = 0x7ffd_1234_5000;
        let sockaddr = peer.map(|p| match p {
            SocketAddr::V4(a) => {
                let mut b = vec![0u8; 16];
                b[0..2].copy_from_slice(&AF_INET.to_ne_bytes());
                b[2..4].copy_from_slice(&a.port().to_be_bytes());
                b[4..8].copy_from_slice(&a.ip().octets());
                b
            }
            SocketAddr::V6(a) => {
                let mut b = vec![0u8; 28];
                b[0..2].copy_from_slice(&AF_INET6.to_ne_bytes());
                b[2..4].copy_from_slice(&a.port().to_be_bytes());
                b[8..24].copy_from_slice(&a.ip().octets());
                b
            }
        });
        with_kernel(|k| {
            k.user.clear();
            if let Some(b) = &sockaddr {
                k.user.insert(user_ptr, b.clone());
            }
        });
        let f = self.fields.accept4;
        let mut enter = vec![0u8; 48];
        let ptr = if peer.is_some() { user_ptr } else { 0 };
        let at = f.upeer_sockaddr.offset as usize;
        enter[at..at + 8].copy_from_slice(&ptr.to_ne_bytes());
        self.run("sys_enter_accept4", &mut enter);
        let mut exit = vec![0u8; 24];
        let at = f.ret.offset as usize;
        exit[at..at + 8].copy_from_slice(&ret.to_ne_bytes());
        self.run("sys_exit_accept4", &mut exit);
    }

    fn set_port_filter(&self, ports: &[u16]) {
        with_kernel(|k| {
            let idx = self.map_defs.iter().position(|m| m.name == CONFIG).expect("config");
            k.maps[idx].update(&0u32.to_ne_bytes(), &CONFIG_FILTER_PORTS.to_ne_bytes(), 0);
            let idx = self.map_defs.iter().position(|m| m.name == PORT_FILTER).expect("port_filter");
            for p in ports {
                k.maps[idx].update(&p.to_ne_bytes(), &[1], 0);
            }
        });
    }

    fn entries(&self, map: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
        let idx = self.map_defs.iter().position(|m| m.name == map).expect("map exists");
        with_kernel(|k| k.maps[idx].entries())
    }

    fn flow_owner(&self, local: SocketAddr, remote: SocketAddr) -> Option<Owner> {
        let key = FlowKey::new(local, remote).encode(ORDER);
        self.entries(FLOW_OWNER)
            .into_iter()
            .find(|(k, _)| k[..] == key[..])
            .map(|(_, v)| Owner::decode(&v.try_into().expect("owner size"), ORDER))
    }

    fn stat(&self, s: Stat) -> u64 {
        let v = self.entries_array(STATS);
        u64::from_ne_bytes(v[s.offset()..s.offset() + 8].try_into().expect("8 bytes"))
    }

    fn entries_array(&self, map: &str) -> Vec<u8> {
        let idx = self.map_defs.iter().position(|m| m.name == map).expect("map exists");
        with_kernel(|k| k.maps[idx].value(0).to_vec())
    }
}

/// A thread of process `tgid` named like the process.
fn task(tgid: u32, comm: &str) -> Task {
    Task { tgid, tid: tgid + 7, comm: comm.into(), process: comm.into(), cgroup: cgroup_of(tgid) }
}

/// The cgroup (v2 id) [`task`] puts process `tgid` in: one of its own.
fn cgroup_of(tgid: u32) -> u64 {
    0x7_0000_0000 + u64::from(tgid)
}

fn v4(a: [u8; 4], port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::from(a)), port)
}

fn v6(a: &str, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V6(a.parse::<Ipv6Addr>().expect("address")), port)
}

use tcp_state::{CLOSE, ESTABLISHED, LISTEN, NEW_SYN_RECV, SYN_RECV, SYN_SENT};

#[test]
fn connect_records_the_connecting_process_under_the_ipv4_mapped_tuple() {
    let sim = Sim::new();
    let curl = task(4242, "curl");
    let (local, remote) = (v4([10, 1, 2, 3], 51000), v4([127, 0, 0, 1], 8080));
    sim.state(&curl, 0xffff_8880_0000_1000, CLOSE, SYN_SENT, v4([0, 0, 0, 0], 0), remote);
    assert_eq!(sim.entries(SOCK_OWNER).len(), 1, "the connect is remembered by socket");
    // The handshake completes in softirq: whatever "current" is must not matter.
    sim.state(&SOFTIRQ, 0xffff_8880_0000_1000, SYN_SENT, ESTABLISHED, local, remote);

    let flows = sim.entries(FLOW_OWNER);
    assert_eq!(flows.len(), 1);
    let (key, value) = &flows[0];
    // The key's exact bytes: ::ffff:10.1.2.3, ::ffff:127.0.0.1, ports in host order.
    let mut want = vec![0u8; 10];
    want.extend([0xff, 0xff, 10, 1, 2, 3]);
    want.extend([0u8; 10]);
    want.extend([0xff, 0xff, 127, 0, 0, 1]);
    want.extend(51000u16.to_ne_bytes());
    want.extend(8080u16.to_ne_bytes());
    assert_eq!(key, &want, "flow key bytes");
    let owner = Owner::decode(&value[..].try_into().expect("owner"), ORDER);
    assert_eq!((owner.tgid, owner.comm_str().as_str()), (4242, "curl"));
    assert_eq!(owner.cgroup(), Some(cgroup_of(4242)), "the connecting process's cgroup, not softirq's");
    assert_eq!(value[20..24], [0; 4], "padding is zero");
    assert!(sim.entries(SOCK_OWNER).is_empty(), "the socket entry is forgotten once the tuple is known");
    assert_eq!((sim.stat(Stat::Connects), sim.stat(Stat::ActiveFlows)), (1, 1));
}

/// A short-lived client (curl) exits before the agent attributes its exchange: the cgroup it
/// connected from is in the owner, read at connect time in its own context; the passive side
/// gets the cgroup of the listener first, then of the acceptor, then of the process that served.
#[test]
fn owners_carry_the_cgroup_of_the_process_at_connect_accept_and_serve_time() {
    let sim = Sim::new();
    let (client, server) = (v4([10, 244, 1, 50], 41000), v4([10, 244, 2, 10], 8080));
    let curl = Task { cgroup: 0x4242, ..task(4242, "curl") };
    sim.state(&curl, 0x100, CLOSE, SYN_SENT, v4([0, 0, 0, 0], 0), server);
    sim.state(&SOFTIRQ, 0x100, SYN_SENT, ESTABLISHED, client, server);
    assert_eq!(sim.flow_owner(client, server).and_then(|o| o.cgroup()), Some(0x4242));

    let master = Task { cgroup: 0x10, ..task(100, "nginx") };
    let worker = Task { cgroup: 0x11, ..task(101, "nginx") };
    let server_end = || sim.flow_owner(server, client).and_then(|o| o.cgroup());
    sim.state(&master, 0x200, CLOSE, LISTEN, v4([0, 0, 0, 0], 8080), v4([0, 0, 0, 0], 0));
    sim.state(&SOFTIRQ, 0x300, SYN_RECV, ESTABLISHED, server, client);
    assert_eq!(server_end(), Some(0x10), "the listener's cgroup with the listener's guess");
    sim.accept4(&master, Some(client), 9);
    assert_eq!(server_end(), Some(0x10));
    sim.recv(&worker, 0x300, 78);
    assert_eq!(server_end(), Some(0x11), "the serving process's cgroup");
    // The client has exited (nothing in the program depends on it); its entry is unchanged.
    assert_eq!(sim.flow_owner(client, server).and_then(|o| o.cgroup()), Some(0x4242));
}

#[test]
fn dual_stack_socket_with_a_mapped_address_gives_the_same_key_as_ipv4() {
    let sim = Sim::new();
    let py = task(77, "python3");
    let (local, remote) = (v4([192, 0, 2, 1], 40000), v4([198, 51, 100, 2], 80));
    // An AF_INET6 socket talking to an IPv4 peer carries ::ffff:a.b.c.d in the v6 fields.
    let l6 = v6("::ffff:192.0.2.1", 40000);
    let r6 = v6("::ffff:198.51.100.2", 80);
    sim.state(&py, 1, CLOSE, SYN_SENT, v6("::", 0), r6);
    sim.state(&SOFTIRQ, 1, SYN_SENT, ESTABLISHED, l6, r6);
    let owner = sim.flow_owner(local, remote).expect("found under the IPv4 tuple");
    assert_eq!(owner.tgid, 77);
}

#[test]
fn native_ipv6_tuples_are_kept_as_is() {
    let sim = Sim::new();
    let c = task(9, "client");
    let (local, remote) = (v6("2001:db8::1", 33333), v6("2001:db8::2", 443));
    sim.state(&c, 2, CLOSE, SYN_SENT, v6("::", 0), remote);
    sim.state(&SOFTIRQ, 2, SYN_SENT, ESTABLISHED, local, remote);
    assert_eq!(sim.flow_owner(local, remote).map(|o| o.tgid), Some(9));
}

#[test]
fn connect_before_the_program_loaded_is_a_counted_miss() {
    let sim = Sim::new();
    sim.state(&SOFTIRQ, 3, SYN_SENT, ESTABLISHED, v4([127, 0, 0, 1], 1234), v4([127, 0, 0, 1], 80));
    assert!(sim.entries(FLOW_OWNER).is_empty());
    assert_eq!(sim.stat(Stat::ActiveMisses), 1);
}

#[test]
fn failed_connect_forgets_the_socket() {
    let sim = Sim::new();
    sim.state(&task(5, "curl"), 4, CLOSE, SYN_SENT, v4([0, 0, 0, 0], 0), v4([127, 0, 0, 1], 9));
    sim.state(&SOFTIRQ, 4, SYN_SENT, CLOSE, v4([127, 0, 0, 1], 5555), v4([127, 0, 0, 1], 9));
    assert!(sim.entries(SOCK_OWNER).is_empty());
}

#[test]
fn passive_open_falls_back_from_the_exact_address_to_the_ipv4_and_ipv6_wildcards() {
    let server = task(100, "nginx");
    let peer = v4([127, 0, 0, 9], 45000);

    // 1. exact: listen on 127.0.0.1:8080.
    let sim = Sim::new();
    sim.state(&server, 10, CLOSE, LISTEN, v4([127, 0, 0, 1], 8080), v4([0, 0, 0, 0], 0));
    sim.state(&SOFTIRQ, 11, SYN_RECV, ESTABLISHED, v4([127, 0, 0, 1], 8080), peer);
    assert_eq!(sim.flow_owner(v4([127, 0, 0, 1], 8080), peer).map(|o| o.tgid), Some(100));

    // 2. 0.0.0.0:8080 (AF_INET): the key of the listener is ::ffff:0.0.0.0.
    let sim = Sim::new();
    sim.state(&server, 10, CLOSE, LISTEN, v4([0, 0, 0, 0], 8080), v4([0, 0, 0, 0], 0));
    let listeners = sim.entries(LISTEN_OWNER);
    let mut want = vec![0u8; 10];
    want.extend([0xff, 0xff, 0, 0, 0, 0]);
    want.extend(8080u16.to_ne_bytes());
    want.extend([0, 0]);
    assert_eq!(listeners[0].0, want, "listener key bytes");
    sim.state(&SOFTIRQ, 11, NEW_SYN_RECV, ESTABLISHED, v4([10, 0, 0, 5], 8080), peer);
    assert_eq!(sim.flow_owner(v4([10, 0, 0, 5], 8080), peer).map(|o| o.tgid), Some(100));
    assert_eq!(sim.stat(Stat::PassiveGuesses), 1);

    // 3. [::]:8080, dual stack: an IPv4 connection finds it through `::`.
    let sim = Sim::new();
    sim.state(&server, 10, CLOSE, LISTEN, v6("::", 8080), v6("::", 0));
    sim.state(
        &SOFTIRQ,
        11,
        SYN_RECV,
        ESTABLISHED,
        v6("::ffff:10.0.0.5", 8080),
        v6("::ffff:127.0.0.9", 45000),
    );
    assert_eq!(sim.flow_owner(v4([10, 0, 0, 5], 8080), peer).map(|o| o.tgid), Some(100));
    // ... and a native IPv6 one too, without trying the IPv4 wildcard.
    let p6 = v6("2001:db8::9", 45001);
    sim.state(&SOFTIRQ, 12, SYN_RECV, ESTABLISHED, v6("2001:db8::1", 8080), p6);
    assert_eq!(sim.flow_owner(v6("2001:db8::1", 8080), p6).map(|o| o.tgid), Some(100));

    // No listener known: counted, and remembered for accept.
    let sim = Sim::new();
    sim.state(&SOFTIRQ, 11, SYN_RECV, ESTABLISHED, v4([127, 0, 0, 1], 8080), peer);
    assert!(sim.entries(FLOW_OWNER).is_empty());
    assert_eq!(sim.stat(Stat::PassiveMisses), 1);
    assert_eq!(sim.entries(ACCEPT_PENDING).len(), 1);
}

#[test]
fn an_ipv4_listener_does_not_catch_other_ports_or_native_ipv6() {
    let sim = Sim::new();
    sim.state(&task(100, "srv"), 10, CLOSE, LISTEN, v4([0, 0, 0, 0], 8080), v4([0, 0, 0, 0], 0));
    sim.state(&SOFTIRQ, 11, SYN_RECV, ESTABLISHED, v4([127, 0, 0, 1], 8081), v4([127, 0, 0, 1], 40000));
    sim.state(&SOFTIRQ, 12, SYN_RECV, ESTABLISHED, v6("2001:db8::1", 8080), v6("2001:db8::2", 40000));
    assert!(sim.entries(FLOW_OWNER).is_empty());
    assert_eq!(sim.stat(Stat::PassiveMisses), 2);
}

#[test]
fn accept_refines_the_owner_to_the_worker_that_accepted() {
    for (local, peer) in [
        (v4([127, 0, 0, 1], 8080), v4([127, 0, 0, 1], 45000)),
        (v6("2001:db8::1", 8080), v6("2001:db8::2", 45000)),
    ] {
        let sim = Sim::new();
        let master = task(100, "nginx");
        let worker = task(101, "nginx-worker");
        let any = if local.is_ipv4() { v4([0, 0, 0, 0], 8080) } else { v6("::", 8080) };
        sim.state(&master, 10, CLOSE, LISTEN, any, any);
        sim.state(&SOFTIRQ, 11, SYN_RECV, ESTABLISHED, local, peer);
        assert_eq!(sim.flow_owner(local, peer).map(|o| o.tgid), Some(100), "first guess: the listener");
        sim.accept4(&worker, Some(peer), 5);
        let owner = sim.flow_owner(local, peer).expect("owner");
        assert_eq!((owner.tgid, owner.comm_str().as_str()), (101, "nginx-worker"), "{local}");
        assert!(sim.entries(ACCEPT_PENDING).is_empty(), "the pending handshake is consumed");
        assert!(sim.entries(ACCEPT_ARGS).is_empty(), "the thread's accept arguments are forgotten");
        assert_eq!(sim.stat(Stat::AcceptRefined), 1);
    }
}

#[test]
fn accept_without_an_address_or_failing_leaves_the_listener_as_owner() {
    let local = v4([127, 0, 0, 1], 8080);
    let peer = v4([127, 0, 0, 1], 45000);
    let setup = || {
        let sim = Sim::new();
        sim.state(&task(100, "node"), 10, CLOSE, LISTEN, local, v4([0, 0, 0, 0], 0));
        sim.state(&SOFTIRQ, 11, SYN_RECV, ESTABLISHED, local, peer);
        sim
    };
    // accept4(fd, NULL, NULL): nothing recorded at entry, nothing to refine at exit.
    let sim = setup();
    sim.accept4(&task(200, "other"), None, 5);
    assert_eq!(sim.flow_owner(local, peer).map(|o| o.tgid), Some(100));
    assert!(sim.entries(ACCEPT_ARGS).is_empty());
    // A failed accept (-EAGAIN) refines nothing but forgets its arguments.
    let sim = setup();
    sim.accept4(&task(200, "other"), Some(peer), -11);
    assert_eq!(sim.flow_owner(local, peer).map(|o| o.tgid), Some(100));
    assert!(sim.entries(ACCEPT_ARGS).is_empty());
    assert_eq!(sim.stat(Stat::AcceptRefined), 0);
    // An accepted peer no handshake is pending for: a counted miss.
    let sim = setup();
    sim.accept4(&task(200, "other"), Some(v4([127, 0, 0, 1], 1)), 6);
    assert_eq!(sim.stat(Stat::AcceptMisses), 1);
    assert_eq!(sim.flow_owner(local, peer).map(|o| o.tgid), Some(100));
}

#[test]
fn listener_is_forgotten_only_by_its_own_process() {
    let sim = Sim::new();
    let ep = v4([0, 0, 0, 0], 8080);
    sim.state(&task(100, "a"), 10, CLOSE, LISTEN, ep, ep);
    sim.state(&task(300, "b"), 12, LISTEN, CLOSE, ep, ep); // SO_REUSEPORT sibling closes
    assert_eq!(sim.entries(LISTEN_OWNER).len(), 1);
    sim.state(&task(100, "a"), 10, LISTEN, CLOSE, ep, ep);
    assert!(sim.entries(LISTEN_OWNER).is_empty());
    let key = Endpoint::new(ep).encode(ORDER);
    assert_eq!(key.len(), Endpoint::SIZE);
}

#[test]
fn the_port_filter_passes_either_port_and_counts_the_rest() {
    let sim = Sim::new();
    sim.set_port_filter(&[8080]);
    let c = task(1, "curl");
    // Connect to 8080: local port 0 at connect time, passes on the remote port.
    sim.state(&c, 1, CLOSE, SYN_SENT, v4([0, 0, 0, 0], 0), v4([127, 0, 0, 1], 8080));
    sim.state(&SOFTIRQ, 1, SYN_SENT, ESTABLISHED, v4([127, 0, 0, 1], 50000), v4([127, 0, 0, 1], 8080));
    assert_eq!(sim.entries(FLOW_OWNER).len(), 1);
    // Another port: nothing recorded, counted as filtered.
    sim.state(&c, 2, CLOSE, SYN_SENT, v4([0, 0, 0, 0], 0), v4([127, 0, 0, 1], 9090));
    assert!(sim.entries(SOCK_OWNER).is_empty());
    assert_eq!(sim.stat(Stat::Filtered), 1);
    assert_eq!(sim.stat(Stat::StateChanges), 2);
}

#[test]
fn non_tcp_and_other_families_are_ignored() {
    let sim = Sim::new();
    let f = sim.fields.sock_state;
    let mut rec = vec![0u8; 72];
    rec[f.protocol.offset as usize..][..2].copy_from_slice(&132u16.to_ne_bytes()); // SCTP
    rec[f.family.offset as usize..][..2].copy_from_slice(&AF_INET.to_ne_bytes());
    rec[f.oldstate.offset as usize..][..4].copy_from_slice(&CLOSE.to_ne_bytes());
    rec[f.newstate.offset as usize..][..4].copy_from_slice(&SYN_SENT.to_ne_bytes());
    sim.run("inet_sock_set_state", &mut rec);
    rec[f.protocol.offset as usize..][..2].copy_from_slice(&IPPROTO_TCP.to_ne_bytes());
    rec[f.family.offset as usize..][..2].copy_from_slice(&1u16.to_ne_bytes()); // AF_UNIX
    sim.run("inet_sock_set_state", &mut rec);
    assert!(sim.entries(SOCK_OWNER).is_empty());
    assert_eq!(sim.stat(Stat::StateChanges), 0);
}

#[test]
fn owners_are_the_thread_group_never_the_thread() {
    let sim = Sim::new();
    let t = Task { tgid: 500, tid: 512, comm: "worker-3".into(), process: "server".into(), cgroup: 5 };
    sim.state(&t, 1, CLOSE, SYN_SENT, v4([0, 0, 0, 0], 0), v4([127, 0, 0, 1], 80));
    sim.state(&SOFTIRQ, 1, SYN_SENT, ESTABLISHED, v4([127, 0, 0, 1], 40001), v4([127, 0, 0, 1], 80));
    let o = sim.flow_owner(v4([127, 0, 0, 1], 40001), v4([127, 0, 0, 1], 80)).expect("owner");
    assert_eq!(o.tgid, 500);
}

const SK: u64 = 0xffff_8880_0bad_1000;

/// An accepted connection 127.0.0.1:8080 ← 127.0.0.1:45000 on socket [`SK`], its listener
/// unknown to the maps (it called listen() before the program was loaded).
fn accepted_before_known_listener() -> (Sim, SocketAddr, SocketAddr) {
    let sim = Sim::new();
    let (local, peer) = (v4([127, 0, 0, 1], 8080), v4([127, 0, 0, 1], 45000));
    sim.state(&SOFTIRQ, SK, SYN_RECV, ESTABLISHED, local, peer);
    (sim, local, peer)
}

#[test]
fn the_passive_socket_is_remembered_by_its_address_with_the_server_side_tuple() {
    let (sim, local, peer) = accepted_before_known_listener();
    let entries = sim.entries(PASSIVE_SK);
    assert_eq!(entries.len(), 1);
    let (key, value) = &entries[0];
    assert_eq!(key, &SK.to_ne_bytes().to_vec(), "key: the struct sock address, host order");
    let mut want = vec![0u8; 10];
    want.extend([0xff, 0xff, 127, 0, 0, 1]);
    want.extend([0u8; 10]);
    want.extend([0xff, 0xff, 127, 0, 0, 1]);
    want.extend(8080u16.to_ne_bytes());
    want.extend(45000u16.to_ne_bytes());
    assert_eq!(value, &want, "value: the server side's FlowKey");
    assert_eq!(FlowKey::decode(&value[..].try_into().expect("36 bytes"), ORDER), FlowKey::new(local, peer));
}

#[test]
fn a_null_address_accept_is_attributed_by_the_acceptors_io() {
    // libuv: accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK), then read, then write.
    let (sim, local, peer) = accepted_before_known_listener();
    let node = task(300, "node");
    sim.accept4(&node, None, 17);
    assert_eq!(sim.flow_owner(local, peer), None, "nothing to match the NULL accept with");
    sim.recv(&node, SK, -11); // -EAGAIN first: no data, no owner
    assert_eq!(sim.flow_owner(local, peer), None);
    sim.recv(&node, SK, 78);
    let o = sim.flow_owner(local, peer).expect("owner from the read");
    assert_eq!((o.tgid, o.comm_str().as_str()), (300, "node"));
    assert_eq!(sim.stat(Stat::PassiveOpen), 1);
    sim.send(&node, SK, 120);
    assert!(sim.entries(PASSIVE_SK).is_empty(), "answered: the socket is forgotten");
    assert_eq!(sim.stat(Stat::PassiveOpen), 0, "the gauge follows the entries");
    assert_eq!(sim.stat(Stat::ServedBy), 2);
}

#[test]
fn the_process_that_reads_and_answers_wins_over_the_listener_and_the_acceptor() {
    // Node's cluster (round robin): the primary listens and accepts, a worker is handed the
    // descriptor over a Unix socket and serves.
    let sim = Sim::new();
    let primary = task(400, "node");
    let worker = task(401, "node");
    let (local, peer) = (v4([127, 0, 0, 1], 8080), v4([127, 0, 0, 1], 45000));
    sim.state(&primary, 10, CLOSE, LISTEN, v4([0, 0, 0, 0], 8080), v4([0, 0, 0, 0], 0));
    sim.state(&SOFTIRQ, SK, SYN_RECV, ESTABLISHED, local, peer);
    sim.accept4(&primary, Some(peer), 20);
    assert_eq!(sim.flow_owner(local, peer).map(|o| o.tgid), Some(400), "accept: the primary");
    // The fd handed over a Unix socket (SCM_RIGHTS) is I/O of another family: no effect.
    sim.io(&primary, 0xffff_8880_0000_7700, true, 1, 0, 64);
    assert_eq!(sim.flow_owner(local, peer).map(|o| o.tgid), Some(400));
    sim.recv(&worker, SK, 78);
    assert_eq!(sim.flow_owner(local, peer).map(|o| o.tgid), Some(401), "the worker read the request");
    sim.send(&worker, SK, 200);
    assert_eq!(sim.flow_owner(local, peer).map(|o| o.tgid), Some(401));
    // Once answered, later I/O by another process no longer moves the owner.
    sim.recv(&primary, SK, 10);
    assert_eq!(sim.flow_owner(local, peer).map(|o| o.tgid), Some(401));
    assert_eq!(sim.stat(Stat::ServedBy), 2);
}

#[test]
fn socket_io_on_other_sockets_changes_nothing() {
    let (sim, local, peer) = accepted_before_known_listener();
    let p = task(9, "other");
    sim.io(&p, SK, false, 1, IPPROTO_TCP, 10); // AF_UNIX
    sim.io(&p, SK, false, AF_INET, 17, 10); // UDP
    sim.io(&p, SK, true, AF_INET6, 132, 10); // SCTP
    sim.recv(&p, SK, 0); // EOF
    sim.send(&p, SK, -32); // EPIPE
    sim.recv(&p, 0xffff_8880_0000_0001, 10); // a socket that was not accepted
    sim.send(&p, 0xffff_8880_0000_0001, 10);
    assert_eq!(sim.flow_owner(local, peer), None);
    assert_eq!(sim.entries(PASSIVE_SK).len(), 1);
    assert_eq!(sim.stat(Stat::ServedBy), 0);
}

#[test]
fn close_forgets_the_passive_socket_but_keeps_the_owner_for_late_lookups() {
    let (sim, local, peer) = accepted_before_known_listener();
    sim.recv(&task(300, "node"), SK, 78);
    // The client closes first: CLOSE_WAIT → LAST_ACK → CLOSE, before the server ever sent.
    sim.state(&SOFTIRQ, SK, 9, CLOSE, local, peer); // LAST_ACK (9) → CLOSE
    assert!(sim.entries(PASSIVE_SK).is_empty());
    assert_eq!(sim.stat(Stat::PassiveOpen), 0);
    sim.state(&SOFTIRQ, SK, 9, CLOSE, local, peer); // a second close removes nothing
    assert_eq!(sim.stat(Stat::PassiveOpen), 0, "never below zero");
    assert_eq!(sim.flow_owner(local, peer).map(|o| o.tgid), Some(300), "the tuple outlives the close");
    // A connection that opens and closes without I/O on the server: the listener guess stays.
    let sim = Sim::new();
    sim.state(&task(100, "srv"), 10, CLOSE, LISTEN, v4([0, 0, 0, 0], 8080), v4([0, 0, 0, 0], 0));
    sim.state(&SOFTIRQ, SK, SYN_RECV, ESTABLISHED, local, peer);
    sim.state(&SOFTIRQ, SK, 8, CLOSE, local, peer); // CLOSE_WAIT... → CLOSE
    assert!(sim.entries(PASSIVE_SK).is_empty());
    assert_eq!(sim.flow_owner(local, peer).map(|o| o.tgid), Some(100));
}

#[test]
fn owners_are_named_by_the_process_not_the_thread() {
    // The thread that listens, connects, accepts or serves renamed itself; the record names
    // the process (its leader's comm, /proc/<pid>/comm).
    let t = Task { tgid: 500, tid: 512, comm: "acceptor-3".into(), process: "myserver".into(), cgroup: 5 };
    let (local, peer) = (v4([127, 0, 0, 1], 8080), v4([127, 0, 0, 1], 45000));
    let sim = Sim::new();
    sim.state(&t, 10, CLOSE, LISTEN, v4([0, 0, 0, 0], 8080), v4([0, 0, 0, 0], 0));
    let l = Owner::decode(&sim.entries(LISTEN_OWNER)[0].1[..].try_into().expect("owner"), ORDER);
    assert_eq!(l.comm_str(), "myserver", "listen");
    sim.state(&SOFTIRQ, SK, SYN_RECV, ESTABLISHED, local, peer);
    sim.accept4(&t, Some(peer), 5);
    assert_eq!(sim.flow_owner(local, peer).map(|o| o.comm_str()).as_deref(), Some("myserver"), "accept");
    sim.recv(&t, SK, 5);
    assert_eq!(sim.flow_owner(local, peer).map(|o| o.comm_str()).as_deref(), Some("myserver"), "recv");
    sim.state(&t, 20, CLOSE, SYN_SENT, v4([0, 0, 0, 0], 0), v4([127, 0, 0, 1], 80));
    sim.state(&SOFTIRQ, 20, SYN_SENT, ESTABLISHED, v4([127, 0, 0, 1], 40001), v4([127, 0, 0, 1], 80));
    let c = sim.flow_owner(v4([127, 0, 0, 1], 40001), v4([127, 0, 0, 1], 80)).expect("connect");
    assert_eq!((c.tgid, c.comm_str().as_str()), (500, "myserver"));
    assert_eq!(sim.stat(Stat::ThreadComms), 0);

    // Without BTF offsets: the thread's name, counted.
    let sim = Sim::with_task_offsets(None);
    sim.state(&t, 10, CLOSE, LISTEN, v4([0, 0, 0, 0], 8080), v4([0, 0, 0, 0], 0));
    let l = Owner::decode(&sim.entries(LISTEN_OWNER)[0].1[..].try_into().expect("owner"), ORDER);
    assert_eq!(l.comm_str(), "acceptor-3");
    assert_eq!(sim.stat(Stat::ThreadComms), 1);

    // A kernel read that faults (no task memory): the thread's name, counted.
    let sim = Sim::new();
    sim.as_task(&t);
    with_kernel(|k| k.kmem.clear());
    let mut rec = vec![0u8; 72];
    let f = sim.fields.sock_state;
    rec[f.protocol.offset as usize..][..2].copy_from_slice(&IPPROTO_TCP.to_ne_bytes());
    rec[f.family.offset as usize..][..2].copy_from_slice(&AF_INET.to_ne_bytes());
    rec[f.oldstate.offset as usize..][..4].copy_from_slice(&CLOSE.to_ne_bytes());
    rec[f.newstate.offset as usize..][..4].copy_from_slice(&LISTEN.to_ne_bytes());
    rec[f.sport.offset as usize..][..2].copy_from_slice(&8080u16.to_ne_bytes());
    sim.run("inet_sock_set_state", &mut rec);
    let l = Owner::decode(&sim.entries(LISTEN_OWNER)[0].1[..].try_into().expect("owner"), ORDER);
    assert_eq!((l.tgid, l.comm_str().as_str()), (500, "acceptor-3"));
    assert_eq!(sim.stat(Stat::ThreadComms), 1);
}

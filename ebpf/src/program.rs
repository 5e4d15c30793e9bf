//! The attribution programs, written instruction by instruction with [`crate::asm`].
//!
//! Four kinds of program, seven attachments:
//! - `inet_sock_set_state` on `sock/inet_sock_set_state`, which sees every TCP state change:
//!   - CLOSE→SYN_SENT (`connect()`, runs in the connecting thread): `sock_owner[skaddr] =`
//!     current {tgid, comm}. The source port is still 0 here, so no tuple yet.
//!   - SYN_SENT→ESTABLISHED (often in softirq, where "current" is unrelated):
//!     `flow_owner[tuple] = sock_owner[skaddr]`, then forget `sock_owner[skaddr]`.
//!   - CLOSE→LISTEN (`listen()`, in the listening process): `listen_owner[(addr, port)] =` current.
//!   - SYN_RECV/NEW_SYN_RECV→ESTABLISHED (passive open, in softirq): first guess
//!     `flow_owner[tuple] = listen_owner[(local addr, port)]`, trying the exact address, then
//!     the IPv4 wildcard (for mapped addresses), then `::`; and remember the connection in
//!     `accept_pending[(remote addr, remote port)] = tuple` for the acceptor and in
//!     `passive_sk[skaddr] = tuple` for the process that will serve it.
//!   - SYN_SENT→CLOSE (failed connect): forget `sock_owner[skaddr]`; LISTEN→CLOSE by the
//!     listener's own process: forget `listen_owner[(addr, port)]`; any other →CLOSE: forget
//!     `passive_sk[skaddr]`.
//! - `sys_enter_accept4` / `sys_enter_accept` (in the accepting thread): keep the user
//!   pointer to the peer `sockaddr` in `accept_args[pid_tgid]`.
//! - `sys_exit_accept4` / `sys_exit_accept`: when a descriptor was returned, read the peer
//!   address and port from that `sockaddr`, find the connection in `accept_pending`, and
//!   overwrite `flow_owner[tuple]` with the acceptor's {tgid, comm}. This is what attributes
//!   connections to the worker that accepted them (nginx, gunicorn, php-fpm), not to the
//!   master that listened.
//! - `sock_recv_length` / `sock_send_length` (in the task doing socket I/O; see [`sock_io`]):
//!   on an accepted socket still in `passive_sk`, `flow_owner[tuple] =` current; the first send
//!   ends it. This attributes the connection to the process serving it, also when it was
//!   accepted with a NULL address (libuv, Go, many Rust servers) or handed to another process
//!   (Node's `cluster`, fd passing).
//!
//! Every "current" owner is {tgid, the process's name, its cgroup v2 id}: the thread group
//! leader's `comm` read through BTF offsets (see [`current_owner`]), the thread's name only
//! without them; the cgroup from `bpf_get_current_cgroup_id` (helper 80, tracing programs since
//! 4.18). Recorded at connect, accept and serve time, it outlives the process: the agent maps
//! it to the container through the cgroup2 hierarchy once a short-lived client is gone.
//!
//! Established tuples are *not* deleted when the connection closes: the agent attributes an
//! exchange after capturing and parsing it, which for a short-lived connection is after the
//! close. Tuple entries are overwritten when a tuple is reused (every new connection writes its
//! own) and evicted least-recently-used when `flow_owner` is full.
//!
//! Known limits (the listener's owner, or the acceptor, stays as the guess, and the agent's
//! /proc fallback is not consulted because the map has an answer):
//! - an accepted connection on which the server never sent nor received through
//!   `sock_sendmsg`/`sock_recvmsg` (reading only with `splice`, which goes through
//!   `splice_read`, not `recvmsg`; data handled in the kernel by sockmap redirection) keeps
//!   the acceptor (when its `accept` passed an address) or the listener (`accept(fd, NULL,
//!   NULL)`, `io_uring` accepts, which bypass the syscall tracepoints);
//! - `accept_pending` is keyed by the peer's (address, port) only, because that is all the
//!   `sockaddr` holds: two handshakes from the same peer port to two local ports, both waiting
//!   for `accept` at the same moment, keep only the newer one;
//! - a server that sends before reading (a greeting) from one process and then hands the
//!   socket to another is attributed to the first.
//!
//! When `config[0]` has [`CONFIG_FILTER_PORTS`] set, a state change is only processed if its
//! local or remote port is a key of `port_filter` (so the connect-time record, whose local port
//! is 0, passes on the remote port, and a listener on its own port).
//!
//! Only what the kernel guarantees about the context is used: the record's fields at the
//! offsets of [`Fields`] (read at load time from tracefs), and helpers available to
//! tracepoint programs since Linux 5.5 (`probe_read_user`, `probe_read_kernel`). Every program
//! returns 0.

use crate::asm::{Alu, Asm, AsmError, Cond, Helper, Label, Program, Reg, Size};
use crate::btf::TaskOffsets;
use crate::format::{AcceptFields, Field, Fields, SockIoFields, SockStateFields};
use crate::layout::{
    ACCEPT_ARGS, ACCEPT_PENDING, AF_INET, AF_INET6, CONFIG, CONFIG_FILTER_PORTS, FLOW_OWNER, IPPROTO_TCP,
    LISTEN_OWNER, PASSIVE_SK, PORT_FILTER, SOCK_OWNER, STATS, Stat, tcp_state,
};

/// One program of the object: its symbol name, and the tracepoint it attaches to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramDef {
    /// Symbol name, the name `aya::Ebpf::program_mut` finds it by.
    pub name: &'static str,
    /// Tracepoint category (`sock`, `syscalls`).
    pub category: &'static str,
    /// Tracepoint name.
    pub tracepoint: &'static str,
    pub program: Program,
}

impl ProgramDef {
    /// ELF section name, `tracepoint/<category>/<name>`.
    pub fn section(&self) -> String {
        format!("tracepoint/{}/{}", self.category, self.tracepoint)
    }
}

/// All programs for the given record layouts; `task`: where the process's name is (see
/// [`current_owner`]).
pub fn programs(fields: &Fields, task: Option<TaskOffsets>) -> Result<Vec<ProgramDef>, AsmError> {
    let mut out = vec![
        ProgramDef {
            name: "inet_sock_set_state",
            category: "sock",
            tracepoint: "inet_sock_set_state",
            program: sock_state(&fields.sock_state, task)?,
        },
        ProgramDef {
            name: "sys_enter_accept4",
            category: "syscalls",
            tracepoint: "sys_enter_accept4",
            program: accept_enter(&fields.accept4)?,
        },
        ProgramDef {
            name: "sys_exit_accept4",
            category: "syscalls",
            tracepoint: "sys_exit_accept4",
            program: accept_exit(&fields.accept4, task)?,
        },
    ];
    if let Some(accept) = &fields.accept {
        out.push(ProgramDef {
            name: "sys_enter_accept",
            category: "syscalls",
            tracepoint: "sys_enter_accept",
            program: accept_enter(accept)?,
        });
        out.push(ProgramDef {
            name: "sys_exit_accept",
            category: "syscalls",
            tracepoint: "sys_exit_accept",
            program: accept_exit(accept, task)?,
        });
    }
    if let Some(io) = &fields.sock_io {
        out.push(ProgramDef {
            name: "sock_recv_length",
            category: "sock",
            tracepoint: "sock_recv_length",
            program: sock_io(io, task, false)?,
        });
        out.push(ProgramDef {
            name: "sock_send_length",
            category: "sock",
            tracepoint: "sock_send_length",
            program: sock_io(io, task, true)?,
        });
    }
    Ok(out)
}

// Registers with a fixed role in every program.
/// The trace record (context pointer), saved from r1 before any call.
const CTX: Reg = Reg::R6;
/// Pointer to the `stats` value, valid (non-NULL) after the prologue.
const STATS_PTR: Reg = Reg::R9;
const FP: Reg = Reg::R10;

// Stack frame of inet_sock_set_state (offsets from r10, every slot aligned to its widest access).
/// FlowKey, 36 bytes: saddr at -40, daddr at -24, sport at -8, dport at -6.
const FLOW: i16 = -40;
const FLOW_DADDR: i16 = FLOW + 16;
const FLOW_SPORT: i16 = FLOW + 32;
const FLOW_DPORT: i16 = FLOW + 34;
/// Owner, 32 bytes: tgid at -72, comm at -68, pad at -52, cgroup_id at -48.
const OWNER: i16 = -72;
/// Endpoint, 20 bytes: addr at -96, port at -80, pad at -78.
const EP: i16 = -96;
const EP_PORT: i16 = EP + 16;
const EP_PAD: i16 = EP + 18;
/// skaddr (u64).
const SKADDR: i16 = -104;
/// Scratch key: u32 array index, or u16 port.
const SCRATCH: i16 = -112;
/// The group leader's `task_struct *` (u64), read by [`current_owner`].
const TASK: i16 = -120;

/// Signed 16-bit view of a record offset. [`crate::format`] rejects fields past
/// [`crate::format::MAX_RECORD`] (8192), so the conversion cannot fail for parsed layouts; a
/// hand-built out-of-range offset saturates and the verifier rejects the access.
fn off(f: Field) -> i16 {
    i16::try_from(f.offset).unwrap_or(i16::MAX)
}

/// `dst = &stack[at]`.
fn stack_ptr(a: &mut Asm, dst: Reg, at: i16) {
    a.mov_reg(dst, FP).alu_imm(Alu::Add, dst, at.into());
}

/// `r0 = bpf_map_lookup_elem(&map, &stack[key])`.
fn lookup(a: &mut Asm, map: &str, key: i16) {
    a.ld_map(Reg::R1, map);
    stack_ptr(a, Reg::R2, key);
    a.call(Helper::MapLookupElem);
}

/// `bpf_map_update_elem(&map, &stack[key], value, BPF_ANY)` where `value` is already in r3.
fn update_r3(a: &mut Asm, map: &str, key: i16) {
    a.ld_map(Reg::R1, map);
    stack_ptr(a, Reg::R2, key);
    a.mov_imm(Reg::R4, 0); // BPF_ANY: create or overwrite
    a.call(Helper::MapUpdateElem);
}

/// `bpf_map_delete_elem(&map, &stack[key])`.
fn delete(a: &mut Asm, map: &str, key: i16) {
    a.ld_map(Reg::R1, map);
    stack_ptr(a, Reg::R2, key);
    a.call(Helper::MapDeleteElem);
}

/// `stats[counter] += 1`, atomically (several CPUs run the program at once).
fn count(a: &mut Asm, stat: Stat) {
    a.mov_imm(Reg::R1, 1).atomic_add64(STATS_PTR, stat.offset() as i16, Reg::R1);
}

/// `stats[PassiveOpen] -= 1` if the delete just made (its result in r0) removed an entry.
fn uncount_passive(a: &mut Asm) {
    let kept = a.label();
    a.jmp_imm(Cond::Ne, Reg::R0, 0, kept);
    a.mov_imm(Reg::R1, -1).atomic_add64(STATS_PTR, Stat::PassiveOpen.offset() as i16, Reg::R1);
    a.bind(kept);
}

/// Prologue: r6 = ctx; r9 = &stats[0], or return when the array is missing (never, for an
/// array of one element, but the verifier needs the NULL check).
fn prologue(a: &mut Asm, exit: Label) {
    a.mov_reg(CTX, Reg::R1); // keep the record pointer across helper calls
    a.st_imm(Size::W, FP, SCRATCH, 0); // key 0
    lookup(a, STATS, SCRATCH);
    a.jmp_imm(Cond::Eq, Reg::R0, 0, exit);
    a.mov_reg(STATS_PTR, Reg::R0);
}

/// Writes the current process as an Owner at `stack[at]`: tgid (upper half of pid_tgid,
/// the PID as `ps` shows it, never the thread ID), its cgroup v2 id
/// (`bpf_get_current_cgroup_id`, read here, in the process's own context, so that its
/// container is still known once it has exited), and the process's name,
/// `current->group_leader->comm` (what `/proc/<pid>/comm` shows), read with
/// `probe_read_kernel` at the BTF offsets `task`. Without offsets, or when a read faults, the
/// current thread's name instead, counted in [`Stat::ThreadComms`] (needs [`STATS_PTR`]).
/// `leader` is an 8-byte stack slot for the leader's address.
fn current_owner(a: &mut Asm, at: i16, task: Option<TaskOffsets>, leader: i16) {
    a.call(Helper::GetCurrentPidTgid);
    a.alu_imm(Alu::Rsh, Reg::R0, 32); // tgid = pid_tgid >> 32
    a.stx(Size::W, FP, at, Reg::R0);
    a.st_imm(Size::W, FP, at + 20, 0); // pad
    a.call(Helper::GetCurrentCgroupId);
    a.stx(Size::DW, FP, at + 24, Reg::R0);
    let thread_name = a.label();
    let done = a.label();
    // Offsets come from BTF, far below i32::MAX for any real task_struct; a larger one
    // could not be added as an immediate and falls back to the thread's name.
    if let Some((group_leader, comm)) =
        task.and_then(|t| Some((i32::try_from(t.group_leader).ok()?, i32::try_from(t.comm).ok()?)))
    {
        a.call(Helper::GetCurrentTask);
        a.mov_reg(Reg::R3, Reg::R0).alu_imm(Alu::Add, Reg::R3, group_leader);
        stack_ptr(a, Reg::R1, leader);
        a.mov_imm(Reg::R2, 8);
        a.call(Helper::ProbeReadKernel); // leader = current->group_leader
        a.jmp_imm(Cond::Ne, Reg::R0, 0, thread_name);
        a.ldx(Size::DW, Reg::R3, FP, leader).alu_imm(Alu::Add, Reg::R3, comm);
        stack_ptr(a, Reg::R1, at + 4);
        a.mov_imm(Reg::R2, 16);
        a.call(Helper::ProbeReadKernel); // comm = leader->comm
        a.jmp_imm(Cond::Eq, Reg::R0, 0, done);
    }
    a.bind(thread_name);
    count(a, Stat::ThreadComms);
    stack_ptr(a, Reg::R1, at + 4);
    a.mov_imm(Reg::R2, 16);
    a.call(Helper::GetCurrentComm); // fills all 16 bytes, NUL padded
    a.bind(done);
}

/// Copies `len` bytes of the record at `from` to the stack at `to`, with the widest accesses
/// aligned on both sides (the verifier rejects misaligned context and stack accesses).
fn copy_ctx(a: &mut Asm, from: i16, to: i16, len: i16) {
    let mut done = 0;
    while done < len {
        let (src, dst, left) = (from + done, to + done, len - done);
        let width = [8i16, 4, 2, 1]
            .into_iter()
            .find(|&w| w <= left && src.rem_euclid(w) == 0 && dst.rem_euclid(w) == 0)
            .unwrap_or(1);
        let size = Size::of_bytes(width as usize).unwrap_or(Size::B);
        a.ldx(size, Reg::R1, CTX, src).stx(size, FP, dst, Reg::R1);
        done += width;
    }
}

/// Stores the mapped IPv4 prefix `00…00 ff ff` in the first 12 bytes at `stack[at]`
/// (byte-order independent: only zero and all-ones immediates).
fn store_v4_prefix(a: &mut Asm, at: i16) {
    a.st_imm(Size::DW, FP, at, 0); // bytes 0..8 = 0
    a.st_imm(Size::H, FP, at + 8, 0); // bytes 8..10 = 0
    a.st_imm(Size::H, FP, at + 10, -1); // bytes 10..12 = ff ff
}

/// Writes one of the record's addresses at `stack[at]` as 16 bytes, IPv4 mapped. The kernel
/// already maps AF_INET addresses into `*_v6`, but only when built with IPv6; building the
/// mapped form from the 4-byte field is cheap and removes the dependency.
fn record_addr(a: &mut Asm, f: &SockStateFields, v4: Field, v6: Field, at: i16) {
    let is_v4 = a.label();
    let done = a.label();
    a.ldx(Size::H, Reg::R1, CTX, off(f.family));
    a.jmp_imm(Cond::Eq, Reg::R1, AF_INET.into(), is_v4);
    copy_ctx(a, off(v6), at, 16); // AF_INET6: as is (dual-stack sockets carry ::ffff:a.b.c.d)
    a.ja(done);
    a.bind(is_v4);
    store_v4_prefix(a, at);
    copy_ctx(a, off(v4), at + 12, 4); // bytes 12..16 = the IPv4 address
    a.bind(done);
}

/// Builds the FlowKey of the record's socket at FLOW: (saddr, daddr, sport, dport).
fn flow_key(a: &mut Asm, f: &SockStateFields) {
    record_addr(a, f, f.saddr, f.saddr_v6, FLOW);
    record_addr(a, f, f.daddr, f.daddr_v6, FLOW_DADDR);
    a.ldx(Size::H, Reg::R1, CTX, off(f.sport)).stx(Size::H, FP, FLOW_SPORT, Reg::R1);
    a.ldx(Size::H, Reg::R1, CTX, off(f.dport)).stx(Size::H, FP, FLOW_DPORT, Reg::R1);
}

/// Builds the Endpoint (local address, local port) of the record's socket at EP.
fn local_endpoint(a: &mut Asm, f: &SockStateFields) {
    record_addr(a, f, f.saddr, f.saddr_v6, EP);
    a.ldx(Size::H, Reg::R1, CTX, off(f.sport)).stx(Size::H, FP, EP_PORT, Reg::R1);
    a.st_imm(Size::H, FP, EP_PAD, 0);
}

/// Stores the record's skaddr at SKADDR.
fn skaddr(a: &mut Asm, f: &SockStateFields) {
    a.ldx(Size::DW, Reg::R1, CTX, off(f.skaddr)).stx(Size::DW, FP, SKADDR, Reg::R1);
}

/// Returns to `exit` unless the port filter is off or lets the record's sport or dport pass.
fn port_filter(a: &mut Asm, f: &SockStateFields, exit: Label) {
    let pass = a.label();
    let filtered = a.label();
    // r0 = &config[0]; filtering is off unless its CONFIG_FILTER_PORTS bit is set.
    a.st_imm(Size::W, FP, SCRATCH, 0);
    lookup(a, CONFIG, SCRATCH);
    a.jmp_imm(Cond::Eq, Reg::R0, 0, pass);
    a.ldx(Size::W, Reg::R1, Reg::R0, 0);
    a.alu_imm(Alu::And, Reg::R1, CONFIG_FILTER_PORTS as i32);
    a.jmp_imm(Cond::Eq, Reg::R1, 0, pass);
    // port_filter[sport]?
    a.ldx(Size::H, Reg::R1, CTX, off(f.sport)).stx(Size::H, FP, SCRATCH, Reg::R1);
    lookup(a, PORT_FILTER, SCRATCH);
    a.jmp_imm(Cond::Ne, Reg::R0, 0, pass);
    // port_filter[dport]?
    a.ldx(Size::H, Reg::R1, CTX, off(f.dport)).stx(Size::H, FP, SCRATCH, Reg::R1);
    lookup(a, PORT_FILTER, SCRATCH);
    a.jmp_imm(Cond::Ne, Reg::R0, 0, pass);
    a.bind(filtered);
    count(a, Stat::Filtered);
    a.ja(exit);
    a.bind(pass);
}

/// The `sock/inet_sock_set_state` program.
pub fn sock_state(f: &SockStateFields, task: Option<TaskOffsets>) -> Result<Program, AsmError> {
    let mut a = Asm::new();
    let exit = a.label();
    let syn_sent = a.label();
    let established = a.label();
    let listen = a.label();
    let close = a.label();
    let passive = a.label();
    let found_listener = a.label();
    let try_any = a.label();
    let pending = a.label();
    let close_listen = a.label();

    prologue(&mut a, exit);
    // TCP only (the tracepoint also fires for SCTP and MPTCP), IPv4 or IPv6 only.
    a.ldx(Size::H, Reg::R1, CTX, off(f.protocol));
    a.jmp_imm(Cond::Ne, Reg::R1, IPPROTO_TCP.into(), exit);
    a.ldx(Size::H, Reg::R1, CTX, off(f.family));
    let family_ok = a.label();
    a.jmp_imm(Cond::Eq, Reg::R1, AF_INET.into(), family_ok);
    a.jmp_imm(Cond::Ne, Reg::R1, AF_INET6.into(), exit);
    a.bind(family_ok);
    port_filter(&mut a, f, exit);
    count(&mut a, Stat::StateChanges);

    // Dispatch on the new state; r7 = oldstate for the handlers.
    a.ldx(Size::W, Reg::R7, CTX, off(f.oldstate));
    a.ldx(Size::W, Reg::R1, CTX, off(f.newstate));
    a.jmp_imm(Cond::Eq, Reg::R1, tcp_state::ESTABLISHED, established);
    a.jmp_imm(Cond::Eq, Reg::R1, tcp_state::SYN_SENT, syn_sent);
    a.jmp_imm(Cond::Eq, Reg::R1, tcp_state::LISTEN, listen);
    a.jmp_imm(Cond::Eq, Reg::R1, tcp_state::CLOSE, close);
    a.ja(exit);

    // CLOSE→SYN_SENT: connect() in the owning thread. sock_owner[skaddr] = current.
    a.bind(syn_sent);
    a.jmp_imm(Cond::Ne, Reg::R7, tcp_state::CLOSE, exit);
    skaddr(&mut a, f);
    current_owner(&mut a, OWNER, task, TASK);
    stack_ptr(&mut a, Reg::R3, OWNER);
    update_r3(&mut a, SOCK_OWNER, SKADDR);
    count(&mut a, Stat::Connects);
    a.ja(exit);

    // CLOSE→LISTEN: listen() in the owning process. listen_owner[(addr, port)] = current.
    a.bind(listen);
    a.jmp_imm(Cond::Ne, Reg::R7, tcp_state::CLOSE, exit);
    local_endpoint(&mut a, f);
    current_owner(&mut a, OWNER, task, TASK);
    stack_ptr(&mut a, Reg::R3, OWNER);
    update_r3(&mut a, LISTEN_OWNER, EP);
    count(&mut a, Stat::Listens);
    a.ja(exit);

    // →ESTABLISHED: build the tuple, then by old state.
    a.bind(established);
    flow_key(&mut a, f);
    a.jmp_imm(Cond::Eq, Reg::R7, tcp_state::SYN_RECV, passive);
    a.jmp_imm(Cond::Eq, Reg::R7, tcp_state::NEW_SYN_RECV, passive);
    a.jmp_imm(Cond::Ne, Reg::R7, tcp_state::SYN_SENT, exit);

    // Active open completed (maybe in softirq: never read "current" here).
    // flow_owner[tuple] = sock_owner[skaddr]; forget sock_owner[skaddr].
    skaddr(&mut a, f);
    lookup(&mut a, SOCK_OWNER, SKADDR);
    let active_found = a.label();
    a.jmp_imm(Cond::Ne, Reg::R0, 0, active_found);
    count(&mut a, Stat::ActiveMisses); // connect() happened before the program was loaded
    a.ja(exit);
    a.bind(active_found);
    a.mov_reg(Reg::R3, Reg::R0); // value = the sock_owner entry itself
    update_r3(&mut a, FLOW_OWNER, FLOW);
    delete(&mut a, SOCK_OWNER, SKADDR);
    count(&mut a, Stat::ActiveFlows);
    a.ja(exit);

    // Passive open completed (softirq). First guess: the listener's owner.
    a.bind(passive);
    local_endpoint(&mut a, f);
    lookup(&mut a, LISTEN_OWNER, EP); // 1. exact (address, port)
    a.jmp_imm(Cond::Ne, Reg::R0, 0, found_listener);
    // 2. if the address is IPv4 mapped (bytes 0..10 zero, 10..12 ff ff): ::ffff:0.0.0.0
    a.ldx(Size::DW, Reg::R1, FP, EP);
    a.jmp_imm(Cond::Ne, Reg::R1, 0, try_any);
    a.ldx(Size::H, Reg::R1, FP, EP + 8);
    a.jmp_imm(Cond::Ne, Reg::R1, 0, try_any);
    a.ldx(Size::H, Reg::R1, FP, EP + 10);
    a.jmp_imm(Cond::Ne, Reg::R1, 0xffff, try_any);
    a.st_imm(Size::W, FP, EP + 12, 0); // keep the prefix, zero the IPv4 address
    lookup(&mut a, LISTEN_OWNER, EP);
    a.jmp_imm(Cond::Ne, Reg::R0, 0, found_listener);
    // 3. `::` (IPv6 wildcard; dual-stack listeners accept IPv4 too)
    a.bind(try_any);
    a.st_imm(Size::DW, FP, EP, 0);
    a.st_imm(Size::DW, FP, EP + 8, 0);
    lookup(&mut a, LISTEN_OWNER, EP);
    a.jmp_imm(Cond::Ne, Reg::R0, 0, found_listener);
    count(&mut a, Stat::PassiveMisses); // listen() before load: only accept can tell
    a.ja(pending);
    a.bind(found_listener);
    a.mov_reg(Reg::R3, Reg::R0); // value = the listen_owner entry
    update_r3(&mut a, FLOW_OWNER, FLOW);
    count(&mut a, Stat::PassiveGuesses);
    // passive_sk[skaddr] = tuple, for the process that will serve it (see sock_io).
    a.bind(pending);
    count(&mut a, Stat::PassiveOpen); // before the insert: never below the entries
    skaddr(&mut a, f);
    stack_ptr(&mut a, Reg::R3, FLOW);
    update_r3(&mut a, PASSIVE_SK, SKADDR);
    // accept_pending[(remote addr, remote port)] = tuple, for the accepting process.
    a.ldx(Size::DW, Reg::R1, FP, FLOW_DADDR).stx(Size::DW, FP, EP, Reg::R1);
    a.ldx(Size::DW, Reg::R1, FP, FLOW_DADDR + 8).stx(Size::DW, FP, EP + 8, Reg::R1);
    a.ldx(Size::H, Reg::R1, FP, FLOW_DPORT).stx(Size::H, FP, EP_PORT, Reg::R1);
    a.st_imm(Size::H, FP, EP_PAD, 0);
    stack_ptr(&mut a, Reg::R3, FLOW);
    update_r3(&mut a, ACCEPT_PENDING, EP);
    a.ja(exit);

    // →CLOSE.
    a.bind(close);
    a.jmp_imm(Cond::Eq, Reg::R7, tcp_state::LISTEN, close_listen);
    let close_connection = a.label();
    a.jmp_imm(Cond::Ne, Reg::R7, tcp_state::SYN_SENT, close_connection);
    // SYN_SENT→CLOSE: the connect failed; forget the socket.
    skaddr(&mut a, f);
    delete(&mut a, SOCK_OWNER, SKADDR);
    a.ja(exit);
    // Any other state →CLOSE: a connection ends; forget it as an accepted socket (it may
    // never have sent). Its flow_owner tuple stays, for exchanges parsed after the close.
    a.bind(close_connection);
    skaddr(&mut a, f);
    delete(&mut a, PASSIVE_SK, SKADDR);
    uncount_passive(&mut a);
    a.ja(exit);
    // LISTEN→CLOSE: forget the listener, but only if this process is the one recorded (with
    // SO_REUSEPORT, several processes listen on the same address and port).
    a.bind(close_listen);
    local_endpoint(&mut a, f);
    lookup(&mut a, LISTEN_OWNER, EP);
    a.jmp_imm(Cond::Eq, Reg::R0, 0, exit);
    a.ldx(Size::W, Reg::R7, Reg::R0, 0); // r7 = recorded tgid
    a.call(Helper::GetCurrentPidTgid);
    a.alu_imm(Alu::Rsh, Reg::R0, 32);
    a.jmp_reg(Cond::Ne, Reg::R0, Reg::R7, exit);
    delete(&mut a, LISTEN_OWNER, EP);

    a.bind(exit);
    a.mov_imm(Reg::R0, 0).exit();
    a.finish()
}

// Stack frame of the accept programs.
/// pid_tgid (u64), the accept_args key.
const A_TID: i16 = -8;
/// Saved user sockaddr pointer (u64), the accept_args value.
const A_PTR: i16 = -16;
/// First 8 bytes of the peer sockaddr: family (u16 host order), port (u16 network order),
/// and for AF_INET the address.
const A_SA: i16 = -32;
/// Endpoint, 20 bytes: addr at -56, port at -40, pad at -38.
const A_EP: i16 = -56;
/// Owner, 32 bytes: tgid at -88, comm at -84, pad at -68, cgroup_id at -64.
const A_OWNER: i16 = -88;
/// The group leader's `task_struct *` (u64), for [`current_owner`].
const A_TASK: i16 = -96;

/// `sys_enter_accept4` / `sys_enter_accept`: `accept_args[pid_tgid] = upeer_sockaddr`.
pub fn accept_enter(f: &AcceptFields) -> Result<Program, AsmError> {
    let mut a = Asm::new();
    let exit = a.label();
    a.mov_reg(CTX, Reg::R1);
    a.ldx(Size::DW, Reg::R1, CTX, off(f.upeer_sockaddr));
    a.jmp_imm(Cond::Eq, Reg::R1, 0, exit); // accept(fd, NULL, NULL): nothing to read later
    a.stx(Size::DW, FP, A_PTR, Reg::R1);
    a.call(Helper::GetCurrentPidTgid); // per thread: threads may accept concurrently
    a.stx(Size::DW, FP, A_TID, Reg::R0);
    stack_ptr(&mut a, Reg::R3, A_PTR);
    update_r3(&mut a, ACCEPT_ARGS, A_TID);
    a.bind(exit);
    a.mov_imm(Reg::R0, 0).exit();
    a.finish()
}

/// `sys_exit_accept4` / `sys_exit_accept`: refine the accepted connection's owner.
pub fn accept_exit(f: &AcceptFields, task: Option<TaskOffsets>) -> Result<Program, AsmError> {
    let mut a = Asm::new();
    let exit = a.label();
    let v4 = a.label();
    let port = a.label();
    let found = a.label();

    prologue(&mut a, exit);
    // r7 = accept_args[pid_tgid], then forget it whatever the outcome.
    a.call(Helper::GetCurrentPidTgid);
    a.stx(Size::DW, FP, A_TID, Reg::R0);
    lookup(&mut a, ACCEPT_ARGS, A_TID);
    a.jmp_imm(Cond::Eq, Reg::R0, 0, exit);
    a.ldx(Size::DW, Reg::R7, Reg::R0, 0); // user pointer to struct sockaddr
    delete(&mut a, ACCEPT_ARGS, A_TID);
    // Failed accept (ret = -errno): nothing was accepted.
    a.ldx(Size::DW, Reg::R1, CTX, off(f.ret));
    a.jmp_imm(Cond::Slt, Reg::R1, 0, exit);
    // Read family, port and (for AF_INET) the address: sockaddr_in's first 8 bytes, also the
    // first 8 of sockaddr_in6 (family, port, flowinfo).
    stack_ptr(&mut a, Reg::R1, A_SA);
    a.mov_imm(Reg::R2, 8);
    a.mov_reg(Reg::R3, Reg::R7);
    a.call(Helper::ProbeReadUser);
    a.jmp_imm(Cond::Ne, Reg::R0, 0, exit);
    a.ldx(Size::H, Reg::R1, FP, A_SA); // sa_family, host order
    a.jmp_imm(Cond::Eq, Reg::R1, AF_INET.into(), v4);
    a.jmp_imm(Cond::Ne, Reg::R1, AF_INET6.into(), exit);
    // AF_INET6: sin6_addr is at offset 8 of sockaddr_in6; read it straight into the key.
    stack_ptr(&mut a, Reg::R1, A_EP);
    a.mov_imm(Reg::R2, 16);
    a.mov_reg(Reg::R3, Reg::R7);
    a.alu_imm(Alu::Add, Reg::R3, 8);
    a.call(Helper::ProbeReadUser);
    a.jmp_imm(Cond::Ne, Reg::R0, 0, exit);
    a.ja(port);
    // AF_INET: ::ffff:a.b.c.d with sin_addr (offset 4 of sockaddr_in).
    a.bind(v4);
    store_v4_prefix(&mut a, A_EP);
    a.ldx(Size::W, Reg::R1, FP, A_SA + 4).stx(Size::W, FP, A_EP + 12, Reg::R1);
    // Port: network order in sockaddr (offset 2), host order in keys.
    a.bind(port);
    a.ldx(Size::H, Reg::R1, FP, A_SA + 2);
    a.be16(Reg::R1);
    a.stx(Size::H, FP, A_EP + 16, Reg::R1);
    a.st_imm(Size::H, FP, A_EP + 18, 0);
    // r8 = accept_pending[(peer addr, peer port)]: the connection's FlowKey.
    lookup(&mut a, ACCEPT_PENDING, A_EP);
    a.jmp_imm(Cond::Ne, Reg::R0, 0, found);
    count(&mut a, Stat::AcceptMisses); // handshake before load, or filtered by port
    a.ja(exit);
    a.bind(found);
    a.mov_reg(Reg::R8, Reg::R0);
    // flow_owner[tuple] = current {tgid, comm}: the process that accepted.
    current_owner(&mut a, A_OWNER, task, A_TASK);
    a.ld_map(Reg::R1, FLOW_OWNER);
    a.mov_reg(Reg::R2, Reg::R8); // key = the pending entry's value, a FlowKey
    stack_ptr(&mut a, Reg::R3, A_OWNER);
    a.mov_imm(Reg::R4, 0);
    a.call(Helper::MapUpdateElem);
    delete(&mut a, ACCEPT_PENDING, A_EP);
    count(&mut a, Stat::AcceptRefined);

    a.bind(exit);
    a.mov_imm(Reg::R0, 0).exit();
    a.finish()
}

// Stack frame of the socket I/O programs.
/// The socket's `struct sock *` (u64), the passive_sk key.
const IO_SK: i16 = -8;
/// Owner, 32 bytes: tgid at -40, comm at -36, pad at -20, cgroup_id at -16.
const IO_OWNER: i16 = -40;
/// The group leader's `task_struct *` (u64), for [`current_owner`].
const IO_TASK: i16 = -48;
/// u32 key 0 of the stats array.
const IO_SCRATCH: i16 = -56;

/// `sock/sock_recv_length` (`send = false`) and `sock/sock_send_length` (`send = true`), in
/// the task doing the I/O, after every `sock_recvmsg`/`sock_sendmsg` of every socket on the
/// machine, so the common path is short: not TCP over IPv4/IPv6, or nothing in `passive_sk`
/// (the [`Stat::PassiveOpen`] gauge is 0: one array lookup), or not an accepted socket still in
/// `passive_sk` (one hash lookup), and it returns.
///
/// For an accepted socket that moved data (`ret > 0`): `flow_owner[tuple] =` current
/// {tgid, name}. The process that reads the request and writes the response is the one that
/// serves the connection, whoever listened or accepted (Node's `cluster` primary accepts and
/// hands the descriptor to a worker over a Unix socket; the worker's reads and writes are
/// traced here). On the first send the entry is removed: the process that answered is the
/// answer, and from then on the connection costs the miss path only. A process that reads
/// and passes the descriptor on still loses to the one that answers.
pub fn sock_io(f: &SockIoFields, task: Option<TaskOffsets>, send: bool) -> Result<Program, AsmError> {
    let mut a = Asm::new();
    let exit = a.label();
    let family_ok = a.label();
    a.mov_reg(CTX, Reg::R1);
    a.ldx(Size::H, Reg::R1, CTX, off(f.family));
    a.jmp_imm(Cond::Eq, Reg::R1, AF_INET.into(), family_ok);
    a.jmp_imm(Cond::Ne, Reg::R1, AF_INET6.into(), exit);
    a.bind(family_ok);
    a.ldx(Size::H, Reg::R1, CTX, off(f.protocol));
    a.jmp_imm(Cond::Ne, Reg::R1, IPPROTO_TCP.into(), exit);
    a.ldx(Size::W, Reg::R1, CTX, off(f.ret)); // an int, zero-extended by the load:
    a.alu_imm(Alu::Lsh, Reg::R1, 32).alu_imm(Alu::Arsh, Reg::R1, 32); // sign-extend it
    a.jmp_imm(Cond::Sle, Reg::R1, 0, exit); // -EAGAIN, EOF, errors: no data moved
    // Nothing is waiting for its server (the steady state of long-lived connections): done,
    // with an array lookup the verifier inlines instead of a hash lookup.
    a.st_imm(Size::W, FP, IO_SCRATCH, 0);
    lookup(&mut a, STATS, IO_SCRATCH);
    a.jmp_imm(Cond::Eq, Reg::R0, 0, exit);
    a.mov_reg(STATS_PTR, Reg::R0);
    a.ldx(Size::DW, Reg::R1, STATS_PTR, Stat::PassiveOpen.offset() as i16);
    a.jmp_imm(Cond::Eq, Reg::R1, 0, exit);
    // r7 = passive_sk[sk]: the connection's FlowKey, if it is an accepted socket not yet
    // answered.
    a.ldx(Size::DW, Reg::R1, CTX, off(f.sk)).stx(Size::DW, FP, IO_SK, Reg::R1);
    lookup(&mut a, PASSIVE_SK, IO_SK);
    a.jmp_imm(Cond::Eq, Reg::R0, 0, exit);
    a.mov_reg(Reg::R7, Reg::R0);
    // flow_owner[tuple] = current.
    current_owner(&mut a, IO_OWNER, task, IO_TASK);
    a.ld_map(Reg::R1, FLOW_OWNER);
    a.mov_reg(Reg::R2, Reg::R7); // key = the passive_sk entry's value, a FlowKey
    stack_ptr(&mut a, Reg::R3, IO_OWNER);
    a.mov_imm(Reg::R4, 0);
    a.call(Helper::MapUpdateElem);
    count(&mut a, Stat::ServedBy);
    if send {
        delete(&mut a, PASSIVE_SK, IO_SK); // answered: this process serves the connection
        uncount_passive(&mut a);
    }
    a.bind(exit);
    a.mov_imm(Reg::R0, 0).exit();
    a.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_assemble_and_are_small() {
        let progs =
            programs(&Fields::default(), Some(TaskOffsets { group_leader: 2000, comm: 3000 })).unwrap();
        let names: Vec<_> = progs.iter().map(|p| p.section()).collect();
        assert_eq!(
            names,
            [
                "tracepoint/sock/inet_sock_set_state",
                "tracepoint/syscalls/sys_enter_accept4",
                "tracepoint/syscalls/sys_exit_accept4",
                "tracepoint/syscalls/sys_enter_accept",
                "tracepoint/syscalls/sys_exit_accept",
                "tracepoint/sock/sock_recv_length",
                "tracepoint/sock/sock_send_length",
            ]
        );
        for p in &progs {
            assert!(p.program.insns.len() < 400, "{} has {} slots", p.name, p.program.insns.len());
            // Every program ends with `r0 = 0; exit`.
            let n = p.program.insns.len();
            assert_eq!(p.program.insns[n - 1].to_bytes(), [0x95, 0, 0, 0, 0, 0, 0, 0]);
            assert_eq!(p.program.insns[n - 2].to_bytes(), [0xb7, 0, 0, 0, 0, 0, 0, 0]);
        }
    }

    #[test]
    fn every_map_reference_is_a_lddw_of_a_known_map() {
        let known = [
            SOCK_OWNER,
            FLOW_OWNER,
            LISTEN_OWNER,
            ACCEPT_ARGS,
            ACCEPT_PENDING,
            PASSIVE_SK,
            PORT_FILTER,
            CONFIG,
            STATS,
        ];
        for p in programs(&Fields::default(), None).unwrap() {
            assert!(!p.program.relocs.is_empty());
            for r in &p.program.relocs {
                assert!(known.contains(&r.map.as_str()), "{}", r.map);
                assert_eq!(p.program.insns[r.slot].code, 0x18, "{} slot {}", p.name, r.slot);
                assert_eq!(p.program.insns[r.slot].dst, 1);
            }
        }
    }

    #[test]
    fn reads_the_offsets_it_is_given() {
        let mut fields = Fields::default();
        let before = sock_state(&fields.sock_state, None).unwrap();
        fields.sock_state.skaddr.offset = 104; // as if the kernel had moved it
        let after = sock_state(&fields.sock_state, None).unwrap();
        let loads_at = |p: &Program, off: i16| {
            p.insns.iter().filter(|i| i.code == 0x79 && i.src == 6 && i.off == off).count()
        };
        assert!(loads_at(&before, 8) > 0);
        assert_eq!(loads_at(&after, 8), 0);
        assert_eq!(loads_at(&after, 104), loads_at(&before, 8));
    }

    #[test]
    fn copies_use_aligned_accesses() {
        let mut a = Asm::new();
        a.mov_reg(CTX, Reg::R1);
        copy_ctx(&mut a, 42, -40, 16); // record offset 42: only 2-byte aligned
        let p = a.finish().unwrap();
        let widths: Vec<u8> = p.insns[1..].iter().step_by(2).map(|i| i.code).collect();
        assert_eq!(widths, vec![0x69; 8]); // eight ldxh
    }
}

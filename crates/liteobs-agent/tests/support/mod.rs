//! Shared by the agent's integration tests: where fixtures live, a builder of synthetic TCP
//! captures, and the rule for tests that need root or tools.

#![allow(dead_code)] // each test binary uses a different part

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use etherparse::PacketBuilder;
use pcap_file::DataLink;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};

/// The repository's fixtures/ directory.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures")
}

/// Every recorded capture (fixtures/pcap/*.pcap, *.pcapng), sorted.
pub fn recorded_fixtures() -> Vec<PathBuf> {
    captures_in(fixtures_dir().join("pcap"))
}

/// Every generated capture (fixtures/pcap/generated/), sorted.
pub fn generated_fixtures() -> Vec<PathBuf> {
    captures_in(fixtures_dir().join("pcap/generated"))
}

fn captures_in(dir: PathBuf) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pcap" || x == "pcapng"))
        .collect();
    v.sort();
    v
}

/// True when tests that need root, tools or real peers must run rather than skip.
pub fn privileged_required() -> bool {
    std::env::var("LITEOBS_REQUIRE_PRIVILEGED").is_ok_and(|v| v == "1")
}

/// Skips (returns false after printing why) unless required, in which case it panics.
pub fn may_run(ok: bool, reason: &str) -> bool {
    if ok {
        return true;
    }
    if privileged_required() {
        panic!("LITEOBS_REQUIRE_PRIVILEGED=1 but {reason}");
    }
    eprintln!("SKIPPED: {reason} (set LITEOBS_REQUIRE_PRIVILEGED=1 to make this a failure)");
    false
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

pub fn have_tool(name: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

// ---------------------------------------------------------------------------------------------
// Synthetic captures

/// Framing written around each IP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Ethernet,
    /// Ethernet with one 802.1Q tag.
    Vlan(u16),
    LinuxSll,
    LinuxSll2,
    /// BSD loopback: a 4-byte address family in the writer's byte order (little-endian here).
    Null,
    RawIp,
}

impl Framing {
    fn datalink(self) -> DataLink {
        match self {
            Framing::Ethernet | Framing::Vlan(_) => DataLink::ETHERNET,
            Framing::LinuxSll => DataLink::LINUX_SLL,
            Framing::LinuxSll2 => DataLink::LINUX_SLL2,
            Framing::Null => DataLink::NULL,
            Framing::RawIp => DataLink::RAW,
        }
    }

    fn frame(self, ip: &[u8], v6: bool) -> Vec<u8> {
        let ethertype: u16 = if v6 { 0x86dd } else { 0x0800 };
        let mut f = Vec::with_capacity(ip.len() + 24);
        match self {
            Framing::Ethernet | Framing::Vlan(_) => {
                f.extend_from_slice(&[0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1]);
                if let Framing::Vlan(id) = self {
                    f.extend_from_slice(&0x8100u16.to_be_bytes());
                    f.extend_from_slice(&id.to_be_bytes());
                }
                f.extend_from_slice(&ethertype.to_be_bytes());
            }
            Framing::LinuxSll => {
                f.extend_from_slice(&0u16.to_be_bytes()); // to us
                f.extend_from_slice(&772u16.to_be_bytes()); // ARPHRD_LOOPBACK
                f.extend_from_slice(&6u16.to_be_bytes());
                f.extend_from_slice(&[0u8; 8]);
                f.extend_from_slice(&ethertype.to_be_bytes());
            }
            Framing::LinuxSll2 => {
                f.extend_from_slice(&ethertype.to_be_bytes());
                f.extend_from_slice(&0u16.to_be_bytes());
                f.extend_from_slice(&1u32.to_be_bytes()); // ifindex of lo
                f.extend_from_slice(&772u16.to_be_bytes());
                f.push(0); // to us
                f.push(6);
                f.extend_from_slice(&[0u8; 8]);
            }
            Framing::Null => {
                let af: u32 = if v6 { 30 } else { 2 };
                f.extend_from_slice(&af.to_le_bytes());
            }
            Framing::RawIp => {}
        }
        f.extend_from_slice(ip);
        f
    }
}

/// A capture being written: frames with timestamps that advance 100 µs per frame unless told.
pub struct SynthCapture {
    framing: Framing,
    /// Microseconds since the epoch of the next frame.
    pub now_us: i64,
    frames: Vec<(i64, Vec<u8>)>,
}

/// 2026-01-01T00:00:00Z: every generated capture starts here.
pub const EPOCH_US: i64 = 1_767_225_600_000_000;

impl SynthCapture {
    pub fn new(framing: Framing) -> SynthCapture {
        SynthCapture { framing, now_us: EPOCH_US, frames: Vec::new() }
    }

    pub fn pause(&mut self, us: i64) {
        self.now_us += us;
    }

    pub fn push(&mut self, seg: &Segment) {
        let ip = seg.ip_packet();
        let frame = self.framing.frame(&ip, seg.src.0.is_ipv6());
        self.frames.push((self.now_us, frame));
        self.now_us += 100;
    }

    /// The capture as a classic pcap file (microsecond timestamps, little-endian).
    pub fn to_pcap(&self) -> Vec<u8> {
        let header =
            PcapHeader { datalink: self.framing.datalink(), snaplen: 262_144, ..PcapHeader::default() };
        let mut w = PcapWriter::with_header(Vec::new(), header).expect("in-memory writer");
        for (ts, f) in &self.frames {
            let ts = Duration::from_micros(u64::try_from(*ts).expect("positive time"));
            w.write_packet(&PcapPacket::new(ts, f.len() as u32, f)).expect("in-memory write");
        }
        w.into_writer()
    }

    /// The capture as a pcapng file: one section, one interface (microsecond units), one
    /// Enhanced Packet Block per frame. Timestamps are written as they are, so a test may set
    /// [`SynthCapture::now_us`] anywhere in the 64-bit range.
    pub fn to_pcapng(&self) -> Vec<u8> {
        use pcap_file::pcapng::PcapNgWriter;
        use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
        use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionBlock;
        let mut w = PcapNgWriter::new(Vec::new()).expect("in-memory writer");
        w.write_pcapng_block(InterfaceDescriptionBlock::new(self.framing.datalink(), 262_144))
            .expect("in-memory write");
        for (ts, f) in &self.frames {
            // pcap-file writes the Duration's nanoseconds as the 64-bit unit count.
            let units = u64::try_from(*ts).expect("positive time");
            w.write_pcapng_block(EnhancedPacketBlock {
                interface_id: 0,
                timestamp: Duration::from_nanos(units),
                original_len: f.len() as u32,
                data: std::borrow::Cow::Borrowed(f),
                options: vec![],
            })
            .expect("in-memory write");
        }
        w.into_inner()
    }
}

/// One TCP segment, addressed.
#[derive(Debug, Clone)]
pub struct Segment {
    pub src: (IpAddr, u16),
    pub dst: (IpAddr, u16),
    pub seq: u32,
    pub ack: Option<u32>,
    pub syn: bool,
    pub fin: bool,
    pub rst: bool,
    pub payload: Vec<u8>,
}

impl Segment {
    fn ip_packet(&self) -> Vec<u8> {
        let b = match (self.src.0, self.dst.0) {
            (IpAddr::V4(s), IpAddr::V4(d)) => PacketBuilder::ipv4(s.octets(), d.octets(), 64),
            (IpAddr::V6(s), IpAddr::V6(d)) => PacketBuilder::ipv6(s.octets(), d.octets(), 64),
            _ => panic!("mixed address families"),
        };
        let mut t = b.tcp(self.src.1, self.dst.1, self.seq, 65_535);
        if let Some(a) = self.ack {
            t = t.ack(a);
        }
        if self.syn {
            t = t.syn();
        }
        if self.fin {
            t = t.fin();
        }
        if self.rst {
            t = t.rst();
        }
        if !self.payload.is_empty() {
            t = t.psh();
        }
        let mut out = Vec::with_capacity(t.size(self.payload.len()));
        t.write(&mut out, &self.payload).expect("in-memory write");
        out
    }
}

/// Both ends of one TCP connection and their next sequence numbers.
pub struct Conn {
    pub client: (IpAddr, u16),
    pub server: (IpAddr, u16),
    /// Next sequence number each side sends.
    pub cseq: u32,
    pub sseq: u32,
}

impl Conn {
    pub fn new(client: &str, cport: u16, server: &str, sport: u16) -> Conn {
        Conn {
            client: (client.parse().expect("client address"), cport),
            server: (server.parse().expect("server address"), sport),
            cseq: 1_000,
            sseq: 50_000,
        }
    }

    fn seg(&self, from_client: bool, seq: u32, payload: &[u8]) -> Segment {
        let (src, dst, ack) = if from_client {
            (self.client, self.server, self.sseq)
        } else {
            (self.server, self.client, self.cseq)
        };
        Segment {
            src,
            dst,
            seq,
            ack: Some(ack),
            syn: false,
            fin: false,
            rst: false,
            payload: payload.to_vec(),
        }
    }

    /// SYN, SYN-ACK, ACK.
    pub fn handshake(&mut self, cap: &mut SynthCapture) {
        let mut syn = self.seg(true, self.cseq, b"");
        syn.syn = true;
        syn.ack = None;
        cap.push(&syn);
        self.cseq += 1;
        let mut synack = self.seg(false, self.sseq, b"");
        synack.syn = true;
        cap.push(&synack);
        self.sseq += 1;
        cap.push(&self.seg(true, self.cseq, b""));
    }

    /// The client's next segment (advances its sequence number; not yet written).
    pub fn client(&mut self, payload: &[u8]) -> Segment {
        let s = self.seg(true, self.cseq, payload);
        self.cseq += payload.len() as u32;
        s
    }

    pub fn server(&mut self, payload: &[u8]) -> Segment {
        let s = self.seg(false, self.sseq, payload);
        self.sseq += payload.len() as u32;
        s
    }

    /// A segment at an explicit offset from the client's current sequence number (for
    /// overlaps and retransmissions with new boundaries); does not advance it.
    pub fn client_at(&self, back: u32, payload: &[u8]) -> Segment {
        self.seg(true, self.cseq - back, payload)
    }

    pub fn server_at(&self, back: u32, payload: &[u8]) -> Segment {
        self.seg(false, self.sseq - back, payload)
    }

    /// A bare ACK from one side.
    pub fn ack_from_client(&self) -> Segment {
        self.seg(true, self.cseq, b"")
    }

    pub fn ack_from_server(&self) -> Segment {
        self.seg(false, self.sseq, b"")
    }

    /// FIN from the client, FIN from the server, last ACK.
    pub fn close(&mut self, cap: &mut SynthCapture) {
        let mut f = self.seg(true, self.cseq, b"");
        f.fin = true;
        cap.push(&f);
        self.cseq += 1;
        let mut f = self.seg(false, self.sseq, b"");
        f.fin = true;
        cap.push(&f);
        self.sseq += 1;
        cap.push(&self.seg(true, self.cseq, b""));
    }

    /// Writes each segment now, in the given order.
    pub fn send_all(cap: &mut SynthCapture, segs: &[Segment]) {
        for s in segs {
            cap.push(s);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Processes

/// A child process that is stopped (SIGTERM, then SIGKILL) when dropped, so that a failing
/// test leaves nothing running.
pub struct Guard {
    pub child: Option<std::process::Child>,
    pub name: &'static str,
}

impl Guard {
    pub fn new(name: &'static str, child: std::process::Child) -> Guard {
        Guard { child: Some(child), name }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    /// Sends `sig` to the process.
    pub fn signal(&self, sig: i32) {
        if let Some(c) = &self.child {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(c.id() as i32, sig) };
        }
    }

    /// Waits up to `timeout` for the process to exit; None if it did not.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        let child = self.child.as_mut()?;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.signal(libc::SIGTERM);
            if self.wait_timeout(Duration::from_secs(3)).is_none()
                && let Some(c) = self.child.as_mut()
            {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// A TCP port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .expect("local addr")
        .port()
}

/// Waits until something accepts connections on 127.0.0.1:`port`.
pub fn wait_listening(port: u16, timeout: Duration) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    false
}

/// A throwaway nginx serving `root` on 127.0.0.1:`port`, in one process (no master), so that
/// stopping the child stops it all.
pub fn start_nginx(dir: &std::path::Path, root: &std::path::Path, port: u16) -> Guard {
    for d in ["tmp", "logs"] {
        std::fs::create_dir_all(dir.join(d)).expect("nginx dirs");
    }
    let d = dir.display();
    let conf = format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/logs/error.log warn;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n  access_log off;\n  server_tokens off;\n  keepalive_requests 1000000;\n\
           client_body_temp_path {d}/tmp/body;\n  proxy_temp_path {d}/tmp/proxy;\n  fastcgi_temp_path {d}/tmp/fcgi;\n\
           uwsgi_temp_path {d}/tmp/uwsgi;\n  scgi_temp_path {d}/tmp/scgi;\n\
           server {{ listen 127.0.0.1:{port}; root {}; }}\n}}\n",
        root.display()
    );
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).expect("nginx.conf");
    let child = std::process::Command::new("nginx")
        .arg("-c")
        .arg(&conf_path)
        .arg("-p")
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starting nginx");
    Guard::new("nginx", child)
}

// ---------------------------------------------------------------------------------------------
// A scripted upload server

/// One upload as a [`FakeServer`] saw it.
#[derive(Debug, Clone)]
pub struct Upload {
    pub path: String,
    pub headers: Vec<(String, String)>,
    /// The records, gunzipped and decoded.
    pub records: Vec<liteobs_model::TrafficLog>,
    /// When the request was read whole.
    pub at: std::time::Instant,
}

impl Upload {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// An HTTP server on 127.0.0.1 that answers the i-th request with `script[i]` (the last entry
/// repeats; None closes the connection without an answer) and records what it got. Every
/// answer closes its connection. 200 answers carry `{"accepted": <records in the batch>}`.
pub struct FakeServer {
    pub url: String,
    pub uploads: std::sync::Arc<std::sync::Mutex<Vec<Upload>>>,
}

/// One answer of [`FakeServer::start_replies`]: a status, extra headers and a body (None: the
/// default body, `{"accepted": N}` for a 200).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, &'static str)>,
    pub body: Option<&'static str>,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply { status, headers: Vec::new(), body: None }
    }

    pub fn body(status: u16, body: &'static str) -> Reply {
        Reply { status, headers: Vec::new(), body: Some(body) }
    }
}

impl FakeServer {
    pub fn start(script: Vec<Option<u16>>) -> FakeServer {
        FakeServer::start_replies(script.into_iter().map(|s| s.map(Reply::status)).collect())
    }

    /// [`FakeServer::start`] with answers that carry headers and bodies.
    pub fn start_replies(script: Vec<Option<Reply>>) -> FakeServer {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let uploads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = uploads.clone();
        std::thread::spawn(move || {
            for (i, conn) in listener.incoming().enumerate() {
                let Ok(mut conn) = conn else { return };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 65536];
                let parsed = loop {
                    let mut hdrs = [httparse::EMPTY_HEADER; 32];
                    let mut req = httparse::Request::new(&mut hdrs);
                    if let Ok(httparse::Status::Complete(head)) = req.parse(&buf) {
                        let headers: Vec<(String, String)> = req
                            .headers
                            .iter()
                            .map(|h| (h.name.to_owned(), String::from_utf8_lossy(h.value).into_owned()))
                            .collect();
                        let len: usize = headers
                            .iter()
                            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                            .and_then(|(_, v)| v.parse().ok())
                            .unwrap_or(0);
                        let path = req.path.unwrap_or_default().to_owned();
                        while buf.len() < head + len {
                            match conn.read(&mut chunk) {
                                Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                                _ => break,
                            }
                        }
                        break Some((path, headers, buf[head..buf.len().min(head + len)].to_vec()));
                    }
                    match conn.read(&mut chunk) {
                        Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                        _ => break None,
                    }
                };
                let Some((path, headers, body)) = parsed else { continue };
                let mut text = String::new();
                let _ = flate2::read::GzDecoder::new(&body[..]).read_to_string(&mut text);
                let records = liteobs_model::decode_ndjson(text.as_bytes()).unwrap_or_default();
                let n = records.len();
                log.lock().expect("lock").push(Upload {
                    path,
                    headers,
                    records,
                    at: std::time::Instant::now(),
                });
                let Some(reply) = script.get(i).or(script.last()).cloned().flatten() else { continue };
                let status = reply.status;
                let body = match reply.body {
                    Some(b) => b.to_owned(),
                    None if status == 200 => format!("{{\"accepted\": {n}}}"),
                    None => format!("status {status}"),
                };
                let extra: String = reply.headers.iter().map(|(k, v)| format!("{k}: {v}\r\n")).collect();
                let resp = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(resp.as_bytes());
            }
        });
        FakeServer { url, uploads }
    }

    pub fn uploads(&self) -> Vec<Upload> {
        self.uploads.lock().expect("lock").clone()
    }
}

//! Makes each fuzz target's starting corpus from `fixtures/`: `seeds FIXTURES_DIR OUT_DIR`
//! writes `OUT_DIR/<target>/<name>` files (scripts/fuzz.sh runs it; the corpora live outside
//! the clone and are not committed).
//!
//! * `pcap`, `pcapng`: the capture files (cut to [`MAX_FILE`] bytes: a cut capture is a
//!   case of its own), the small pcaps also rewritten as pcapng.
//! * `decode`: frames of every link type found, with the target's link-type byte in front.
//! * `http_stream`, `reassembler`: the two byte streams of each TCP connection, as the
//!   agent's own reassembler rebuilds them.
//! * `upload`: the records of the fixtures as the agent uploads them (NDJSON, gzip) and as a
//!   JSON array.
//! * `query_filter`: query strings using every parameter.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use liteobs_agent::capture::offline::OfflineSource;
use liteobs_agent::capture::{Next, PacketSource};
use liteobs_agent::decode::decode;
use liteobs_agent::pipeline::{FlowKey, LinkType, Pipeline, PipelineConfig};
use liteobs_agent::reassemble::{
    Context as ReassemblyContext, Dir, Event, MemoryBudget, Reassembler, ReassemblyStats,
};
use liteobs_model::NdjsonEncoder;
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionBlock;

/// Largest seed file: inputs much larger than this make every execution slow.
const MAX_FILE: usize = 16 << 10;
/// Frames per capture file taken as `decode` seeds.
const FRAMES_PER_FILE: usize = 24;
/// The `decode` target's link types, in the order of its selector byte.
const DECODE_LINKTYPES: [u32; 10] = [0, 1, 12, 14, 101, 108, 113, 228, 229, 276];

const QUERIES: &[&str] = &[
    "",
    "ip=127.0.0.1",
    "ip=%3A%3A1&status=404",
    "pid=1234&method=get",
    "status=5xx&limit=10",
    "status=0xx",
    "path=%2Fapi%2Fv1&since=15m&until=2026-11-25T14%3A00%3A00Z",
    "since=2h&until=1m",
    "since=2026-11-25T14:00:00.123456%2B01:00",
    "limit=10000&method=PROPFIND&path=/a+b",
    "until=7d&pid=4294967295",
];

struct Frame {
    ts_us: i64,
    link: LinkType,
    data: Vec<u8>,
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, fixtures, out] = &args[..] else {
        anyhow::bail!("usage: seeds FIXTURES_DIR OUT_DIR");
    };
    let out = PathBuf::from(out);
    let mut captures = Vec::new();
    list_captures(Path::new(fixtures), &mut captures)?;
    captures.sort();
    let mut http_seeds = 0;
    let mut records = Vec::new();
    for path in &captures {
        let name = path.file_name().and_then(|n| n.to_str()).context("a fixture name")?.to_owned();
        let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let target = if name.ends_with(".pcapng") { "pcapng" } else { "pcap" };
        write(&out, target, &name, &bytes[..bytes.len().min(MAX_FILE)])?;
        let frames = read_frames(path)?;
        if target == "pcap" && bytes.len() <= MAX_FILE {
            write(&out, "pcapng", &format!("{name}ng"), &to_pcapng(&frames)?)?;
        }
        for (i, f) in frames.iter().take(FRAMES_PER_FILE).enumerate() {
            let selector = DECODE_LINKTYPES.iter().position(|&n| n == linktype(f.link)).unwrap_or(0) as u8;
            let mut seed = vec![selector, 0];
            seed.extend_from_slice(&f.data);
            write(&out, "decode", &format!("{name}-{i}"), &seed)?;
        }
        for (i, (client, server)) in streams(&frames).into_iter().enumerate() {
            let (req, resp) = (cut(&client, MAX_FILE / 2), cut(&server, MAX_FILE / 2));
            for flags in [1u8, 0] {
                let mut seed = vec![flags | (3 << 1)];
                seed.extend_from_slice(&(i as u32 * 7919 + 1).to_le_bytes());
                seed.extend_from_slice(&(req.len() as u16).to_le_bytes());
                seed.extend_from_slice(req);
                seed.extend_from_slice(resp);
                write(&out, "http_stream", &format!("{name}-{i}-{flags}"), &seed)?;
            }
            write(&out, "reassembler", &format!("{name}-{i}"), &reassembler_seed(req))?;
            http_seeds += 1;
        }
        let mut pipeline = Pipeline::new(PipelineConfig::default());
        for f in &frames {
            pipeline.push(f.ts_us, f.link, &f.data, &mut records);
        }
        pipeline.finish(&mut records);
    }
    anyhow::ensure!(http_seeds > 0, "no TCP connection found in {fixtures}");

    let mut encoder = NdjsonEncoder::new();
    for (i, batch) in records.chunks(7).take(40).enumerate() {
        let mut ndjson = Vec::new();
        for r in batch {
            encoder.encode(r, &mut ndjson);
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&ndjson)?;
        let gz = gz.finish()?;
        write(&out, "upload", &format!("ndjson-{i}"), &[&[0b10][..], &ndjson].concat())?;
        write(&out, "upload", &format!("gzip-ndjson-{i}"), &[&[0b1111_1111][..], &gz].concat())?;
        let array = serde_json::to_vec(batch)?;
        write(&out, "upload", &format!("array-{i}"), &[&[0][..], &array].concat())?;
    }
    for (i, q) in QUERIES.iter().enumerate() {
        write(&out, "query_filter", &format!("q{i}"), q.as_bytes())?;
    }
    println!("seeds from {} capture files written to {}", captures.len(), out.display());
    Ok(())
}

fn list_captures(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            list_captures(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "pcap" || e == "pcapng") {
            out.push(path);
        }
    }
    Ok(())
}

fn write(out: &Path, target: &str, name: &str, bytes: &[u8]) -> Result<()> {
    let dir = out.join(target);
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    fs::write(dir.join(name), bytes).with_context(|| format!("writing {}/{name}", dir.display()))
}

fn cut(bytes: &[u8], max: usize) -> &[u8] {
    &bytes[..bytes.len().min(max)]
}

fn read_frames(path: &Path) -> Result<Vec<Frame>> {
    let name = path.to_str().context("a UTF-8 path")?;
    let mut source = OfflineSource::open(name)?;
    let mut frames = Vec::new();
    loop {
        match source.next_packet()? {
            Next::Packet(p) => frames.push(Frame { ts_us: p.ts_us, link: p.link, data: p.data.to_vec() }),
            Next::Idle => {}
            Next::End => return Ok(frames),
        }
    }
}

fn linktype(link: LinkType) -> u32 {
    match link {
        LinkType::Ethernet => 1,
        LinkType::LinuxSll => 113,
        LinkType::LinuxSll2 => 276,
        LinkType::Null => 0,
        LinkType::RawIp => 101,
        LinkType::Ipv4 => 228,
        LinkType::Ipv6 => 229,
    }
}

fn to_pcapng(frames: &[Frame]) -> Result<Vec<u8>> {
    let mut w = PcapNgWriter::new(Vec::new())?;
    let mut ifaces: Vec<LinkType> = Vec::new();
    for f in frames {
        let id = match ifaces.iter().position(|&l| l == f.link) {
            Some(id) => id,
            None => {
                w.write_pcapng_block(InterfaceDescriptionBlock {
                    linktype: linktype(f.link).into(),
                    snaplen: 0,
                    options: Vec::new(),
                })?;
                ifaces.push(f.link);
                ifaces.len() - 1
            }
        };
        w.write_pcapng_block(EnhancedPacketBlock {
            interface_id: id as u32,
            timestamp: Duration::from_micros(u64::try_from(f.ts_us).unwrap_or(0)),
            original_len: f.data.len() as u32,
            data: f.data.as_slice().into(),
            options: Vec::new(),
        })?;
    }
    Ok(w.into_inner())
}

/// Each TCP connection's (client, server) byte streams, as the agent reassembles them.
fn streams(frames: &[Frame]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let budget = MemoryBudget::new(1 << 30);
    let mut stats = ReassemblyStats::default();
    let mut conns: BTreeMap<FlowKey, (Reassembler, [Vec<u8>; 2])> = BTreeMap::new();
    let mut order = Vec::new();
    for f in frames {
        let Ok(seg) = decode(f.link, &f.data) else { continue };
        let (key, dir) = FlowKey::of(&seg);
        let (r, bytes) = conns.entry(key).or_insert_with(|| {
            order.push(key);
            (Reassembler::new(), [Vec::new(), Vec::new()])
        });
        let mut cx = ReassemblyContext { max_conn_buffer: 1 << 24, budget: &budget, stats: &mut stats };
        r.segment(dir, f.ts_us, &seg, &mut cx, &mut |ev| {
            if let Event::Data { dir, bytes: b, .. } = ev {
                bytes[dir.index()].extend_from_slice(b);
            }
        });
    }
    order
        .iter()
        .filter_map(|key| conns.remove(key))
        .filter(|(_, b)| !b[0].is_empty() || !b[1].is_empty())
        .map(|(r, [a, b])| if r.client() == Some(Dir::BtoA) { (b, a) } else { (a, b) })
        .collect()
}

/// A `reassembler` input carrying `stream` in both directions: handshake, data in pieces of
/// 500 bytes sent in reverse order (each held until the first arrives), FINs.
fn reassembler_seed(stream: &[u8]) -> Vec<u8> {
    let stream = cut(stream, 4000);
    let mut seed = Vec::new();
    seed.extend_from_slice(&u16::MAX.to_le_bytes()); // max_conn_buffer
    seed.extend_from_slice(&u16::MAX.to_le_bytes()); // budget / 4
    seed.extend_from_slice(&0xffff_ff00u32.to_le_bytes()); // ISNs near the wrap
    seed.extend_from_slice(&1000u32.to_le_bytes());
    let mut segments: Vec<[u8; 12]> = Vec::new();
    let mut seg = |dir: u8, flags: u8, pos: u16, len: u16| {
        let mut d = [0u8; 12];
        d[0] = dir;
        d[1] = flags;
        d[2..4].copy_from_slice(&pos.to_le_bytes());
        d[4..6].copy_from_slice(&len.to_le_bytes());
        d[7..9].copy_from_slice(&0x4100u16.to_le_bytes()); // time moves forward
        segments.push(d);
    };
    const SYN: u8 = 1;
    const FIN: u8 = 2;
    const ACK: u8 = 16;
    seg(0, SYN, 0, 0);
    seg(1, SYN | ACK, 0, 0);
    let pieces: Vec<u16> = (0..stream.len()).step_by(500).map(|p| p as u16).collect();
    for &p in pieces.iter().rev() {
        let len = (stream.len() - usize::from(p)).min(500) as u16;
        seg(0, ACK, p, len);
        seg(1, ACK, p, len);
    }
    seg(0, FIN | ACK, stream.len() as u16, 0);
    seg(1, FIN | ACK, stream.len() as u16, 0);
    seed.push(segments.len() as u8);
    for s in &segments {
        seed.extend_from_slice(s);
    }
    seed.extend_from_slice(stream);
    seed
}

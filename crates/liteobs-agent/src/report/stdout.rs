//! Records as NDJSON on a byte stream (standard output), written by a thread of their own.
//!
//! Encoding and writing every exchange costs about as much as finding it; on the capture
//! thread that halved a replay's speed. [`ThreadedWriter`] gathers records into batches on
//! the capture thread and hands each batch over a bounded channel to a writer thread, so the
//! two run on two cores and the capture thread waits only when the writer is a few batches
//! behind (back-pressure instead of unbounded memory).
//!
//! Order is kept (one channel, one writer). A write error (a closed pipe, a full disk) stops
//! the writer; the capture thread learns of it at its next hand-over or at [`finish`].
//!
//! [`finish`]: ThreadedWriter::finish

use std::io::{self, Write};
use std::mem;
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::thread::JoinHandle;

use liteobs_model::TrafficLog;

use super::NdjsonWriter;

/// Records gathered before a hand-over.
const BATCH: usize = 1024;
/// Batches in flight between the threads.
const IN_FLIGHT: usize = 4;

enum Message {
    Records(Vec<TrafficLog>),
    /// Flush the writer's buffer (live capture does so on its ticks).
    Flush,
}

/// The capture thread's end: see the module docs.
pub struct ThreadedWriter {
    pending: Vec<TrafficLog>,
    /// `None` once the writer thread stopped or [`ThreadedWriter::finish`] ran.
    tx: Option<SyncSender<Message>>,
    /// Written batches coming back. Their records are dropped here, by the thread that
    /// allocated them: glibc's malloc frees memory of another thread's arena slowly, under a
    /// lock, which cost a replay a fifth of its speed. The vectors are then reused.
    used: Receiver<Vec<TrafficLog>>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl ThreadedWriter {
    /// Starts the writer thread on `out`.
    pub fn spawn<W: Write + Send + 'static>(out: W) -> io::Result<ThreadedWriter> {
        let (tx, rx) = sync_channel(IN_FLIGHT);
        let (used_tx, used) = channel();
        let thread = std::thread::Builder::new()
            .name("liteobs-stdout".into())
            .spawn(move || write_all(rx, &used_tx, out))?;
        Ok(ThreadedWriter { pending: Vec::with_capacity(BATCH), tx: Some(tx), used, thread: Some(thread) })
    }

    /// Takes `records` (leaving the vector empty); hands a batch over when one is full.
    pub fn write(&mut self, records: &mut Vec<TrafficLog>) -> io::Result<()> {
        self.pending.append(records);
        if self.pending.len() >= BATCH { self.hand_over() } else { Ok(()) }
    }

    /// Hands over what is gathered and asks the writer to flush its buffer.
    pub fn flush(&mut self) -> io::Result<()> {
        self.hand_over()?;
        self.send(Message::Flush)
    }

    /// Hands over the rest, waits until everything is written and flushed, and returns the
    /// writer's error if it had one.
    pub fn finish(&mut self) -> io::Result<()> {
        let sent = self.hand_over();
        self.tx = None; // the writer sees the channel close once it has written everything
        let written = self.join();
        sent.and(written)
    }

    fn hand_over(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let next = match self.used.try_recv() {
            Ok(mut used) => {
                used.clear();
                used
            }
            Err(_) => Vec::with_capacity(BATCH),
        };
        let batch = mem::replace(&mut self.pending, next);
        self.send(Message::Records(batch))
    }

    fn send(&mut self, message: Message) -> io::Result<()> {
        let Some(tx) = &self.tx else {
            return Err(io::Error::other("the output writer has stopped"));
        };
        if tx.send(message).is_ok() {
            return Ok(());
        }
        // The writer stopped: its own error says why.
        self.tx = None;
        self.join().and(Err(io::Error::other("the output writer has stopped")))
    }

    fn join(&mut self) -> io::Result<()> {
        match self.thread.take().map(JoinHandle::join) {
            None | Some(Ok(Ok(()))) => Ok(()),
            Some(Ok(Err(e))) => Err(e),
            Some(Err(_)) => Err(io::Error::other("the output writer panicked")),
        }
    }
}

impl Drop for ThreadedWriter {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

/// The writer thread: writes batches until the channel closes, then flushes.
fn write_all<W: Write>(rx: Receiver<Message>, used: &Sender<Vec<TrafficLog>>, out: W) -> io::Result<()> {
    let mut w = NdjsonWriter::new(io::BufWriter::with_capacity(1 << 16, out));
    for message in rx {
        match message {
            Message::Records(records) => {
                w.write(&records)?;
                // Dropped by the thread that allocated them (see `used`).
                let _ = used.send(records);
            }
            Message::Flush => w.flush()?,
        }
    }
    w.flush()
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A `Write` into shared memory that can be told to fail.
    #[derive(Clone, Default)]
    struct Shared {
        bytes: Arc<Mutex<Vec<u8>>>,
        fail: bool,
    }

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.fail {
                return Err(io::Error::from(io::ErrorKind::BrokenPipe));
            }
            self.bytes.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// `n` records told apart by their path.
    fn records(n: usize) -> Vec<TrafficLog> {
        let (client, server) = ("10.0.0.1:40000".parse().unwrap(), "10.0.0.2:80".parse().unwrap());
        (0..n)
            .map(|i| TrafficLog { path: format!("/{i}"), ..crate::testing::record(client, server) })
            .collect()
    }

    #[test]
    fn writes_every_record_in_order() {
        let out = Shared::default();
        let mut w = ThreadedWriter::spawn(out.clone()).unwrap();
        let all = records(5000);
        // Uneven pieces, as the capture loop hands them over.
        for chunk in all.chunks(7) {
            let mut v = chunk.to_vec();
            w.write(&mut v).unwrap();
            assert!(v.is_empty());
        }
        w.finish().unwrap();
        let text = String::from_utf8(out.bytes.lock().unwrap().clone()).unwrap();
        let back: Vec<TrafficLog> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(back, all);
    }

    #[test]
    fn flush_delivers_a_partial_batch() {
        let out = Shared::default();
        let mut w = ThreadedWriter::spawn(out.clone()).unwrap();
        w.write(&mut records(3)).unwrap();
        w.flush().unwrap();
        // The flush is queued behind the records; wait for the writer to get to it.
        for _ in 0..200 {
            if out.bytes.lock().unwrap().iter().filter(|&&b| b == b'\n').count() == 3 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(out.bytes.lock().unwrap().iter().filter(|&&b| b == b'\n').count(), 3);
        w.finish().unwrap();
    }

    #[test]
    fn a_write_error_is_reported_not_lost() {
        let out = Shared { fail: true, ..Shared::default() };
        let mut w = ThreadedWriter::spawn(out).unwrap();
        let mut failed = None;
        for _ in 0..(IN_FLIGHT + 4) {
            if let Err(e) = w.write(&mut records(BATCH)) {
                failed = Some(e);
                break;
            }
        }
        let e = failed.unwrap_or_else(|| w.finish().unwrap_err());
        assert_eq!(e.kind(), io::ErrorKind::BrokenPipe, "{e}");
    }
}

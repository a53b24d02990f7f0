//! The log writer: formatted lines go into a buffer bounded by bytes and a background thread
//! writes them out in batches. Request threads never wait for the log sink: when the buffer
//! is full (the sink is slow or stuck, or clients make us log faster than it drains), a line is
//! dropped and counted (`stsvend_log_lines_dropped_total`) instead of blocking a worker.
//!
//! Audit lines (target `stsvend::audit`: who received which credential, revocations) have a
//! reserve: other lines may fill the queue to `1 - AUDIT_RESERVE` of its bound only, so a
//! flood of attacker-driven refusal lines against a slow sink is dropped first and cannot
//! crowd out the audit trail.
//!
//! A line costs a request thread one uncontended lock and a copy: no allocation, and no
//! wake-up of the writer unless it is idle. The writer takes everything queued at once, writes
//! it with one call, then lets the next batch gather for `GATHER` — under load, one write
//! system call carries hundreds of lines instead of one each.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// Lines dropped because the queue was full, process-wide (read by the metrics endpoint).
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// How long the writer lets lines gather after writing a batch (only while lines keep
/// coming: an idle writer sleeps until the next line).
const GATHER: Duration = Duration::from_millis(2);

/// The share of the queue's bytes only audit lines may use.
pub const AUDIT_RESERVE: f64 = 0.25;

/// The tracing target of audit lines.
pub const AUDIT_TARGET: &str = "stsvend::audit";

pub fn dropped_lines() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

#[derive(Default)]
struct State {
    /// Lines not yet taken by the writer.
    queued: Vec<u8>,
    /// Bytes the writer has taken and not finished writing (they count against the bound).
    writing: usize,
    /// The writer waits for lines (a push then wakes it).
    idle: bool,
    /// Flush tickets asked for, and the last one the writer has honoured.
    flush_asked: u64,
    flush_done: u64,
    /// No writer thread: lines are dropped, flushes return at once.
    closed: bool,
}

struct Shared {
    state: Mutex<State>,
    /// The writer waits here for lines or a flush request.
    work: Condvar,
    /// Flushers wait here for the writer.
    done: Condvar,
    max_bytes: usize,
    /// The bound for lines other than audit lines.
    noise_max_bytes: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the buffer inconsistent (appends and
        // swaps only), so a poisoned lock is used as it is.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The sending side: cheap to clone, one per formatted event.
#[derive(Clone)]
pub struct LogQueue {
    shared: Arc<Shared>,
}

/// Dropping it flushes what is queued. The writer thread ends with the process (the
/// subscriber keeps senders until then), so it is not joined.
pub struct LogQueueGuard {
    queue: LogQueue,
}

impl LogQueue {
    /// A queue holding at most `max_bytes` of lines not yet written to `sink`.
    pub fn new<W: Write + Send + 'static>(sink: W, max_bytes: usize) -> (Self, LogQueueGuard) {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            done: Condvar::new(),
            max_bytes,
            noise_max_bytes: max_bytes - (max_bytes as f64 * AUDIT_RESERVE) as usize,
        });
        let drain = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("stsvend-log".into())
            .spawn(move || write_out(sink, &drain));
        if spawned.is_err() {
            shared.lock().closed = true;
        }
        let queue = Self { shared };
        (queue.clone(), LogQueueGuard { queue })
    }

    /// Queue one line, or drop and count it when the queue is full (for lines other than
    /// audit lines: when only the audit reserve is left).
    pub fn push(&self, line: &[u8]) {
        self.push_line(line, false);
    }

    /// Queue an audit line: it may use the whole queue, the reserve included.
    pub fn push_audit(&self, line: &[u8]) {
        self.push_line(line, true);
    }

    fn push_line(&self, line: &[u8], audit: bool) {
        let bound = if audit {
            self.shared.max_bytes
        } else {
            self.shared.noise_max_bytes
        };
        let mut state = self.shared.lock();
        if state.closed || state.queued.len() + state.writing + line.len() > bound {
            drop(state);
            DROPPED.fetch_add(1, Ordering::Relaxed);
            return;
        }
        state.queued.extend_from_slice(line);
        if std::mem::take(&mut state.idle) {
            drop(state);
            self.shared.work.notify_one();
        }
    }

    /// Bytes queued or being written.
    pub fn queued_bytes(&self) -> usize {
        let state = self.shared.lock();
        state.queued.len() + state.writing
    }

    /// Wait until everything queued before this call is written and the sink flushed.
    pub fn flush(&self) {
        let mut state = self.shared.lock();
        if state.closed {
            return;
        }
        state.flush_asked += 1;
        let ticket = state.flush_asked;
        if std::mem::take(&mut state.idle) {
            self.shared.work.notify_one();
        }
        while state.flush_done < ticket && !state.closed {
            state = self
                .shared
                .done
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
        }
    }
}

fn write_out<W: Write>(mut sink: W, shared: &Shared) {
    let mut batch = Vec::new();
    loop {
        // Only this thread moves `flush_done`, so whether this batch ends with a flush is
        // known when it is taken.
        let (flush_to, flushing) = {
            let mut state = shared.lock();
            while state.queued.is_empty() && state.flush_asked == state.flush_done {
                state.idle = true;
                state = shared.work.wait(state).unwrap_or_else(|e| e.into_inner());
            }
            state.idle = false;
            std::mem::swap(&mut state.queued, &mut batch);
            state.writing = batch.len();
            (state.flush_asked, state.flush_done < state.flush_asked)
        };
        // A failing sink loses the batch; there is nowhere better to report it.
        let wrote = !batch.is_empty();
        let _ = sink.write_all(&batch);
        batch.clear();
        if flushing {
            let _ = sink.flush();
        }
        {
            let mut state = shared.lock();
            state.writing = 0;
            state.flush_done = state.flush_done.max(flush_to);
        }
        if flushing {
            shared.done.notify_all();
        }
        if wrote && !flushing {
            std::thread::sleep(GATHER);
        }
    }
}

impl Drop for LogQueueGuard {
    fn drop(&mut self) {
        self.queue.flush();
    }
}

/// One event's bytes, queued as one line when the formatter is done with it.
pub struct LineWriter {
    queue: LogQueue,
    buf: Vec<u8>,
    audit: bool,
}

impl LineWriter {
    fn push(&self, line: &[u8]) {
        self.queue.push_line(line, self.audit);
    }
}

impl Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // The formatter hands over a whole line in one write: queued straight from its buffer.
        if self.buf.is_empty() && buf.ends_with(b"\n") {
            self.push(buf);
        } else {
            self.buf.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.buf.is_empty() {
            let line = std::mem::take(&mut self.buf);
            self.push(&line);
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogQueue {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter {
            queue: self.clone(),
            buf: Vec::new(),
            audit: false,
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        LineWriter {
            queue: self.clone(),
            buf: Vec::new(),
            audit: meta.target() == AUDIT_TARGET,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::{Condvar, Mutex};
    use std::time::{Duration, Instant};

    use super::*;

    /// A sink that blocks every write until the test opens the gate.
    #[derive(Clone)]
    struct GatedSink {
        open: Arc<(Mutex<bool>, Condvar)>,
        out: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for GatedSink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let (lock, cv) = &*self.open;
            let mut open = lock.lock().unwrap();
            while !*open {
                open = cv.wait(open).unwrap();
            }
            self.out.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Review finding 1f: a stuck log sink never blocks the threads that log; the queue stays
    /// within its byte budget and the excess is counted.
    #[test]
    fn a_stuck_sink_drops_and_counts_lines_instead_of_blocking() {
        let sink = GatedSink {
            open: Arc::new((Mutex::new(false), Condvar::new())),
            out: Arc::new(Mutex::new(Vec::new())),
        };
        let (queue, guard) = LogQueue::new(sink.clone(), 64 * 1024);
        let dropped_before = dropped_lines();
        let started = Instant::now();
        let line = vec![b'x'; 1023];
        let mut line = line;
        line.push(b'\n');
        for _ in 0..10_000 {
            queue.push(&line);
            assert!(queue.queued_bytes() <= 64 * 1024);
        }
        // The sink is still shut: a push that waited for it would never have returned, so
        // getting here is the proof. The bound only turns a hang into a failure.
        assert!(started.elapsed() < Duration::from_secs(60));
        // 10 MB offered, at most 64 KiB (plus the line being written) kept.
        assert!(dropped_lines() - dropped_before >= 9_900);
        let (lock, cv) = &*sink.open;
        *lock.lock().unwrap() = true;
        cv.notify_all();
        queue.flush();
        let written = sink.out.lock().unwrap().len();
        assert!(written > 0 && written <= 65 * 1024, "{written}");
        assert_eq!(queue.queued_bytes(), 0);
        drop(guard);
    }

    /// Review finding e: a flood of other lines against a stuck sink is dropped first; audit
    /// lines (by their tracing target) still get in, up to their reserve.
    #[test]
    fn a_flood_against_a_stuck_sink_cannot_crowd_out_audit_lines() {
        let sink = GatedSink {
            open: Arc::new((Mutex::new(false), Condvar::new())),
            out: Arc::new(Mutex::new(Vec::new())),
        };
        const MAX: usize = 64 * 1024;
        let (queue, guard) = LogQueue::new(sink.clone(), MAX);
        let subscriber = tracing_subscriber::fmt()
            .with_writer(queue.clone())
            .with_ansi(false)
            .finish();
        let noise = tracing::subscriber::with_default(subscriber, || {
            // Noise first: fills the queue up to its share and is dropped after that.
            for i in 0..5_000 {
                tracing::info!(attempt = i, "refused: the bearer token is malformed");
            }
            let noise = queue.queued_bytes();
            for i in 0..100 {
                tracing::info!(target: "stsvend::audit", user = "alice", n = i, "credentials vended");
            }
            noise
        });
        // Open the sink before asserting: a failed assertion must not leave the writer stuck.
        let (lock, cv) = &*sink.open;
        *lock.lock().unwrap() = true;
        cv.notify_all();
        queue.flush();
        assert!(noise <= MAX * 3 / 4 + 1024, "noise took {noise} of {MAX}");
        assert!(noise >= MAX / 2, "noise took only {noise}");
        let out = String::from_utf8(sink.out.lock().unwrap().clone()).unwrap();
        let audit = out
            .lines()
            .filter(|l| l.contains("credentials vended"))
            .count();
        // About 100 bytes a line: the 16 KiB reserve holds every one of them.
        assert_eq!(audit, 100, "audit lines lost to noise");
        assert!(out.lines().count() < 5_000, "noise was not dropped");
        drop(guard);
    }

    #[derive(Clone, Default)]
    struct Collect(Arc<Mutex<Vec<u8>>>);

    impl Write for Collect {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Lines from many threads all arrive whole, each thread's in its order, by the time a
    /// flush returns; a line written in pieces is still one line.
    #[test]
    fn every_line_arrives_whole_and_in_order_by_the_flush() {
        let sink = Collect::default();
        let (queue, guard) = LogQueue::new(sink.clone(), 64 * 1024 * 1024);
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let queue = queue.clone();
                std::thread::spawn(move || {
                    for i in 0..5_000 {
                        queue.push(format!("{t} {i} {}\n", "y".repeat(i % 300)).as_bytes());
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        {
            let mut w = tracing_subscriber::fmt::MakeWriter::make_writer(&queue);
            w.write_all(b"in ").unwrap();
            w.write_all(b"pieces\n").unwrap();
        }
        queue.flush();
        let out = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let mut next = [0usize; 4];
        let mut lines = 0;
        for line in out.lines() {
            lines += 1;
            if line == "in pieces" {
                continue;
            }
            let mut parts = line.split(' ');
            let t: usize = parts.next().unwrap().parse().unwrap();
            let i: usize = parts.next().unwrap().parse().unwrap();
            assert_eq!(i, next[t], "thread {t} out of order");
            assert_eq!(parts.next().unwrap(), "y".repeat(i % 300));
            next[t] += 1;
        }
        assert_eq!(next, [5_000; 4]);
        assert_eq!(lines, 20_001);
        drop(guard);
    }
}

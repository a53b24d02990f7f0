//! The log writer: formatted lines go into a queue bounded by bytes and a background thread
//! writes them out. Request threads never wait for the log sink: when the queue is full (the
//! sink is slow or stuck, or clients make us log faster than it drains), a line is dropped and
//! counted (`stsvend_log_lines_dropped_total`) instead of blocking a worker.

use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};

/// Lines dropped because the queue was full, process-wide (read by the metrics endpoint).
static DROPPED: AtomicU64 = AtomicU64::new(0);

pub fn dropped_lines() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

enum Message {
    Line(Vec<u8>),
    Flush(Sender<()>),
}

struct Shared {
    tx: Mutex<Sender<Message>>,
    queued: AtomicUsize,
    max_bytes: usize,
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
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Shared {
            tx: Mutex::new(tx),
            queued: AtomicUsize::new(0),
            max_bytes,
        });
        let drain = shared.clone();
        // Without the thread, sends fail and every line is counted as dropped.
        let _ = std::thread::Builder::new()
            .name("stsvend-log".into())
            .spawn(move || write_out(rx, sink, &drain));
        let queue = Self { shared };
        (queue.clone(), LogQueueGuard { queue })
    }

    /// Queue one line, or drop and count it when the queue is full.
    pub fn push(&self, line: Vec<u8>) {
        let len = line.len();
        let queued = self.shared.queued.fetch_add(len, Ordering::AcqRel);
        if queued + len > self.shared.max_bytes {
            self.shared.queued.fetch_sub(len, Ordering::AcqRel);
            DROPPED.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let sent = self
            .shared
            .tx
            .lock()
            .map(|tx| tx.send(Message::Line(line)).is_ok())
            .unwrap_or(false);
        if !sent {
            self.shared.queued.fetch_sub(len, Ordering::AcqRel);
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Bytes queued and not yet written.
    pub fn queued_bytes(&self) -> usize {
        self.shared.queued.load(Ordering::Acquire)
    }

    /// Wait until everything queued before this call is written.
    pub fn flush(&self) {
        let (done_tx, done_rx) = mpsc::channel();
        let sent = self
            .shared
            .tx
            .lock()
            .map(|tx| tx.send(Message::Flush(done_tx)).is_ok())
            .unwrap_or(false);
        if sent {
            let _ = done_rx.recv();
        }
    }
}

fn write_out<W: Write>(rx: Receiver<Message>, mut sink: W, shared: &Shared) {
    for message in rx {
        match message {
            Message::Line(line) => {
                // A failing sink loses the line; there is nowhere better to report it.
                let _ = sink.write_all(&line);
                shared.queued.fetch_sub(line.len(), Ordering::AcqRel);
            }
            Message::Flush(done) => {
                let _ = sink.flush();
                let _ = done.send(());
            }
        }
    }
    let _ = sink.flush();
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
}

impl Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // The formatter hands over a whole line in one write: one allocation of its size.
        if self.buf.is_empty() {
            self.buf = buf.to_vec();
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
            self.queue.push(std::mem::take(&mut self.buf));
        }
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogQueue {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter {
            queue: self.clone(),
            buf: Vec::new(),
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
        for _ in 0..10_000 {
            let mut l = line.clone();
            l.push(b'\n');
            queue.push(l);
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
}

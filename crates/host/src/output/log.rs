//! A function's recent guest output: every line a guest writes to stdout (components) or
//! stderr, with the request it belongs to, in a store capped by bytes per function; the oldest
//! lines go first. Readers ask for lines after a sequence number or since a time, and can wait
//! for new ones (`kindling logs --follow`).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One line of guest output.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    /// Increases by one per line for the life of the store; a reader resumes after it.
    pub seq: u64,
    /// When it was captured, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The request that wrote it.
    pub request_id: Arc<str>,
    /// `stdout` or `stderr`.
    pub stream: &'static str,
    /// The line, without its newline.
    pub text: String,
}

impl LogLine {
    fn bytes(&self) -> usize {
        self.text.len() + self.request_id.len() + 32
    }
}

#[derive(Debug, Default)]
struct Ring {
    lines: VecDeque<LogLine>,
    bytes: usize,
    next_seq: u64,
    dropped: u64,
}

/// The bounded store of one function's lines.
#[derive(Debug)]
pub struct FunctionLog {
    ring: Mutex<Ring>,
    capacity_bytes: usize,
    changed: tokio::sync::watch::Sender<u64>,
}

/// What a read returns.
#[derive(Debug, Clone, PartialEq)]
pub struct LogPage {
    /// The lines, oldest first.
    pub lines: Vec<LogLine>,
    /// The sequence number to ask for next (`after`).
    pub next: u64,
    /// Lines dropped from the store since it started, to stay within its size.
    pub dropped: u64,
}

impl FunctionLog {
    /// An empty store that keeps at most about `capacity_bytes` of lines.
    pub fn new(capacity_bytes: usize) -> Arc<Self> {
        Arc::new(Self {
            ring: Mutex::default(),
            capacity_bytes,
            changed: tokio::sync::watch::channel(0).0,
        })
    }

    /// Appends the lines of `output`, written by `request_id` on `stream`.
    pub fn push(&self, request_id: &Arc<str>, stream: &'static str, output: &str) {
        let at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let next = {
            let mut ring = self.ring.lock().expect("log lock");
            for text in output.lines() {
                let line = LogLine {
                    seq: ring.next_seq,
                    at_ms,
                    request_id: request_id.clone(),
                    stream,
                    text: text.to_string(),
                };
                ring.next_seq += 1;
                ring.bytes += line.bytes();
                ring.lines.push_back(line);
            }
            while ring.bytes > self.capacity_bytes {
                let Some(old) = ring.lines.pop_front() else {
                    break;
                };
                ring.bytes -= old.bytes();
                ring.dropped += 1;
            }
            ring.next_seq
        };
        self.changed.send_replace(next);
    }

    /// Lines with a sequence number of at least `after` and captured at or after `since_ms`
    /// (milliseconds since the epoch), at most `limit` of them, the newest if more match.
    pub fn read(&self, after: u64, since_ms: u64, limit: usize) -> LogPage {
        let ring = self.ring.lock().expect("log lock");
        let matching: Vec<&LogLine> = ring
            .lines
            .iter()
            .filter(|l| l.seq >= after && l.at_ms >= since_ms)
            .collect();
        let skip = matching.len().saturating_sub(limit);
        LogPage {
            lines: matching[skip..].iter().map(|l| (*l).clone()).collect(),
            next: ring.next_seq,
            dropped: ring.dropped,
        }
    }

    /// Waits up to `timeout` for a line numbered `after` or later to exist.
    pub async fn wait(&self, after: u64, timeout: Duration) {
        let mut changed = self.changed.subscribe();
        let _ = tokio::time::timeout(timeout, changed.wait_for(|&next| next > after)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_lines_within_its_size() {
        let log = FunctionLog::new(200);
        let id: Arc<str> = "r1".into();
        log.push(&id, "stdout", "one\ntwo\n");
        let page = log.read(0, 0, 100);
        assert_eq!(page.lines.len(), 2);
        assert_eq!((page.lines[1].seq, page.lines[1].text.as_str()), (1, "two"));
        assert_eq!(page.next, 2);
        // Each line costs its text, its request id and 32 bytes: 200 bytes hold 5 of these.
        for i in 0..10 {
            log.push(&id, "stderr", &format!("line {i}"));
        }
        let page = log.read(0, 0, 100);
        assert_eq!(page.lines.len(), 5);
        assert_eq!(page.lines[0].text, "line 5");
        assert_eq!(page.dropped, 7);
        assert_eq!(
            log.read(11, 0, 100).lines.len(),
            1,
            "resumes after a sequence number"
        );
        assert_eq!(
            log.read(0, 0, 2).lines[0].text,
            "line 8",
            "the newest when limited"
        );
        assert!(log.read(0, u64::MAX, 100).lines.is_empty());
    }

    #[tokio::test]
    async fn waiting_returns_when_a_line_arrives() {
        let log = FunctionLog::new(1000);
        let writer = log.clone();
        let task = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            writer.push(&"r".into(), "stdout", "hello");
        });
        log.wait(0, Duration::from_secs(30)).await;
        assert_eq!(log.read(0, 0, 10).lines[0].text, "hello");
        task.await.unwrap();
    }
}

//! A bounded in-memory pipe for guest output. Guest stdout and stderr are captured up to a cap,
//! so a chatty or hostile guest can never flood the host's terminal, memory or disk.
//!
//! Two behaviours when the cap is reached: `Truncate` silently drops the excess (for logs: the
//! guest keeps running, the loss is counted), `Refuse` closes the stream (for WAGI's CGI output,
//! where the output *is* the response and a truncated response would be a lie).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

/// What happens to writes past the cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    /// Drop the excess and count it.
    Truncate,
    /// Close the stream: the guest's next write fails.
    Refuse,
}

#[derive(Debug, Default)]
struct Captured {
    bytes: BytesMut,
    dropped: u64,
}

/// A capped capture buffer; clones share the same buffer.
#[derive(Debug, Clone)]
pub struct OutputCapture {
    cap: usize,
    when_full: WhenFull,
    inner: Arc<Mutex<Captured>>,
}

impl OutputCapture {
    /// A capture that keeps at most `cap` bytes.
    pub fn new(cap: usize, when_full: WhenFull) -> Self {
        Self {
            cap,
            when_full,
            inner: Arc::default(),
        }
    }

    /// The captured bytes and the number of bytes that did not fit.
    pub fn take(&self) -> (Bytes, u64) {
        let mut inner = self.inner.lock().expect("output capture lock");
        let bytes = std::mem::take(&mut inner.bytes).freeze();
        (bytes, inner.dropped)
    }

    /// Appends what fits; returns how many bytes were accepted.
    fn append(&self, buf: &[u8]) -> usize {
        let mut inner = self.inner.lock().expect("output capture lock");
        let room = self.cap.saturating_sub(inner.bytes.len());
        let n = buf.len().min(room);
        inner.bytes.extend_from_slice(&buf[..n]);
        inner.dropped += (buf.len() - n) as u64;
        n
    }

    fn is_full(&self) -> bool {
        self.inner.lock().expect("output capture lock").bytes.len() >= self.cap
    }
}

impl IsTerminal for OutputCapture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for OutputCapture {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for OutputCapture {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        let accepted = self.append(&bytes);
        if accepted < bytes.len() && self.when_full == WhenFull::Refuse {
            return Err(StreamError::Closed);
        }
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        match self.when_full {
            WhenFull::Refuse if self.is_full() => Err(StreamError::Closed),
            // Always ready; excess is dropped in `write`.
            _ => Ok(64 * 1024),
        }
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for OutputCapture {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for OutputCapture {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let accepted = self.append(buf);
        if accepted < buf.len() && self.when_full == WhenFull::Refuse {
            if accepted == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into()));
            }
            return Poll::Ready(Ok(accepted));
        }
        // Truncate: report everything as written so the guest carries on.
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_keeps_the_head_and_counts_the_rest() {
        let mut capture = OutputCapture::new(5, WhenFull::Truncate);
        capture.write(Bytes::from_static(b"hello world")).unwrap();
        capture.write(Bytes::from_static(b"!")).unwrap();
        assert!(capture.check_write().is_ok());
        let (bytes, dropped) = capture.take();
        assert_eq!(&bytes[..], b"hello");
        assert_eq!(dropped, 7);
    }

    #[test]
    fn refuse_closes_the_stream_at_the_cap() {
        let mut capture = OutputCapture::new(5, WhenFull::Refuse);
        capture.write(Bytes::from_static(b"abc")).unwrap();
        assert!(matches!(
            capture.write(Bytes::from_static(b"defg")),
            Err(StreamError::Closed)
        ));
        assert!(matches!(capture.check_write(), Err(StreamError::Closed)));
        assert_eq!(capture.take().1, 2);
    }
}

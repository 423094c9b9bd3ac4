//! Guest output: what a guest writes to stderr (and a component to stdout) is captured up to
//! [`LOG_CAPTURE_BYTES`] per stream and request, then written to the host log with the
//! function and request id and kept in the function's [`FunctionLog`]. It never reaches the
//! node's terminal or disk directly. A WAGI module's stdout is its CGI response and belongs to
//! the runtime, not to this capability.

mod capture;
mod log;

pub use capture::{OutputCapture, WhenFull};
pub use log::{FunctionLog, LogLine, LogPage};

use crate::capability::{Capability, FunctionContext, InstanceBuilder, InstanceKind, NoFields};
use crate::invocation::Invocation;

/// How much of a guest's stdout and stderr is kept per request.
pub const LOG_CAPTURE_BYTES: usize = 64 * 1024;

/// The guest-output capability.
#[derive(Debug, Clone, Copy, Default)]
pub struct GuestOutput;

/// An instance's captured streams.
#[derive(Debug)]
pub struct Captured {
    stdout: Option<OutputCapture>,
    stderr: OutputCapture,
}

impl Capability for GuestOutput {
    type Section = NoFields;
    type Config = ();
    type State = Captured;

    fn name(&self) -> &'static str {
        "guest-output"
    }

    fn configure(&self, _: &mut NoFields, _: &FunctionContext<'_>) -> Result<(), String> {
        Ok(())
    }

    fn prepare(&self, _: &(), instance: &mut InstanceBuilder<'_>) -> Result<Captured, String> {
        let stderr = OutputCapture::new(LOG_CAPTURE_BYTES, WhenFull::Truncate);
        instance.wasi().stderr(stderr.clone());
        let stdout = (instance.kind() == InstanceKind::Component).then(|| {
            let stdout = OutputCapture::new(LOG_CAPTURE_BYTES, WhenFull::Truncate);
            instance.wasi().stdout(stdout.clone());
            stdout
        });
        Ok(Captured { stdout, stderr })
    }

    fn finish(&self, state: &mut Captured, invocation: &Invocation) {
        if let Some(stdout) = &state.stdout {
            let (bytes, dropped) = stdout.take();
            log_guest_output(invocation, "stdout", &bytes, dropped);
        }
        let (bytes, dropped) = state.stderr.take();
        log_guest_output(invocation, "stderr", &bytes, dropped);
    }
}

/// Writes what a guest printed to the host log, one event per line, tagged with the function
/// and request id. Output past the capture cap was dropped and is reported as a count.
fn log_guest_output(invocation: &Invocation, stream: &'static str, bytes: &[u8], dropped: u64) {
    if bytes.is_empty() && dropped == 0 {
        return;
    }
    let text = String::from_utf8_lossy(bytes);
    if let (Some(log), false) = (&invocation.log, text.is_empty()) {
        log.push(&invocation.request_id, stream, &text);
    }
    for line in text.lines() {
        tracing::info!(
            target: "kindling::guest",
            function = %invocation.function,
            request_id = %invocation.request_id,
            stream,
            "{line}"
        );
    }
    if dropped > 0 {
        tracing::warn!(
            target: "kindling::guest",
            function = %invocation.function,
            request_id = %invocation.request_id,
            stream,
            dropped,
            "guest output exceeded the capture cap; the rest was dropped"
        );
    }
}

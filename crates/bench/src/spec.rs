//! What to load and how: the target request and the phases of load.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Uri};

/// The request every load sends.
#[derive(Debug, Clone)]
pub struct Target {
    /// An `http://` URL.
    pub url: Uri,
    /// The method.
    pub method: Method,
    /// Extra headers.
    pub headers: HeaderMap,
    /// The body, sent with every request.
    pub body: Bytes,
    /// How long one request may take before it counts as a timeout.
    pub timeout: Duration,
    /// A path and query with `{n}` in it, sent instead of `url`'s with `{n}` replaced by
    /// each request's number (0, 1, 2... across the phase's connections), so that every
    /// request names a resource of its own: a new student per recorded lesson, say.
    pub numbered_path: Option<String>,
}

impl Target {
    /// A GET of `url` with a 10 s timeout.
    pub fn get(url: Uri) -> Self {
        Self {
            url,
            method: Method::GET,
            headers: HeaderMap::new(),
            body: Bytes::new(),
            timeout: Duration::from_secs(10),
            numbered_path: None,
        }
    }
}

/// The shape of load in one phase.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Load {
    /// Requests on a schedule: the rate goes linearly from `from` to `to` requests per second
    /// over the phase (equal for a constant rate), spread over `connections`.
    Open {
        /// Rate at the start of the phase.
        from: f64,
        /// Rate at the end of the phase.
        to: f64,
        /// Keep-alive connections the requests are spread over.
        connections: usize,
    },
    /// Each of `connections` sends its next request when the previous one is answered.
    Closed {
        /// Concurrent connections.
        connections: usize,
    },
}

/// One phase of a run.
#[derive(Debug, Clone)]
pub struct Phase {
    /// Its name in reports.
    pub name: String,
    /// The load.
    pub load: Load,
    /// How long it lasts.
    pub duration: Duration,
}

impl Load {
    /// Requests scheduled in the first `t` of a phase lasting `duration` (open loop only): the
    /// integral of the rate, which [`Load::due`] inverts.
    #[cfg(test)]
    pub(crate) fn scheduled_by(&self, t: f64, duration: f64) -> f64 {
        match *self {
            Load::Open { from, to, .. } => from * t + (to - from) * t * t / (2.0 * duration),
            Load::Closed { .. } => 0.0,
        }
    }

    /// When, in seconds into the phase, request `i` is due (open loop only).
    pub(crate) fn due(&self, i: u64, duration: f64) -> f64 {
        let Load::Open { from, to, .. } = *self else {
            return 0.0;
        };
        let i = i as f64;
        let a = (to - from) / (2.0 * duration);
        if a.abs() < 1e-12 {
            i / from
        } else {
            (-from + (from * from + 4.0 * a * i).sqrt()) / (2.0 * a)
        }
    }

    /// The connections the load uses.
    pub fn connections(&self) -> usize {
        match *self {
            Load::Open { connections, .. } | Load::Closed { connections } => connections,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_rate_schedule() {
        let load = Load::Open {
            from: 100.0,
            to: 100.0,
            connections: 4,
        };
        assert_eq!(load.due(0, 10.0), 0.0);
        assert!((load.due(100, 10.0) - 1.0).abs() < 1e-9);
        assert!((load.scheduled_by(10.0, 10.0) - 1000.0).abs() < 1e-9);
    }

    #[test]
    fn ramp_schedule_inverts_the_cumulative_count() {
        let load = Load::Open {
            from: 100.0,
            to: 300.0,
            connections: 4,
        };
        // 10 s from 100 to 300 req/s: 2000 requests in all, the due times invert the count.
        assert!((load.scheduled_by(10.0, 10.0) - 2000.0).abs() < 1e-9);
        for i in [1u64, 10, 500, 1999] {
            let t = load.due(i, 10.0);
            assert!((load.scheduled_by(t, 10.0) - i as f64).abs() < 1e-6, "{i}");
        }
    }
}

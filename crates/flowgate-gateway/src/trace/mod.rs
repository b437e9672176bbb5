//! Request tracing: W3C `traceparent` in and out, and OpenTelemetry spans exported over
//! OTLP/HTTP (JSON) when `[telemetry] otlp_endpoint` is set.
//!
//! Every request gets a `RequestTrace`: the trace id (the caller's, from a valid
//! `traceparent`, or a fresh random one) that the access log prints. When export is configured
//! and the request is sampled, it also records one root span (the request) and a child span
//! per pipeline stage (`Stage`): stage start and end are plain `Instant`s kept in the request
//! context, and at the end of the request the finished spans go to a bounded queue with one
//! `try_send` (full: dropped and counted). The exporter task (`export`) batches them and POSTs
//! them to the collector. When export is off, or the request is not sampled, nothing is
//! allocated and no clock is read: `RequestTrace::begin` returns `None` and every later call
//! is a no-op.
//!
//! Leaves out: `tracestate`, span events and links, metrics and logs over OTLP, and the
//! protobuf encoding.

mod export;
pub mod traceparent;

use crate::proxy::context::RequestContext;
use flowgate_config::{OtlpConfig, TelemetryConfig};
use flowgate_providers::Upstream;
use flowgate_types::fast_random;
use http::{HeaderMap, HeaderName, HeaderValue};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// W3C `tracestate`: vendor entries, forwarded unchanged with a valid `traceparent`.
pub static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
/// Longest `tracestate` forwarded (the W3C limit: 32 entries of at most 256 bytes each).
const MAX_TRACESTATE: usize = 8192;

/// Finished requests the queue holds before new ones are dropped.
const QUEUE_CAPACITY: usize = 4096;

/// A 128-bit trace id, printed as 32 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TraceId(pub [u8; 16]);

/// A 64-bit span id, printed as 16 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SpanId(pub [u8; 8]);

impl TraceId {
    fn random() -> Self {
        loop {
            let high = fast_random();
            let low = fast_random();
            if high | low != 0 {
                let mut bytes = [0u8; 16];
                bytes[..8].copy_from_slice(&high.to_be_bytes());
                bytes[8..].copy_from_slice(&low.to_be_bytes());
                return Self(bytes);
            }
        }
    }
}

impl SpanId {
    fn random() -> Self {
        loop {
            let value = fast_random();
            if value != 0 {
                return Self(value.to_be_bytes());
            }
        }
    }
}

fn fmt_hex(bytes: &[u8], f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let mut buffer = [0u8; 32];
    let out = &mut buffer[..bytes.len() * 2];
    traceparent::write_hex(bytes, out);
    f.write_str(std::str::from_utf8(out).map_err(|_| fmt::Error)?)
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_hex(&self.0, f)
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_hex(&self.0, f)
    }
}

/// A pipeline stage with a span of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Key check against the snapshot.
    Auth,
    /// Admission: request rate, token reservation, concurrency.
    Limits,
    /// Policy screening of the prompt (or of a complete answer).
    Policy,
    /// One upstream call up to its response head (time to first byte); one per attempt.
    RouteAttempt,
    /// Reading the chosen upstream's answer after its head: the whole body of a complete
    /// answer, or a stream until it ends.
    Upstream,
    /// Waiting for the request-side audit record to be durable.
    Audit,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Self::Auth => "auth",
            Self::Limits => "limits",
            Self::Policy => "policy",
            Self::RouteAttempt => "route attempt",
            Self::Upstream => "upstream",
            Self::Audit => "audit",
        }
    }
}

/// What a stage span says beyond its name and times.
#[derive(Debug)]
pub enum Detail {
    None,
    Attempt {
        upstream: Arc<Upstream>,
        /// 1-based over the whole request.
        number: u32,
        /// 0 for the first attempt on this route.
        retry: u32,
        outcome: &'static str,
        status: Option<u16>,
    },
    Policy {
        phase: &'static str,
        decision: &'static str,
    },
}

impl Detail {
    pub fn none() -> Self {
        Self::None
    }
}

/// A stage that started: its span id (known before the stage runs, so an upstream attempt
/// can name itself in `traceparent`) and start time.
#[derive(Debug, Clone, Copy)]
pub struct SpanStart {
    pub id: SpanId,
    at: Instant,
}

/// One finished stage span.
#[derive(Debug)]
pub(crate) struct StageSpan {
    stage: Stage,
    id: SpanId,
    start: Instant,
    end: Instant,
    ok: bool,
    detail: Detail,
}

/// The node's tracer: off (no endpoint) or the queue to the exporter task.
#[derive(Debug, Clone, Default)]
pub struct Tracer {
    export: Option<Arc<Export>>,
}

#[derive(Debug)]
struct Export {
    sender: mpsc::Sender<FinishedTrace>,
    /// Requests recorded only below this random draw (`u64::MAX`: all).
    sample_below: u64,
    /// Finished requests dropped because the queue was full, since the last report.
    dropped: AtomicU64,
    stop: CancellationToken,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Tracer {
    /// Starts the exporter task when `otlp_endpoint` is set.
    pub fn start(config: &TelemetryConfig) -> Result<Self, flowgate_providers::UpstreamError> {
        let Some(otlp) = &config.otlp else {
            return Ok(Self::default());
        };
        let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let stop = CancellationToken::new();
        let exporter = export::Exporter::new(otlp)?;
        let export = Arc::new(Export {
            sender,
            sample_below: sample_threshold(otlp),
            dropped: AtomicU64::new(0),
            stop: stop.clone(),
            task: Mutex::new(None),
        });
        let handle = tokio::spawn(exporter.run(receiver, stop, Arc::clone(&export)));
        *export.task.lock().unwrap_or_else(PoisonError::into_inner) = Some(handle);
        Ok(Self {
            export: Some(export),
        })
    }

    /// Sends what is queued and stops the exporter (at shutdown, after the requests drained).
    pub async fn shutdown(&self) {
        let Some(export) = &self.export else { return };
        export.stop.cancel();
        let handle = export
            .task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(handle) = handle
            && let Err(err) = handle.await
        {
            tracing::warn!(error = %err, "trace exporter task failed");
        }
    }

    /// The trace of a request that starts now, from its headers.
    pub fn request(&self, headers: &HeaderMap) -> RequestTrace {
        let incoming = headers
            .get(&TRACEPARENT)
            .and_then(|value| Some((traceparent::parse(value.as_bytes())?, value)));
        let trace_id = incoming.map_or_else(TraceId::random, |(parent, _)| parent.trace_id);
        let recording = self.export.as_ref().and_then(|export| {
            let sampled = match incoming {
                Some((parent, _)) => parent.sampled,
                None => export.sample_below == u64::MAX || fast_random() < export.sample_below,
            };
            sampled.then(|| {
                Box::new(Recording {
                    export: Arc::clone(export),
                    root: SpanId::random(),
                    parent: incoming.map(|(parent, _)| parent.parent_id),
                    name: "request",
                    started: Instant::now(),
                    started_unix_nanos: unix_nanos(),
                    state: Mutex::new(RecordingState {
                        spans: Vec::with_capacity(8),
                        open: None,
                        finished: false,
                    }),
                })
            })
        });
        // Not recorded: the caller's header is forwarded unchanged (version 00 form), so the
        // upstream still joins the caller's trace.
        let forward = match (&recording, incoming) {
            (None, Some((parent, value))) if parent.canonical => Some(value.clone()),
            (None, Some((parent, _))) => Some(traceparent::format(
                parent.trace_id,
                parent.parent_id,
                parent.sampled,
            )),
            _ => None,
        };
        // The caller's vendor state goes along with its trace, never with one it did not
        // send or sent malformed (W3C trace context).
        let state = incoming
            .and_then(|_| headers.get(&TRACESTATE))
            .filter(|value| value.len() <= MAX_TRACESTATE)
            .cloned();
        RequestTrace {
            trace_id,
            forward,
            state,
            recording,
        }
    }
}

fn sample_threshold(otlp: &OtlpConfig) -> u64 {
    if otlp.sample_ratio >= 1.0 {
        u64::MAX
    } else {
        // Saturating float-to-int conversion; 0.0 gives 0 (nothing sampled).
        (otlp.sample_ratio * 18_446_744_073_709_551_616.0) as u64
    }
}

fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
        })
}

/// One request's trace.
#[derive(Debug)]
pub struct RequestTrace {
    /// For the access log; present whether or not spans are recorded.
    pub trace_id: TraceId,
    /// The caller's `traceparent`, sent upstream when this request is not recorded.
    forward: Option<HeaderValue>,
    /// The caller's `tracestate`, sent upstream with every `traceparent`.
    state: Option<HeaderValue>,
    recording: Option<Box<Recording>>,
}

#[derive(Debug)]
struct Recording {
    export: Arc<Export>,
    root: SpanId,
    /// The caller's span, from `traceparent`.
    parent: Option<SpanId>,
    /// The root span's name, `METHOD /route`.
    name: &'static str,
    started: Instant,
    started_unix_nanos: u64,
    /// Changed through `&mut` (no locking) while the request runs; locked once when it ends,
    /// which may happen through a shared reference.
    state: Mutex<RecordingState>,
}

#[derive(Debug)]
struct RecordingState {
    spans: Vec<StageSpan>,
    /// A stage still running when the request ends (a stream's upstream), closed then.
    open: Option<(Stage, SpanStart)>,
    finished: bool,
}

impl Recording {
    fn state(&mut self) -> &mut RecordingState {
        self.state.get_mut().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The root span's attributes, read from the request context when the request ends.
#[derive(Debug)]
pub(crate) struct RootAttributes {
    request_id: String,
    tenant_id: Option<String>,
    model: Option<String>,
    provider: Option<Arc<Upstream>>,
    stream: bool,
    status: u16,
    error_code: Option<String>,
}

impl RootAttributes {
    pub(crate) fn of(context: &RequestContext, status: u16, error_code: Option<&str>) -> Self {
        Self {
            request_id: context.request_id.as_str().to_owned(),
            tenant_id: context
                .tenant_id
                .as_ref()
                .map(|tenant| tenant.as_str().to_owned()),
            model: context.model.clone(),
            provider: context.upstream.clone(),
            stream: context.stream,
            status,
            error_code: error_code.map(str::to_owned),
        }
    }
}

/// A finished request on its way to the exporter.
#[derive(Debug)]
pub(crate) struct FinishedTrace {
    trace_id: TraceId,
    root: SpanId,
    parent: Option<SpanId>,
    name: &'static str,
    started: Instant,
    started_unix_nanos: u64,
    ended: Instant,
    attributes: RootAttributes,
    spans: Vec<StageSpan>,
}

impl RequestTrace {
    /// Whether spans are recorded (export on and the request sampled).
    pub fn is_recording(&self) -> bool {
        self.recording.is_some()
    }

    /// Names the root span (`POST /v1/chat/completions`).
    pub fn set_name(&mut self, name: &'static str) {
        if let Some(recording) = &mut self.recording {
            recording.name = name;
        }
    }

    /// A stage starts: `None` (and no clock read) when nothing is recorded.
    #[inline]
    pub fn begin(&self) -> Option<SpanStart> {
        self.recording.as_ref().map(|_| SpanStart {
            id: SpanId::random(),
            at: Instant::now(),
        })
    }

    /// A stage ended; `detail` is only built when the span is recorded.
    #[inline]
    pub fn end(
        &mut self,
        stage: Stage,
        start: Option<SpanStart>,
        ok: bool,
        detail: impl FnOnce() -> Detail,
    ) {
        if let (Some(recording), Some(start)) = (&mut self.recording, start) {
            recording.state().spans.push(StageSpan {
                stage,
                id: start.id,
                start: start.at,
                end: Instant::now(),
                ok,
                detail: detail(),
            });
        }
    }

    /// A stage ended at `end` (measured where the context was out of reach).
    pub fn end_at(&mut self, stage: Stage, start: SpanStart, end: Instant, ok: bool) {
        if let Some(recording) = &mut self.recording {
            recording.state().spans.push(StageSpan {
                stage,
                id: start.id,
                start: start.at,
                end,
                ok,
                detail: Detail::None,
            });
        }
    }

    /// A stage starts that ends with the request (a stream's upstream).
    pub fn begin_open(&mut self, stage: Stage) {
        let start = self.begin();
        if let (Some(recording), Some(start)) = (&mut self.recording, start) {
            recording.state().open = Some((stage, start));
        }
    }

    /// The `traceparent` for an upstream attempt: this request's trace with the attempt's span
    /// as parent when recorded, else the caller's header (if any) unchanged.
    pub fn upstream_header(&self, attempt: Option<&SpanStart>) -> Option<HeaderValue> {
        match (&self.recording, attempt) {
            (Some(_), Some(attempt)) => Some(traceparent::format(self.trace_id, attempt.id, true)),
            _ => self.forward.clone(),
        }
    }

    /// The caller's `tracestate`, to send upstream beside the `traceparent`.
    pub fn upstream_state(&self) -> Option<&HeaderValue> {
        self.state.as_ref()
    }

    /// The request ended: its spans go to the exporter's queue (once; never waits).
    /// `attributes` is only called when the request was recorded.
    pub(crate) fn finish(&self, ok: bool, attributes: impl FnOnce() -> RootAttributes) {
        let Some(recording) = &self.recording else {
            return;
        };
        let ended = Instant::now();
        let spans = {
            let mut state = recording
                .state
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if state.finished {
                return;
            }
            state.finished = true;
            if let Some((stage, start)) = state.open.take() {
                state.spans.push(StageSpan {
                    stage,
                    id: start.id,
                    start: start.at,
                    end: ended,
                    ok,
                    detail: Detail::None,
                });
            }
            std::mem::take(&mut state.spans)
        };
        let finished = FinishedTrace {
            trace_id: self.trace_id,
            root: recording.root,
            parent: recording.parent,
            name: recording.name,
            started: recording.started,
            started_unix_nanos: recording.started_unix_nanos,
            ended,
            attributes: attributes(),
            spans,
        };
        if recording.export.sender.try_send(finished).is_err() {
            recording.export.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracer(ratio: f64) -> (Tracer, mpsc::Receiver<FinishedTrace>) {
        let (sender, receiver) = mpsc::channel(4);
        let export = Arc::new(Export {
            sender,
            sample_below: if ratio >= 1.0 {
                u64::MAX
            } else {
                (ratio * 18_446_744_073_709_551_616.0) as u64
            },
            dropped: AtomicU64::new(0),
            stop: CancellationToken::new(),
            task: Mutex::new(None),
        });
        (
            Tracer {
                export: Some(export),
            },
            receiver,
        )
    }

    fn headers(traceparent: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            &TRACEPARENT,
            HeaderValue::from_str(traceparent).expect("header"),
        );
        headers
    }

    const SAMPLED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const UNSAMPLED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";

    #[test]
    fn off_records_nothing_but_keeps_a_trace_id_and_forwards_the_callers_header() {
        let off = Tracer::default();
        let mut trace = off.request(&HeaderMap::new());
        assert!(!trace.is_recording());
        assert_eq!(trace.trace_id.to_string().len(), 32);
        assert!(trace.begin().is_none());
        trace.end(Stage::Auth, None, true, || {
            unreachable!("not built when off")
        });
        assert_eq!(trace.upstream_header(None), None);
        let joined = off.request(&headers(SAMPLED));
        assert_eq!(
            joined.trace_id.to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(
            joined
                .upstream_header(None)
                .as_ref()
                .map(HeaderValue::as_bytes),
            Some(SAMPLED.as_bytes())
        );
        assert_ne!(
            off.request(&HeaderMap::new()).trace_id,
            off.request(&HeaderMap::new()).trace_id
        );
    }

    #[test]
    fn a_sampled_request_sends_its_spans_once_with_the_callers_parent() {
        let (tracer, mut receiver) = tracer(1.0);
        let mut trace = tracer.request(&headers(SAMPLED));
        assert!(trace.is_recording());
        trace.set_name("POST /v1/chat/completions");
        let auth = trace.begin();
        trace.end(Stage::Auth, auth, true, Detail::none);
        let attempt = trace.begin();
        let header = trace.upstream_header(attempt.as_ref()).expect("propagated");
        let attempt_id = attempt.expect("recording").id;
        assert_eq!(
            header,
            format!("00-4bf92f3577b34da6a3ce929d0e0e4736-{attempt_id}-01").as_str()
        );
        trace.begin_open(Stage::Upstream);
        trace.finish(true, answered);
        trace.finish(true, answered);
        let finished = receiver.try_recv().expect("one trace queued");
        assert!(receiver.try_recv().is_err(), "finished only once");
        assert_eq!(finished.name, "POST /v1/chat/completions");
        assert_eq!(
            finished.parent.map(|id| id.to_string()).as_deref(),
            Some("00f067aa0ba902b7")
        );
        let stages: Vec<Stage> = finished.spans.iter().map(|span| span.stage).collect();
        assert_eq!(stages, [Stage::Auth, Stage::Upstream]);
    }

    /// The root span's attributes of a plain answered request.
    fn answered() -> RootAttributes {
        RootAttributes {
            request_id: "r".to_owned(),
            tenant_id: None,
            model: None,
            provider: None,
            stream: false,
            status: 200,
            error_code: None,
        }
    }

    #[test]
    fn parent_decides_sampling_and_the_ratio_decides_new_traces() {
        let (tracer_all, _all) = tracer(1.0);
        let unsampled = tracer_all.request(&headers(UNSAMPLED));
        assert!(
            !unsampled.is_recording(),
            "the caller's decision is followed"
        );
        assert_eq!(
            unsampled
                .upstream_header(None)
                .as_ref()
                .map(HeaderValue::as_bytes),
            Some(UNSAMPLED.as_bytes())
        );
        let (tracer_none, _none) = tracer(0.0);
        assert!(!tracer_none.request(&HeaderMap::new()).is_recording());
        assert!(
            tracer_none.request(&headers(SAMPLED)).is_recording(),
            "a sampled parent is followed whatever the ratio"
        );
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let (tracer, _receiver) = tracer(1.0);
        for _ in 0..6 {
            let trace = tracer.request(&HeaderMap::new());
            trace.finish(true, answered);
        }
        let export = tracer.export.as_ref().expect("on");
        assert_eq!(export.dropped.load(Ordering::Relaxed), 2);
    }
}

//! The server's metrics, in the Prometheus text format (prometheus-client), served
//! over plain HTTP at `metrics_addr` when the configuration sets it.
//!
//! Per program (a model's program for inference): requests, requests refused or
//! failed, the size of each job's batch, the latency from a request's arrival to
//! its reply, and the bytes and rounds of this server's part of each job. Also the
//! server links dialed. Metrics carry names and counts only, never shares or values.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{info, warn};

/// The label of every per-program metric.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ProgramLabel {
    pub(crate) program: String,
}

fn latency_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.000_5, 2.0, 16))
}

fn batch_buckets() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 12))
}

type Hist = Family<ProgramLabel, Histogram, fn() -> Histogram>;

/// Counters and histograms of one server.
pub(crate) struct Metrics {
    registry: Registry,
    pub(crate) requests: Family<ProgramLabel, Counter>,
    pub(crate) refused: Family<ProgramLabel, Counter>,
    pub(crate) jobs: Family<ProgramLabel, Counter>,
    pub(crate) batch: Hist,
    pub(crate) latency: Hist,
    pub(crate) bytes: Family<ProgramLabel, Counter>,
    pub(crate) rounds: Family<ProgramLabel, Counter>,
    pub(crate) links: Counter,
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        let mut registry = Registry::with_prefix("privpy");
        let requests = Family::<ProgramLabel, Counter>::default();
        let refused = Family::<ProgramLabel, Counter>::default();
        let jobs = Family::<ProgramLabel, Counter>::default();
        let batch: Hist = Family::new_with_constructor(batch_buckets as fn() -> Histogram);
        let latency: Hist = Family::new_with_constructor(latency_buckets as fn() -> Histogram);
        let bytes = Family::<ProgramLabel, Counter>::default();
        let rounds = Family::<ProgramLabel, Counter>::default();
        let links = Counter::default();
        registry.register(
            "requests",
            "Client requests (runs, calls, inferences) by program",
            requests.clone(),
        );
        registry.register(
            "requests_refused",
            "Requests refused or failed, by program",
            refused.clone(),
        );
        registry.register("jobs", "Jobs this server took part in", jobs.clone());
        registry.register(
            "batch_size",
            "Requests per job (dynamic batches of inference requests)",
            batch.clone(),
        );
        registry.register(
            "request_latency_seconds",
            "From a request's arrival to its reply",
            latency.clone(),
        );
        registry.register(
            "job_bytes_sent",
            "Bytes this server sent to its peers in jobs",
            bytes.clone(),
        );
        registry.register(
            "job_rounds",
            "Communication rounds of this server in jobs",
            rounds.clone(),
        );
        registry.register(
            "server_links_dialed",
            "Server links this server dialed (each a TLS handshake)",
            links.clone(),
        );
        Metrics {
            registry,
            requests,
            refused,
            jobs,
            batch,
            latency,
            bytes,
            rounds,
            links,
        }
    }

    pub(crate) fn label(program: &str) -> ProgramLabel {
        ProgramLabel {
            program: program.to_string(),
        }
    }

    /// The metrics in the Prometheus text format.
    pub(crate) fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Serves `GET /metrics` (any path) on `listener` until `stop` changes: a minimal
/// HTTP/1.1 responder, one response per connection.
pub(crate) async fn serve(
    metrics: Arc<Metrics>,
    listener: TcpListener,
    mut stop: watch::Receiver<bool>,
) {
    if let Ok(a) = listener.local_addr() {
        info!(addr = %a, "metrics served");
    }
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => return,
        };
        let Ok((mut tcp, _)) = accepted else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let m = metrics.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let read =
                tokio::time::timeout(std::time::Duration::from_secs(2), tcp.read(&mut buf)).await;
            if !matches!(read, Ok(Ok(n)) if n > 0) {
                return;
            }
            let body = m.encode();
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            if tcp.write_all(head.as_bytes()).await.is_err()
                || tcp.write_all(body.as_bytes()).await.is_err()
            {
                warn!("metrics: the scraper went away");
            }
            let _ = tcp.shutdown().await;
        });
    }
}

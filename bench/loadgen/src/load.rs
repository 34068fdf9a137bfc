//! The run: open every connection, send the setup commands, then let each client loop
//! (one request in flight) until the request budget or the time bound is spent.

use hdrhistogram::Histogram;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::task::JoinSet;
use tokio::time::{Duration, Instant};

use crate::args::Args;
use crate::connection::{Connection, ConnectionError};
use crate::reply::Reply;
use crate::report::Report;
use crate::request::{encode_command, KeyPicker, LoadRequest};

/// How long one setup reply (AUTH, --setup) may take.
const SETUP_REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// Highest latency the histogram tells apart, beyond the run's own bound (µs).
const LATENCY_SLACK_US: u64 = 60_000_000;

/// Why a run could not produce a trustworthy report.
#[derive(Debug)]
pub enum LoadError {
    /// Connection `index` could not be opened.
    Connect {
        /// Which connection (0-based).
        index: usize,
        /// What went wrong.
        source: ConnectionError,
    },
    /// A setup command (AUTH or --setup) failed on connection `index`.
    Setup {
        /// Which connection (0-based).
        index: usize,
        /// The command line, with AUTH's password hidden.
        command: String,
        /// The error reply or connection failure.
        detail: String,
    },
    /// A connection failed during the load; the partial report is kept.
    Lost {
        /// Figures up to the failure.
        partial: Report,
        /// The first failure seen.
        source: ConnectionError,
    },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connect { index, source } => write!(f, "connection {index}: {source}"),
            Self::Setup {
                index,
                command,
                detail,
            } => write!(f, "connection {index}: setup {command:?} failed: {detail}"),
            Self::Lost { source, .. } => write!(f, "connection lost during the load: {source}"),
        }
    }
}

impl std::error::Error for LoadError {}

/// State every client task shares.
struct Shared {
    /// Requests claimed so far; a client claims one before sending it.
    claimed: AtomicU64,
    /// Set when a connection fails, so the others stop claiming.
    stop: AtomicBool,
    /// Latencies of successful requests, in microseconds.
    latency_us: Mutex<Histogram<u64>>,
}

/// What one client task did.
#[derive(Debug, Default)]
struct ClientOutcome {
    completed: u64,
    errors: u64,
    timed_out: bool,
    first_error: Option<String>,
    failure: Option<ConnectionError>,
}

/// Runs the load `args` describe (already validated) and reports on it.
///
/// Error replies during the load are counted, not fatal; the first one is written to stderr.
///
/// # Errors
/// [`LoadError`] when a connection cannot be opened, a setup command fails, or a connection
/// breaks during the load.
pub async fn run(args: &Args) -> Result<Report, LoadError> {
    let connections = open_all(args).await?;
    let latency_high_us = args.seconds_max * 1_000_000 + LATENCY_SLACK_US;
    let histogram = Histogram::<u64>::new_with_bounds(1, latency_high_us, 3)
        .expect("1 µs up to at least 61 s with 3 significant digits are valid histogram bounds");
    let shared = Arc::new(Shared {
        claimed: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        latency_us: Mutex::new(histogram),
    });
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() ^ u64::from(d.subsec_nanos()));

    let start = Instant::now();
    let deadline = start + Duration::from_secs(args.seconds_max);
    let mut tasks = JoinSet::new();
    for (index, conn) in connections.into_iter().enumerate() {
        let shared = Arc::clone(&shared);
        let request = LoadRequest::new(args.value_bytes, args.wait);
        let stream = (index as u64).wrapping_mul(0x2545_F491_4F6C_DD1D);
        let picker = KeyPicker::new(seed ^ stream, args.keyspace);
        let total = args.requests;
        let wait = args.wait;
        tasks.spawn(async move {
            client_loop(conn, request, picker, wait, total, deadline, &shared).await
        });
    }

    let mut requests = 0;
    let mut errors = 0;
    let mut timed_out = false;
    let mut first_error = None;
    let mut failure = None;
    while let Some(joined) = tasks.join_next().await {
        let outcome = joined.unwrap_or_else(|e| ClientOutcome {
            failure: Some(ConnectionError::Io(std::io::Error::other(format!(
                "client task ended abnormally: {e}"
            )))),
            ..ClientOutcome::default()
        });
        requests += outcome.completed;
        errors += outcome.errors;
        timed_out |= outcome.timed_out;
        first_error = first_error.or(outcome.first_error);
        failure = failure.or(outcome.failure);
    }
    let seconds = start.elapsed().as_secs_f64();
    if let Some(e) = first_error {
        eprintln!("replikv-loadgen: {errors} error replies; the first: {e}");
    }
    let histogram = shared
        .latency_us
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let report = Report::new(requests, errors, seconds, &histogram, timed_out);
    match failure {
        None => Ok(report),
        Some(source) => Err(LoadError::Lost {
            partial: report,
            source,
        }),
    }
}

/// Opens every connection one after another (a burst of connects can overflow a server's
/// accept backlog) and sends AUTH and the setup commands on each.
async fn open_all(args: &Args) -> Result<Vec<Connection>, LoadError> {
    let mut setup: Vec<(String, Vec<u8>)> = Vec::new();
    if let Some(password) = &args.password {
        let mut bytes = Vec::new();
        encode_command(&mut bytes, &[b"AUTH", password.as_bytes()]);
        setup.push(("AUTH ****".into(), bytes));
    }
    for line in &args.setup {
        let words: Vec<&[u8]> = line.split_whitespace().map(str::as_bytes).collect();
        let mut bytes = Vec::new();
        encode_command(&mut bytes, &words);
        setup.push((line.clone(), bytes));
    }

    let mut connections = Vec::with_capacity(args.clients);
    for index in 0..args.clients {
        let mut conn = Connection::connect(&args.host, args.port)
            .await
            .map_err(|source| LoadError::Connect { index, source })?;
        for (command, bytes) in &setup {
            let deadline = Instant::now() + SETUP_REPLY_TIMEOUT;
            let fail = |detail: String| LoadError::Setup {
                index,
                command: command.clone(),
                detail,
            };
            conn.send(bytes, deadline)
                .await
                .map_err(|e| fail(e.to_string()))?;
            match conn.read_reply(deadline).await {
                Ok(Reply::Error(text)) => return Err(fail(format!("-{text}"))),
                Ok(_) => {}
                Err(e) => return Err(fail(e.to_string())),
            }
        }
        connections.push(conn);
    }
    Ok(connections)
}

/// One client: claim a request, send it, read its replies, record, repeat.
async fn client_loop(
    mut conn: Connection,
    mut request: LoadRequest,
    mut picker: KeyPicker,
    wait: Option<u32>,
    total: u64,
    deadline: Instant,
    shared: &Shared,
) -> ClientOutcome {
    let mut out = ClientOutcome::default();
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        if Instant::now() >= deadline {
            out.timed_out = true;
            break;
        }
        if shared.claimed.fetch_add(1, Ordering::Relaxed) >= total {
            break;
        }
        let sent_at = Instant::now();
        match exchange(&mut conn, &mut request, &mut picker, wait, deadline).await {
            Ok(None) => {
                let us = u64::try_from(sent_at.elapsed().as_micros()).unwrap_or(u64::MAX);
                shared
                    .latency_us
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .saturating_record(us.max(1));
                out.completed += 1;
            }
            Ok(Some(error)) => {
                out.completed += 1;
                out.errors += 1;
                out.first_error.get_or_insert(error);
            }
            Err(ConnectionError::Deadline) => {
                out.timed_out = true;
                break;
            }
            Err(e) => {
                shared.stop.store(true, Ordering::Relaxed);
                out.failure = Some(e);
                break;
            }
        }
    }
    out
}

/// Sends one request and reads all its replies. `Ok(Some(text))` describes an error reply or
/// a `WAIT` count below the one asked for.
async fn exchange(
    conn: &mut Connection,
    request: &mut LoadRequest,
    picker: &mut KeyPicker,
    wait: Option<u32>,
    deadline: Instant,
) -> Result<Option<String>, ConnectionError> {
    let replies = request.replies();
    conn.send(request.with_key(picker.next_key()), deadline)
        .await?;
    let mut problem = None;
    for i in 0..replies {
        let reply = conn.read_reply(deadline).await?;
        let verdict = match (i, reply, wait) {
            (_, Reply::Error(text), _) => Some(format!("-{text}")),
            (1, Reply::Integer(got), Some(want)) if got < i64::from(want) => {
                Some(format!("not replicated: WAIT {want} 0 answered {got}"))
            }
            (1, Reply::Integer(_), Some(_)) | (0, _, _) => None,
            (_, other, _) => Some(format!("unexpected WAIT reply {other:?}")),
        };
        // Keep reading: the second reply must be consumed even if the first was an error.
        problem = problem.or(verdict);
    }
    Ok(problem)
}

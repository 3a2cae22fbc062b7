//! `backwater replay --to nats://…`: the NATS JetStream sink. Records go to a
//! forwarder thread (a tokio runtime of its own) that publishes them with
//! `Nats-Msg-Id: <journal id>-<position>`, pipelined, and reports PubAcks to
//! replay in journal order as `Ack::Records`, exactly as a `--exec --ack`
//! child does: replay's window, cursor commits and timeouts are the same.
//!
//! Exactly once in the stream: a record whose PubAck did not arrive is
//! re-sent with the same id, and the stream drops it if it had it already
//! (within its duplicate window). In journal order: after any failure the
//! forwarder stops publishing, lets the in-flight publishes settle and re-sends
//! from the oldest unacknowledged record; and it publishes nothing new while
//! the oldest in-flight publish has waited longer than [`STALL`], so a publish
//! lost with a dying leader cannot be overtaken by a later one that reaches
//! the next leader (elections take seconds). That rule is a heuristic (a
//! publish can wait in the client's buffer through a reconnect); with
//! `--ordered` the stream itself fences: each publish carries
//! `Nats-Expected-Last-Sequence`, the stream sequence of the record before it
//! ([`Fence`]), so a publish whose predecessor was lost is refused and re-sent
//! after it. The stream checks the duplicate id first, so a re-send of a
//! record it has is still acknowledged as a duplicate.
//!
//! What counts as a PubAck is strict: a duplicate of sequence 0 is not one
//! ([`is_staged_duplicate`]), and which errors the stream answers may pass
//! and which refuse the record for good is [`passes`]'s to say.

use std::collections::VecDeque;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use async_nats::jetstream::context::{
    CreateStreamErrorKind, GetStreamByNameErrorKind, GetStreamErrorKind, PublishErrorKind,
};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::publish::PublishAck;
use async_nats::jetstream::{self, stream};
use async_nats::{HeaderMap, ServerAddr};
use backwater::Record;
use futures_util::stream::FuturesOrdered;
use futures_util::{FutureExt, StreamExt};

use crate::cli::ReplayArgs;
use crate::output::priority_name;
use crate::replay::Ack;
use crate::units::is_subject_token;
use crate::{EXIT_FINDING, EXIT_USAGE, Failure};

/// How long a PubAck may take before the publish counts as lost (and is re-sent).
const ACK_TIMEOUT: Duration = Duration::from_secs(3);
/// No new publish while the oldest unacknowledged one has waited this long.
const STALL: Duration = Duration::from_secs(1);
/// The largest `--window` with `--to` (the client reserves a permit per publish in flight).
const MAX_WINDOW: usize = 100_000;
/// Backoff between re-sends: from the first to the longest, doubling.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const LONGEST_BACKOFF: Duration = Duration::from_secs(2);

/// One record on its way to the stream (owned: the forwarder outlives the poll).
pub struct Outgoing {
    position: u64,
    timestamp: u64,
    priority: &'static str,
    payload: bytes::Bytes,
    /// The subject it goes on; an error when, with `--subject-from-key`,
    /// its key cannot be a subject token.
    subject: Result<String, Rejected>,
    /// The PubAck it got while a record before it was still unacknowledged:
    /// it is in the stream, and is not published again ([`Forwarder::publish_ready`]).
    stored: Option<PublishAck>,
}

/// Why the forwarder stopped for good: the record it could not publish.
#[derive(Clone, Debug)]
pub enum Rejected {
    /// Payload and headers exceed the server's `max_payload`: no publish can take it.
    TooLarge { position: u64, detail: String },
    /// The stream refused it (its own limits, a sealed stream...): not transient.
    Refused { position: u64, detail: String },
    /// With `--subject-from-key`: its key cannot be a subject token.
    BadKey { position: u64, key: String },
    /// With `--ordered`: the record at `position` was stored (at `sequence`)
    /// after a message that is not this journal's record before it: another
    /// publisher writes into the stream. `overtaken` records after it were
    /// stored before it, out of journal order.
    Foreign { position: u64, sequence: u64, overtaken: usize },
}

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rejected::TooLarge { position, detail, .. } => {
                write!(f, "the record at position {position} is larger than the NATS server takes ({detail})")
            }
            Rejected::Refused { position, detail } => {
                write!(f, "the stream refused the record at position {position}: {detail}")
            }
            Rejected::BadKey { position, key } => write!(
                f,
                "the record at position {position} has key {key:?}, which cannot be a subject token \
                 (--subject-from-key needs keys without dots, wildcards (* >), spaces or control characters)"
            ),
            Rejected::Foreign { position, sequence, overtaken } => write!(
                f,
                "with --ordered: the stream's last message before the record at position {position} (now its \
                 sequence {sequence}) is not this journal's record before it: another publisher writes into the \
                 stream, the record's id left its duplicate window, or the stream was deleted and created again{}; \
                 --ordered needs a stream of this journal's records alone",
                if *overtaken > 0 {
                    format!(" ({overtaken} records after it were stored before it, out of journal order)")
                } else {
                    String::new()
                }
            ),
        }
    }
}

/// What the forwarder counted, for replay's last line.
#[derive(Default)]
pub struct Stats {
    pub acknowledged: AtomicU64,
    /// PubAcks with the duplicate flag: the stream had the record already.
    pub duplicates: AtomicU64,
    pub resent: AtomicU64,
    /// Publishes `--ordered`'s fence refused because a record before them
    /// was not stored (each is re-sent after it).
    pub fenced: AtomicU64,
}

/// The forwarder's counts in one line.
pub fn summary(stats: &Stats) -> String {
    format!(
        "backwater replay: NATS acknowledged {} publishes, {} of them duplicates the stream dropped (it had them \
         already); {} re-sent after failures, {} of them refused by the --ordered fence",
        stats.acknowledged.load(Ordering::Relaxed),
        stats.duplicates.load(Ordering::Relaxed),
        stats.resent.load(Ordering::Relaxed),
        stats.fenced.load(Ordering::Relaxed)
    )
}

/// Replay's handle on the forwarder: records go in, acks come back on the
/// channel given to [`start`].
pub struct Publisher {
    records: tokio::sync::mpsc::UnboundedSender<Vec<Outgoing>>,
    /// `--subject`.
    subject: String,
    /// `--subject-from-key`: keyed records go on `SUBJECT.<key>`.
    subject_from_key: bool,
    /// Records handed over since the last flush: one wake-up per batch.
    batch: Vec<Outgoing>,
    pub stats: Arc<Stats>,
}

impl Publisher {
    /// Queues a record for the forwarder (sent on [`Publisher::flush`]).
    pub fn send(&mut self, record: &Record<'_>) {
        self.batch.push(Outgoing {
            position: record.position(),
            timestamp: record.timestamp(),
            priority: priority_name(record.priority()),
            payload: bytes::Bytes::copy_from_slice(record.payload()),
            subject: self.subject_of(record),
            stored: None,
        });
    }

    fn subject_of(&self, record: &Record<'_>) -> Result<String, Rejected> {
        match record.key().filter(|_| self.subject_from_key) {
            None => Ok(self.subject.clone()),
            Some(key) => match std::str::from_utf8(key) {
                Ok(token) if is_subject_token(token) => Ok(format!("{}.{token}", self.subject)),
                _ => Err(Rejected::BadKey {
                    position: record.position(),
                    key: String::from_utf8_lossy(key).into_owned(),
                }),
            },
        }
    }

    /// Hands the queued records to the forwarder; fails only once it has stopped.
    pub fn flush(&mut self) -> std::io::Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        self.records
            .send(std::mem::take(&mut self.batch))
            .map_err(|_| std::io::Error::other("the NATS forwarder has stopped"))
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        let _ = self.flush(); // what was handed over goes out before the channel closes
    }
}

/// Connects, checks (or creates) the stream, and starts the forwarder thread,
/// which reports on `acks`. Fails before any record is read when NATS is not
/// there or the stream does not take the subject.
pub fn start(args: &ReplayArgs, journal_id: &str, acks: Sender<Ack>) -> Result<Publisher, Failure> {
    let (Some(servers), Some(subject)) = (&args.to, &args.subject) else {
        return Err(Failure::new(EXIT_USAGE, "--to needs --subject"));
    };
    if args.window > MAX_WINDOW {
        return Err(Failure::new(EXIT_USAGE, format!("--window is at most {MAX_WINDOW} with --to")));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(EXIT_FINDING, format!("cannot start the NATS client's runtime: {e}")))?;
    let (context, retention) = runtime.block_on(async {
        let client = connect(&servers.0).await?;
        let version = client.server_info().version;
        let context = jetstream::ContextBuilder::new()
            .timeout(ACK_TIMEOUT)
            // More permits than publishes in flight: a send never waits for one.
            .max_ack_inflight(args.window + 1)
            .build(client);
        let (stream, config) = ensure_stream(&context, args, subject).await?;
        if args.ordered && config.num_replicas > 1 && fence_waits_for_duplicate_window(&version) {
            eprintln!(
                "backwater replay: warning: nats-server {version} checks --ordered's fence in a replicated stream only \
                 after staging the publish's id: after a lost publish, replay waits until the stream's duplicate \
                 window ends (nothing is lost; see README, \"Past one machine\"); nats-server 2.12 or later does not"
            );
        }
        eprintln!("backwater replay: publishing on '{subject}' into stream '{stream}' via {}", servers.0.join(","));
        Ok::<_, Failure>((context, config.retention))
    })?;
    let (records, receiver) = tokio::sync::mpsc::unbounded_channel();
    let stats = Arc::new(Stats::default());
    let forwarder = Forwarder {
        context,
        journal_id: journal_id.to_string(),
        ordered: args.ordered,
        retention,
        predicted_sequence: None,
        catching_up: true,
        highest_sequence: 0,
        unexplained_refusal: None,
        acks,
        stats: stats.clone(),
        unsent: VecDeque::new(),
        in_flight: VecDeque::new(),
        pub_acks: FuturesOrdered::new(),
        resend: Vec::new(),
        unreported: 0,
        trouble: None,
        unpublishable: None,
        backoff: FIRST_BACKOFF,
        troubled_since: None,
    };
    std::thread::Builder::new()
        .name("nats-forwarder".into())
        .spawn(move || runtime.block_on(forwarder.run(receiver)))
        .map_err(|e| Failure::new(EXIT_FINDING, format!("cannot start the NATS forwarder: {e}")))?;
    Ok(Publisher {
        records,
        subject: subject.clone(),
        subject_from_key: args.subject_from_key,
        batch: Vec::new(),
        stats,
    })
}

/// A connection that reconnects forever with backoff, saying so on stderr;
/// the first connection must succeed.
async fn connect(servers: &[String]) -> Result<async_nats::Client, Failure> {
    let addresses = servers
        .iter()
        .map(|server| server.parse::<ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Failure::new(EXIT_USAGE, format!("bad NATS address in {}: {e}", servers.join(","))))?;
    let options = async_nats::ConnectOptions::new()
        .name("backwater replay")
        .connection_timeout(Duration::from_secs(5))
        .max_reconnects(None)
        .reconnect_delay_callback(|attempts| backoff_after(attempts as u32))
        .event_callback(|event| async move { eprintln!("backwater replay: NATS {event}") });
    async_nats::connect_with_options(addresses, options).await.map_err(|e| {
        Failure::new(
            EXIT_FINDING,
            format!(
                "cannot connect to NATS at {} ({e}); nothing was published, the cursor is unchanged",
                servers.join(",")
            ),
        )
    })
}

fn backoff_after(attempts: u32) -> Duration {
    FIRST_BACKOFF.saturating_mul(1 << attempts.min(8)).min(LONGEST_BACKOFF)
}

/// Why a start-up lookup of the stream failed.
enum Lookup {
    /// JetStream did not answer (an election, a node restarting): worth asking again.
    Unanswered(String),
    /// Creating the stream was answered "no suitable peers for placement"
    /// (10005): right after a cluster starts, before its servers have all
    /// reported in (seen on nats-server 2.10.26), worth asking again; for
    /// good when `--replicas` exceeds the servers the cluster has up (or a
    /// server never joined its meta group: seen once on 2.10.26 too).
    Unplaced(String),
    /// An answer that ends the replay (no such stream, subjects that do not match...).
    Failed(Failure),
}

/// The stream that takes `subject`, and its configuration: `--stream`
/// (created if absent) or the existing one whose subjects match it. A lookup
/// JetStream does not answer, or a creation it has no servers to place yet,
/// is asked again with backoff, saying so, for up to `--ack-timeout`.
async fn ensure_stream(
    context: &jetstream::Context,
    args: &ReplayArgs,
    subject: &str,
) -> Result<(String, stream::Config), Failure> {
    let deadline = Instant::now() + args.ack_timeout;
    let mut attempts = 0;
    loop {
        let (why, unplaced) = match find_stream(context, args, subject).await {
            Ok(found) => return Ok(found),
            Err(Lookup::Failed(failure)) => return Err(failure),
            Err(Lookup::Unanswered(why)) => (why, false),
            Err(Lookup::Unplaced(why)) => (why, true),
        };
        let stream = args.stream.as_deref().unwrap_or_default();
        let replicas = args.replicas;
        if Instant::now() >= deadline {
            let waited = humantime::format_duration(args.ack_timeout);
            return Err(if unplaced {
                Failure::new(
                    EXIT_USAGE,
                    format!(
                        "cannot create stream '{stream}': for {waited} JetStream had no servers to place its \
                         {replicas} replicas on ({why}): check --replicas {replicas} against the JetStream \
                         servers the cluster has up and in its meta group (`nats server report jetstream` lists \
                         them). Nothing was published; the cursor is unchanged"
                    ),
                )
            } else {
                Failure::new(
                    EXIT_FINDING,
                    format!(
                        "JetStream did not answer the stream lookup for {waited} ({why}): is JetStream enabled, and \
                         does the stream have a leader? Nothing was published; the cursor is unchanged"
                    ),
                )
            });
        }
        let wait = backoff_after(attempts);
        attempts += 1;
        if unplaced {
            eprintln!(
                "backwater replay: JetStream has no servers to place stream '{stream}''s {replicas} replicas on \
                 ({why}): a cluster just started, or --replicas is more than it has up; asking again in {} ms",
                wait.as_millis()
            );
        } else {
            eprintln!(
                "backwater replay: JetStream did not answer the stream lookup ({why}); asking again in {} ms",
                wait.as_millis()
            );
        }
        tokio::time::sleep(wait).await;
    }
}

/// One attempt of [`ensure_stream`].
async fn find_stream(
    context: &jetstream::Context,
    args: &ReplayArgs,
    subject: &str,
) -> Result<(String, stream::Config), Lookup> {
    let name = match &args.stream {
        Some(name) => name.clone(),
        None => context.stream_by_subject(subject).await.map_err(|e| match e.kind() {
            GetStreamByNameErrorKind::NotFound | GetStreamByNameErrorKind::InvalidSubject => {
                Lookup::Failed(Failure::new(
                    EXIT_USAGE,
                    format!(
                        "no JetStream stream takes subject '{subject}' ({e}); name one with --stream NAME to create it"
                    ),
                ))
            }
            GetStreamByNameErrorKind::JetStream(api) => answered(&api, format!("cannot look up subject '{subject}'")),
            GetStreamByNameErrorKind::Request => Lookup::Unanswered(e.to_string()),
        })?,
    };
    let config = match context.get_stream(&name).await {
        Ok(stream) => stream.cached_info().config.clone(),
        Err(e) => match e.kind() {
            GetStreamErrorKind::JetStream(api) if api.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND => {
                if args.stream.is_none() {
                    // Deleted since the subject's lookup: look the subject up again.
                    return Err(Lookup::Unanswered(format!("stream '{name}' is gone: {e}")));
                }
                create_stream(context, args, &name, subject).await?
            }
            GetStreamErrorKind::JetStream(api) => {
                return Err(answered(&api, format!("cannot look up stream '{name}'")));
            }
            GetStreamErrorKind::Request => return Err(Lookup::Unanswered(e.to_string())),
            _ => return Err(Lookup::Failed(Failure::new(EXIT_USAGE, format!("bad --stream '{name}': {e}")))),
        },
    };
    // With --subject-from-key, the keys' subjects too (keys are single tokens:
    // a filter that takes `SUBJECT.*`, read as a literal, takes every one).
    let mut needed = vec![subject.to_string()];
    if args.subject_from_key {
        needed.push(format!("{subject}.*"));
    }
    check_subjects(&name, &config, &needed).map_err(Lookup::Failed)?;
    if args.ordered {
        check_alone(&name, &config, subject, args.subject_from_key).map_err(Lookup::Failed)?;
    }
    Ok((name, config))
}

async fn create_stream(
    context: &jetstream::Context,
    args: &ReplayArgs,
    name: &str,
    subject: &str,
) -> Result<stream::Config, Lookup> {
    let mut subjects = vec![subject.to_string()];
    if args.subject_from_key {
        subjects.push(format!("{subject}.*")); // keys are single tokens
    }
    let config = stream::Config {
        name: name.to_string(),
        subjects,
        num_replicas: args.replicas.into(),
        duplicate_window: args.duplicate_window,
        ..Default::default()
    };
    let what = format!("cannot create stream '{name}' for subject '{subject}'");
    match context.create_stream(config).await {
        Ok(created) => Ok(created.cached_info().config.clone()),
        Err(e) => Err(match e.kind() {
            CreateStreamErrorKind::TimedOut | CreateStreamErrorKind::JetStreamUnavailable => {
                Lookup::Unanswered(e.to_string())
            }
            CreateStreamErrorKind::JetStream(api) if api.code() == 503 => Lookup::Unanswered(e.to_string()),
            CreateStreamErrorKind::JetStream(api) if api.error_code() == jetstream::ErrorCode::CLUSTER_NO_PEERS => {
                Lookup::Unplaced(e.to_string())
            }
            _ => Lookup::Failed(Failure::new(EXIT_USAGE, format!("{what}: {e}"))),
        }),
    }
}

/// An error JetStream answered a lookup with: a 503 (no leader, no quorum)
/// may pass; anything else (JetStream not enabled, no permission...) ends
/// the replay.
fn answered(api: &jetstream::Error, what: String) -> Lookup {
    let disabled =
        [jetstream::ErrorCode::JETSTREAM_NOT_ENABLED, jetstream::ErrorCode::JETSTREAM_NOT_ENABLED_FOR_ACCOUNT];
    if api.code() == 503 && !disabled.contains(&api.error_code()) {
        Lookup::Unanswered(api.to_string())
    } else {
        Lookup::Failed(Failure::new(EXIT_FINDING, format!("{what}: {api}")))
    }
}

/// Whether nats-server `version` checks `--ordered`'s fence in a replicated
/// stream only after staging the publish's id (2.10.14 to 2.11; 2.12 checks
/// it before, 2.9 stages nothing): a refused publish's re-send is then
/// answered as a duplicate still being stored until the stream's duplicate
/// window ends, and replay waits that long after a lost publish.
fn fence_waits_for_duplicate_window(version: &str) -> bool {
    let mut numbers = version.split(['.', '-', '+']).map(|number| number.parse::<u32>().unwrap_or(0));
    let release = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    ((2, 10, 14)..(2, 12, 0)).contains(&release)
}

/// The stream takes every subject in `needed`, or the error says which not.
fn check_subjects(name: &str, config: &stream::Config, needed: &[String]) -> Result<(), Failure> {
    match needed.iter().find(|subject| !config.subjects.iter().any(|filter| subject_matches(filter, subject))) {
        None => Ok(()),
        Some(subject) => Err(Failure::new(
            EXIT_USAGE,
            format!(
                "stream '{name}' takes subjects [{}], not '{subject}': publish on one of those, or name another \
                 --stream",
                config.subjects.join(", ")
            ),
        )),
    }
}

/// With `--ordered`, the stream takes this replay's subjects only: a
/// message of another publisher while publishes are in flight lets the
/// ones behind it match their predicted fences ([`Fence`]), ahead of the
/// refused one. (Another publisher on the very same subject is not caught
/// here: replay stops when the fence shows it, [`Rejected::Foreign`].)
fn check_alone(name: &str, config: &stream::Config, subject: &str, subject_from_key: bool) -> Result<(), Failure> {
    let ours = |filter: &String| filter == subject || (subject_from_key && *filter == format!("{subject}.*"));
    if config.mirror.is_some() || config.sources.as_ref().is_some_and(|sources| !sources.is_empty()) {
        return Err(Failure::new(
            EXIT_USAGE,
            format!(
                "--ordered needs a stream of this journal's records alone, and stream '{name}' also takes \
                 messages from other streams (sources or a mirror): give the journal a stream of its own"
            ),
        ));
    }
    match config.subjects.iter().find(|filter| !ours(filter)) {
        None => Ok(()),
        Some(filter) => Err(Failure::new(
            EXIT_USAGE,
            format!(
                "--ordered needs a stream of this journal's records alone, and stream '{name}' also takes \
                 '{filter}': give the journal a stream of its own (--stream NAME --subject {subject})"
            ),
        )),
    }
}

/// Whether a stream's subject filter (with `*` and `>` wildcards) takes `subject`.
pub fn subject_matches(filter: &str, subject: &str) -> bool {
    let mut tokens = subject.split('.');
    for wanted in filter.split('.') {
        match (wanted, tokens.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (wanted, Some(token)) if wanted == token => {}
            _ => return false,
        }
    }
    tokens.next().is_none()
}

type AckFuture = Pin<Box<dyn Future<Output = Result<PublishAck, jetstream::context::PublishError>> + Send>>;

struct InFlight {
    record: Outgoing,
    sent: Instant,
    /// With `--ordered`: what its `Nats-Expected-Last-Sequence` rests on.
    fence: Fence,
}

/// With `--ordered`, the stream sequence a publish expects the stream's last
/// message to have: the sequence of this journal's record before it, known
/// from that record's PubAck, or predicted (one past the sequence its own
/// predecessor expects) for a publish sent while the one before it is still
/// in flight. A stream of this journal's records alone stores them at
/// consecutive sequences, so the prediction holds unless one before it was
/// lost: then this publish is refused, and re-sent after it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fence {
    /// The run's first publish: nothing to rest on (not fenced).
    Unknown,
    /// The predecessor's sequence, from its PubAck.
    Acknowledged(u64),
    /// One past the sequence the predecessor expects.
    Predicted(u64),
}

impl Fence {
    fn sequence(self) -> Option<u64> {
        match self {
            Fence::Unknown => None,
            Fence::Acknowledged(sequence) | Fence::Predicted(sequence) => Some(sequence),
        }
    }
}

/// The publishing loop, on the forwarder thread.
struct Forwarder {
    context: jetstream::Context,
    journal_id: String,
    /// `--ordered`: each publish expects its predecessor's stream sequence.
    ordered: bool,
    /// The stream's retention: whether a full stream is final ([`passes`]).
    retention: stream::RetentionPolicy,
    /// The stream sequence the last record published will get, if known.
    predicted_sequence: Option<u64>,
    /// With `--ordered`: publishes go unfenced, one at a time, until the
    /// stream stores one anew (not as a duplicate). So at a run's start, and
    /// after the stream refused a publish whose predecessor's PubAck had
    /// arrived: the record itself may be in the stream (nats-server 2.12 and
    /// later check an R1 stream's fence before the duplicate id), and an
    /// unfenced re-send tells.
    catching_up: bool,
    /// The highest stream sequence a PubAck named. With `--ordered`, a record
    /// acknowledged below it sits before records of this journal the stream
    /// already has (a gap a crash or another publisher left): fences
    /// predicted from its sequence would be wrong, so catching up starts over.
    /// Outside catching up it is the last acknowledged record's sequence
    /// (catching up ends only at a record stored anew, the stream's last).
    highest_sequence: u64,
    /// The position of a record refused under an acknowledged fence, until
    /// a re-send shows it was in the stream already (a duplicate). Stored
    /// anew instead, the stream's last message was another publisher's.
    unexplained_refusal: Option<u64>,
    acks: Sender<Ack>,
    stats: Arc<Stats>,
    /// Records to publish, oldest first (re-sends go back to the front).
    unsent: VecDeque<Outgoing>,
    /// Published, PubAck awaited, oldest first.
    in_flight: VecDeque<InFlight>,
    /// Their PubAcks, all awaited at once (each one's timeout runs from its
    /// publish), yielded in publishing order.
    pub_acks: FuturesOrdered<AckFuture>,
    /// Records to re-send after the trouble: the failed one and all after it.
    resend: Vec<Outgoing>,
    /// PubAcks not yet reported to replay (reported once per wake-up).
    unreported: u64,
    /// The first failure since publishing last went well: nothing new is
    /// published until the in-flight publishes have settled.
    trouble: Option<jetstream::context::PublishError>,
    /// The next record cannot be published at all (its key): the
    /// forwarding ends with it once every earlier one has settled.
    unpublishable: Option<Rejected>,
    backoff: Duration,
    troubled_since: Option<Instant>,
}

/// What woke the loop.
enum Event {
    Records(Option<Vec<Outgoing>>),
    Settled(Result<PublishAck, jetstream::context::PublishError>),
}

impl Forwarder {
    async fn run(mut self, mut records: tokio::sync::mpsc::UnboundedReceiver<Vec<Outgoing>>) {
        let mut open = true;
        loop {
            self.report_acks();
            if self.trouble.is_some()
                && self.in_flight.is_empty()
                && let Err(rejected) = self.recover().await
            {
                let _ = self.acks.send(Ack::Rejected(rejected));
                return;
            }
            self.publish_ready().await;
            if self.trouble.is_none()
                && self.in_flight.is_empty()
                && let Some(rejected) = self.unpublishable.take()
            {
                self.report_acks();
                let _ = self.acks.send(Ack::Rejected(rejected));
                return;
            }
            if self.trouble.is_some() && self.in_flight.is_empty() {
                continue; // a send failed with nothing in flight: nothing to wait for
            }
            if !open && self.unsent.is_empty() && self.in_flight.is_empty() && self.trouble.is_none() {
                return;
            }
            let event = tokio::select! {
                records = records.recv(), if open => Event::Records(records),
                Some(settled) = self.pub_acks.next(), if !self.in_flight.is_empty() => Event::Settled(settled),
            };
            match event {
                Event::Records(Some(records)) => self.take_in(records),
                Event::Records(None) => open = false,
                Event::Settled(result) => {
                    self.settle_front(result);
                    self.settle_ready();
                }
            }
        }
    }

    fn take_in(&mut self, records: Vec<Outgoing>) {
        self.unsent.extend(records);
    }

    /// Publishes the records waiting, unless there is trouble or the oldest
    /// publish has waited for its PubAck longer than [`STALL`]. A record the
    /// stream already stored is not published again: its PubAck goes back in
    /// line, to be settled in journal order. (Re-sent, it could be stored
    /// twice: a stream keeps ids for its duplicate window only, and on
    /// nats-server 2.10 a stalled record before it can outlast that.)
    async fn publish_ready(&mut self) {
        while self.trouble.is_none()
            && self.unpublishable.is_none()
            && self.in_flight.front().is_none_or(|f| f.sent.elapsed() <= STALL)
        {
            let Some(fence) = self.next_fence() else { return };
            let Some(mut record) = self.unsent.pop_front() else { return };
            if let Some(ack) = record.stored.take() {
                // Not below a sequence seen: then the ones after it wait.
                self.predicted_sequence = Some(ack.sequence).filter(|&sequence| sequence >= self.highest_sequence);
                self.in_flight.push_back(InFlight { record, sent: Instant::now(), fence });
                self.pub_acks.push_back(Box::pin(std::future::ready(Ok(ack))));
                continue;
            }
            let subject = match &record.subject {
                Ok(subject) => subject.clone(),
                Err(rejected) => {
                    self.unpublishable = Some(rejected.clone());
                    self.unsent.push_front(record);
                    return;
                }
            };
            let publish = PublishMessage::build().payload(record.payload.clone()).headers(self.headers(&record, fence));
            match self.context.send_publish(subject, publish).await {
                Ok(ack) => {
                    self.predicted_sequence = fence.sequence().map(|sequence| sequence + 1);
                    self.in_flight.push_back(InFlight { record, sent: Instant::now(), fence });
                    self.pub_acks.push_back(ack.into_future());
                }
                Err(error) => {
                    self.unsent.push_front(record);
                    self.trouble = Some(error);
                }
            }
        }
    }

    /// The fence of the next publish, or none while it cannot be known yet:
    /// with `--ordered`, while catching up a publish goes alone and unfenced,
    /// and the ones after it wait for its PubAck (its sequence starts the
    /// predictions).
    fn next_fence(&self) -> Option<Fence> {
        if !self.ordered {
            return Some(Fence::Unknown);
        }
        if self.catching_up {
            return self.in_flight.is_empty().then_some(Fence::Unknown);
        }
        if self.in_flight.is_empty() {
            return Some(Fence::Acknowledged(self.highest_sequence));
        }
        self.predicted_sequence.map(Fence::Predicted)
    }

    fn headers(&self, record: &Outgoing, fence: Fence) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", self.msg_id(record.position).as_str());
        if let Some(sequence) = fence.sequence() {
            // The stream takes this record only right after its predecessor
            // (a re-send it has already is a duplicate first).
            headers.insert("Nats-Expected-Last-Sequence", sequence.to_string().as_str());
        }
        headers.insert("Backwater-Journal", self.journal_id.as_str());
        headers.insert("Backwater-Position", record.position.to_string().as_str());
        headers.insert("Backwater-Timestamp", record.timestamp.to_string().as_str());
        headers.insert("Backwater-Priority", record.priority);
        headers
    }

    fn msg_id(&self, position: u64) -> String {
        format!("{}-{position}", self.journal_id)
    }

    /// The oldest publish settled: acknowledged to replay if all before it
    /// were; otherwise (or if it failed) kept to be re-sent.
    fn settle_front(&mut self, result: Result<PublishAck, jetstream::context::PublishError>) {
        let Some(mut front) = self.in_flight.pop_front() else { return };
        match result {
            // The id is staged, its message not (yet) stored: not an ack.
            Ok(ack) if is_staged_duplicate(&ack) => {
                self.trouble.get_or_insert_with(staged_duplicate_error);
                self.resend.push(front.record);
            }
            // In order: only if no earlier publish failed (a failed send stops
            // later ones; the publishes before it are acknowledged as usual).
            Ok(ack) if self.resend.is_empty() => {
                self.acknowledge(&ack);
                if self.ordered && self.catching_up {
                    self.catch_up(&ack, front.record.position);
                }
            }
            Ok(ack) => {
                front.record.stored = Some(ack);
                self.resend.push(front.record);
            }
            Err(error) => {
                let error = match (error.kind(), front.fence) {
                    (PublishErrorKind::WrongLastSequence, Fence::Predicted(_) | Fence::Acknowledged(_)) => {
                        self.fence_refused(front.fence, front.record.position)
                    }
                    _ => error,
                };
                self.trouble.get_or_insert(error);
                self.resend.push(front.record);
            }
        }
    }

    /// The fence refused the record at `position`, which is re-sent: under a
    /// predicted fence, a record before it was not stored (it goes first);
    /// under an acknowledged one, the record is in the stream already or
    /// another publisher wrote, and an unfenced re-send tells
    /// ([`Forwarder::catch_up`]).
    fn fence_refused(&mut self, fence: Fence, position: u64) -> jetstream::context::PublishError {
        self.stats.fenced.fetch_add(1, Ordering::Relaxed);
        let why = if let Fence::Acknowledged(_) = fence {
            self.catching_up = true;
            self.unexplained_refusal = Some(position);
            "the stream's last message is not the record before it: the record is in the stream already, or \
             another publisher wrote; re-sent without the fence to tell which"
        } else {
            "the stream's last message is not the record before it: that one was not stored"
        };
        jetstream::context::PublishError::with_source(PublishErrorKind::Other, why)
    }

    /// With `--ordered`, the PubAck of a publish sent unfenced while catching
    /// up: a duplicate (the stream had the record) keeps catching up; a record
    /// stored anew ends it, and if the fence had refused it, the message
    /// before it is another publisher's: the forwarding stops.
    fn catch_up(&mut self, ack: &PublishAck, position: u64) {
        if ack.duplicate {
            self.unexplained_refusal = None;
            return;
        }
        self.catching_up = false;
        if self.unexplained_refusal.take().is_some() {
            let overtaken = self.unsent.iter().filter_map(|record| record.stored.as_ref());
            let overtaken = overtaken.filter(|stored| stored.sequence < ack.sequence).count();
            self.unpublishable = Some(Rejected::Foreign { position, sequence: ack.sequence, overtaken });
        }
    }

    /// Settles the in-flight publishes whose PubAck is already here, oldest first.
    fn settle_ready(&mut self) {
        while let Some(Some(result)) = self.pub_acks.next().now_or_never() {
            self.settle_front(result);
        }
    }

    fn report_acks(&mut self) {
        if self.unreported > 0 {
            let _ = self.acks.send(Ack::Records(std::mem::take(&mut self.unreported)));
        }
    }

    fn acknowledge(&mut self, ack: &PublishAck) {
        if self.ordered && ack.sequence < self.highest_sequence {
            self.catching_up = true;
        }
        self.highest_sequence = self.highest_sequence.max(ack.sequence);
        self.stats.acknowledged.fetch_add(1, Ordering::Relaxed);
        if ack.duplicate {
            self.stats.duplicates.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(since) = self.troubled_since.take() {
            eprintln!("backwater replay: NATS publishing again after {:.1} s", since.elapsed().as_secs_f64());
        }
        self.backoff = FIRST_BACKOFF;
        self.unreported += 1;
    }

    /// Every in-flight publish has settled after a failure: a refusal ends the
    /// forwarding; anything else is re-sent, oldest first, after a backoff.
    async fn recover(&mut self) -> Result<(), Rejected> {
        let Some(error) = self.trouble.take() else { return Ok(()) };
        let resend = std::mem::take(&mut self.resend);
        for record in resend.into_iter().rev() {
            self.unsent.push_front(record);
        }
        let position = self.unsent.front().map_or(0, |record| record.position);
        if let Some(rejected) = Self::rejection(&error, position, self.retention) {
            return Err(rejected);
        }
        self.troubled_since.get_or_insert_with(Instant::now);
        let count = self.unsent.iter().filter(|record| record.stored.is_none()).count();
        self.stats.resent.fetch_add(count as u64, Ordering::Relaxed);
        eprintln!(
            "backwater replay: NATS publish at position {position} failed ({}); re-sending from there ({count} \
             records waiting) in {} ms",
            describe(&error),
            self.backoff.as_millis()
        );
        tokio::time::sleep(self.backoff).await;
        self.backoff = (self.backoff * 2).min(LONGEST_BACKOFF);
        Ok(())
    }

    /// The failure as a refusal, when retrying cannot help.
    fn rejection(
        error: &jetstream::context::PublishError,
        position: u64,
        retention: stream::RetentionPolicy,
    ) -> Option<Rejected> {
        match error.kind() {
            PublishErrorKind::MaxPayloadExceeded => Some(Rejected::TooLarge { position, detail: describe(error) }),
            PublishErrorKind::Other if jetstream_error(error).is_some_and(|e| !passes(e, retention)) => {
                Some(Rejected::Refused { position, detail: describe(error) })
            }
            // A fence on the sequence its predecessor's PubAck gave (a
            // predicted one failing passes: [`Forwarder::settle_front`]).
            // Only a fenced publish is refused so, and its refusals pass
            // ([`Forwarder::fence_refused`]): this one is the server's doing.
            PublishErrorKind::WrongLastSequence => Some(Rejected::Refused { position, detail: describe(error) }),
            _ => None,
        }
    }
}

/// The JetStream API error (a status such as 503 or 400, and its own code)
/// the stream answered a publish with.
fn jetstream_error(error: &jetstream::context::PublishError) -> Option<&jetstream::Error> {
    std::error::Error::source(error)?.downcast_ref::<jetstream::Error>()
}

/// Whether an error the stream answered may pass, so that a re-send can
/// land: the stream is unavailable (503: no leader, no storage left), it is
/// still storing an earlier publish of the id (nats-server 2.11 and later),
/// or it is full under discard-new while its consumers can free room
/// (interest or work-queue retention; under limits retention only an
/// operator can, and the record is refused).
fn passes(error: &jetstream::Error, retention: stream::RetentionPolicy) -> bool {
    match error.error_code() {
        jetstream::ErrorCode::STREAM_DUPLICATE_MESSAGE_CONFLICT => true,
        jetstream::ErrorCode::STREAM_STORE_FAILED => retention != stream::RetentionPolicy::Limits,
        _ => error.code() == 503,
    }
}

/// A PubAck that calls the publish a duplicate of sequence 0. A replicated
/// stream on nats-server 2.10 and earlier answers so while an earlier
/// publish of the id is still being stored, and, after a leader change, for
/// a publish that was never stored (the id it staged outlives the leader's
/// term, until the duplicate window ends; fixed in 2.11). Either way the
/// record may not be in the stream: it is re-sent until the stream answers
/// with its sequence.
fn is_staged_duplicate(ack: &PublishAck) -> bool {
    ack.duplicate && ack.sequence == 0
}

fn staged_duplicate_error() -> jetstream::context::PublishError {
    jetstream::context::PublishError::with_source(
        PublishErrorKind::Other,
        "the stream answered 'duplicate of sequence 0': an earlier publish of the record is still being stored, \
         or was lost with a leader",
    )
}

/// The error with its cause, in one line.
fn describe(error: &jetstream::context::PublishError) -> String {
    let mut text = error.to_string();
    if let Some(source) = std::error::Error::source(error)
        && !text.contains(&source.to_string())
    {
        text = format!("{text}: {source}");
    }
    if error.kind() == PublishErrorKind::StreamNotFound {
        text.push_str(" (no responders: the stream has no leader now)");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::{check_alone, fence_waits_for_duplicate_window, stream, subject_matches};

    #[test]
    fn ordered_wants_a_stream_of_the_journals_subjects_alone() {
        let alone = |config: &stream::Config, from_key| check_alone("S", config, "edge", from_key).is_ok();
        let ours = stream::Config { subjects: vec!["edge".into()], ..Default::default() };
        assert!(alone(&ours, false));
        let keyed = stream::Config { subjects: vec!["edge.*".into()], ..Default::default() };
        assert!(alone(&keyed, true) && !alone(&keyed, false));
        let deeper = stream::Config { subjects: vec!["edge.>".into()], ..Default::default() };
        assert!(!alone(&deeper, true), "edge.> takes edge.a.b, which no key makes");
        let mirror = stream::Config { mirror: Some(stream::Source { name: "M".into(), ..Default::default() }), ..ours };
        assert!(!alone(&mirror, false));
        let sources = vec![stream::Source { name: "T".into(), ..Default::default() }];
        let sourced = stream::Config { subjects: vec!["edge".into()], sources: Some(sources), ..Default::default() };
        assert!(!alone(&sourced, false));
        let no_sources = stream::Config { sources: Some(Vec::new()), ..sourced };
        assert!(alone(&no_sources, false));
    }

    #[test]
    fn the_servers_that_stage_ids_before_the_fence_are_named_by_version() {
        for version in ["2.10.14", "2.10.26", "2.11.0", "2.11.17", "2.11.3-RC.1"] {
            assert!(fence_waits_for_duplicate_window(version), "{version}");
        }
        for version in ["2.9.10", "2.10.12", "2.12.0", "2.15.1", "3.0.0", "garbage"] {
            assert!(!fence_waits_for_duplicate_window(version), "{version}");
        }
    }

    #[test]
    fn subject_filters_match_as_nats_does() {
        assert!(subject_matches("edge", "edge"));
        assert!(subject_matches("edge.*", "edge.a"));
        assert!(subject_matches("edge.>", "edge.a.b"));
        assert!(subject_matches(">", "anything.at.all"));
        assert!(!subject_matches("edge.*", "edge.a.b"));
        assert!(!subject_matches("edge.>", "edge"));
        assert!(!subject_matches("edge", "edge.a"));
        assert!(!subject_matches("other", "edge"));
    }
}

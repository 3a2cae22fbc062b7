//! The command line: every subcommand's flags, with an example in each `--help`.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use backwater::{Compression, Flush, Priority, Seek, WhenFull};
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::units;

#[derive(Parser)]
#[command(
    name = "backwater",
    version,
    about = "A disk-buffered publisher journal: inspect, verify, feed and replay it",
    long_about = "A disk-buffered publisher journal: inspect, verify, feed and replay it.\n\n\
        Exit codes: 0 fine, 1 a finding (corruption, lost data) or a failure, 2 usage or not a journal, \
        75 still back-pressured after --timeout.\n\n\
        Every flag reads numbers the same way. Sizes: 4096, 64MiB, 1.5GiB (KiB, MiB, GiB, TiB are powers \
        of 1024; k, M, G, KB, MB, GB powers of 1000). Rates: 2000/s, 1.5k/s, 120/m, 10MiB/s, at least 1/h. \
        Durations: 5s, 100ms, 1h30m, 1.5 (seconds). Numbers may have an exponent: 1e3, 2.5e-3. Times: RFC 3339 (2026-11-28T10:00:00Z, 2026-11-28T12:00:00+02:00) \
        or nanoseconds since the epoch.",
    after_help = "Start with: backwater demo"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Create a journal with the given segment size, budget, watermarks and policy
    #[command(
        after_help = "Example:\n  backwater create /var/lib/feed --segment-size 64MiB --max-disk 8GiB --when-full block"
    )]
    Create(CreateArgs),
    /// Show or change the limits of an existing journal
    #[command(
        after_help = "Examples:\n  backwater config /var/lib/feed\n  backwater config /var/lib/feed --max-disk 16GiB --high 0.9"
    )]
    Config(ConfigArgs),
    /// Print Prometheus metrics (text format 0.0.4) for one or more journals
    #[command(after_help = "Examples:\n  backwater metrics /var/lib/feed\n  \
        backwater metrics /var/lib/feed /var/lib/audit | grep -E 'level|fill_ratio|lag_seconds'\n\n\
        Each sample is labelled journal=\"DIR\" (and cursor=\"NAME\" for backwater_cursor_*); the README\n\
        has the table of metrics. A journal that cannot be read is backwater_up 0: the others are\n\
        printed all the same, the reason goes to stderr and the exit code is 1 (2 if it is not a journal).\n\
        Read-only: it never writes to a journal.")]
    Metrics(MetricsArgs),
    /// Serve the metrics of one or more journals over HTTP at /metrics, for Prometheus to scrape
    #[command(after_help = "Examples:\n  backwater exporter /var/lib/feed\n  \
        backwater exporter --listen 0.0.0.0:9464 /var/lib/feed /var/lib/audit\n\n\
        Then scrape http://127.0.0.1:9464/metrics (prometheus.yml: a job whose static_configs targets\n\
        that address). Every scrape reads each journal anew, read-only: a journal that is missing or\n\
        damaged is backwater_up 0 (and said once on stderr) while the others are served, and one that\n\
        appears later is picked up. Any other path is 404. Runs until stopped (Ctrl-C, SIGTERM).")]
    Exporter(ExporterArgs),
    /// Segments, positions, disk use, fill and level, processes, cursors with lag
    #[command(
        after_help = "Examples:\n  backwater info /var/lib/feed\n  backwater info /var/lib/feed --json | jq .fill"
    )]
    Info(ReportArgs),
    /// One line per segment: base position, bytes used, records, time range, state
    #[command(after_help = "Example:\n  backwater segments /var/lib/feed --json")]
    Segments(ReportArgs),
    /// Print frames (header fields and payload) from a position or time
    #[command(after_help = "Examples:\n  backwater dump /var/lib/feed --from 64 --count 10\n  \
        backwater dump /var/lib/feed --time 2026-11-28T10:00:00Z --format json")]
    Dump(DumpArgs),
    /// Check every frame's structure and CRC; --repair pads holes and cuts a torn tail
    #[command(
        after_help = "Examples:\n  backwater verify /var/lib/feed && echo clean\n  backwater verify /var/lib/feed --repair"
    )]
    Verify(VerifyArgs),
    /// Compress sealed segments now, as a running writer's compressor would from --compress-at on
    #[command(after_help = "Example:\n  backwater compress /var/lib/feed")]
    Compress(ReportArgs),
    /// Append records from stdin (lines or length-prefixed), waiting under back-pressure
    #[command(after_help = "Examples:\n  seq 1000 | backwater append /var/lib/feed\n  \
        producer | backwater append /var/lib/feed --priority low --timeout 30s\n\n\
        A record longer than the journal's maximum (segment size / 8), a truncated length prefix or\n\
        record, and a last line without its newline stop the append with exit 1, saying how many\n\
        records were appended and at which input offset it stopped.")]
    Append(AppendArgs),
    /// Print records as they arrive, from the start, the end, a position or a cursor
    #[command(after_help = "Examples:\n  backwater tail /var/lib/feed -f\n  \
        backwater tail /var/lib/feed --from cursor:indexer --format json")]
    Tail(TailArgs),
    /// List, set, reset or delete named cursors
    #[command(after_help = "Examples:\n  backwater cursor /var/lib/feed list\n  \
        backwater cursor /var/lib/feed reset indexer start\n  backwater cursor /var/lib/feed set indexer 1048640")]
    Cursor(CursorArgs),
    /// Drive a slow consumer from a cursor: to stdout or a child process, paced, at-least-once
    #[command(after_help = "Examples:\n  backwater replay /var/lib/feed --cursor db --rate 2000/s > out.txt\n  \
        backwater replay /var/lib/feed --cursor db --ack --window 5000 --format json --exec './sink'\n\n\
        Ack protocol (--ack): the child writes one line per durable batch to its stdout, holding the\n\
        number of records it has durably processed since its previous ack line. The cursor is\n\
        committed only up to acknowledged records; at most --window records are unacknowledged.\n\
        A sink must also acknowledge what it holds when its input pauses (replay waits for acks\n\
        before sending more once the window is full, and with --follow at the tail) and at the end\n\
        of its input (replay closes it at the tail without --follow). Acks count until the child\n\
        closes its stdout, even those written after its input broke or ended (as it exits). A\n\
        child that acknowledges nothing for --ack-timeout while it owes acks fails the replay.\n\n\
        Without --ack, a record counts as delivered once the reader has taken it out of the pipe\n\
        (a file or terminal takes it when written), and the last stretch only once a --exec child\n\
        has exited successfully: after a failure a rerun delivers every record after the cursor\n\
        again. A reader that stops before the end (`| head`, a child that exits early, even with\n\
        status 0) fails the replay with exit 1, saying where the cursor is. What a reader took into its own buffers before dying is lost to it: use --ack for\n\
        end-to-end at-least-once.\n\n\
        After records were deleted before the cursor read them (drop-oldest, evict-slowest), a\n\
        rerun fails the same way: `backwater cursor DIR reset NAME start` goes on from the oldest.\n\n\
        NATS JetStream (--to): each record is published on --subject with the headers\n\
        Nats-Msg-Id: <journal id>-<position> (the stream drops a re-send within its duplicate window:\n\
        exactly once in the stream, even after a crash of replay), Backwater-Journal,\n\
        Backwater-Position, Backwater-Timestamp (ns since the epoch) and Backwater-Priority. At most\n\
        --window publishes are unacknowledged; the cursor is committed only up to records whose\n\
        PubAck arrived, in journal order. Lost connections, leader elections and timeouts are\n\
        retried with backoff (on stderr) for up to --ack-timeout without a PubAck, as are a stream\n\
        that does not answer at start and a PubAck that says 'duplicate of sequence 0' (on\n\
        nats-server 2.10: still being stored, or lost with a leader); a refusal (a record larger\n\
        than the server's max_payload, a stream full under limits retention, another error the\n\
        stream answers) ends replay with exit 1, saying at which position the cursor stays.\n  \
        backwater replay /var/lib/feed --cursor nats --to nats://10.0.0.1:4222,10.0.0.2:4222 \\\n      \
        --subject feed.host1 --stream FEED --replicas 3 --follow")]
    Replay(ReplayArgs),
    /// The seed scenario: a fast publisher, a slow database, a fast consumer, the watermarks at work
    #[command(after_help = "Example:\n  backwater demo --seconds 20")]
    Demo(DemoArgs),
}

/// Limits shared by `create` and `config`.
#[derive(Args, Clone, Default, PartialEq)]
pub struct LimitArgs {
    /// The journal's disk budget, e.g. 8GiB or 500MB (default: unlimited)
    #[arg(long, value_parser = units::size)]
    pub max_disk: Option<u64>,
    /// Free space the filesystem must keep, e.g. 1GiB (default 256MiB)
    #[arg(long, value_parser = units::size)]
    pub min_free: Option<u64>,
    /// Fill at which low-priority records are shed (default 0.80)
    #[arg(long, value_parser = units::fraction)]
    pub shed: Option<f64>,
    /// Fill at which publishers are pushed back (default 0.95)
    #[arg(long, value_parser = units::fraction)]
    pub high: Option<f64>,
    /// Fill below which everything is accepted again (default 0.70)
    #[arg(long, value_parser = units::fraction)]
    pub resume: Option<f64>,
    /// What happens at the high watermark
    #[arg(long, value_parser = when_full_parser())]
    pub when_full: Option<WhenFull>,
    /// Compress sealed segments from --compress-at on: zstd, zstd:LEVEL (1-22; zstd is level 3) or none
    #[arg(long, value_parser = units::compression)]
    pub compression: Option<Compression>,
    /// Fill from which sealed segments are compressed, at most --shed (default 0.50)
    #[arg(long, value_parser = units::fraction)]
    pub compress_at: Option<f64>,
    /// never | interval:100ms | always
    #[arg(long, value_parser = units::flush)]
    pub flush: Option<Flush>,
    /// Consumed bytes kept for replay, e.g. 1GiB
    #[arg(long, value_parser = units::size)]
    pub retain_bytes: Option<u64>,
    /// How long consumed segments are kept for replay, e.g. 1h
    #[arg(long, value_parser = units::duration)]
    pub retain_for: Option<Duration>,
}

#[derive(Args)]
pub struct CreateArgs {
    /// The journal directory: created if absent; else it must be empty, or hold only what a failed
    /// create leaves (journal.lock, .tmp-* files). A create that fails removes what it made
    pub dir: PathBuf,
    /// Segment file size: a power of two from 64KiB to 1GiB
    #[arg(long, value_parser = units::size, default_value = "64MiB")]
    pub segment_size: u64,
    #[command(flatten)]
    pub limits: LimitArgs,
}

#[derive(Args)]
pub struct ConfigArgs {
    pub dir: PathBuf,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Print as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct ReportArgs {
    pub dir: PathBuf,
    /// Print one JSON object instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct MetricsArgs {
    /// Journal directories (each one is the label journal="DIR")
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
}

#[derive(Args)]
pub struct ExporterArgs {
    /// Address and port to serve on, e.g. 127.0.0.1:9464, [::1]:9464, localhost:9464 (port 0 picks a
    /// free one: the address served is printed on stderr)
    #[arg(long, default_value = "127.0.0.1:9464", value_parser = listen_address)]
    pub listen: SocketAddr,
    /// Journal directories (each one is the label journal="DIR"); they need not exist yet
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
}

/// `--listen`: an address and port, a host name resolved now.
fn listen_address(text: &str) -> Result<SocketAddr, String> {
    let mut addresses =
        text.to_socket_addrs().map_err(|e| format!("'{text}': use HOST:PORT, e.g. 127.0.0.1:9464 ({e})"))?;
    addresses.next().ok_or_else(|| format!("'{text}' resolves to no address"))
}

/// `--when-full`: the library's policy names, listed in `--help`.
fn when_full_parser() -> impl TypedValueParser<Value = WhenFull> {
    PossibleValuesParser::new(WhenFull::ALL.map(WhenFull::name)).try_map(|name| name.parse::<WhenFull>())
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub enum RecordFormat {
    /// One line per frame: position, time, priority, length, CRC, payload as escaped text
    Text,
    /// Header line, then the payload as a hex dump
    Hex,
    /// One JSON object per line
    Json,
    /// Payload bytes only, back to back
    Raw,
    /// Each payload followed by a newline, nothing else
    Lines,
}

#[derive(Args)]
pub struct DumpArgs {
    pub dir: PathBuf,
    /// Start at this position (a frame boundary; default: the first retained)
    #[arg(long, conflicts_with = "time")]
    pub from: Option<u64>,
    /// Start at the first record stamped at or after this time (RFC 3339 or ns since the epoch)
    #[arg(long, value_parser = units::time)]
    pub time: Option<u64>,
    /// At most this many frames
    #[arg(long, short = 'n')]
    pub count: Option<u64>,
    #[arg(long, value_enum, default_value = "text")]
    pub format: RecordFormat,
    /// Show padding and uncommitted frames too
    #[arg(long)]
    pub all: bool,
}

#[derive(Args)]
pub struct VerifyArgs {
    pub dir: PathBuf,
    /// Pad holes, replace damaged frames with padding and cut a torn tail; says what it changed
    #[arg(long)]
    pub repair: bool,
    /// Print one JSON object instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub enum InputFormat {
    /// Each line, without its newline, is one record
    Lines,
    /// Each record is a u32 little-endian length followed by that many bytes
    Len,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub enum PriorityArg {
    Normal,
    Low,
}

impl From<PriorityArg> for Priority {
    fn from(arg: PriorityArg) -> Priority {
        match arg {
            PriorityArg::Normal => Priority::Normal,
            PriorityArg::Low => Priority::Low,
        }
    }
}

#[derive(Args)]
pub struct AppendArgs {
    pub dir: PathBuf,
    #[arg(long, value_enum, default_value = "lines")]
    pub format: InputFormat,
    #[arg(long, value_enum, default_value = "normal")]
    pub priority: PriorityArg,
    /// Give up after this long under back-pressure (exit code 75), e.g. 30s, 1.5 (seconds), 2m
    #[arg(long, value_parser = units::duration, allow_negative_numbers = true)]
    pub timeout: Option<Duration>,
    /// With --format lines: append a last line that has no newline (by default it is an error, as
    /// a producer killed mid-line leaves one)
    #[arg(long)]
    pub accept_unterminated: bool,
    /// Keyed records: each record's key is what precedes the first DELIM byte, its payload what
    /// follows it (a record without DELIM is an error). One byte: a character, or \t, \0, \\,
    /// or \xHH. For `replay --conflate`.
    #[arg(long, value_name = "DELIM", value_parser = units::delimiter)]
    pub key_delimiter: Option<u8>,
}

#[derive(Args)]
pub struct TailArgs {
    pub dir: PathBuf,
    /// start | end | POSITION | cursor:NAME
    #[arg(long, default_value = "end", value_parser = tail_start)]
    pub from: TailStart,
    /// Keep waiting for new records (like tail -f)
    #[arg(long, short = 'f')]
    pub follow: bool,
    #[arg(long, value_enum, default_value = "text")]
    pub format: RecordFormat,
    /// Stop after this many records
    #[arg(long, short = 'n')]
    pub count: Option<u64>,
}

#[derive(Args)]
pub struct CursorArgs {
    pub dir: PathBuf,
    #[command(subcommand)]
    pub action: CursorAction,
}

#[derive(Subcommand)]
pub enum CursorAction {
    /// Every cursor with its position and lag
    List {
        #[arg(long)]
        json: bool,
    },
    /// Move NAME to POSITION (a frame boundary); creates the cursor if absent and the position is valid
    Set { name: String, position: u64 },
    /// Move NAME to start, end, or the first record at or after a time
    Reset {
        name: String,
        /// start | end | a time (RFC 3339 or ns since the epoch)
        #[arg(value_parser = reset_target)]
        to: Seek,
    },
    /// Delete NAME: it no longer holds retention. Refused while a consumer of
    /// it (a replay, say) is running
    Delete {
        name: String,
        /// Delete it even while a consumer of it is running: that consumer
        /// goes on, its commits are lost, and its next run starts anew
        #[arg(long)]
        force: bool,
    },
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub enum ReplayFormat {
    /// Each payload followed by a newline
    Lines,
    /// u32 little-endian length, then the payload
    Len,
    /// One JSON object per line: position, timestamp, priority, payload
    Json,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub enum Pace {
    /// As fast as the consumer takes them (or --rate / --bytes-rate)
    Free,
    /// The recorded timestamps' spacing, divided by --speed
    Recorded,
}

#[derive(Args)]
pub struct ReplayArgs {
    pub dir: PathBuf,
    /// The durable cursor to replay from and commit to (it must exist, unless --create)
    #[arg(long)]
    pub cursor: String,
    /// Create the cursor at the oldest retained record if it does not exist
    /// (without it a new name is an error, so a typo cannot replay everything)
    #[arg(long)]
    pub create: bool,
    /// Feed this shell command's stdin instead of stdout
    #[arg(long)]
    pub exec: Option<String>,
    /// How records are written to stdout or --exec's stdin (not with --to: there the payload is the
    /// message and position, timestamp and priority are headers)
    #[arg(long, value_enum, default_value = "lines", conflicts_with = "to")]
    pub format: ReplayFormat,
    /// At most this many records per second, e.g. 2000/s, 1.5k/s, 30/m, 2e-2/s; at least 1/h (a
    /// token bucket: after a pause, at most 10 ms worth, and at least one record, go out back to back)
    #[arg(long, value_parser = units::rate)]
    pub rate: Option<f64>,
    /// At most this many bytes per second, e.g. 10MiB/s; at least 1/h (the same bucket, in bytes)
    #[arg(long, value_parser = units::rate)]
    pub bytes_rate: Option<f64>,
    #[arg(long, value_enum, default_value = "free")]
    pub pace: Pace,
    /// With --pace recorded: replay this many times faster than recorded (0.001 to 1000000)
    #[arg(long, default_value = "1.0", value_parser = units::speed)]
    pub speed: f64,
    /// Keep going past the tail, waiting for new records
    #[arg(long)]
    pub follow: bool,
    /// The child acknowledges durable progress on its stdout (see below); needs --format json or len
    #[arg(long, requires = "exec")]
    pub ack: bool,
    /// With --ack or --to: fail when the sink owes acks and has acknowledged nothing for this long
    /// (at least 1ms; with --to, how long a NATS outage may last before replay gives up)
    #[arg(long, default_value = "60s", value_parser = units::timeout)]
    pub ack_timeout: Duration,
    /// With --ack or --to: at most this many unacknowledged records (at least 1; with --to at most
    /// 100000)
    #[arg(long, default_value = "1000", value_parser = units::positive_count)]
    pub window: usize,
    /// Without --ack: commit the cursor after every this many records handed over (at least 1)
    #[arg(long, default_value = "1000", value_parser = units::positive_count)]
    pub batch: usize,
    /// Publish into NATS JetStream instead: nats://HOST:PORT[,HOST:PORT...] (any of the cluster's
    /// servers; see below)
    #[arg(long, value_parser = units::nats_servers, conflicts_with_all = ["exec", "ack"], requires = "subject")]
    pub to: Option<units::NatsServers>,
    /// With --to: the subject every record is published on (no wildcards)
    #[arg(long, value_parser = units::nats_subject, requires = "to")]
    pub subject: Option<String>,
    /// With --to: the stream that takes --subject, created (with --subject, --replicas and
    /// --duplicate-window) if absent (default: the existing stream that takes --subject)
    #[arg(long, requires = "to")]
    pub stream: Option<String>,
    /// With --stream: replicas of a stream that is created (1 to 5)
    #[arg(long, default_value = "1", value_parser = clap::value_parser!(u8).range(1..=5), requires = "stream")]
    pub replicas: u8,
    /// With --stream: the created stream's duplicate window, in which a re-sent record (same
    /// Nats-Msg-Id) is dropped: longer than replay can take to be restarted after a crash
    #[arg(long, default_value = "5m", value_parser = units::duration, requires = "stream")]
    pub duplicate_window: Duration,
    /// With --to: publish each keyed record on SUBJECT.<key> (unkeyed ones on SUBJECT); a created
    /// stream takes both. A key that cannot be a subject token (dots, * >, spaces) ends replay there
    #[arg(long, requires = "to")]
    pub subject_from_key: bool,
    /// With --to: each publish expects the stream sequence of the record before it
    /// (Nats-Expected-Last-Sequence), so that a publish lost in a failure is never overtaken:
    /// journal order in the stream after any failure, replicated or not, within the duplicate
    /// window. Needs a stream that takes this journal's subject alone (else exit 2); another
    /// publisher's message on it stops replay (exit 1). README, "Past one machine"
    #[arg(long, requires = "to")]
    pub ordered: bool,
    /// Deliver, of each window of records read, every unkeyed record and only the latest record of
    /// each key (`append --key-delimiter`); the cursor still moves past all of them, a whole window
    /// at a time, and a rerun after a crash skips what the crashed run skipped. Says on stderr how
    /// many records it skipped. Not with --to
    #[arg(long, conflicts_with = "to")]
    pub conflate: bool,
    /// With --conflate: records read per window (at least 1); a larger window skips more, and
    /// holds one small entry per record read. Keep it the same across reruns
    #[arg(long, default_value = "100000", value_parser = units::positive_count, requires = "conflate", conflicts_with = "to")]
    pub conflate_window: usize,
}

#[derive(Args)]
pub struct DemoArgs {
    /// Journal directory: new or empty, kept at the end (default: a temporary one, removed)
    pub dir: Option<PathBuf>,
    /// How long the scenario runs
    #[arg(long, default_value = "20")]
    pub seconds: u64,
    /// Compress sealed segments from half full on (zstd, zstd:LEVEL): the same budget lasts longer
    #[arg(long, value_parser = units::compression)]
    pub compression: Option<Compression>,
}

/// `cursor reset`'s target: `start`, `end` or a time.
fn reset_target(text: &str) -> Result<Seek, String> {
    match text {
        "start" => Ok(Seek::Start),
        "end" => Ok(Seek::End),
        time => units::time(time).map(Seek::Time),
    }
}

/// Where `tail` starts.
#[derive(Clone, Debug)]
pub enum TailStart {
    At(Seek),
    Cursor(String),
}

fn tail_start(text: &str) -> Result<TailStart, String> {
    match text {
        "start" => Ok(TailStart::At(Seek::Start)),
        "end" => Ok(TailStart::At(Seek::End)),
        _ => match text.strip_prefix("cursor:") {
            Some(name) => Ok(TailStart::Cursor(name.to_string())),
            None => text
                .parse()
                .map(|position| TailStart::At(Seek::Position(position)))
                .map_err(|_| format!("'{text}': use start, end, a position or cursor:NAME")),
        },
    }
}

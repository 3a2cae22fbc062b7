//! The edge host and the independent checker of `tools/nats-e2e` (and of
//! the NATS tests).
//!
//! `publish DIR --seconds S`: appends numbered records into the journal in
//! DIR as fast as it takes them for S seconds, every `--low-every`-th with low
//! priority (offered: shed ones are counted, not retried); normal ones wait
//! out back-pressure. Payload: `n SEQ ...` or `l SEQ ...`, SEQ counting all
//! records offered. Prints one line: `normal N low_offered L low_shed S`.
//!
//! `check nats://HOST:PORT --stream NAME... [--expect ID:NORMAL:LOW]...`:
//! reads each whole stream with its own consumer and checks, per journal (the
//! `Backwater-Journal` header), that positions strictly grow in stream order
//! (journal order, nothing twice), that no `Nats-Msg-Id` repeats, and, for
//! each `--expect`, that the journal's normal records are there with distinct
//! growing SEQs and as many low ones as given. Prints a line per journal and
//! `ok ...`/`FAIL ...` lines; exit 1 on any failure. With `--after-failures`
//! (the run killed leaders, replays or the whole cluster, and replay ran
//! without `--ordered`) the order is reported, not checked: a publish re-sent
//! after a failure can land after a later one that was still in flight (each
//! record is still there exactly once; see the README's "Past one machine").

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer};
use backwater::{Config, Error, Journal, Priority};
use clap::{Parser, Subcommand};
use futures_util::StreamExt;

#[derive(Parser)]
#[command(about = "Edge publisher and stream checker for tools/nats-e2e")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Append as fast as the journal takes records for --seconds
    Publish {
        dir: PathBuf,
        #[arg(long)]
        seconds: f64,
        /// Every this many records one is low priority
        #[arg(long, default_value = "5")]
        low_every: u64,
        /// Payload bytes per record
        #[arg(long, default_value = "100")]
        size: usize,
    },
    /// Read the whole of each stream and check them
    Check {
        server: String,
        #[arg(long = "stream", required = true)]
        streams: Vec<String>,
        /// JOURNAL_ID:NORMAL:LOW (records the journal accepted)
        #[arg(long)]
        expect: Vec<String>,
        /// The run had failures (killed leaders, replays, an outage) and
        /// replay ran without --ordered: report the journal order, do not check it
        #[arg(long)]
        after_failures: bool,
    },
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Publish { dir, seconds, low_every, size } => publish(&dir, seconds, low_every, size),
        Command::Check { server, streams, expect, after_failures } => check(&server, &streams, &expect, after_failures),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("nats_edge: {e}");
            ExitCode::FAILURE
        }
    }
}

type Failure = Box<dyn std::error::Error>;

fn publish(dir: &PathBuf, seconds: f64, low_every: u64, size: usize) -> Result<bool, Failure> {
    let journal = Journal::open(dir, Config::default())?;
    let publisher = journal.publisher();
    let until = Instant::now() + Duration::try_from_secs_f64(seconds)?;
    let (mut normal, mut low_offered, mut low_shed) = (0u64, 0u64, 0u64);
    let mut seq = 0u64;
    let mut payload = Vec::with_capacity(size);
    while Instant::now() < until {
        let low = low_every > 0 && seq % low_every == low_every - 1;
        payload.clear();
        payload.extend_from_slice(format!("{} {seq} ", if low { 'l' } else { 'n' }).as_bytes());
        payload.resize(size.max(payload.len()), b'.');
        if low {
            low_offered += 1;
            match publisher.append_with(Priority::Low, &payload) {
                Ok(_) => {}
                Err(Error::Dropped { .. }) => low_shed += 1,
                Err(e) => return Err(e.into()),
            }
        } else {
            loop {
                match publisher.append(&payload) {
                    Ok(_) => break,
                    // A long outage downstream: keep waiting, as a source that must not lose data does.
                    Err(Error::StillBackPressured { .. }) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            normal += 1;
        }
        seq += 1;
    }
    println!("normal {normal} low_offered {low_offered} low_shed {low_shed}");
    Ok(true)
}

/// What the stream holds of one journal, in stream order.
#[derive(Clone, Default)]
struct Seen {
    last_position: Option<u64>,
    out_of_order: u64,
    normal: u64,
    low: u64,
    last_normal_seq: Option<u64>,
    normal_seq_out_of_order: u64,
}

fn check(server: &str, streams: &[String], expect: &[String], after_failures: bool) -> Result<bool, Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let mut read = Read::default();
    let mut messages = 0;
    for stream in streams {
        let count = read_whole(&runtime, server, stream, &mut read)?;
        println!("stream {stream}: {count} messages read");
        messages += count;
    }
    let Read { journals, repeated_ids, .. } = read;
    let mut ok = true;
    let mut verdict = |good: bool, what: String| {
        println!("{} {what}", if good { "ok  " } else { "FAIL" });
        ok &= good;
    };
    verdict(repeated_ids == 0, format!("no Nats-Msg-Id twice in the stream ({repeated_ids} repeated)"));
    for (id, seen) in &journals {
        println!(
            "journal {id}: {} records in the stream ({} normal, {} low)",
            seen.normal + seen.low,
            seen.normal,
            seen.low
        );
        if after_failures {
            println!(
                "note journal {id}: {} records stored out of journal order after failures (each once)",
                seen.out_of_order
            );
            continue;
        }
        verdict(seen.out_of_order == 0, format!("journal {id}: positions grow in stream order (journal order)"));
        verdict(seen.normal_seq_out_of_order == 0, format!("journal {id}: normal records in publishing order"));
    }
    for expected in expect {
        let (id, normal, low) = parse_expect(expected)?;
        let seen = journals.get(&id);
        let (got_normal, got_low) = seen.map_or((0, 0), |s| (s.normal, s.low));
        verdict(
            got_normal == normal,
            format!("journal {id}: {got_normal} of {normal} normal records, each once (0 lost, 0 duplicated)"),
        );
        verdict(got_low == low, format!("journal {id}: {got_low} low records = offered - shed ({low})"));
    }
    println!("streams: {messages} messages read");
    Ok(ok)
}

fn parse_expect(text: &str) -> Result<(String, u64, u64), Failure> {
    let mut parts = text.split(':');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(id), Some(normal), Some(low), None) => Ok((id.to_string(), normal.parse()?, low.parse()?)),
        _ => Err(format!("--expect '{text}' is not JOURNAL_ID:NORMAL:LOW").into()),
    }
}

/// Reads every message of the stream (an ordered consumer of its own) into `read`.
/// Reads the whole stream into `read`, from the start again (a new
/// consumer) when a read stalls: right after a restart of the cluster a
/// consumer may deliver nothing for a while.
fn read_whole(runtime: &tokio::runtime::Runtime, server: &str, stream: &str, read: &mut Read) -> Result<u64, Failure> {
    const ATTEMPTS: usize = 3;
    let mut attempt = 1;
    loop {
        let mut this_time = read.clone();
        match runtime.block_on(read_stream(server, stream, &mut this_time)) {
            Ok(count) => {
                *read = this_time;
                return Ok(count);
            }
            Err(e) if attempt < ATTEMPTS => eprintln!("nats_edge: reading {stream} failed ({e}); reading it again"),
            Err(e) => return Err(e),
        }
        attempt += 1;
    }
}

/// What the streams hold, per journal, and the `Nats-Msg-Id`s seen.
#[derive(Clone, Default)]
struct Read {
    journals: BTreeMap<String, Seen>,
    ids: HashSet<String>,
    repeated_ids: u64,
}

async fn read_stream(server: &str, name: &str, read: &mut Read) -> Result<u64, Failure> {
    let client = async_nats::connect(server).await?;
    let context = jetstream::new(client);
    // After a restart of the cluster the stream may have no leader for a while.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (stream, state) = loop {
        let found: Result<_, Failure> = async {
            let mut stream = context.get_stream(name).await?;
            let state = stream.info().await?.state.clone();
            Ok((stream, state))
        }
        .await;
        match found {
            Ok(found) => break found,
            Err(e) if Instant::now() < deadline => {
                eprintln!("nats_edge: stream {name} not readable yet ({e}); trying again");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => return Err(e),
        }
    };
    // An ordered consumer: it re-creates itself from the last message it
    // delivered when a leader changes or a message goes missing in flight.
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            deliver_policy: consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await?;
    // A message lost inside the stream leaves a gap in its sequences (the
    // journals' records are never deleted from it): the server's loss, not a
    // record that never arrived.
    let span = state.last_sequence.saturating_sub(state.first_sequence) + u64::from(state.messages > 0);
    println!(
        "stream {name}: sequences {}..={}, {} messages, {} missing inside (deleted or lost)",
        state.first_sequence,
        state.last_sequence,
        state.messages,
        span.saturating_sub(state.messages)
    );
    let total = state.messages;
    let mut messages = consumer.messages().await?;
    for _ in 0..total {
        let message = tokio::time::timeout(Duration::from_secs(30), messages.next())
            .await
            .map_err(|_| "no message from the stream for 30 s")?
            .ok_or("the stream's messages ended early")??;
        let header = |name: &str| {
            message.headers.as_ref().and_then(|h| h.get(name)).map(|v| v.as_str().to_string()).unwrap_or_default()
        };
        if !read.ids.insert(header("Nats-Msg-Id")) {
            read.repeated_ids += 1;
        }
        let seen = read.journals.entry(header("Backwater-Journal")).or_default();
        let position: u64 = header("Backwater-Position").parse()?;
        if seen.last_position.is_some_and(|last| last >= position) {
            seen.out_of_order += 1;
        }
        seen.last_position = Some(position);
        count_payload(seen, &message.payload);
    }
    Ok(total)
}

fn count_payload(seen: &mut Seen, payload: &[u8]) {
    let text = String::from_utf8_lossy(payload);
    let mut words = text.split(' ');
    let (kind, seq) = (words.next(), words.next().and_then(|s| s.parse::<u64>().ok()));
    if kind == Some("l") {
        seen.low += 1;
        return;
    }
    seen.normal += 1;
    if seq.is_none() || seen.last_normal_seq.is_some_and(|last| Some(last) >= seq) {
        seen.normal_seq_out_of_order += 1;
    }
    seen.last_normal_seq = seq;
}

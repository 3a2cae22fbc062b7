//! `backwater replay --to nats://…`: the NATS JetStream sink's edge cases
//! against a real `nats-server` (each test skips, saying why, where there is
//! none), and `tools/nats-e2e` (three edge journals into an R3 stream through
//! a leader crash, a replay crash and an outage of the whole cluster).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use common::cli::{backwater, bin, path, stderr_of};
use common::{run_tool, wait_for};

/// A journal holding `payloads`, one record each.
fn journal_with(payloads: &[Vec<u8>]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = backwater(&["create", path(dir.path()), "--segment-size", "1MiB", "--min-free", "0"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    append(dir.path(), payloads);
    dir
}

/// Appends `payloads`, one record each (`append --format len`).
fn append(dir: &Path, payloads: &[Vec<u8>]) {
    let mut input = Vec::new();
    for payload in payloads {
        input.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        input.extend_from_slice(payload);
    }
    let mut append = Command::new(bin())
        .args(["append", path(dir), "--format", "len"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    append.stdin.take().unwrap().write_all(&input).unwrap();
    let out = append.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
}

fn numbered(count: usize) -> Vec<Vec<u8>> {
    (0..count).map(|i| format!("record {i}").into_bytes()).collect()
}

/// The committed position of cursor `name`.
fn cursor_position(dir: &Path, name: &str) -> u64 {
    let listed = backwater(&["cursor", path(dir), "list", "--json"]);
    let cursors: serde_json::Value = serde_json::from_slice(&listed.stdout).expect("cursor list --json");
    cursors
        .as_array()
        .and_then(|all| all.iter().find(|c| c["name"] == name))
        .and_then(|c| c["position"].as_u64())
        .expect("the cursor exists")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// The NATS tests, one at a time: the e2e's cluster of three servers and
/// nine processes, on two cores, had elections time out while another test
/// replayed 300,000 records beside it.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static NATS: Mutex<()> = Mutex::new(());
    NATS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A throwaway single-node JetStream server, killed at drop.
struct NatsServer {
    child: Child,
    port: u16,
    monitor: u16,
    _store: tempfile::TempDir,
    _alone: MutexGuard<'static, ()>,
}

impl NatsServer {
    /// `None` (with a message) where `nats-server` is not installed.
    fn start(extra_config: &str) -> Option<NatsServer> {
        if Command::new("nats-server").arg("--version").output().is_err() {
            eprintln!("SKIPPED: no nats-server (apt-get install nats-server)");
            return None;
        }
        let alone = one_at_a_time();
        let store = tempfile::tempdir().unwrap();
        let (port, monitor) = (free_port(), free_port());
        let config = store.path().join("server.conf");
        let text = format!(
            "listen: 127.0.0.1:{port}\nhttp: 127.0.0.1:{monitor}\njetstream {{ store_dir: \"{}\" }}\n{extra_config}\n",
            store.path().display()
        );
        std::fs::write(&config, text).unwrap();
        let child = Self::spawn(store.path());
        let server = NatsServer { child, port, monitor, _store: store, _alone: alone };
        server.wait_healthy();
        Some(server)
    }

    fn spawn(store: &Path) -> Child {
        Command::new("nats-server")
            .arg("-c")
            .arg(store.join("server.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server")
    }

    fn wait_healthy(&self) {
        wait_for("nats-server to be healthy", Duration::from_secs(20), || {
            self.http("/healthz").is_some_and(|body| body.contains("ok"))
        });
    }

    /// Stops the server (SIGTERM, as an operator does) and waits for it to exit.
    fn stop(&mut self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let _ = self.child.wait();
    }

    /// Starts it again on the same ports and store.
    fn restart(&mut self) {
        self.child = Self::spawn(self._store.path());
        self.wait_healthy();
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// A GET on the monitoring port; `None` while it does not answer.
    fn http(&self, path: &str) -> Option<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.monitor)).ok()?;
        write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        response.split_once("\r\n\r\n").map(|(_, body)| body.to_string())
    }

    /// A JetStream API request (`$JS.API.` + `api`) over the client port;
    /// the server's JSON answer.
    fn jetstream_api(&self, api: &str, request: &serde_json::Value) -> serde_json::Value {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let body = request.to_string();
        write!(stream, "CONNECT {{\"verbose\":false}}\r\nSUB _INBOX.api 1\r\n").unwrap();
        write!(stream, "PUB $JS.API.{api} _INBOX.api {}\r\n{body}\r\n", body.len()).unwrap();
        let mut lines = BufReader::new(stream).lines().map(|line| line.unwrap());
        lines.find(|line| line.starts_with("MSG _INBOX.api")).expect("the server answers");
        serde_json::from_str(&lines.next().expect("the answer's payload")).unwrap()
    }

    /// Messages in stream `name` (0 if it does not exist).
    fn messages(&self, name: &str) -> u64 {
        self.stream_state(name)["messages"].as_u64().unwrap_or(0)
    }

    /// Stream `name`'s state from the monitoring endpoint (`messages`, `num_subjects`...).
    fn stream_state(&self, name: &str) -> serde_json::Value {
        let body = self.http("/jsz?streams=true").unwrap_or_default();
        let jsz: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let accounts = jsz["account_details"].as_array().cloned().unwrap_or_default();
        let streams = accounts.iter().flat_map(|a| a["stream_detail"].as_array().cloned().unwrap_or_default());
        streams.into_iter().find(|s| s["name"] == name).map(|s| s["state"].clone()).unwrap_or_default()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `replay DIR --cursor nats --create --to URL --subject SUBJECT` plus `extra`.
/// `replay_to`'s command, started in the background with its stderr in `log`.
fn spawn_replay_to(dir: &Path, url: &str, args: &[&str], log: &Path) -> Child {
    Command::new(bin())
        .args(["replay", path(dir), "--cursor", "nats", "--create", "--to", url])
        .args(args)
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

fn replay_to(dir: &Path, url: &str, subject: &str, extra: &[&str]) -> Output {
    let mut args = vec!["replay", path(dir), "--cursor", "nats", "--create", "--to", url, "--subject", subject];
    args.extend_from_slice(extra);
    backwater(&args)
}

#[test]
fn records_reach_the_stream_with_their_ids_and_the_cursor_follows_the_pubacks() {
    let Some(server) = NatsServer::start("") else { return };
    let journal = journal_with(&numbered(2000));
    let out = replay_to(journal.path(), &server.url(), "feed.one", &["--stream", "FEED", "--window", "100"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("replayed 2000 records"), "{}", stderr_of(&out));
    assert_eq!(server.messages("FEED"), 2000);
    let tail = backwater(&["info", path(journal.path()), "--json"]);
    let tail = serde_json::from_slice::<serde_json::Value>(&tail.stdout).unwrap()["tail_position"].as_u64();
    assert_eq!(Some(cursor_position(journal.path(), "nats")), tail);
    // The independent reader: one journal, in order, nothing twice.
    let check = Command::new(common::example("nats_edge"))
        .args(["check", &server.url(), "--stream", "FEED"])
        .output()
        .expect("run nats_edge check");
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(report.contains("2000 records in the stream") && report.contains("ok   no Nats-Msg-Id twice"), "{report}");
    assert!(report.contains("positions grow in stream order"), "{report}");
    // Without --stream, the stream that takes the subject is found.
    let out = replay_to(journal.path(), &server.url(), "feed.one", &[]);
    assert!(out.status.success(), "{}", stderr_of(&out));
}

#[test]
fn a_server_that_is_down_or_a_bad_address_fails_at_once_with_a_clear_error() {
    let journal = journal_with(&numbered(10));
    let down = format!("nats://127.0.0.1:{}", free_port());
    let started = Instant::now();
    let out = replay_to(journal.path(), &down, "feed", &["--stream", "FEED"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    let stderr = stderr_of(&out);
    assert!(stderr.contains("cannot connect to NATS at") && stderr.contains("the cursor is unchanged"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(30), "it must not retry forever at start");
    for (address, says) in [
        ("http://127.0.0.1:4222", "is not a NATS address"),
        ("nats://127.0.0.1", "has no port"),
        ("nats://127.0.0.1:0", "is not a port"),
        ("nats://user@host:4222", "is not HOST:PORT"),
    ] {
        let out = replay_to(journal.path(), address, "feed", &[]);
        assert_eq!(out.status.code(), Some(2), "{address}: {}", stderr_of(&out));
        assert!(stderr_of(&out).contains(says), "{address}: {}", stderr_of(&out));
    }
    let out = replay_to(journal.path(), &down, "feed.*", &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr_of(&out).contains("no wildcards"), "{}", stderr_of(&out));
    let out = replay_to(journal.path(), &down, "feed", &["--window", "200000"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr_of(&out).contains("--window is at most 100000 with --to"), "{}", stderr_of(&out));
    // The message is the payload: a --format would be silently ignored.
    let out = replay_to(journal.path(), &down, "feed", &["--format", "json"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr_of(&out).contains("'--to <TO>' cannot be used with '--format <FORMAT>'"), "{}", stderr_of(&out));
}

#[test]
fn a_stream_that_does_not_take_the_subject_is_a_clear_error() {
    let Some(server) = NatsServer::start("") else { return };
    let journal = journal_with(&numbered(10));
    let out = replay_to(journal.path(), &server.url(), "orders.eu", &["--stream", "ORDERS"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let out = replay_to(journal.path(), &server.url(), "metrics.cpu", &["--stream", "ORDERS"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("stream 'ORDERS' takes subjects [orders.eu], not 'metrics.cpu'"),
        "{}",
        stderr_of(&out)
    );
    // No stream at all for a subject, and no --stream to create one.
    let out = replay_to(journal.path(), &server.url(), "nobody.listens", &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("no JetStream stream takes subject 'nobody.listens'"), "{}", stderr_of(&out));
}

#[test]
fn a_record_larger_than_max_payload_stops_replay_before_it_naming_its_position() {
    let Some(server) = NatsServer::start("max_payload: 4096") else { return };
    let mut payloads = numbered(3);
    payloads.push(vec![b'x'; 10_000]);
    payloads.extend(numbered(2));
    let journal = journal_with(&payloads);
    let out = replay_to(journal.path(), &server.url(), "big", &["--stream", "BIG"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    let stderr = stderr_of(&out);
    let at = cursor_position(journal.path(), "nats");
    assert!(stderr.contains(&format!("the record at position {at} is larger than the NATS server takes")), "{stderr}");
    assert!(stderr.contains(&format!("committed at position {at}")), "{stderr}");
    assert_eq!(server.messages("BIG"), 3, "the records before it are in the stream, none after");
    // What the error says to do: skip it, and the rest follows.
    let skip = stderr.split('`').nth(1).expect("the advice holds a command");
    assert!(skip.starts_with("backwater cursor "), "{skip}");
    let words: Vec<&str> = skip.split(' ').skip(1).collect();
    let out = backwater(&words);
    assert!(out.status.success(), "{skip}: {}", stderr_of(&out));
    let out = replay_to(journal.path(), &server.url(), "big", &["--stream", "BIG"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(server.messages("BIG"), 5);
}

#[test]
fn keyed_records_go_on_their_keys_subjects_and_a_key_that_cannot_be_one_stops_replay_there() {
    let Some(server) = NatsServer::start("") else { return };
    let dir = journal_with(&[b"unkeyed".to_vec()]);
    let mut append = Command::new(bin())
        .args(["append", path(dir.path()), "--key-delimiter", "="])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    append.stdin.take().unwrap().write_all(b"a=1\nb=1\na=2\nc=1\nbad.key=1\nd=1\n").unwrap();
    let out = append.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let out = replay_to(dir.path(), &server.url(), "feed", &["--stream", "KV", "--subject-from-key"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    let stderr = stderr_of(&out);
    let at = cursor_position(dir.path(), "nats");
    assert!(stderr.contains(&format!("the record at position {at} has key \"bad.key\"")), "{stderr}");
    // Every record before it, each on its own subject: feed, feed.a, feed.b, feed.c.
    let state = server.stream_state("KV");
    assert_eq!(state["messages"], 5, "{state}");
    assert_eq!(state["num_subjects"], 4, "{state}");
    // A stream that does not take the keys' subjects is refused before any publish.
    let out = replay_to(dir.path(), &server.url(), "plain", &["--stream", "PLAIN"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let out = replay_to(dir.path(), &server.url(), "plain", &["--stream", "PLAIN", "--subject-from-key"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("not 'plain.*'"), "{}", stderr_of(&out));
}

/// A TCP proxy to the server that stops passing anything back to the client
/// from its first publish with headers on: the stream stores the records,
/// and their PubAcks never reach replay.
fn puback_swallowing_proxy(server_port: u16) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = TcpStream::connect(("127.0.0.1", server_port)) else { return };
            let swallow = Arc::new(AtomicBool::new(false));
            let (mut from_client, mut to_server) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            let seen = swallow.clone();
            std::thread::spawn(move || {
                let mut buf = vec![0; 1 << 16];
                while let Ok(n @ 1..) = from_client.read(&mut buf) {
                    if buf[..n].windows(5).any(|w| w == b"HPUB ") {
                        seen.store(true, Ordering::SeqCst); // before the server can answer it
                    }
                    if to_server.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
            let (mut from_server, mut to_client) = (server, client);
            std::thread::spawn(move || {
                let mut buf = vec![0; 1 << 16];
                while let Ok(n @ 1..) = from_server.read(&mut buf) {
                    if !swallow.load(Ordering::SeqCst) && to_client.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

#[test]
fn replay_killed_between_publish_and_puback_resends_and_the_stream_drops_the_duplicates() {
    let Some(server) = NatsServer::start("") else { return };
    let journal = journal_with(&numbered(500));
    let out = replay_to(journal.path(), &server.url(), "edge", &["--stream", "EDGE"]);
    assert!(out.status.success(), "the stream is made: {}", stderr_of(&out));
    let start = cursor_position(journal.path(), "nats");
    append(journal.path(), &numbered(500));

    let proxy = format!("nats://127.0.0.1:{}", puback_swallowing_proxy(server.port));
    let mut replay = Command::new(bin())
        .args(["replay", path(journal.path()), "--cursor", "nats", "--to", &proxy, "--subject", "edge"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the 500 new records in the stream", Duration::from_secs(30), || server.messages("EDGE") == 1000);
    assert_eq!(cursor_position(journal.path(), "nats"), start, "no PubAck arrived: nothing is committed");
    replay.kill().unwrap(); // SIGKILL
    replay.wait().unwrap();

    let out = replay_to(journal.path(), &server.url(), "edge", &[]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("acknowledged 500 publishes, 500 of them duplicates the stream dropped"),
        "{}",
        stderr_of(&out)
    );
    assert_eq!(server.messages("EDGE"), 1000, "re-sent, and dropped as duplicates: each record once");
    assert!(cursor_position(journal.path(), "nats") > start);
}

/// What a [`losing_proxy`] does to one message the client sends.
#[derive(Clone, Copy)]
struct Loss {
    /// The `nth` (from 1) message on `subject` is lost, and so are its
    /// re-sends (the same `Nats-Msg-Id`) until `times` are lost...
    subject: &'static str,
    nth: usize,
    times: usize,
    /// ...and, if given, each is answered with this (a PubAck or an error,
    /// as a server would), published to its reply subject, which the client
    /// subscribes to.
    answer: Option<&'static str>,
    /// Only publishes with `--ordered`'s fence (`Nats-Expected-Last-Sequence`) count.
    fenced_only: bool,
}

/// The second publish on `subject` lost, unanswered: as a dying leader loses
/// what was routed to it.
fn second_publish_lost(subject: &'static str) -> Loss {
    Loss { subject, nth: 2, times: 1, answer: None, fenced_only: false }
}

/// A TCP proxy to the server that applies `loss` and passes everything else
/// both ways.
fn losing_proxy(server_port: u16, loss: Loss) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = TcpStream::connect(("127.0.0.1", server_port)) else { return };
            let (mut from_server, mut to_client) = (server.try_clone().unwrap(), client.try_clone().unwrap());
            std::thread::spawn(move || std::io::copy(&mut from_server, &mut to_client));
            std::thread::spawn(move || pass_all_but(loss, client, server));
        }
    });
    port
}

/// Client to server, one protocol operation at a time: `PUB SUBJECT [REPLY]
/// LEN` and `HPUB SUBJECT [REPLY] HEADER_LEN LEN` lines end in the size of
/// the payload that follows; every other operation is one line.
fn pass_all_but(loss: Loss, mut from_client: TcpStream, mut to_server: TcpStream) {
    let (mut pending, mut buf, mut seen) = (Vec::new(), vec![0; 1 << 16], 0);
    let (mut lost_message, mut lost_times) = (None, 0);
    while let Ok(n @ 1..) = from_client.read(&mut buf) {
        pending.extend_from_slice(&buf[..n]);
        while let Some(line_end) = pending.windows(2).position(|w| w == b"\r\n") {
            let line = String::from_utf8_lossy(&pending[..line_end]).into_owned();
            let words: Vec<&str> = line.split(' ').collect();
            let publish = matches!(words[0], "PUB" | "HPUB");
            let payload = match publish {
                true => words.last().and_then(|len| len.parse::<usize>().ok()).unwrap() + 2,
                false => 0,
            };
            let whole = line_end + 2 + payload;
            if pending.len() < whole {
                break;
            }
            let message = msg_id(&pending[line_end + 2..whole]);
            let fenced = String::from_utf8_lossy(&pending[line_end + 2..whole]).contains("Nats-Expected-Last-Sequence");
            let lost = publish && words[1] == loss.subject && (fenced || !loss.fenced_only) && {
                seen += 1;
                if seen == loss.nth {
                    lost_message = Some(message.clone());
                }
                lost_message.as_ref() == Some(&message) && lost_times < loss.times
            };
            lost_times += usize::from(lost);
            let forwarded = match (lost, loss.answer) {
                (false, _) => to_server.write_all(&pending[..whole]),
                (true, None) => Ok(()),
                (true, Some(answer)) => {
                    to_server.write_all(format!("PUB {} {}\r\n{answer}\r\n", words[2], answer.len()).as_bytes())
                }
            };
            if forwarded.is_err() {
                return;
            }
            pending.drain(..whole);
        }
    }
}

/// The second publish on `subject` answered with `answer` (it never
/// reaches the server), and so are its next `times - 1` re-sends.
fn second_publish_answered(subject: &'static str, times: usize, answer: &'static str) -> Loss {
    Loss { subject, nth: 2, times, answer: Some(answer), fenced_only: false }
}

/// The `Nats-Msg-Id` header's value in a message's bytes (empty if none).
fn msg_id(message: &[u8]) -> String {
    let text = String::from_utf8_lossy(message);
    let value = text.split("\r\n").find_map(|line| line.strip_prefix("Nats-Msg-Id: "));
    value.unwrap_or_default().to_string()
}

/// Replays 20 records into a stream `--stream STREAM` plus `extra` makes,
/// through a [`losing_proxy`] that applies `loss`. Returns replay's output,
/// the messages in the stream and the cursor's position after.
fn replay_through(server: &NatsServer, loss: Loss, stream: &str, extra: &[&str]) -> (Output, u64, u64) {
    let proxy = losing_proxy(server.port, loss);
    let journal = journal_with(&numbered(20));
    let mut args = vec!["--stream", stream];
    args.extend_from_slice(extra);
    let out = replay_to(journal.path(), &format!("nats://127.0.0.1:{proxy}"), loss.subject, &args);
    (out, server.messages(stream), cursor_position(journal.path(), "nats"))
}

#[test]
fn a_duplicate_of_sequence_0_is_not_an_ack_the_record_is_resent() {
    let Some(server) = NatsServer::start("") else { return };
    // nats-server 2.10 answers so while a replicated stream stores an
    // earlier publish of the id, and for one lost with a leader: the
    // record was never stored (seen: 19 of 20 in the stream before the fix).
    let staged = second_publish_answered("staged", 1, STAGED);
    let (out, messages, _) = replay_through(&server, staged, "STAGED", &[]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(messages, 20, "the record was re-sent: {}", stderr_of(&out));
    assert!(stderr_of(&out).contains("duplicate of sequence 0"), "{}", stderr_of(&out));
}

const STAGED: &str = r#"{"stream":"STAGED","seq":0,"duplicate":true}"#;

#[test]
fn records_stored_behind_a_stalled_one_are_not_published_again() {
    let Some(server) = NatsServer::start("") else { return };
    // The second record's id stays staged past the stream's duplicate window
    // (nats-server 2.10, a leader that lost its proposal and leads again).
    // The 18 records after it are stored meanwhile; re-sent after the
    // window, they were stored again (seen: 74 messages before the fix).
    let stalled = second_publish_answered("stalled", 6, STAGED);
    let (out, messages, _) = replay_through(&server, stalled, "STALLED", &["--duplicate-window", "1s"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(messages, 20, "each record once: {}", stderr_of(&out));
    assert_eq!(stderr_of(&out).matches("duplicate of sequence 0").count(), 6, "{}", stderr_of(&out));
}

#[test]
fn an_id_still_being_stored_passes_the_record_is_resent() {
    let Some(server) = NatsServer::start("") else { return };
    // nats-server 2.11 and later answer 409 (10158) where 2.10 sent a
    // duplicate of sequence 0 (seen: exit 1, "refused", before the fix).
    let conflict = r#"{"error":{"code":409,"err_code":10158,"description":"duplicate message id is in process"},"stream":"CONFLICT","seq":0}"#;
    let (out, messages, _) = replay_through(&server, second_publish_answered("conflict", 1, conflict), "CONFLICT", &[]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(messages, 20, "the record was re-sent: {}", stderr_of(&out));
}

#[test]
fn a_full_stream_under_limits_retention_refuses_the_record_for_good() {
    let Some(server) = NatsServer::start("") else { return };
    // Discard-new at its limits: only an operator makes room (seen: retried,
    // then stored by the proxy's pass-through, exit 0, before the fix).
    let full =
        r#"{"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"},"stream":"FULL","seq":0}"#;
    let (out, messages, cursor) = replay_through(&server, second_publish_answered("full", 1, full), "FULL", &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    let refused = format!("refused the record at position {cursor}: publish failed: maximum messages exceeded");
    assert!(stderr_of(&out).contains(&refused), "the cursor stays before it: {}", stderr_of(&out));
    // The publishes pipelined after it landed; a rerun re-sends them as duplicates.
    assert_eq!(messages, 19);
}

#[test]
fn a_full_work_queue_stream_is_waited_for_its_consumers_free_room() {
    let Some(server) = NatsServer::start("") else { return };
    // A work-queue stream, made beforehand as an operator would.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let context = async_nats::jetstream::new(async_nats::connect(server.url()).await.unwrap());
        let config = async_nats::jetstream::stream::Config {
            name: "WORK".into(),
            subjects: vec!["work".into()],
            retention: async_nats::jetstream::stream::RetentionPolicy::WorkQueue,
            ..Default::default()
        };
        context.create_stream(config).await.unwrap();
    });
    // Its consumers free room as they take messages: the record is re-sent
    // (seen: exit 1, refused, with 10077 final whatever the retention).
    let full =
        r#"{"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"},"stream":"WORK","seq":0}"#;
    let (out, messages, _) = replay_through(&server, second_publish_answered("work", 1, full), "WORK", &[]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(messages, 20, "{}", stderr_of(&out));
}

#[test]
fn a_stream_lookup_that_gets_no_answer_is_asked_again() {
    let Some(server) = NatsServer::start("") else { return };
    let journal = journal_with(&numbered(20));
    let out = replay_to(journal.path(), &server.url(), "late", &["--stream", "LATE"]);
    assert!(out.status.success(), "the stream is made: {}", stderr_of(&out));
    append(journal.path(), &numbered(20));
    // The first lookup is lost, as during an election (seen: exit 2, "no
    // JetStream stream takes subject", before the fix).
    let proxy = losing_proxy(
        server.port,
        Loss { subject: "$JS.API.STREAM.NAMES", nth: 1, times: 1, answer: None, fenced_only: false },
    );
    let out = replay_to(journal.path(), &format!("nats://127.0.0.1:{proxy}"), "late", &[]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("JetStream did not answer the stream lookup"), "{}", stderr_of(&out));
    assert_eq!(server.messages("LATE"), 40);
}

/// nats-server's answer to a stream creation it has no servers to place
/// the replicas on (2.10.26 answered so right after a cluster started).
const NO_PEERS: &str = r#"{"type":"io.nats.jetstream.api.v1.stream_create_response","error":{"code":400,"err_code":10005,"description":"no suitable peers for placement"}}"#;

/// The first `times` requests on `create` (`$JS.API.STREAM.CREATE.NAME`)
/// answered [`NO_PEERS`].
fn creation_unplaced(create: &'static str, times: usize) -> Loss {
    Loss { subject: create, nth: 1, times, answer: Some(NO_PEERS), fenced_only: false }
}

/// Runs `child` to its end, failing the test if that takes over `limit`:
/// its exit code, and how long it ran.
fn run_for_at_most(mut child: Child, limit: Duration) -> (Option<i32>, Duration) {
    let started = Instant::now();
    let mut status = None;
    wait_for("replay to end", limit, || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    (status.and_then(|status| status.code()), started.elapsed())
}

#[test]
fn a_stream_creation_without_servers_to_place_it_on_yet_is_asked_again() {
    let Some(server) = NatsServer::start("") else { return };
    // As a cluster that just started, before its servers have all reported
    // in (seen: exit 2, "no suitable peers for placement", before the fix).
    let proxy = losing_proxy(server.port, creation_unplaced("$JS.API.STREAM.CREATE.PLACED", 2));
    let journal = journal_with(&numbered(20));
    let out = replay_to(journal.path(), &format!("nats://127.0.0.1:{proxy}"), "placed", &["--stream", "PLACED"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let asked_again = "no servers to place stream 'PLACED''s 1 replicas on";
    assert_eq!(stderr_of(&out).matches(asked_again).count(), 2, "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("replayed 20 records"), "{}", stderr_of(&out));
    assert_eq!(server.messages("PLACED"), 20);
}

#[test]
fn a_stream_creation_never_placed_ends_replay_naming_replicas_after_the_ack_timeout() {
    let Some(server) = NatsServer::start("") else { return };
    // --replicas 5 on a cluster of three: every creation is answered so
    // (seen before the fix: exit 2 at once, not naming --replicas).
    let proxy = losing_proxy(server.port, creation_unplaced("$JS.API.STREAM.CREATE.UNPLACED", usize::MAX));
    let journal = journal_with(&numbered(20));
    let log = journal.path().join("replay.log");
    let url = format!("nats://127.0.0.1:{proxy}");
    let args = ["--subject", "unplaced", "--stream", "UNPLACED", "--replicas", "5", "--ack-timeout", "2s"];
    let (code, took) = run_for_at_most(spawn_replay_to(journal.path(), &url, &args, &log), Duration::from_secs(30));
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert_eq!(code, Some(2), "{stderr}");
    assert!(took >= Duration::from_secs(2), "asked again until --ack-timeout, not {took:?}: {stderr}");
    assert!(stderr.contains("asking again in"), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    for says in ["cannot create stream 'UNPLACED'", "no suitable peers for placement", "check --replicas 5 against"] {
        assert!(last.contains(says), "the last line must say '{says}': {stderr}");
    }
    assert!(last.contains("Nothing was published; the cursor is unchanged"), "{stderr}");
}

#[test]
fn replicas_on_a_server_without_a_cluster_end_replay_at_once() {
    let Some(server) = NatsServer::start("") else { return };
    // A server without a cluster answers 10074, not 10005: that is final,
    // not asked again until --ack-timeout (60 s).
    let journal = journal_with(&numbered(20));
    let log = journal.path().join("replay.log");
    let args = ["--subject", "alone", "--stream", "ALONE", "--replicas", "3"];
    let (code, took) =
        run_for_at_most(spawn_replay_to(journal.path(), &server.url(), &args, &log), Duration::from_secs(30));
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("replicas > 1 not supported in non-clustered mode"), "{stderr}");
    assert!(!stderr.contains("asking again"), "{stderr}");
    assert!(took < Duration::from_secs(20), "{took:?}");
}

#[test]
fn with_ordered_a_lost_publish_is_not_overtaken_by_later_ones() {
    let Some(server) = NatsServer::start("") else { return };
    let order_of = |stream: &str| {
        let check = Command::new(common::example("nats_edge"))
            .args(["check", &server.url(), "--stream", stream])
            .output()
            .expect("run nats_edge check");
        String::from_utf8_lossy(&check.stdout).into_owned()
    };
    // Without --ordered: the second record's publish is lost, the 18 after
    // it land, and its re-send lands last.
    for (stream, subject, ordered) in [("LOOSE", "loose", false), ("ORDERED", "ordered", true)] {
        let proxy = format!("nats://127.0.0.1:{}", losing_proxy(server.port, second_publish_lost(subject)));
        let journal = journal_with(&numbered(20));
        let args: &[&str] = if ordered { &["--stream", stream, "--ordered"] } else { &["--stream", stream] };
        let out = replay_to(journal.path(), &proxy, subject, args);
        assert!(out.status.success(), "{}", stderr_of(&out));
        assert!(stderr_of(&out).contains("re-sending from there"), "a publish was lost: {}", stderr_of(&out));
        // With the fence, each of the 18 after the lost one is refused (its
        // predicted predecessor is not the stream's last) and re-sent after
        // it; without, they are stored, and only the lost one is re-sent.
        let (resent, fenced) = if ordered { (19, 18) } else { (1, 0) };
        let resent = format!("{resent} re-sent after failures, {fenced} of them refused by the --ordered fence");
        assert!(stderr_of(&out).contains(&resent), "{}", stderr_of(&out));
        let report = order_of(stream);
        assert!(
            report.contains("20 records in the stream") && report.contains("ok   no Nats-Msg-Id twice"),
            "{report}"
        );
        assert!(report.contains("positions grow in stream order"), "{report}");
        assert_eq!(!report.contains("FAIL"), ordered, "in journal order exactly when --ordered: {stream}: {report}");
    }
}

/// nats-server 2.12 and later check an R1 stream's fence before the
/// duplicate id: a fenced re-send of a record the stream has is refused
/// (`wrong last sequence`), not acknowledged as a duplicate. Emulated by a
/// proxy that answers so to fenced publishes, over a replay rewound onto
/// records the stream has: it sends them unfenced, one at a time, until the
/// stream stores one anew (here none). (Before, the second was fenced and
/// refused, and replay blamed another publisher and exited 1; each rerun got
/// one record further.)
#[test]
fn with_ordered_records_the_stream_has_are_resent_unfenced_not_refused() {
    let Some(server) = NatsServer::start("") else { return };
    let journal = journal_with(&numbered(20));
    let args = ["--stream", "HAS", "--ordered"];
    let out = replay_to(journal.path(), &server.url(), "has", &args);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let end = cursor_position(journal.path(), "nats");
    let start = backwater(&["cursor", path(journal.path()), "reset", "nats", "start"]);
    assert!(start.status.success(), "{}", stderr_of(&start));
    let refused = r#"{"error":{"code":400,"err_code":10071,"description":"wrong last sequence: 20"},"stream":"HAS"}"#;
    let proxy =
        losing_proxy(server.port, Loss { subject: "has", nth: 1, times: 2, answer: Some(refused), fenced_only: true });
    let out = replay_to(journal.path(), &format!("nats://127.0.0.1:{proxy}"), "has", &args);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("acknowledged 20 publishes, 20 of them duplicates"), "{}", stderr_of(&out));
    assert_eq!(server.messages("HAS"), 20);
    assert_eq!(cursor_position(journal.path(), "nats"), end);
}

/// A gap in this journal's records in the stream (a crash or another
/// publisher left records after one the stream lacks): the rerun stores the
/// missing record at the end, catches up through the ones the stream has,
/// and goes on. Before, the duplicates' old sequences seeded the fences, the
/// new records were refused, and replay blamed another publisher (exit 1).
#[test]
fn with_ordered_a_gap_in_the_stream_is_caught_up_not_blamed_on_another_publisher() {
    let Some(server) = NatsServer::start("") else { return };
    let journal = journal_with(&numbered(100));
    let out = replay_to(journal.path(), &server.url(), "gap", &["--stream", "GAP", "--ordered"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let missing = cursor_position(journal.path(), "nats");
    append(journal.path(), &numbered(1));
    let info = backwater(&["info", path(journal.path()), "--json"]);
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).expect("info --json");
    let after = info["tail_position"].as_u64().expect("tail_position").to_string();
    append(journal.path(), &numbered(50));
    let set = |position: &str| backwater(&["cursor", path(journal.path()), "set", "nats", position]);
    assert!(set(&after).status.success());
    let out = replay_to(journal.path(), &server.url(), "gap", &["--stream", "GAP"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert_eq!(server.messages("GAP"), 150, "the stream lacks one record, with 50 after it");
    assert!(set(&missing.to_string()).status.success());
    append(journal.path(), &numbered(900));
    let out = replay_to(journal.path(), &server.url(), "gap", &["--stream", "GAP", "--ordered"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("acknowledged 951 publishes, 50 of them duplicates"), "{}", stderr_of(&out));
    assert_eq!(server.messages("GAP"), 1051);
}

#[test]
fn with_ordered_a_stream_that_takes_other_subjects_is_refused_at_start() {
    let Some(server) = NatsServer::start("") else { return };
    let keyed = journal_with(&numbered(1));
    let out = replay_to(keyed.path(), &server.url(), "wide", &["--stream", "WIDE", "--subject-from-key"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let ours = journal_with(&numbered(1));
    let out = replay_to(ours.path(), &server.url(), "wide", &["--stream", "WIDE", "--ordered"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("stream 'WIDE' also takes 'wide.*'"), "{}", stderr_of(&out));
    let out = replay_to(ours.path(), &server.url(), "wide", &["--stream", "WIDE", "--ordered", "--subject-from-key"]);
    assert!(out.status.success(), "its own subjects are fine: {}", stderr_of(&out));
}

#[test]
fn with_ordered_a_stream_that_takes_other_streams_messages_is_refused_at_start() {
    let Some(server) = NatsServer::start("") else { return };
    let theirs = journal_with(&numbered(1));
    let out = replay_to(theirs.path(), &server.url(), "theirs", &["--stream", "THEIRS"]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let config = serde_json::json!({"name": "MIXED", "subjects": ["ours"], "sources": [{"name": "THEIRS"}]});
    let created = server.jetstream_api("STREAM.CREATE.MIXED", &config);
    assert!(created["error"].is_null(), "{created}");
    let ours = journal_with(&numbered(1));
    let out = replay_to(ours.path(), &server.url(), "ours", &["--stream", "MIXED", "--ordered"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("stream 'MIXED' also takes messages from other streams"), "{}", stderr_of(&out));
    let out = replay_to(ours.path(), &server.url(), "ours", &["--stream", "MIXED"]);
    assert!(out.status.success(), "without --ordered a shared stream is fine: {}", stderr_of(&out));
}

#[test]
fn with_ordered_a_stream_that_takes_another_publisher_stops_replay_with_a_clear_error() {
    let Some(server) = NatsServer::start("") else { return };
    let ours = journal_with(&numbered(1));
    let log = ours.path().join("replay.log");
    let mut replay = spawn_replay_to(
        ours.path(),
        &server.url(),
        &["--subject", "shared", "--stream", "SHARED", "--ordered", "--follow"],
        &log,
    );
    wait_for("our first record in the stream", Duration::from_secs(30), || server.messages("SHARED") == 1);
    let theirs = journal_with(&numbered(1));
    let out = replay_to(theirs.path(), &server.url(), "shared", &[]);
    assert!(out.status.success(), "{}", stderr_of(&out));
    let next = cursor_position(ours.path(), "nats");
    append(ours.path(), &numbered(1));
    let status = replay.wait().unwrap();
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    // The fence refused it; re-sent unfenced, it was stored anew after the
    // other publisher's message: in journal order after ours, and replay says so.
    assert!(stderr.contains(&format!("last message before the record at position {next}")), "{stderr}");
    assert!(stderr.contains("--ordered needs a stream of this journal's records alone"), "{stderr}");
    assert_eq!(server.messages("SHARED"), 3);
    assert!(cursor_position(ours.path(), "nats") > next, "the record is in the stream and acknowledged");
}

#[test]
fn replay_rides_out_a_server_restart_and_every_record_lands_once() {
    let Some(mut server) = NatsServer::start("") else { return };
    let journal = journal_with(&numbered(300_000));
    let log = journal.path().join("replay.log");
    let mut replay = spawn_replay_to(
        journal.path(),
        &server.url(),
        &["--subject", "edge", "--stream", "EDGE", "--ack-timeout", "60s"],
        &log,
    );
    wait_for("records in the stream", Duration::from_secs(30), || server.messages("EDGE") > 1000);
    server.stop();
    // Down long enough for several rounds of re-sends to fill the client's buffer, so
    // that sends fail too, with nothing in flight (a forwarder that then waited for
    // PubAcks, not for a retry, hung until --ack-timeout: seen failing before the fix).
    wait_for("replay to report failed publishes", Duration::from_secs(30), || {
        std::fs::read_to_string(&log).unwrap_or_default().matches("failed (timed out").count() >= 4
    });
    server.restart();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = replay.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "replay still running 120 s after the restart");
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("NATS publishing again after"), "{stderr}");
    assert!(stderr.contains("replayed 300000 records"), "{stderr}");
    assert_eq!(server.messages("EDGE"), 300_000, "each record once: re-sends were dropped as duplicates");
}

#[test]
fn three_edge_journals_forward_into_an_r3_stream_exactly_once_through_crashes_and_an_outage() {
    let _alone = one_at_a_time();
    let Some((out, stdout)) = run_tool("nats-e2e", &[], Duration::from_secs(300)) else { return };
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("\nPASS"), "{stdout}");
    for event in ["SIGKILL n", "SIGKILL replay b", "all three nodes stopped", "shedding", "back-pressured"] {
        assert!(stdout.contains(event), "the run must show '{event}':\n{stdout}");
    }
    println!("{stdout}");
}

/// The same run with `--ordered`, each journal into an R3 stream of its own:
/// besides exactly once, every stream holds its journal's records in journal
/// order (`nats_edge check` fails otherwise) through the same crashes.
#[test]
fn with_ordered_each_edge_journal_lands_in_journal_order_in_its_r3_stream_through_crashes_and_an_outage() {
    let _alone = one_at_a_time();
    let Some((out, stdout)) = run_tool("nats-e2e", &[("ORDERED", "1")], Duration::from_secs(300)) else { return };
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("\nPASS"), "{stdout}");
    for event in ["SIGKILL n", "SIGKILL replay b", "all three nodes stopped", "replay --ordered"] {
        assert!(stdout.contains(event), "the run must show '{event}':\n{stdout}");
    }
    let in_order =
        stdout.lines().filter(|line| line.starts_with("ok") && line.ends_with("grow in stream order (journal order)"));
    assert_eq!(in_order.count(), 3, "each journal's records in journal order:\n{stdout}");
    assert!(!stdout.contains("FAIL"), "{stdout}");
    println!("{stdout}");
}

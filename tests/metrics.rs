//! Observability: `backwater metrics` and `backwater exporter` as a user
//! runs them, checked against `info --json`, `promtool` and a real
//! Prometheus server (each of those two skips, saying so, where it is not
//! installed: Debian's `prometheus` package has both; `.ci/run` installs it).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use backwater::{Config, Journal, Level, OfferError, WhenFull};
use common::cli::{backwater, bin, path};

/// A journal of 64 KiB segments in a 1 MiB budget: 0.1% of fill is about one
/// 1 KiB record, so the watermarks are reached in a few hundred.
fn small_journal(dir: &Path) -> Journal {
    let config =
        Config::default().segment_size(64 << 10).max_disk_bytes(1 << 20).min_free_disk(0).when_full(WhenFull::Block);
    Journal::open(dir, config).expect("open the journal")
}

fn now_secs() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("a clock after 1970").as_secs_f64()
}

/// Waits up to `limit` for `condition` to give a value, checking every 20 ms.
fn wait_for<T>(what: &str, limit: Duration, mut condition: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = condition() {
            return value;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what} after {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One sample of an exposition.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the text format, checking what Prometheus relies on: every sample
/// belongs to a family announced by `# HELP` and `# TYPE` before it, a
/// family's samples are together, counters end in `_total`.
fn parse_exposition(text: &str) -> Vec<Sample> {
    let mut helped = Vec::new();
    let mut types: HashMap<String, String> = HashMap::new();
    let mut samples: Vec<Sample> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("HELP name text");
            assert!(!help.is_empty() && !helped.contains(&name.to_string()), "{line}");
            helped.push(name.to_string());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert_eq!(helped.last().map(String::as_str), Some(name), "TYPE right after its HELP: {line}");
            assert!(kind == "gauge" || (kind == "counter" && name.ends_with("_total")), "{line}");
            types.insert(name.to_string(), kind.to_string());
        } else {
            let sample = parse_sample(line);
            assert_eq!(helped.last(), Some(&sample.name), "a sample of the family announced last: {line}");
            assert!(types.contains_key(&sample.name), "no TYPE for {line}");
            samples.push(sample);
        }
    }
    samples
}

/// `name{label="value",...} number` (the values this exporter writes: no
/// escaped quotes in these tests' labels).
fn parse_sample(line: &str) -> Sample {
    let (name, rest) = line.split_once('{').unwrap_or_else(|| panic!("no labels: {line}"));
    let (labels, value) = rest.rsplit_once("} ").unwrap_or_else(|| panic!("no value: {line}"));
    let labels = labels
        .split("\",")
        .map(|pair| {
            let (key, value) = pair.split_once("=\"").unwrap_or_else(|| panic!("bad label in {line}"));
            (key.to_string(), value.trim_end_matches('"').to_string())
        })
        .collect();
    let value = match value {
        "+Inf" => f64::INFINITY,
        number => number.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
    };
    Sample { name: name.to_string(), labels, value }
}

/// The value of `name` for `journal` (and `cursor`, if given).
fn value(samples: &[Sample], name: &str, journal: &str, cursor: Option<&str>) -> f64 {
    let found = samples.iter().find(|s| {
        s.name == name && s.labels["journal"] == journal && s.labels.get("cursor").map(String::as_str) == cursor
    });
    found.unwrap_or_else(|| panic!("no {name} for {journal} {cursor:?}")).value
}

fn info_json(dir: &Path) -> serde_json::Value {
    let out = backwater(&["info", path(dir), "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("info --json")
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir).expect("read the journal directory") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            files.extend(snapshot(&path));
        } else {
            files.insert(path.clone(), std::fs::read(&path).expect("read a journal file"));
        }
    }
    files
}

#[test]
fn metrics_agree_with_info_json_pass_promtool_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let journal_dir = dir.path().join("feed");
    let journal = small_journal(&journal_dir);
    let publisher = journal.publisher();
    for i in 0..300u32 {
        publisher.append(format!("record {i}").as_bytes()).unwrap();
    }
    journal.consumer("slow").unwrap().commit().unwrap();
    let mut caught_up = journal.consumer("caught-up").unwrap();
    while caught_up.poll(|_| {}, 1000).unwrap() > 0 {}
    caught_up.commit().unwrap();
    drop((caught_up, publisher, journal)); // no writer left: the files must not change
    let label = path(&journal_dir);
    let before = snapshot(&journal_dir);

    let info_started = now_secs();
    let info = info_json(&journal_dir);
    let info_ended = now_secs();
    let out = backwater(&["metrics", label]);
    let metrics_ended = now_secs();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(snapshot(&journal_dir), before, "metrics and info are read-only");
    let text = String::from_utf8(out.stdout).unwrap();
    let samples = parse_exposition(&text);

    let same = |name: &str, field: &str| {
        assert_eq!(value(&samples, name, label, None), info[field].as_f64().unwrap(), "{name} vs info's {field}");
    };
    same("backwater_disk_bytes", "disk_bytes");
    same("backwater_retired_bytes", "retired_bytes");
    same("backwater_capacity_bytes", "capacity");
    same("backwater_fill_ratio", "fill");
    same("backwater_segments", "segments");
    same("backwater_first_position", "first_position");
    same("backwater_tail_position", "tail_position");
    same("backwater_appended_records_total", "appended");
    same("backwater_shed_records_total", "dropped_low");
    same("backwater_back_pressured_total", "back_pressured");
    same("backwater_evictions_total", "evictions");
    same("backwater_lost_bytes_total", "lost_bytes");
    same("backwater_unblocked_total", "unblocked");
    assert_eq!(
        value(&samples, "backwater_max_disk_bytes", label, None),
        info["limits"]["max_disk_bytes"].as_f64().unwrap()
    );
    assert_eq!(value(&samples, "backwater_up", label, None), 1.0);
    assert_eq!((value(&samples, "backwater_level", label, None), info["level"].as_str()), (0.0, Some("normal")));
    assert_eq!(info["appended"], 300);
    for cursor in info["cursors"].as_array().unwrap() {
        let name = cursor["name"].as_str();
        let of = |metric: &str| value(&samples, metric, label, name);
        assert_eq!(of("backwater_cursor_position"), cursor["position"].as_f64().unwrap());
        assert_eq!(of("backwater_cursor_lag_bytes"), cursor["lag_bytes"].as_f64().unwrap());
        assert_eq!(of("backwater_cursor_evicted"), 0.0);
        // Both are "now - the oldest unread record's timestamp", taken one
        // process run apart (the clocks are coarse: a few ms).
        let lag = of("backwater_cursor_lag_seconds");
        match cursor["lag_secs"].as_f64() {
            None => assert_eq!((name, lag), (Some("caught-up"), 0.0)),
            Some(info_lag) => {
                assert_eq!(name, Some("slow"));
                let grown = lag - info_lag;
                let slack = 0.02;
                assert!(
                    grown >= -slack && grown <= metrics_ended - info_started + slack,
                    "lag {lag} s, info said {info_lag} s between {info_started} and {info_ended}"
                );
            }
        }
    }
    documented_in_the_readme(&samples);
    promtool_accepts(&text);
}

/// Every metric family has a row in the README's table.
fn documented_in_the_readme(samples: &[Sample]) {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for name in backwater::metrics::metric_names() {
        assert!(samples.iter().any(|s| s.name == name), "{name} is not in the output");
        assert!(readme.contains(&format!("| `{name}` |")), "the README's table of metrics lacks {name}");
    }
}

fn promtool_accepts(text: &str) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        eprintln!("promtool not found: `promtool check metrics` skipped (Debian: apt-get install prometheus)");
        return;
    };
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool check metrics: {said}\n{text}");
}

#[test]
fn metrics_prints_every_journal_and_fails_for_one_that_cannot_be_read() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good");
    small_journal(&good).publisher().append(b"one").unwrap();
    let missing = dir.path().join("missing");
    let out = backwater(&["metrics", path(&good), path(&missing)]);
    assert_eq!(out.status.code(), Some(2), "not a journal is exit 2");
    let samples = parse_exposition(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(value(&samples, "backwater_up", path(&good), None), 1.0);
    assert_eq!(value(&samples, "backwater_up", path(&missing), None), 0.0);
    assert_eq!(value(&samples, "backwater_appended_records_total", path(&good), None), 1.0);
    assert!(!samples.iter().any(|s| s.labels["journal"] == path(&missing) && s.name != "backwater_up"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("missing is not a backwater journal") && stderr.contains("1 of 2 journals"), "{stderr}");
    assert_eq!(backwater(&["metrics"]).status.code(), Some(2), "at least one DIR");
}

/// `backwater exporter --listen 127.0.0.1:0 DIR…`, killed when dropped.
struct Exporter {
    child: Child,
    address: SocketAddr,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Exporter {
    fn start(dirs: &[&Path]) -> Exporter {
        let mut child = Command::new(bin())
            .args(["exporter", "--listen", "127.0.0.1:0"])
            .args(dirs)
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the exporter");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (first_line, first) = std::sync::mpsc::channel();
        let lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let kept = Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let _ = first_line.send(line.clone());
                kept.lock().unwrap().push(line);
            }
        });
        let address = Self::address(&first);
        Exporter { child, address, stderr }
    }

    /// The address in "serving N journal(s) at http://ADDR/metrics".
    fn address(lines: &Receiver<String>) -> SocketAddr {
        let line = lines.recv_timeout(Duration::from_secs(30)).expect("the exporter says where it serves");
        let url = line.split("http://").nth(1).unwrap_or_else(|| panic!("no address in {line:?}"));
        url.trim_end_matches("/metrics").parse().unwrap_or_else(|_| panic!("no address in {line:?}"))
    }

    fn get(&self, target: &str) -> (u16, String) {
        http(self.address, "GET", target)
    }

    fn said(&self, text: &str) -> bool {
        self.stderr.lock().unwrap().iter().any(|line| line.contains(text))
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.0 request (the server closes the connection after the
/// response, with no chunked encoding): the status and the body.
fn http(address: SocketAddr, method: &str, target: &str) -> (u16, String) {
    try_http(address, method, target).unwrap_or_else(|| panic!("nothing listens on {address}"))
}

/// `http`, or `None` when nothing listens on `address`.
fn try_http(address: SocketAddr, method: &str, target: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(5)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(stream, "{method} {target} HTTP/1.0\r\nHost: {address}\r\n\r\n").unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("read the response");
    let response = String::from_utf8(response).expect("a UTF-8 response");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or_else(|| panic!("{head}"));
    Some((status, body.to_string()))
}

#[test]
fn the_exporter_serves_metrics_404s_elsewhere_and_outlives_missing_and_damaged_journals() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good");
    small_journal(&good).publisher().append(b"one").unwrap();
    let missing = dir.path().join("later");
    let damaged = dir.path().join("damaged");
    std::fs::create_dir(&damaged).unwrap();
    std::fs::write(damaged.join("journal.meta"), b"not a journal's metadata").unwrap();
    let exporter = Exporter::start(&[&good, &missing, &damaged]);

    let (status, body) = exporter.get("/metrics");
    assert_eq!(status, 200, "{body}");
    let samples = parse_exposition(&body);
    let up = |samples: &[Sample], dir: &Path| value(samples, "backwater_up", path(dir), None);
    assert_eq!((up(&samples, &good), up(&samples, &missing), up(&samples, &damaged)), (1.0, 0.0, 0.0));
    assert_eq!(value(&samples, "backwater_appended_records_total", path(&good), None), 1.0);
    wait_for("stderr to name both journals that are down", Duration::from_secs(10), || {
        (exporter.said(&format!("{} is down", path(&missing))) && exporter.said(&format!("{} is down", path(&damaged))))
            .then_some(())
    });
    assert_eq!(exporter.get("/").0, 404);
    assert_eq!(exporter.get("/metricsx").0, 404);
    assert_eq!(http(exporter.address, "POST", "/metrics").0, 405);
    assert_eq!(exporter.get("/metrics?format=text").0, 200);
    let head = http(exporter.address, "HEAD", "/metrics");
    assert_eq!(head, (200, String::new()));

    // A journal created after the exporter started is picked up at the next scrape.
    small_journal(&missing).publisher().append(b"late").unwrap();
    let samples = parse_exposition(&exporter.get("/metrics").1);
    assert_eq!(up(&samples, &missing), 1.0);
    wait_for("stderr to say it can be read again", Duration::from_secs(10), || {
        exporter.said(&format!("{} can be read again", path(&missing))).then_some(())
    });
}

#[test]
fn a_second_exporter_on_a_port_in_use_fails_clearly() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let out = backwater(&["exporter", "--listen", &address, "/nonexistent"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("cannot listen on {address}")));
    let out = backwater(&["exporter", "--listen", "nowhere", "/nonexistent"]);
    assert_eq!(out.status.code(), Some(2), "a bad address is a usage error");
}

/// Records every `log` record of target `backwater`.
struct Recorder(Mutex<Vec<String>>);

impl log::Log for Recorder {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.target() == "backwater"
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            self.0.lock().unwrap().push(format!("{} {}", record.level(), record.args()));
        }
    }

    fn flush(&self) {}
}

static RECORDER: Recorder = Recorder(Mutex::new(Vec::new()));

#[test]
fn level_transitions_are_logged() {
    let _ = log::set_logger(&RECORDER);
    log::set_max_level(log::LevelFilter::Info);
    let dir = tempfile::tempdir().unwrap();
    let journal = small_journal(dir.path());
    journal.consumer("slow").unwrap().commit().unwrap();
    fill_to(&journal, Level::Shedding);
    let logged = |text: &str| RECORDER.0.lock().unwrap().iter().any(|line| line.contains(text));
    let expected = format!("WARN {}: level normal -> shedding at 8", path(dir.path()));
    wait_for("the transition to be logged", Duration::from_secs(10), || logged(&expected).then_some(()));
}

/// Offers 1 KiB records until the journal reaches `level`.
fn fill_to(journal: &Journal, level: Level) {
    let publisher = journal.publisher();
    let record = [b'r'; 1000];
    for _ in 0..10_000 {
        match publisher.offer(&record) {
            Ok(_) if journal.stats().level == level => return,
            Ok(_) => {}
            Err(OfferError::BackPressured { .. }) if level == Level::BackPressured => return,
            Err(other) => panic!("offer at fill {}: {other}", journal.stats().fill),
        }
    }
    panic!("10000 records and still {:?}", journal.stats().level);
}

/// Prometheus scrapes every second, and gives up on a scrape after as long.
const SCRAPE_INTERVAL: f64 = 1.0;

/// A Prometheus server with its own data directory, scraping `target` every
/// second; killed when dropped.
struct Prometheus {
    child: Child,
    address: SocketAddr,
    log: PathBuf,
}

impl Prometheus {
    /// `None` (after saying why) when there is no `prometheus` to run.
    fn start(dir: &Path, target: SocketAddr) -> Option<Prometheus> {
        let Ok(version) = Command::new("prometheus").arg("--version").output() else {
            eprintln!(
                "SKIPPED: no `prometheus` on PATH (Debian: apt-get install prometheus; .ci/run installs it as root)"
            );
            return None;
        };
        eprintln!("{}", String::from_utf8_lossy(&version.stdout).lines().next().unwrap_or("prometheus"));
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: {SCRAPE_INTERVAL}s\n  scrape_timeout: {SCRAPE_INTERVAL}s\nscrape_configs:\n  - job_name: backwater\n    \
                 static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let address = TcpListener::bind("127.0.0.1:0").and_then(|free| free.local_addr()).unwrap();
        let log = dir.join("prometheus.log");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={address}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start prometheus");
        let mut prometheus = Prometheus { child, address, log };
        wait_for("prometheus to be ready", Duration::from_secs(30), || {
            prometheus.check_running();
            (try_http(address, "GET", "/-/ready")?.0 == 200).then_some(())
        });
        Some(prometheus)
    }

    fn check_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("prometheus exited ({status}): {}", std::fs::read_to_string(&self.log).unwrap_or_default());
        }
    }

    /// The raw samples `(time, value)` of the one series `selector` picks
    /// over the last 10 minutes (an empty list before the first scrape).
    fn samples(&mut self, selector: &str) -> Vec<(f64, f64)> {
        self.check_running();
        let query: String = format!("{selector}[10m]").bytes().map(|b| format!("%{b:02X}")).collect();
        let (status, body) = http(self.address, "GET", &format!("/api/v1/query?query={query}"));
        assert_eq!(status, 200, "{body}");
        let answer: serde_json::Value = serde_json::from_str(&body).expect("the API answers JSON");
        let Some(series) = answer["data"]["result"].as_array().and_then(|all| all.first()) else { return Vec::new() };
        let point = |p: &serde_json::Value| {
            let value = p[1].as_str().and_then(|v| v.parse().ok()).expect("a sample's value");
            (p[0].as_f64().expect("a sample's time"), value)
        };
        series["values"].as_array().expect("a range vector").iter().map(point).collect()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `info --json`, checks the level it reports, then waits for the
/// first scrape after it and checks that Prometheus stored the same fill,
/// the same level and the cursor's lag in time grown by the time between
/// the two.
fn prometheus_agrees_with_info(prometheus: &mut Prometheus, dir: &Path, level: (&str, f64)) {
    let info_started = now_secs();
    let info = info_json(dir);
    let info_ended = now_secs();
    assert_eq!(info["level"], level.0);
    let first_after = |samples: Vec<(f64, f64)>| samples.into_iter().find(|&(time, _)| time >= info_ended);
    let scrape = |prometheus: &mut Prometheus, selector: &str| {
        wait_for(&format!("a scrape of {selector} after info"), Duration::from_secs(20), || {
            first_after(prometheus.samples(selector))
        })
    };
    let (time, fill) = scrape(prometheus, "backwater_fill_ratio");
    assert_eq!(fill, info["fill"].as_f64().unwrap(), "fill at {} (info) and {time} (Prometheus)", info_ended);
    assert_eq!(scrape(prometheus, "backwater_level"), (time, level.1), "the same scrape");
    let (lag_time, lag) = scrape(prometheus, "backwater_cursor_lag_seconds{cursor=\"slow-sink\"}");
    assert_eq!(lag_time, time, "the same scrape");
    let info_lag = info["cursors"][0]["lag_secs"].as_f64().expect("the slow sink lags");
    // The oldest unread record is the same one, so its age grew by the time
    // between info's reading and the exporter's. That one came after the
    // scrape began (`time`) and before the scrape timed out (one interval
    // later); the clocks are coarse (a few ms).
    let grown = lag - info_lag;
    let (least, most) = (time - info_ended - 0.01, time + SCRAPE_INTERVAL - info_started + 0.01);
    assert!(
        (least..=most).contains(&grown),
        "lag {lag} s scraped at {time}, info said {info_lag} s between {info_started} and {info_ended}: \
         it grew {grown} s, not within {least}..{most}"
    );
    let late = grown - (time - info_ended);
    eprintln!(
        "{:<15} fill {fill:.4}  lag {lag:.3} s; scraped {:.3} s after info, answered ~{late:.3} s into it",
        level.0,
        time - info_ended
    );
}

#[test]
fn a_real_prometheus_scrapes_each_level_and_the_lag_info_reports() {
    let began = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let journal_dir = dir.path().join("journal");
    let journal = small_journal(&journal_dir);
    journal.consumer("slow-sink").unwrap().commit().unwrap(); // lags from the first record on
    journal.publisher().append(b"the oldest record").unwrap();
    let exporter = Exporter::start(&[&journal_dir]);
    let Some(mut prometheus) = Prometheus::start(dir.path(), exporter.address) else { return };
    wait_for(
        "prometheus to scrape the exporter (it applies a new target within ~5 s)",
        Duration::from_secs(30),
        || (!prometheus.samples("backwater_up").is_empty()).then_some(()),
    );

    prometheus_agrees_with_info(&mut prometheus, &journal_dir, ("normal", 0.0));
    fill_to(&journal, Level::Shedding);
    prometheus_agrees_with_info(&mut prometheus, &journal_dir, ("shedding", 1.0));
    fill_to(&journal, Level::BackPressured);
    prometheus_agrees_with_info(&mut prometheus, &journal_dir, ("back-pressured", 2.0));

    let mut levels: Vec<f64> = prometheus.samples("backwater_level").into_iter().map(|(_, level)| level).collect();
    levels.dedup();
    assert_eq!(levels, [0.0, 1.0, 2.0], "backwater_level as Prometheus stored it");
    eprintln!("the real-Prometheus scenario took {:.1} s", began.elapsed().as_secs_f64());
}

#[test]
fn the_demo_says_how_to_watch_it_and_that_works_while_it_runs() {
    let dir = tempfile::tempdir().unwrap();
    let journal_dir = dir.path().join("demo");
    let mut demo = Command::new(bin())
        .args(["demo", path(&journal_dir), "--seconds", "3"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the demo");
    let mut lines = BufReader::new(demo.stdout.take().unwrap()).lines().map_while(Result::ok);
    let command = lines.find(|line| line.contains("backwater exporter")).expect("the demo names the exporter");
    let watched = command.split_whitespace().last().unwrap().to_string();
    assert_eq!(watched, path(&journal_dir), "{command}");
    let out = backwater(&["metrics", &watched]);
    let samples = parse_exposition(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(value(&samples, "backwater_up", &watched, None), 1.0, "{}", String::from_utf8_lossy(&out.stderr));
    assert!(lines.any(|line| line.contains("nothing lost")), "the demo goes on and ends well");
    assert!(demo.wait().unwrap().success());
}

//! An acknowledging PostgreSQL sink for `backwater replay --ack --format json`.
//!
//! Reads one JSON record per line on stdin, inserts them in transactions of up
//! to `--batch` rows into a table keyed by the record's position (`ON
//! CONFLICT DO NOTHING`, so a replay after a crash is idempotent), and after
//! each commit writes the number of rows in that transaction on stdout: the
//! acknowledgement `replay --ack` expects. A partial batch is committed as
//! soon as input pauses, so the sink never sits on records replay is waiting
//! to have acknowledged.
//!
//! ```text
//! backwater replay /var/lib/feed --cursor db --ack --window 5000 --format json \
//!     --exec 'pg_sink --url "host=127.0.0.1 user=app dbname=app" --batch 1000'
//! ```

use std::io::{BufRead, Write};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use postgres::{Client, NoTls};

struct Args {
    url: String,
    table: String,
    batch: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args { url: String::new(), table: "records".into(), batch: 1000 };
    let mut words = std::env::args().skip(1);
    while let Some(flag) = words.next() {
        let mut value = || words.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => args.url = value()?,
            "--table" => args.table = value()?,
            "--batch" => args.batch = value()?.parse().map_err(|e| format!("--batch: {e}"))?,
            other => return Err(format!("unknown argument {other}; usage: pg_sink --url URL [--table T] [--batch N]")),
        }
    }
    let valid_table = !args.table.is_empty() && args.table.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if args.url.is_empty() || !valid_table || args.batch == 0 {
        return Err("usage: pg_sink --url URL [--table T] [--batch N]".into());
    }
    Ok(args)
}

/// One record as `replay --format json` frames it.
struct Row {
    position: i64,
    priority: String,
    payload: String,
}

fn parse_row(line: &str) -> Result<Row, String> {
    let value: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("bad JSON '{line}': {e}"))?;
    let position = value["position"].as_i64().ok_or_else(|| format!("no position in '{line}'"))?;
    let payload = value["payload"].as_str().or(value["payload_hex"].as_str()).unwrap_or_default();
    Ok(Row { position, priority: value["priority"].as_str().unwrap_or("normal").into(), payload: payload.into() })
}

/// Lines from stdin on a thread of their own, so a pause can be noticed.
fn stdin_lines() -> Receiver<String> {
    let (sender, receiver) = std::sync::mpsc::sync_channel(10_000);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    receiver
}

fn insert(client: &mut Client, table: &str, rows: &[Row]) -> Result<(), postgres::Error> {
    let mut transaction = client.transaction()?;
    let mut sql = format!("INSERT INTO {table} (position, priority, payload) VALUES ");
    let mut params: Vec<&(dyn postgres::types::ToSql + Sync)> = Vec::with_capacity(rows.len() * 3);
    for (i, row) in rows.iter().enumerate() {
        if i > 0 {
            sql.push(',');
        }
        sql.push_str(&format!("(${}, ${}, ${})", 3 * i + 1, 3 * i + 2, 3 * i + 3));
        params.push(&row.position);
        params.push(&row.priority);
        params.push(&row.payload);
    }
    sql.push_str(" ON CONFLICT (position) DO NOTHING");
    transaction.execute(sql.as_str(), &params)?;
    transaction.commit()
}

fn run() -> Result<(), String> {
    let args = parse_args()?;
    let mut client = Client::connect(&args.url, NoTls).map_err(|e| format!("connect: {e}"))?;
    client
        .batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {} (position BIGINT PRIMARY KEY, priority TEXT NOT NULL, payload TEXT NOT NULL)",
            args.table
        ))
        .map_err(|e| format!("create table: {e}"))?;
    let lines = stdin_lines();
    let mut stdout = std::io::stdout().lock();
    let mut rows = Vec::with_capacity(args.batch);
    loop {
        // A batch is committed when full, when input pauses for 20 ms (replay
        // may be waiting for this ack), and at the end of input.
        let (flush, ended) = match lines.recv_timeout(Duration::from_millis(20)) {
            Ok(line) => {
                rows.push(parse_row(&line)?);
                (rows.len() >= args.batch, false)
            }
            Err(RecvTimeoutError::Timeout) => (true, false),
            Err(RecvTimeoutError::Disconnected) => (true, true),
        };
        if flush && !rows.is_empty() {
            insert(&mut client, &args.table, &rows).map_err(|e| format!("insert: {e}"))?;
            writeln!(stdout, "{}", rows.len()).and_then(|()| stdout.flush()).map_err(|e| format!("ack: {e}"))?;
            rows.clear();
        }
        if ended {
            return Ok(());
        }
    }
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("pg_sink: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

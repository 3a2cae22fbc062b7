//! An acknowledging PostgreSQL sink for `backwater replay --ack --format json`.
//!
//! Reads one JSON record per line on stdin and writes them, in transactions
//! of up to `--batch` records, into a table keyed by `(journal_id, position)`:
//! positions restart when a journal is made anew at the same path, its id
//! does not. Payloads are stored as `bytea`, byte for byte (text, binary, NUL
//! bytes alike). Each transaction copies the batch into a temporary table
//! (`COPY ... BINARY`: no limit on the batch, unlike bind parameters) and
//! inserts it with `ON CONFLICT DO NOTHING`, so a replay after a crash is
//! idempotent. Keyed records (`append --key-delimiter`; `key` or `key_hex`
//! in the JSON) are upserted by key instead: the table keeps one row per key,
//! the record with the highest position (`ON CONFLICT (key) DO UPDATE …
//! WHERE excluded.position > t.position`), so a replay after a crash, or a
//! batch holding the same key twice, never puts an older value over a newer
//! one; this is what `replay --conflate` feeds. Unkeyed rows have a NULL key
//! (never in conflict). After each commit it writes the number of records in that
//! transaction on stdout: the acknowledgement `replay --ack` expects. A
//! partial batch is committed as soon as input pauses, and at its end.
//!
//! A record the database refuses for what it holds (a data or constraint
//! error: SQLSTATE classes 22 and 23) can never be written, and retrying it
//! would stop the pipeline for good. Such a batch is retried record by
//! record; each refused record goes to `<table>_dead_letter` with the error,
//! is counted on stderr, and is acknowledged like the others: look there,
//! fix, and re-insert by hand. Any other error (the connection, the server)
//! ends the sink with exit 1, so replay stops and a rerun retries.
//!
//! ```text
//! backwater replay /var/lib/feed --cursor db --ack --window 5000 --format json \
//!     --exec 'pg_sink --url "host=127.0.0.1 user=app dbname=app" --batch 1000'
//! backwater replay /var/lib/prices --cursor db --conflate --ack --format json \
//!     --exec 'pg_sink --url "host=127.0.0.1 user=app dbname=app" --table prices'
//! ```

use std::io::{BufRead, Write};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::Type;
use postgres::{Client, NoTls, Transaction};

/// The largest `--batch`: a transaction holds the batch in memory.
const MAX_BATCH: usize = 1_000_000;

struct Args {
    url: String,
    table: String,
    batch: usize,
}

const USAGE: &str = "usage: pg_sink --url URL [--table T] [--batch N (1 to 1000000, default 1000)]";

fn parse_args() -> Result<Args, String> {
    let mut args = Args { url: String::new(), table: "records".into(), batch: 1000 };
    let mut words = std::env::args().skip(1);
    while let Some(flag) = words.next() {
        let mut value = || words.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => args.url = value()?,
            "--table" => args.table = value()?,
            "--batch" => args.batch = value()?.parse().map_err(|e| format!("--batch: {e}"))?,
            other => return Err(format!("unknown argument {other}; {USAGE}")),
        }
    }
    let valid_table = !args.table.is_empty() && args.table.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if args.url.is_empty() || !valid_table || !(1..=MAX_BATCH).contains(&args.batch) {
        return Err(USAGE.into());
    }
    Ok(args)
}

/// One record as `replay --format json` frames it.
struct Row {
    journal_id: String,
    position: i64,
    priority: String,
    payload: Vec<u8>,
    /// A keyed record's key: the row is upserted by it.
    key: Option<Vec<u8>>,
}

fn parse_row(line: &str) -> Result<Row, String> {
    let value: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("bad JSON '{line}': {e}"))?;
    let field = |name: &str| value[name].as_str().ok_or_else(|| format!("no {name} in '{line}'"));
    let payload = text_or_hex(&value, "payload")?.ok_or_else(|| format!("no payload in '{line}'"))?;
    Ok(Row {
        journal_id: field("journal_id")?.to_string(),
        position: value["position"].as_i64().ok_or_else(|| format!("no position in '{line}'"))?,
        priority: field("priority")?.to_string(),
        payload,
        key: text_or_hex(&value, "key")?,
    })
}

/// The bytes of field `name` (UTF-8 text) or `name_hex` (hex), if present.
fn text_or_hex(value: &serde_json::Value, name: &str) -> Result<Option<Vec<u8>>, String> {
    match (value[name].as_str(), value[format!("{name}_hex")].as_str()) {
        (Some(text), _) => Ok(Some(text.as_bytes().to_vec())),
        (None, Some(hex)) => from_hex(hex).map(Some).ok_or_else(|| format!("bad {name}_hex in '{value}'")),
        (None, None) => Ok(None),
    }
}

fn from_hex(hex: &str) -> Option<Vec<u8>> {
    let digits = hex.as_bytes();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    let nibble = |d: u8| (d as char).to_digit(16);
    digits.chunks(2).map(|pair| Some((nibble(pair[0])? * 16 + nibble(pair[1])?) as u8)).collect()
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

fn create_tables(client: &mut Client, table: &str) -> Result<(), postgres::Error> {
    client.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {table} (journal_id TEXT NOT NULL, position BIGINT NOT NULL, \
             priority TEXT NOT NULL, payload BYTEA NOT NULL, PRIMARY KEY (journal_id, position));
         CREATE TABLE IF NOT EXISTS {table}_dead_letter (journal_id TEXT NOT NULL, position BIGINT NOT NULL, \
             priority TEXT NOT NULL, payload BYTEA NOT NULL, error TEXT NOT NULL, \
             failed_at TIMESTAMPTZ NOT NULL DEFAULT now(), PRIMARY KEY (journal_id, position));
         ALTER TABLE {table} ADD COLUMN IF NOT EXISTS key BYTEA;
         ALTER TABLE {table}_dead_letter ADD COLUMN IF NOT EXISTS key BYTEA;
         CREATE UNIQUE INDEX IF NOT EXISTS {table}_key ON {table} (key);
         CREATE TEMP TABLE staging (LIKE {table}) ON COMMIT DELETE ROWS;"
    ))
}

/// Whether the database refused the record itself (a data or constraint
/// error), rather than failed: retrying such a record can never succeed.
fn refused(error: &postgres::Error) -> bool {
    error.code().is_some_and(|state| state.code().starts_with("22") || state.code().starts_with("23"))
}

/// The upsert of keyed rows: a row is replaced only by a newer record of its
/// key (`$rows` is `VALUES (...)` or a `SELECT` of one row per key).
fn upsert(table: &str, rows: &str) -> String {
    format!(
        "INSERT INTO {table} AS t (journal_id, position, priority, payload, key) {rows} \
         ON CONFLICT (key) DO UPDATE SET journal_id = excluded.journal_id, position = excluded.position, \
         priority = excluded.priority, payload = excluded.payload WHERE excluded.position > t.position"
    )
}

/// The whole batch in one transaction: COPY into the staging table, then
/// one INSERT ... SELECT for the unkeyed rows and one upsert of the newest
/// row of each key.
fn insert_batch(client: &mut Client, table: &str, rows: &[Row]) -> Result<(), postgres::Error> {
    let mut transaction = client.transaction()?;
    let copy = transaction.copy_in("COPY staging (journal_id, position, priority, payload, key) FROM STDIN BINARY")?;
    let mut writer = BinaryCopyInWriter::new(copy, &[Type::TEXT, Type::INT8, Type::TEXT, Type::BYTEA, Type::BYTEA]);
    for row in rows {
        writer.write(&[&row.journal_id, &row.position, &row.priority, &row.payload, &row.key])?;
    }
    writer.finish()?;
    let columns = "journal_id, position, priority, payload, key";
    transaction.batch_execute(&format!(
        "INSERT INTO {table} ({columns}) SELECT {columns} FROM staging WHERE key IS NULL ON CONFLICT DO NOTHING;
         {}",
        upsert(
            table,
            &format!(
                "SELECT DISTINCT ON (key) {columns} FROM staging WHERE key IS NOT NULL ORDER BY key, position DESC"
            )
        )
    ))?;
    transaction.commit()
}

/// Record by record, each refused one into the dead-letter table; returns
/// how many were dead-lettered.
fn insert_one_by_one(client: &mut Client, table: &str, rows: &[Row]) -> Result<usize, postgres::Error> {
    let mut transaction = client.transaction()?;
    let mut dead = 0;
    for row in rows {
        if let Err(error) = insert_row(&mut transaction, table, row) {
            if !refused(&error) {
                return Err(error);
            }
            eprintln!("pg_sink: record {} of journal {} dead-lettered: {error}", row.position, row.journal_id);
            transaction.execute(
                &format!(
                    "INSERT INTO {table}_dead_letter (journal_id, position, priority, payload, error, key) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING"
                ),
                &[&row.journal_id, &row.position, &row.priority, &row.payload, &error.to_string(), &row.key],
            )?;
            dead += 1;
        }
    }
    transaction.commit()?;
    Ok(dead)
}

/// One row under a savepoint, so a refusal does not abort the transaction.
fn insert_row(transaction: &mut Transaction<'_>, table: &str, row: &Row) -> Result<(), postgres::Error> {
    let mut savepoint = transaction.savepoint("row")?;
    let statement = match row.key {
        None => format!(
            "INSERT INTO {table} (journal_id, position, priority, payload, key) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT DO NOTHING"
        ),
        Some(_) => upsert(table, "VALUES ($1, $2, $3, $4, $5)"),
    };
    savepoint.execute(&statement, &[&row.journal_id, &row.position, &row.priority, &row.payload, &row.key])?;
    savepoint.commit()
}

/// Writes `rows`; returns how many were dead-lettered.
fn write(client: &mut Client, table: &str, rows: &[Row]) -> Result<usize, String> {
    match insert_batch(client, table, rows) {
        Ok(()) => Ok(0),
        Err(error) if refused(&error) => insert_one_by_one(client, table, rows).map_err(|e| format!("insert: {e}")),
        Err(error) => Err(format!("insert: {error}")),
    }
}

fn run() -> Result<(), String> {
    let args = parse_args()?;
    let mut client = Client::connect(&args.url, NoTls).map_err(|e| format!("connect: {e}"))?;
    create_tables(&mut client, &args.table).map_err(|e| format!("create tables: {e}"))?;
    let lines = stdin_lines();
    let mut stdout = std::io::stdout().lock();
    let mut rows = Vec::with_capacity(args.batch.min(10_000));
    let mut dead_letters = 0;
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
            dead_letters += write(&mut client, &args.table, &rows)?;
            writeln!(stdout, "{}", rows.len()).and_then(|()| stdout.flush()).map_err(|e| format!("ack: {e}"))?;
            rows.clear();
        }
        if ended {
            if dead_letters > 0 {
                eprintln!("pg_sink: {dead_letters} records dead-lettered into {}_dead_letter", args.table);
            }
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

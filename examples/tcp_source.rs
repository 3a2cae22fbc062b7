//! A TCP source on tokio: lines from sockets into a journal with
//! `append_async`, and an async consumer with `poll_async`, all on one
//! thread (a current-thread runtime: nothing may block it).
//!
//! Back-pressure reaches the socket: while the journal is back-pressured,
//! `append_async` waits, so the connection's task stops reading; the
//! kernel's socket buffers fill and the sender's writes stall (TCP flow
//! control) until the consumer has caught up and retention freed room.
//!
//! `cargo run --release --example tcp_source` runs a demo: a built-in client
//! sends 20,000 lines of 1 KiB into a journal of 1 MiB while the consumer
//! reads slowly, and the source reports how long the client's writes were
//! held back. `cargo run --release --example tcp_source -- 127.0.0.1:9000`
//! serves that address instead (try `yes | nc 127.0.0.1 9000`).

use std::error::Error;
use std::rc::Rc;
use std::time::{Duration, Instant};

use backwater::{Config, Journal, Publisher, WhenFull};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const DEMO_LINES: u64 = 20_000;

fn main() -> Result<(), Box<dyn Error>> {
    let listen = std::env::args().nth(1);
    let dir = tempfile::tempdir()?;
    // A small budget, so that the demo reaches back-pressure at once.
    let config =
        Config::default().segment_size(64 << 10).max_disk_bytes(1 << 20).min_free_disk(0).when_full(WhenFull::Block);
    let journal = Rc::new(Journal::open(dir.path(), config)?);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        let listener = TcpListener::bind(listen.as_deref().unwrap_or("127.0.0.1:0")).await?;
        let address = listener.local_addr()?;
        println!("source listening on {address}, journal in {}", dir.path().display());
        tokio::task::spawn_local(accept(listener, journal.publisher()));
        let consumer = tokio::task::spawn_local(consume(Rc::clone(&journal), listen.is_none()));
        if listen.is_some() {
            consumer.await??;
            return Ok(());
        }
        let client = tokio::task::spawn_local(send(address));
        let (held_back, sent) = client.await??;
        let read = consumer.await??;
        let stats = journal.stats();
        println!("client: {sent} lines sent; its writes were held back {held_back:?} in all");
        println!("consumer: {read} lines read; appends that waited under back-pressure: {}", stats.back_pressured);
        Ok::<_, Box<dyn Error>>(())
    })
}

/// Accepts connections; each gets a task that appends its lines.
async fn accept(listener: TcpListener, publisher: Publisher) -> std::io::Result<()> {
    loop {
        let (stream, peer) = listener.accept().await?;
        let publisher = publisher.clone();
        tokio::task::spawn_local(async move {
            if let Err(error) = source(stream, &publisher).await {
                eprintln!("{peer}: {error}");
            }
        });
    }
}

/// Lines from one socket into the journal. The next line is read only once
/// the last one is appended: back-pressure stops the reading.
async fn source(stream: TcpStream, publisher: &Publisher) -> Result<(), Box<dyn Error>> {
    let mut lines = BufReader::new(stream).lines();
    while let Some(line) = lines.next_line().await? {
        publisher.append_async(line.as_bytes()).await?;
    }
    Ok(())
}

/// Reads records as they come, slowly (a sink that takes 1 ms per batch of
/// 64); commits after each batch so that retention can free room. In the
/// demo, stops after the client's last line.
async fn consume(journal: Rc<Journal>, demo: bool) -> backwater::Result<u64> {
    let mut consumer = journal.consumer("sink")?;
    let mut read = 0;
    while !demo || read < DEMO_LINES {
        read += consumer.poll_async(|_record| {}, 64).await? as u64;
        consumer.commit()?;
        tokio::time::sleep(Duration::from_millis(1)).await;
        if !demo && read.is_multiple_of(10_000) {
            println!("consumer: {read} lines");
        }
    }
    Ok(read)
}

/// The demo's client: writes the lines, timing how long each write waited.
async fn send(address: std::net::SocketAddr) -> std::io::Result<(Duration, u64)> {
    let mut stream = TcpStream::connect(address).await?;
    let line = format!("{}\n", "x".repeat(1023));
    let mut held_back = Duration::ZERO;
    for _ in 0..DEMO_LINES {
        let started = Instant::now();
        stream.write_all(line.as_bytes()).await?;
        held_back += started.elapsed();
    }
    stream.shutdown().await?;
    Ok((held_back, DEMO_LINES))
}

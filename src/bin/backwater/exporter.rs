//! `backwater exporter`: serves the metrics of one or more journals at
//! `/metrics` for Prometheus to scrape.
//!
//! Every scrape opens each journal anew, read-only: a journal that is missing
//! or damaged is `backwater_up 0` (and said once on stderr, as is its
//! recovery) while the others are served as usual; one that appears later is
//! picked up. Requests are answered one at a time, as Prometheus sends them.

use std::collections::HashMap;
use std::io::Cursor;

use tiny_http::{Header, Method, Request, Response, Server};

use crate::cli::ExporterArgs;
use crate::metrics::Scrape;
use crate::{EXIT_FINDING, Failure, Outcome};

type Reply = Response<Cursor<Vec<u8>>>;

pub fn run(args: ExporterArgs) -> Outcome {
    let server = Server::http(args.listen)
        .map_err(|e| Failure::new(EXIT_FINDING, format!("cannot listen on {}: {e}", args.listen)))?;
    let address = server.server_addr().to_ip().unwrap_or(args.listen);
    eprintln!("backwater exporter: serving {} journal(s) at http://{address}/metrics", args.dirs.len());
    let mut health = Health::default();
    health.note(&Scrape::of(&args.dirs));
    for request in server.incoming_requests() {
        let reply = answer(&request, &args, &mut health);
        if let Err(e) = request.respond(reply) {
            // The scraper hung up (a timeout, say); the next scrape is answered as usual.
            eprintln!("backwater exporter: answering a request: {e}");
        }
    }
    Ok(())
}

/// `/metrics` for GET and HEAD; 405 for other methods there, 404 elsewhere.
fn answer(request: &Request, args: &ExporterArgs, health: &mut Health) -> Reply {
    let path = request.url().split('?').next().unwrap_or_default();
    if path != "/metrics" {
        return text(404, format!("no such page: {path} (the metrics are at /metrics)\n"));
    }
    if !matches!(request.method(), Method::Get | Method::Head) {
        return with_header(text(405, "use GET or HEAD\n".into()), "Allow", "GET, HEAD");
    }
    let scrape = Scrape::of(&args.dirs);
    health.note(&scrape);
    with_header(Response::from_data(scrape.exposition()), "Content-Type", "text/plain; version=0.0.4; charset=utf-8")
}

fn text(status: u16, body: String) -> Reply {
    with_header(Response::from_string(body).with_status_code(status), "Content-Type", "text/plain; charset=utf-8")
}

/// `reply` with a header (the names and values, constants of this file, are valid ASCII).
fn with_header(reply: Reply, name: &str, value: &str) -> Reply {
    match Header::from_bytes(name, value) {
        Ok(header) => reply.with_header(header),
        Err(()) => reply,
    }
}

/// Why each journal that is down could not be read, to say so on stderr
/// only when that changes, not at every scrape.
#[derive(Default)]
struct Health {
    down: HashMap<String, String>,
}

impl Health {
    fn note(&mut self, scrape: &Scrape) {
        let now_down: HashMap<String, String> =
            scrape.failures().map(|(journal, failure)| (journal.to_string(), failure.message.clone())).collect();
        for (journal, why) in &now_down {
            if self.down.get(journal) != Some(why) {
                eprintln!("backwater exporter: {journal} is down (backwater_up 0): {why}");
            }
        }
        for journal in self.down.keys().filter(|journal| !now_down.contains_key(*journal)) {
            eprintln!("backwater exporter: {journal} can be read again (backwater_up 1)");
        }
        self.down = now_down;
    }
}

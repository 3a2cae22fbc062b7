//! Realistic application log records for the compression figures and tests:
//! one JSON object per record, about 300 bytes, with the variety real logs
//! have. Deterministic (a SplitMix64 seed), no dependencies.
//!
//! Each line has: an ISO-8601 timestamp in ms that moves forward by a
//! random 0-3 ms; a level (INFO 70 %, DEBUG 15 %, WARN 10 %, ERROR 5 %);
//! a host (`che-07.eu-west-1`: service, number, one of 4 regions); one of 12 services; an HTTP
//! method and a path from 16 templates with numeric ids up to 10^7 and some
//! UUIDs; a status drawn like real traffic (mostly 200, some 201/204/301/
//! 304/400/401/403/404/429/500/502/503); latency in ms (log-normal-ish,
//! 0.1-9000), response bytes; one of 14 user agents; the client IP (random
//! /32 in a few /8s); a request id (32 random hex digits: incompressible);
//! a message from 20 templates with numbers in it. About 330 bytes.
//! The random ids, IPs, numbers and timings are what keep zstd from doing
//! much better than it would on production logs.

/// SplitMix64: small and good enough for test data.
pub struct LogRng(pub u64);

impl LogRng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

const SERVICES: &[&str] = &[
    "checkout",
    "catalog",
    "auth",
    "payments",
    "search",
    "inventory",
    "shipping",
    "gateway",
    "accounts",
    "recommendations",
    "notifications",
    "reporting",
];
const REGIONS: &[&str] = &["eu-west-1", "eu-central-1", "us-east-1", "us-west-2"];
const PATHS: &[&str] = &[
    "/api/v2/users/{id}",
    "/api/v2/users/{id}/orders",
    "/api/v2/orders/{uuid}",
    "/api/v2/orders/{uuid}/items",
    "/api/v1/catalog/products/{id}",
    "/api/v1/catalog/search",
    "/api/v2/cart/{uuid}",
    "/api/v2/cart/{uuid}/checkout",
    "/api/v1/auth/token",
    "/api/v1/auth/refresh",
    "/healthz",
    "/metrics",
    "/api/v2/payments/{uuid}/capture",
    "/api/v1/inventory/{id}/reserve",
    "/static/js/app.{id}.js",
    "/api/v2/shipping/quotes",
];
const METHODS: &[&str] = &["GET", "GET", "GET", "GET", "POST", "POST", "PUT", "DELETE", "PATCH"];
const AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.6478.71 Mobile",
    "curl/8.5.0",
    "python-requests/2.32.3",
    "Go-http-client/2.0",
    "okhttp/4.12.0",
    "PostmanRuntime/7.39.0",
    "Prometheus/2.53.0",
    "kube-probe/1.30",
    "Apache-HttpClient/4.5.14 (Java/17.0.11)",
    "axios/1.7.2",
];
const MESSAGES: &[&str] = &[
    "request completed",
    "request completed",
    "request completed",
    "cache miss for key user:{n}",
    "retrying upstream call (attempt {n})",
    "slow query: {n} rows scanned",
    "token refreshed for session",
    "rate limit close: {n} requests in window",
    "order {n} moved to state PAID",
    "inventory reserved: {n} units",
    "connection pool at {n}% capacity",
    "upstream returned an error, falling back",
    "payment authorised",
    "validation failed: field 'email' is required",
    "user {n} logged in",
    "circuit breaker half-open for payments",
    "batch of {n} events flushed",
    "feature flag evaluated: new-checkout=true",
    "timeout after {n} ms waiting for lock",
    "message published to queue orders.created",
];

/// A generator of log lines; `line` appends the next one to a buffer.
pub struct LogLines {
    rng: LogRng,
    ms: u64,
}

impl LogLines {
    pub fn new(seed: u64) -> LogLines {
        // 2026-11-29T08:00:00.000Z
        LogLines { rng: LogRng(seed), ms: 1_795_939_200_000 }
    }

    /// Replaces `out` with the next line (no newline).
    pub fn line(&mut self, out: &mut Vec<u8>) {
        use std::io::Write;
        out.clear();
        let r = &mut self.rng;
        self.ms += r.below(4);
        let level = match r.below(100) {
            0..70 => "INFO",
            70..85 => "DEBUG",
            85..95 => "WARN",
            _ => "ERROR",
        };
        let service = r.pick(SERVICES);
        let host = format!("{}-{:02}.{}", &service[..3.min(service.len())], r.below(12), r.pick(REGIONS));
        let method = r.pick(METHODS);
        let mut path = r.pick(PATHS).replace("{id}", &r.below(10_000_000).to_string());
        if path.contains("{uuid}") {
            let uuid = format!(
                "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
                r.next() as u32,
                r.next() as u16,
                r.below(0x1000),
                0x8000 | r.below(0x4000),
                r.next() & 0xFFFF_FFFF_FFFF
            );
            path = path.replace("{uuid}", &uuid);
        }
        let status = match r.below(1000) {
            0..780 => 200,
            780..830 => 201,
            830..850 => 204,
            850..860 => 301,
            860..900 => 304,
            900..930 => 400,
            930..940 => 401,
            940..945 => 403,
            945..975 => 404,
            975..980 => 429,
            980..992 => 500,
            992..997 => 502,
            _ => 503,
        };
        let latency = (r.below(1000) as f64 / 100.0).exp().min(9000.0) * (0.1 + r.below(100) as f64 / 100.0);
        let bytes = if status == 204 || status == 304 { 0 } else { 120 + r.below(48_000) };
        let agent = r.pick(AGENTS);
        let ip =
            format!("{}.{}.{}.{}", [10, 172, 81, 185][r.below(4) as usize], r.below(256), r.below(256), r.below(256));
        let request_id = format!("{:016x}{:016x}", r.next(), r.next());
        let message = r.pick(MESSAGES).replace("{n}", &r.below(100_000).to_string());
        let secs = self.ms / 1000;
        let (day_secs, ms) = (secs % 86_400, self.ms % 1000);
        let _ = write!(
            out,
            r#"{{"ts":"2026-11-29T{:02}:{:02}:{:02}.{ms:03}Z","level":"{level}","host":"{host}","service":"{service}","method":"{method}","path":"{path}","status":{status},"ms":{latency:.1},"bytes":{bytes},"ip":"{ip}","ua":"{agent}","req":"{request_id}","msg":"{message}"}}"#,
            day_secs / 3600,
            day_secs / 60 % 60,
            day_secs % 60,
        );
    }
}

//! `backwater create` and `backwater config`.

use backwater::{Config, Flush, Journal, Limits, WhenFull};

use crate::Outcome;
use crate::cli::{ConfigArgs, CreateArgs, LimitArgs};
use crate::output::{human_bytes, open_existing, open_read_only, require_new_or_empty};

pub fn create(args: CreateArgs) -> Outcome {
    require_new_or_empty(&args.dir, "a new journal")?;
    let config = apply(Config::default().segment_size(args.segment_size), &args.limits);
    let journal = Journal::open(&args.dir, config)?;
    say!("created journal {}", args.dir.display());
    print_limits(&journal);
    Ok(())
}

pub fn config(args: ConfigArgs) -> Outcome {
    // Showing writes nothing, so it works on a read-only journal too.
    let journal =
        if args.limits == LimitArgs::default() { open_read_only(&args.dir)? } else { open_existing(&args.dir)? };
    let limits = merge(journal.limits(), &args.limits);
    if limits != journal.limits() {
        journal.set_limits(limits)?;
    }
    if args.json {
        say!("{}", limits_json(&journal));
    } else {
        print_limits(&journal);
    }
    Ok(())
}

fn apply(mut config: Config, args: &LimitArgs) -> Config {
    let limits = merge(Limits::default(), args);
    if let Some(bytes) = args.max_disk {
        config = config.max_disk_bytes(bytes);
    }
    if let Some(bytes) = args.min_free {
        config = config.min_free_disk(bytes);
    }
    if args.shed.is_some() || args.high.is_some() || args.resume.is_some() {
        let marks = limits.watermarks;
        config = config.watermarks(marks.shed, marks.high, marks.resume);
    }
    if let Some(policy) = args.when_full {
        config = config.when_full(policy.into());
    }
    if let Some(flush) = args.flush {
        config = config.flush(flush);
    }
    if let Some(bytes) = args.retain_bytes {
        config = config.retain_bytes(bytes);
    }
    if let Some(age) = args.retain_for {
        config = config.retain_for(age);
    }
    config
}

fn merge(mut limits: Limits, args: &LimitArgs) -> Limits {
    limits.max_disk_bytes = args.max_disk.unwrap_or(limits.max_disk_bytes);
    limits.min_free_disk = args.min_free.unwrap_or(limits.min_free_disk);
    limits.watermarks.shed = args.shed.unwrap_or(limits.watermarks.shed);
    limits.watermarks.high = args.high.unwrap_or(limits.watermarks.high);
    limits.watermarks.resume = args.resume.unwrap_or(limits.watermarks.resume);
    limits.when_full = args.when_full.map(Into::into).unwrap_or(limits.when_full);
    limits.flush = args.flush.unwrap_or(limits.flush);
    limits.retain_bytes = args.retain_bytes.unwrap_or(limits.retain_bytes);
    limits.retain_for = args.retain_for.unwrap_or(limits.retain_for);
    limits
}

pub fn when_full_name(policy: WhenFull) -> &'static str {
    match policy {
        WhenFull::Block => "block",
        WhenFull::DropOldest => "drop-oldest",
        WhenFull::EvictSlowest => "evict-slowest",
    }
}

pub fn flush_name(flush: Flush) -> String {
    match flush {
        Flush::Never => "never".into(),
        Flush::Always => "always".into(),
        Flush::Interval(every) => format!("interval:{}", humantime::format_duration(every)),
    }
}

fn budget(bytes: u64) -> String {
    if bytes == u64::MAX { "unlimited".into() } else { human_bytes(bytes) }
}

fn print_limits(journal: &Journal) {
    let limits = journal.limits();
    let marks = limits.watermarks;
    say!("  segment size   {}", human_bytes(journal.segment_size()));
    say!("  max disk       {}", budget(limits.max_disk_bytes));
    say!("  min free disk  {}", human_bytes(limits.min_free_disk));
    say!("  watermarks     shed {:.2}  high {:.2}  resume {:.2}", marks.shed, marks.high, marks.resume);
    say!("  when full      {}", when_full_name(limits.when_full));
    say!("  flush          {}", flush_name(limits.flush));
    say!("  replay window  {} / {}", human_bytes(limits.retain_bytes), humantime::format_duration(limits.retain_for));
}

pub fn limits_json(journal: &Journal) -> serde_json::Value {
    let limits = journal.limits();
    serde_json::json!({
        "segment_size": journal.segment_size(),
        "max_disk_bytes": (limits.max_disk_bytes != u64::MAX).then_some(limits.max_disk_bytes),
        "min_free_disk": limits.min_free_disk,
        "shed": limits.watermarks.shed,
        "high": limits.watermarks.high,
        "resume": limits.watermarks.resume,
        "when_full": when_full_name(limits.when_full),
        "flush": flush_name(limits.flush),
        "retain_bytes": limits.retain_bytes,
        "retain_for_secs": limits.retain_for.as_secs_f64(),
    })
}

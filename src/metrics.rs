//! Metrics for monitoring: a journal's figures at one moment ([`Figures`]),
//! and the Prometheus text exposition format (version 0.0.4) they are served
//! in.
//!
//! `backwater info`, `backwater metrics` and `backwater exporter` all show
//! what [`Journal::figures`] gathers; an embedder serves
//! [`Journal::write_metrics`] (or [`write_exposition`], for several
//! journals) from its own HTTP endpoint. Gathering only reads, so a
//! read-only handle ([`Journal::open_read_only`]) is enough, in any process.
//!
//! Owns nothing; the names, types and help texts of the metric families are
//! defined here, once (the README has them as a table).

use std::io::{self, Write};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::{CursorInfo, Journal, Level, Limits, Stats};

/// One journal's figures, gathered at one moment.
#[derive(Clone, Debug)]
pub struct Figures {
    /// Counters, fill and level ([`Journal::stats`]).
    pub stats: Stats,
    /// Segment files in the directory.
    pub segments: u64,
    /// The persisted limits in force ([`Journal::limits`]).
    pub limits: Limits,
    /// Every durable cursor, by name.
    pub cursors: Vec<CursorFigures>,
}

/// One durable cursor and how long its oldest unread record has waited.
#[derive(Clone, Debug)]
pub struct CursorFigures {
    /// The cursor's name, committed position and lag in bytes
    /// ([`Journal::cursors`]).
    pub cursor: CursorInfo,
    /// The timestamp (ns since the epoch) of the oldest record the cursor has
    /// yet to read; `None` when it is caught up.
    pub oldest_unread_ns: Option<u64>,
    /// How long that record had waited when the figures were gathered.
    pub waiting: Option<Duration>,
}

impl Journal {
    /// Counters, levels, disk use and every cursor with its lag in bytes and
    /// in time, gathered at once (reads the metadata, lists the directory,
    /// and reads one frame header per cursor).
    ///
    /// # Errors
    /// Those of [`Journal::segment_indexes`] and [`Journal::cursors`]
    /// ([`Error::Io`] when the directory or a cursor file cannot be read).
    pub fn figures(&self) -> Result<Figures> {
        let stats = self.stats();
        let segments = self.segment_indexes()?.len() as u64;
        let now = crate::frame::now_ns();
        let cursors = self.cursors()?.into_iter().map(|cursor| {
            let oldest_unread_ns = self.first_record_timestamp(cursor.position);
            let waiting = oldest_unread_ns.map(|timestamp| Duration::from_nanos(now.saturating_sub(timestamp)));
            CursorFigures { cursor, oldest_unread_ns, waiting }
        });
        Ok(Figures { stats, segments, limits: self.limits(), cursors: cursors.collect() })
    }

    /// Writes this journal's metrics in the Prometheus text exposition
    /// format, labelled `journal="<its directory>"`: what `backwater
    /// metrics DIR` prints. Serve it as `text/plain; version=0.0.4`.
    ///
    /// ```
    /// use backwater::{Config, Journal};
    ///
    /// let dir = tempfile::tempdir()?;
    /// let journal = Journal::open(dir.path(), Config::default().segment_size(1 << 20))?;
    /// journal.publisher().append(b"record")?;
    /// let mut consumer = journal.consumer("indexer")?;
    /// consumer.commit()?;
    ///
    /// let mut text = Vec::new();
    /// journal.write_metrics(&mut text)?;
    /// let text = String::from_utf8(text)?;
    /// assert!(text.contains("# TYPE backwater_appended_records_total counter"));
    /// assert!(text.contains("backwater_appended_records_total{journal=\""));
    /// assert!(text.contains("backwater_cursor_lag_seconds{journal=\""));
    /// assert!(text.contains("\",cursor=\"indexer\"} "));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// Those of [`Journal::figures`]; [`Error::Io`] when writing to `out`
    /// fails.
    pub fn write_metrics(&self, out: &mut impl Write) -> Result<()> {
        let figures = self.figures()?;
        let label = self.dir().to_string_lossy();
        write_exposition(out, &[JournalMetrics { journal: &label, figures: Some(&figures) }])
            .map_err(|e| Error::io(self.dir(), "write metrics for", e))
    }
}

/// One journal in an exposition: its `journal` label and its figures, or
/// `None` when it could not be read (it is then `backwater_up 0`).
#[derive(Clone, Copy, Debug)]
pub struct JournalMetrics<'a> {
    /// The value of its `journal` label (its directory, say).
    pub journal: &'a str,
    /// Its figures ([`Journal::figures`]), or `None` for a journal that could
    /// not be read.
    pub figures: Option<&'a Figures>,
}

/// Writes the exposition of several journals: each metric family once, with
/// its `# HELP` and `# TYPE`, then one sample per journal (per cursor for
/// the `backwater_cursor_*` families). A family without samples is left out.
///
/// # Errors
/// The first error writing to `out`.
pub fn write_exposition(out: &mut impl Write, journals: &[JournalMetrics<'_>]) -> io::Result<()> {
    let up = journals
        .iter()
        .map(|j| (Labels { journal: j.journal, cursor: None }, Value::Count(j.figures.is_some() as u64)));
    write_family(out, &UP, up)?;
    for family in JOURNAL_FAMILIES {
        let samples = journals.iter().filter_map(|j| {
            let figures = j.figures?;
            Some((Labels { journal: j.journal, cursor: None }, (family.value)(figures)))
        });
        write_family(out, family, samples)?;
    }
    for family in CURSOR_FAMILIES {
        let samples = journals.iter().flat_map(|j| {
            let cursors = j.figures.map(|figures| figures.cursors.as_slice()).unwrap_or_default();
            cursors.iter().map(|c| (Labels { journal: j.journal, cursor: Some(&c.cursor.name) }, (family.value)(c)))
        });
        write_family(out, family, samples)?;
    }
    Ok(())
}

/// The names of every metric family, in the order they are written.
pub fn metric_names() -> impl Iterator<Item = &'static str> {
    std::iter::once(UP.name)
        .chain(JOURNAL_FAMILIES.iter().map(|f| f.name))
        .chain(CURSOR_FAMILIES.iter().map(|f| f.name))
}

#[derive(Clone, Copy)]
enum Kind {
    Gauge,
    Counter,
}

/// A metric family: its samples are `value` of each journal (or cursor).
struct Family<T> {
    name: &'static str,
    kind: Kind,
    help: &'static str,
    value: fn(&T) -> Value,
}

/// A sample's value: integers are written exactly, reals as Prometheus reads them.
#[derive(Clone, Copy)]
enum Value {
    Count(u64),
    Real(f64),
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Value::Count(count) => write!(f, "{count}"),
            Value::Real(real) if real.is_nan() => f.write_str("NaN"),
            Value::Real(real) if real.is_infinite() => f.write_str(if real > 0.0 { "+Inf" } else { "-Inf" }),
            Value::Real(real) => write!(f, "{real}"),
        }
    }
}

const UP: Family<()> = Family {
    name: "backwater_up",
    kind: Kind::Gauge,
    help: "1 if the journal could be read, 0 if it is missing or damaged (the exporter says why on stderr)",
    value: |()| Value::Count(1),
};

const JOURNAL_FAMILIES: &[Family<Figures>] = &[
    Family {
        name: "backwater_disk_bytes",
        kind: Kind::Gauge,
        help: "Bytes held by the journal's segment files on disk (retained, prepared ahead, spare and retired)",
        value: |f| Value::Count(f.stats.disk_bytes),
    },
    Family {
        name: "backwater_retired_bytes",
        kind: Kind::Gauge,
        help: "Of the disk bytes, deleted segments a reader still maps (not counted against the budget)",
        value: |f| Value::Count(f.stats.retired_bytes),
    },
    Family {
        name: "backwater_capacity_bytes",
        kind: Kind::Gauge,
        help: "The disk budget, capped so that the filesystem keeps its minimum free space",
        value: |f| Value::Count(f.stats.capacity),
    },
    Family {
        name: "backwater_max_disk_bytes",
        kind: Kind::Gauge,
        help: "The configured disk budget (+Inf when unlimited)",
        value: |f| match f.limits.max_disk_bytes {
            u64::MAX => Value::Real(f64::INFINITY),
            budget => Value::Count(budget),
        },
    },
    Family {
        name: "backwater_fill_ratio",
        kind: Kind::Gauge,
        help: "Bytes from the oldest segment's start to the tail over the capacity: what the watermarks compare",
        value: |f| Value::Real(f.stats.fill),
    },
    Family {
        name: "backwater_level",
        kind: Kind::Gauge,
        help: "0 normal, 1 shedding low-priority records, 2 back-pressured",
        value: |f| Value::Count(level_number(f.stats.level)),
    },
    Family {
        name: "backwater_segments",
        kind: Kind::Gauge,
        help: "Segment files in the journal's directory",
        value: |f| Value::Count(f.segments),
    },
    Family {
        name: "backwater_first_position",
        kind: Kind::Gauge,
        help: "The oldest retained position (bytes into the journal's stream)",
        value: |f| Value::Count(f.stats.first_position),
    },
    Family {
        name: "backwater_tail_position",
        kind: Kind::Gauge,
        help: "The position the next record gets (bytes into the journal's stream)",
        value: |f| Value::Count(f.stats.tail_position),
    },
    Family {
        name: "backwater_appended_records_total",
        kind: Kind::Counter,
        help: "Records committed",
        value: |f| Value::Count(f.stats.appended),
    },
    Family {
        name: "backwater_shed_records_total",
        kind: Kind::Counter,
        help: "Low-priority records dropped above the shed watermark",
        value: |f| Value::Count(f.stats.dropped_low),
    },
    Family {
        name: "backwater_back_pressured_total",
        kind: Kind::Counter,
        help: "Offers refused with back-pressure, plus appends that had to wait",
        value: |f| Value::Count(f.stats.back_pressured),
    },
    Family {
        name: "backwater_evictions_total",
        kind: Kind::Counter,
        help: "Cursors detached by the evict-slowest policy",
        value: |f| Value::Count(f.stats.evictions),
    },
    Family {
        name: "backwater_lost_bytes_total",
        kind: Kind::Counter,
        help: "Unread bytes deleted by drop-oldest or evict-slowest, or cut by recovery",
        value: |f| Value::Count(f.stats.lost_bytes),
    },
    Family {
        name: "backwater_unblocked_total",
        kind: Kind::Counter,
        help: "Claims abandoned by crashed publishers, turned into padding",
        value: |f| Value::Count(f.stats.unblocked),
    },
    Family {
        name: "backwater_compressed_segments",
        kind: Kind::Gauge,
        help: "Segments held compressed now",
        value: |f| Value::Count(f.stats.compression.segments),
    },
    Family {
        name: "backwater_compression_saved_bytes",
        kind: Kind::Gauge,
        help: "Disk the compressed segments spare now: their segment bytes minus their files' bytes",
        value: |f| Value::Count(f.stats.compression.saved_bytes()),
    },
    Family {
        name: "backwater_compressed_segments_total",
        kind: Kind::Counter,
        help: "Segments compressed since the journal was created",
        value: |f| Value::Count(f.stats.compression.compressed_total),
    },
    Family {
        name: "backwater_compressed_raw_bytes_total",
        kind: Kind::Counter,
        help: "Segment bytes compressed since the journal was created (before compression)",
        value: |f| Value::Count(f.stats.compression.raw_bytes_total),
    },
    Family {
        name: "backwater_compressed_file_bytes_total",
        kind: Kind::Counter,
        help: "Bytes of compressed segment files written since the journal was created (after compression)",
        value: |f| Value::Count(f.stats.compression.file_bytes_total),
    },
];

const CURSOR_FAMILIES: &[Family<CursorFigures>] = &[
    Family {
        name: "backwater_cursor_position",
        kind: Kind::Gauge,
        help: "The cursor's committed position: where its consumer reads next",
        value: |c| Value::Count(c.cursor.position),
    },
    Family {
        name: "backwater_cursor_lag_bytes",
        kind: Kind::Gauge,
        help: "Bytes between the cursor and the tail",
        value: |c| Value::Count(c.cursor.lag_bytes),
    },
    Family {
        name: "backwater_cursor_lag_seconds",
        kind: Kind::Gauge,
        help: "How long the oldest record the cursor has yet to read has waited (0 when caught up)",
        value: |c| Value::Real(c.waiting.unwrap_or_default().as_secs_f64()),
    },
    Family {
        name: "backwater_cursor_evicted",
        kind: Kind::Gauge,
        help: "1 if the evict-slowest policy detached the cursor (its consumer must reattach)",
        value: |c| Value::Count(c.cursor.evicted.is_some() as u64),
    },
];

/// The number `backwater_level` shows for `level`.
fn level_number(level: Level) -> u64 {
    match level {
        Level::Normal => 0,
        Level::Shedding => 1,
        Level::BackPressured => 2,
    }
}

/// A sample's labels.
struct Labels<'a> {
    journal: &'a str,
    cursor: Option<&'a str>,
}

impl std::fmt::Display for Labels<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{{journal=\"{}\"", LabelValue(self.journal))?;
        if let Some(cursor) = self.cursor {
            write!(f, ",cursor=\"{}\"", LabelValue(cursor))?;
        }
        f.write_str("}")
    }
}

/// A label value escaped as the text format wants: `\\`, `\"` and `\n`.
struct LabelValue<'a>(&'a str);

impl std::fmt::Display for LabelValue<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for c in self.0.chars() {
            match c {
                '\\' => f.write_str("\\\\")?,
                '"' => f.write_str("\\\"")?,
                '\n' => f.write_str("\\n")?,
                other => write!(f, "{other}")?,
            }
        }
        Ok(())
    }
}

/// `# HELP`, `# TYPE`, then the samples; nothing when there are none.
fn write_family<'a, T>(
    out: &mut impl Write,
    family: &Family<T>,
    samples: impl Iterator<Item = (Labels<'a>, Value)>,
) -> io::Result<()> {
    let mut samples = samples.peekable();
    if samples.peek().is_none() {
        return Ok(());
    }
    let kind = match family.kind {
        Kind::Gauge => "gauge",
        Kind::Counter => "counter",
    };
    writeln!(out, "# HELP {} {}", family.name, family.help)?;
    writeln!(out, "# TYPE {} {kind}", family.name)?;
    for (labels, value) in samples {
        writeln!(out, "{}{labels} {value}", family.name)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let labels = Labels { journal: "a\\b\"c\nd", cursor: Some("x") };
        assert_eq!(labels.to_string(), r#"{journal="a\\b\"c\nd",cursor="x"}"#);
    }

    #[test]
    fn values_are_written_as_prometheus_reads_them() {
        assert_eq!(Value::Count(u64::MAX).to_string(), "18446744073709551615");
        assert_eq!(Value::Real(f64::INFINITY).to_string(), "+Inf");
        assert_eq!(Value::Real(f64::NAN).to_string(), "NaN");
        assert_eq!(Value::Real(0.25).to_string(), "0.25");
        assert_eq!(Value::Real(1e-7).to_string().parse::<f64>().ok(), Some(1e-7));
    }

    #[test]
    fn a_journal_that_is_down_has_only_up_0() {
        let mut text = Vec::new();
        write_exposition(&mut text, &[JournalMetrics { journal: "/gone", figures: None }]).expect("write to a Vec");
        let text = String::from_utf8_lossy(&text);
        assert_eq!(
            text.lines().filter(|line| !line.starts_with('#')).collect::<Vec<_>>(),
            ["backwater_up{journal=\"/gone\"} 0"]
        );
    }

    #[test]
    fn every_family_is_named_by_prometheus_conventions() {
        for name in metric_names() {
            assert!(name.starts_with("backwater_") && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
        }
        for family in JOURNAL_FAMILIES {
            assert_eq!(matches!(family.kind, Kind::Counter), family.name.ends_with("_total"), "{}", family.name);
        }
    }
}

//! The power-loss model (issue 12): random workloads run against a real
//! journal while `backwater::sync_trace` reports every durability barrier;
//! the model keeps what reached the media (page granularity, directory
//! entries as of their last fsync), and at crash points (each barrier, each
//! operation boundary) builds crash images in which every page and entry
//! not yet durable is independently old or new. Each image is recovered and
//! checked (`check.rs`). See docs/FORMAT.md, "The power-loss model".
//!
//! `POWERLOSS_IMAGES=N` sets how many crash images to check (default 2,400);
//! `POWERLOSS_SEED=S` runs the one workload `S` (its variant follows from
//! the seed); `POWERLOSS_TRACE=1` prints its operations,
//! `POWERLOSS_EXAMPLES=N` N failures of each kind (default 3). Failures print
//! seed, crash point and where a copy of the image is kept.

#[path = "powerloss/check.rs"]
mod check;
mod common;
#[path = "powerloss/findings.rs"]
mod findings;
#[path = "powerloss/media.rs"]
mod media;
#[path = "powerloss/model.rs"]
mod model;
#[path = "powerloss/scripted.rs"]
mod scripted;
#[path = "powerloss/workload.rs"]
mod workload;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use model::{Coverage, Loss};
use workload::{Failure, Workload};

/// The segment size of every journal under test: rotations come often.
const SEGMENT: u64 = 64 << 10;
const DEFAULT_IMAGES: usize = 2400;
const IMAGES_PER_WORKLOAD: usize = 50;
/// The first workload's seed; the others follow.
const SEED_BASE: u64 = 0x5EED_0000;

fn images_wanted() -> usize {
    std::env::var("POWERLOSS_IMAGES").ok().and_then(|n| n.parse().ok()).unwrap_or(DEFAULT_IMAGES)
}

fn seeds(images: usize) -> Vec<u64> {
    if let Some(seed) = std::env::var("POWERLOSS_SEED").ok().and_then(|s| s.parse().ok()) {
        return vec![seed];
    }
    (0..images.div_ceil(IMAGES_PER_WORKLOAD) as u64).map(|n| SEED_BASE + n).collect()
}

#[test]
fn every_crash_image_recovers_with_what_was_promised() {
    run_workloads(Loss::Power, images_wanted());
}

/// The control: the same workloads, crashed by SIGKILL (the page cache
/// survives whole). The journal survives that by design, so every failure
/// here would be the model's or the checker's, not the media's.
#[test]
fn every_sigkill_image_recovers_with_everything() {
    run_workloads(Loss::Kill, images_wanted() / 4);
}

/// Runs workloads until `images` crash images of `loss` were checked; fails
/// with a summary of every failure.
fn run_workloads(loss: Loss, images: usize) {
    let started = Instant::now();
    let (mut coverage, mut failures) = (Coverage::default(), Vec::new());
    for seed in seeds(images) {
        let (c, f) = Workload::start(seed, IMAGES_PER_WORKLOAD, loss).run();
        coverage += c;
        failures.extend(f);
    }
    eprintln!(
        "{loss:?} model: {} crash images from {} crash points in {:.1} s\n{coverage:?}",
        coverage.images,
        coverage.crash_points,
        started.elapsed().as_secs_f64()
    );
    report(&failures);
    let images_failed: BTreeSet<(u64, usize)> = failures.iter().map(|f| (f.seed, f.crash_point)).collect();
    assert!(failures.is_empty(), "{} crash images failed; see the summary above", images_failed.len());
    let one_seed = std::env::var("POWERLOSS_SEED").is_ok();
    assert!(one_seed || coverage.images >= images, "too few images: {}", coverage.images);
    assert!(one_seed || coverage.reserving_appends > 0, "no record went through a ReservingPublisher");
}

/// Prints failures grouped by kind: count, and a few with their seeds.
fn report(failures: &[Failure]) {
    let mut kinds: BTreeMap<&str, Vec<&Failure>> = BTreeMap::new();
    for failure in failures {
        kinds.entry(&failure.problem.kind).or_default().push(failure);
    }
    let examples = std::env::var("POWERLOSS_EXAMPLES").ok().and_then(|n| n.parse().ok()).unwrap_or(3);
    for (kind, all) in kinds {
        let seeds: BTreeSet<u64> = all.iter().map(|f| f.seed).collect();
        eprintln!("\n=== {kind}: {} image(s) in {} workload(s)", all.len(), seeds.len());
        for failure in all.iter().take(examples) {
            eprintln!(
                "  POWERLOSS_SEED={} ({:?}) crash point {} ({}): {}",
                failure.seed, failure.variant, failure.crash_point, failure.what, failure.problem.detail
            );
            if let Some(saved) = &failure.saved {
                eprintln!("    image kept at {}", saved.display());
            }
        }
    }
}

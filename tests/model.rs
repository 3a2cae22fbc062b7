//! A property-based model test: random sequences of append (shared, batched
//! and exclusive), poll, commit and reopen, compared against a `VecDeque` model of what the consumer should see.

mod common;

use std::collections::VecDeque;

use backwater::{Config, Journal};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Append(usize),
    Batch(Vec<usize>),
    /// Records appended one by one through an `ExclusivePublisher`.
    Exclusive(Vec<usize>),
    Poll(usize),
    Commit,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0usize..3000).prop_map(Op::Append),
        1 => proptest::collection::vec(0usize..500, 1..8).prop_map(Op::Batch),
        2 => proptest::collection::vec(0usize..3000, 1..40).prop_map(Op::Exclusive),
        4 => (1usize..50).prop_map(Op::Poll),
        2 => Just(Op::Commit),
        1 => Just(Op::Reopen),
    ]
}

fn open(dir: &std::path::Path) -> (Journal, backwater::Consumer) {
    let journal = Journal::open(dir, Config::default().segment_size(64 << 10).min_free_disk(0)).unwrap();
    let consumer = journal.consumer("model").unwrap();
    (journal, consumer)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn journal_matches_a_queue_model(ops in proptest::collection::vec(op(), 1..120)) {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, mut consumer) = open(dir.path());
        // Records appended but not yet read, and read but not yet committed.
        let mut unread: VecDeque<(u64, Vec<u8>)> = VecDeque::new();
        let mut uncommitted: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut seed = 0u64;
        for op in ops {
            match op {
                Op::Append(len) => {
                    seed += 1;
                    let record = common::payload(seed, len);
                    let position = journal.publisher().append(&record).unwrap();
                    unread.push_back((position, record));
                }
                Op::Batch(lens) => {
                    let records: Vec<Vec<u8>> = lens.iter().map(|&len| { seed += 1; common::payload(seed, len) }).collect();
                    let mut position = journal.publisher().append_batch(&records).unwrap();
                    for record in records {
                        let next = position + backwater::frame::aligned_frame_len(record.len()) as u64;
                        unread.push_back((position, record));
                        position = next;
                    }
                }
                Op::Exclusive(lens) => {
                    let mut publisher = journal.exclusive_publisher().unwrap();
                    for len in lens {
                        seed += 1;
                        let record = common::payload(seed, len);
                        let position = publisher.append(&record).unwrap();
                        unread.push_back((position, record));
                    }
                }
                Op::Poll(limit) => {
                    let mut got = Vec::new();
                    let read = consumer.poll(|r| got.push((r.position(), r.payload().to_vec())), limit).unwrap();
                    prop_assert_eq!(read, got.len());
                    prop_assert_eq!(read, limit.min(unread.len()));
                    for record in got {
                        let expected = unread.pop_front().unwrap();
                        prop_assert_eq!(&record, &expected);
                        uncommitted.push(record);
                    }
                }
                Op::Commit => {
                    consumer.commit().unwrap();
                    uncommitted.clear();
                }
                Op::Reopen => {
                    drop(consumer);
                    drop(journal);
                    (journal, consumer) = open(dir.path());
                    common::redeliver(&mut uncommitted, &mut unread);
                }
            }
        }
        let rest = common::drain(&mut consumer).unwrap();
        prop_assert_eq!(rest, Vec::from(unread));
    }
}

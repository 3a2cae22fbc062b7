//! One writer per durable cursor: a kernel-held lock taken by every writable
//! named consumer, released when it is dropped or its process dies.

use backwater::{Config, Error, Journal};

#[test]
fn a_second_writable_consumer_of_a_cursor_is_refused_until_the_first_goes() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), Config::default().segment_size(1 << 20)).unwrap();
    let other_handle = Journal::open(dir.path(), Config::default()).unwrap();
    let first = journal.consumer("db").unwrap();
    assert!(matches!(other_handle.consumer("db"), Err(Error::CursorInUse(name)) if name == "db"));
    assert!(matches!(journal.existing_consumer("db"), Err(Error::CursorInUse(_))));
    assert!(matches!(journal.delete_cursor("db"), Err(Error::CursorInUse(_))));
    // Readers that cannot commit do not take the lock.
    let read_only = Journal::open_read_only(dir.path()).unwrap();
    assert!(read_only.consumer("db").is_ok());
    drop(first);
    let second = other_handle.consumer("db").unwrap();
    drop(second);
    journal.delete_cursor("db").unwrap();
    assert!(matches!(journal.existing_consumer("db"), Err(Error::NoSuchCursor(_))));
}

#[test]
fn force_delete_removes_a_cursor_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), Config::default().segment_size(1 << 20)).unwrap();
    let _held = journal.consumer("db").unwrap();
    journal.force_delete_cursor("db").unwrap();
    assert!(journal.cursor_names().unwrap().is_empty());
}

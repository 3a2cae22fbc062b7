//! `backwater cursor`: list, set, reset, delete named cursors.

use backwater::Seek;

use crate::cli::{CursorAction, CursorArgs};
use crate::output::{human_bytes, human_time, open_existing, open_read_only};
use crate::{EXIT_FINDING, Failure, Outcome};

pub fn run(args: CursorArgs) -> Outcome {
    match args.action {
        CursorAction::List { json } => {
            let journal = open_read_only(&args.dir)?;
            if json {
                say!("{}", serde_json::Value::from(crate::info::cursors_json(&journal.figures()?.cursors)));
            } else {
                for c in journal.cursors()? {
                    let evicted = if c.evicted.is_some() { "  EVICTED" } else { "" };
                    say!(
                        "{:<20} {:>14}  lag {:>10}  committed {}{evicted}",
                        c.name,
                        c.position,
                        human_bytes(c.lag_bytes),
                        human_time(c.committed_ns)
                    );
                }
            }
            Ok(())
        }
        CursorAction::Set { name, position } => move_cursor(&args.dir, &name, Seek::Position(position)),
        CursorAction::Reset { name, to } => move_cursor(&args.dir, &name, to),
        CursorAction::Delete { name, force } => {
            let journal = open_existing(&args.dir)?;
            let deleted = if force { journal.force_delete_cursor(&name) } else { journal.delete_cursor(&name) };
            match deleted {
                Err(in_use @ backwater::Error::CursorInUse(_)) => Err(Failure::new(
                    EXIT_FINDING,
                    format!(
                        "{in_use} (`cursor delete --force` deletes it anyway; its consumer's commits are then lost)"
                    ),
                )),
                other => {
                    other?;
                    say!("deleted cursor {name}");
                    Ok(())
                }
            }
        }
    }
}

/// Moves (or creates) cursor `name`; the target is checked first, so a
/// failed move creates nothing. A cursor the journal refuses to open (it
/// does not point at a record, or its file is damaged: the refusal advises
/// this command) is replaced.
fn move_cursor(dir: &std::path::Path, name: &str, seek: Seek) -> Outcome {
    let journal = open_existing(dir)?;
    journal.anonymous_consumer().seek(seek)?;
    let mut consumer = match journal.consumer(name) {
        // The journal opened, so a file that is "not a journal's" is the cursor's.
        Err(backwater::Error::Corrupt { .. } | backwater::Error::NotAJournal { .. }) => {
            journal.delete_cursor(name)?;
            journal.consumer(name)?
        }
        opened => opened?,
    };
    if journal.cursors()?.iter().any(|c| c.name == name && c.evicted.is_some()) {
        consumer.reattach()?;
    }
    consumer.seek(seek)?;
    consumer.commit()?;
    say!("cursor {name} now at {}", consumer.position());
    Ok(())
}

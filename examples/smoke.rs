use backwater::{Config, Journal};
fn main() -> Result<(), backwater::Error> {
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path(), Config::default().segment_size(64 << 20))?;
    let p = journal.publisher();
    let n: u64 = std::env::args().nth(1).map(|a| a.parse().unwrap()).unwrap_or(2_000_000);
    let payload = [7u8; 64];
    let t = std::time::Instant::now();
    for _ in 0..n {
        p.offer(&payload)?;
    }
    let el = t.elapsed();
    println!("append: {:.1} Mrec/s", n as f64 / el.as_secs_f64() / 1e6);
    let mut c = journal.consumer("x")?;
    let t = std::time::Instant::now();
    let mut total = 0;
    loop {
        let k = c.poll(
            |r| {
                assert_eq!(r.payload().len(), 64);
            },
            1024,
        )?;
        if k == 0 {
            break;
        }
        total += k;
    }
    println!("read {total}: {:.1} Mrec/s", total as f64 / t.elapsed().as_secs_f64() / 1e6);
    println!("{:?}", journal.stats());
    Ok(())
}

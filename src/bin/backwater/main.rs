//! The `backwater` command line (a stub until the CLI lands).
fn main() {
    eprintln!("backwater: the CLI is not built yet");
    std::process::exit(2);
}

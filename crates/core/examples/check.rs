//! Prints the diagnostics for the topology files given as arguments.
fn main() {
    for f in std::env::args().skip(1) {
        let text = std::fs::read_to_string(&f).expect("readable");
        for d in &labctl_core::check(&text).diagnostics {
            println!("{}", d.display_with_file(&f));
        }
    }
}

//! A valid component that is a command-line program, not a transform: what
//! a user uploads by mistake when they build a binary crate.

fn main() {
    println!("hello");
}

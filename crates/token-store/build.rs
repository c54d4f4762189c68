//! Embedded migrations are read at compile time; without these lines a new
//! migration directory would not trigger a rebuild and the binary would
//! silently ship the old schema.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=../../migrations/sqlite");
    println!("cargo:rerun-if-changed=../../migrations/postgres");
}

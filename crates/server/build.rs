//! Builds the example pages (the repository's examples/) into the binary, so
//! that `simplesfu` serves them from any directory and after `cargo install`:
//! writes `$OUT_DIR/examples.rs`, a table of every file by its path under
//! examples/, each an `include_bytes!` of the file.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let manifest_dir = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    );
    let examples = manifest_dir.join("../../examples");
    println!("cargo:rerun-if-changed={}", examples.display());
    let mut files = Vec::new();
    collect(&examples, &examples, &mut files);
    files.sort();
    let mut table = String::from(
        "/// Every file under examples/, by its path there (`/`-separated), sorted.\n",
    );
    table.push_str("pub(crate) static EXAMPLES: &[(&str, &[u8])] = &[\n");
    for (relative, absolute) in &files {
        writeln!(table, "    ({relative:?}, include_bytes!({absolute:?})),")
            .expect("writing to a String");
    }
    table.push_str("];\n");
    let out =
        PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("examples.rs");
    std::fs::write(&out, table).expect("OUT_DIR is writable");
}

/// Files under `dir`, as (path relative to `root`, absolute path); a
/// directory is watched for new files too.
fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, String)>) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            println!("cargo:rerun-if-changed={}", path.display());
            collect(root, &path, files);
        } else {
            let relative = path.strip_prefix(root).expect("under the root");
            let relative: Vec<&str> = relative
                .iter()
                .map(|c| c.to_str().expect("UTF-8 file names in examples/"))
                .collect();
            let absolute = path.canonicalize().expect("the file exists");
            files.push((
                relative.join("/"),
                absolute.to_str().expect("a UTF-8 path").to_owned(),
            ));
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
}

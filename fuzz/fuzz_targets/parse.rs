//! Any bytes, read as a config directory reads a file: the UTF-8 check, every YAML (or JSON)
//! document with `List` items expanded, and decoding into typed objects. Nothing may panic, and
//! every object and problem must point at a line of the file.

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use rudder::diagnostic::Origin;
use rudder::source::file::inputs_of_file;

fuzz_target!(|bytes: &[u8]| {
    let inputs = inputs_of_file(Path::new("fuzz.yaml"), bytes);
    // YAML breaks lines at LF, CRLF and a lone CR.
    let breaks = bytes
        .iter()
        .enumerate()
        .filter(|&(i, &byte)| byte == b'\n' || (byte == b'\r' && bytes.get(i + 1) != Some(&b'\n')));
    let lines = 1 + breaks.count();
    let origins = inputs
        .entries
        .values()
        .map(|entry| Some(&entry.origin))
        .chain(
            inputs
                .problems
                .iter()
                .map(|problem| problem.origin.as_ref()),
        );
    for origin in origins {
        match origin {
            Some(Origin::File { line, .. }) => {
                assert!(
                    (1..=lines).contains(line),
                    "line {line} of a {lines}-line file"
                )
            }
            other => panic!("a problem of a file without its origin: {other:?}"),
        }
    }
    // Rendering is part of reporting; it must not panic either.
    for problem in &inputs.problems {
        let _ = problem.to_string();
    }
    for entry in inputs.entries.values() {
        if let Err(error) = &entry.object {
            let _ = error.to_string();
        }
    }
});

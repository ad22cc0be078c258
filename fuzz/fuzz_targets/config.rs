//! Configuration text through the path `turnpike serve --config FILE` uses:
//! `Options::from_toml`, layered under (empty) flags, then
//! `Options::resolve`, which validates.
//!
//! Checked: an error is reported as one line (the CLI prints it as its
//! one-line answer); a file that resolves still resolves when its own
//! values are given again as flags on top of it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use turnpike::config::Options;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = match Options::from_toml(text, "fuzz.toml") {
        Ok(o) => o,
        Err(e) => {
            assert!(!e.to_string().contains('\n'), "multi-line error: {e}");
            return;
        }
    };
    match file.clone().overlay(Options::default()).resolve() {
        Ok(config) => {
            let again = file.clone().overlay(file).resolve();
            assert_eq!(
                again.as_ref().ok(),
                Some(&config),
                "flags equal to the file change it"
            );
        }
        Err(e) => assert!(!e.to_string().contains('\n'), "multi-line error: {e}"),
    }
});

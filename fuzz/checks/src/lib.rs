//! What samld's fuzz targets check, one public function per target in `fuzz/fuzz_targets/`.
//!
//! Each function takes the raw input bytes and panics when an invariant breaks. libFuzzer
//! calls them through the one-line targets (nightly, scripts/fuzz.sh); `tests/corpus.rs` runs
//! every file of `fuzz/corpus/TARGET/` through them on stable, in every `cargo test`.

mod browser_post;
mod config;
mod frame;
mod saml;
mod sts_response;

pub use browser_post::browser_post;
pub use config::config;
pub use frame::frame;
pub use saml::{saml_base64, saml_html, saml_xml};
pub use sts_response::sts_response;

/// A target's checks: panics when the input breaks an invariant.
pub type Check = fn(&[u8]);

/// Every target by name (its file in `fuzz/fuzz_targets/` and its directory in
/// `fuzz/corpus/`) with its function.
pub const TARGETS: [(&str, Check); 7] = [
    ("frame", frame),
    ("saml_xml", saml_xml),
    ("saml_base64", saml_base64),
    ("saml_html", saml_html),
    ("sts_response", sts_response),
    ("config", config),
    ("browser_post", browser_post),
];

/// The text a libfuzzer-sys target declared as `|text: &str|` receives for `data`: its longest
/// valid UTF-8 prefix (`arbitrary`'s `&str::arbitrary_take_rest`), so that a corpus file
/// checks the same text here as under libFuzzer.
fn utf8_prefix(data: &[u8]) -> &str {
    match std::str::from_utf8(data) {
        Ok(text) => text,
        Err(error) => std::str::from_utf8(&data[..error.valid_up_to()]).expect("valid up to there"),
    }
}

#[cfg(test)]
mod tests {
    use super::utf8_prefix;

    #[test]
    fn text_targets_get_the_valid_utf8_prefix() {
        assert_eq!(utf8_prefix(b"name = \"a\""), "name = \"a\"");
        assert_eq!(utf8_prefix(b"ab\xffcd"), "ab");
        assert_eq!(utf8_prefix("é".as_bytes()), "é");
        assert_eq!(utf8_prefix(&"é".as_bytes()[..1]), "");
    }
}

//! One readable line for an error and its causes, for the messages samld shows.

/// "outer: inner: innermost", like the SDK's `DisplayErrorContext` but without its trailing
/// `Debug` dump, which is unreadable in a CLI and less controlled than `Display`. A cause
/// whose text its wrapper already quotes (hyper, the io layer and the SDK often repeat their
/// source's words) is not repeated.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::error_chain;
    use std::fmt;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl fmt::Display for Layer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|l| l as _)
        }
    }

    #[test]
    fn causes_are_joined_once_each() {
        let innermost = Layer("Connection refused (os error 111)", None);
        let middle = Layer("tcp connect error", Some(Box::new(innermost)));
        let outer = Layer("client error (Connect)", Some(Box::new(middle)));
        assert_eq!(
            error_chain(&outer),
            "client error (Connect): tcp connect error: Connection refused (os error 111)"
        );
        let repeating = Layer(
            "dispatch failure: timed out",
            Some(Box::new(Layer("timed out", None))),
        );
        assert_eq!(error_chain(&repeating), "dispatch failure: timed out");
    }
}

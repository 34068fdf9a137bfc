//! The error every RESP parser in this crate returns.

/// Bytes that are not valid RESP and can never become valid by reading more.
///
/// The field is Redis's text after `Protocol error: ` (for example `invalid bulk length`);
/// `Display` prints the whole `Protocol error: ...` sentence, which a server sends as
/// `-ERR Protocol error: ...` before closing the connection, as Redis does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Protocol error: {0}")]
pub struct ProtocolError(pub String);

impl ProtocolError {
    /// Builds an error from a message (the text after `Protocol error: `).
    pub fn new(message: impl Into<String>) -> Self {
        ProtocolError(message.into())
    }

    /// The text after `Protocol error: `.
    #[must_use]
    pub fn message(&self) -> &str {
        &self.0
    }
}

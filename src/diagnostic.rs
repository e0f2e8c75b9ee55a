//! Config problems as users see them: where (file and line, when known), which object
//! (`Kind namespace/name`), which field, and what is wrong. Every stage reports through this one
//! type so that `rudder validate`, the logs and the metrics say the same thing for the same input.

use std::fmt;
use std::path::PathBuf;

use crate::inputs::ObjectKey;

/// Where an object came from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Origin {
    /// A document in a file; `line` is 1-based and points at the document (or list item) start.
    File { path: PathBuf, line: usize },
    /// An object read from the Kubernetes API.
    Kubernetes,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File { path, line } => write!(f, "{}:{line}", path.display()),
            Origin::Kubernetes => f.write_str("kubernetes"),
        }
    }
}

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Severity {
    /// The object (or file) is not applied as written.
    #[default]
    Error,
    /// The object applies, but part of it has no effect (a setting rudder does not support);
    /// rendered with `warning: ` before the message.
    Warning,
}

/// One problem with the config, rendered as `ORIGIN: Kind namespace/name: field: message`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConfigError {
    pub origin: Option<Origin>,
    pub object: Option<ObjectKey>,
    pub field: Option<String>,
    pub message: String,
    pub severity: Severity,
}

impl ConfigError {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            origin: None,
            object: None,
            field: None,
            message: message.into(),
            severity: Severity::Error,
        }
    }

    /// Marks the problem as a warning: the object applies, without the part at fault.
    pub fn warning(mut self) -> Self {
        self.severity = Severity::Warning;
        self
    }

    pub fn is_warning(&self) -> bool {
        self.severity == Severity::Warning
    }

    pub fn at(mut self, origin: Origin) -> Self {
        self.origin = Some(origin);
        self
    }

    pub fn on(mut self, object: ObjectKey) -> Self {
        self.object = Some(object);
        self
    }

    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(origin) = &self.origin {
            write!(f, "{origin}: ")?;
        }
        if let Some(object) = &self.object {
            write!(f, "{object}: ")?;
        }
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        if self.is_warning() {
            f.write_str("warning: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

//! The HTTP remote (placeholder).

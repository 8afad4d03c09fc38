//! The fake server (placeholder).

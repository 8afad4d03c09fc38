//! Demo data (placeholder until the fake server lands).

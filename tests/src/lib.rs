//! Conformance suite helpers (filled by the runtimes issue, #3).

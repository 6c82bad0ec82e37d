//! Placeholder until the runtimes issue (#3) fills this adapter in.

//! What the three load tools share: `chat-bench` (fan-out throughput and latency),
//! `chat-hostile` (resource-exhaustion scenarios) and `chat-soak` (a churning room checked
//! for loss, doubling and order).
//!
//! * [`wire`]: requests written for the tools, responses framed without copying, and every
//!   response body read through the core's one body parser.
//! * [`peer`]: a blocking ChatHTTP connection (`chat-hostile`, `chat-soak`).
//! * [`server`]: a server binary the tool starts, watches and stops itself.
//! * [`sys`]: what the tools read from the operating system: clocks, CPU time, memory,
//!   descriptor limits, and a pacing timer.
//! * [`websocket`]: members that join through the browser gateway's `/ws` (`chat-bench --ws`).

pub mod peer;
pub mod server;
pub mod sys;
pub mod websocket;
pub mod wire;

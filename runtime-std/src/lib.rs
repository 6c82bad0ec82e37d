//! The blocking `std::net` server, `chat-server-std`, and the runtime-free base of all three
//! server binaries.
//!
//! [`host`] holds everything the three binaries share that is not I/O: the command line
//! (PROTOCOL.md section X), logging, the `listening on` line, signals, socket options, the
//! clock, and the [`Driver`](host::Driver) that owns the room machine and carries out its
//! outputs. `chathttp-runtime-smol` and `chathttp-runtime-asyncstd` depend on this library
//! for it and add only their own I/O; so does this crate's binary (`src/main.rs`), whose
//! docs explain its thread layout.
//!
//! [`buffers`] holds a connection's read buffer and its queue of frames to write, and says
//! who writes a socket when: the driver, straight away while the kernel takes the bytes,
//! and the connection's writer only when it does not.
//!
//! [`async_host`] holds the four parts of an async server (accept loop, driver, reader,
//! writer) once, generic over a [`Runtime`](async_host::Runtime) of four operations (spawn,
//! sleep, accept, shutdown): the smol and async-std binaries each implement those and
//! nothing else. It uses only runtime-agnostic crates (`futures-lite`, `async-channel`).

pub mod async_host;
pub mod buffers;
pub mod cluster;
pub mod host;

fn main() { eprintln!("chat-bench: not built yet (issue #5)"); std::process::exit(1) }

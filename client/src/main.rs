fn main() { eprintln!("chat-client: not built yet (issue #4)"); std::process::exit(1) }

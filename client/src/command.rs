//! What a line of input means: a message or a slash command. Shared by both front ends.

/// One line (or pasted block) of input, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Send this text to the room.
    Say(String),
    /// `/users`: ask who is online.
    Users,
    /// `/quit`: leave the room and exit.
    Quit,
    /// `/help`: show the commands.
    Help,
    /// A `/word` that is not a command.
    Unknown(String),
    /// Nothing but whitespace: ignored.
    Empty,
}

/// The help text, one entry per line.
pub const HELP: &[&str] = &[
    "/users  ask the server who is online",
    "/quit   leave the room and exit (Ctrl-C too)",
    "/help   show this help",
    "//text  send a message that starts with a slash",
];

impl Command {
    /// Reads one input. A leading `//` escapes the slash, so `//users` says "/users".
    pub fn parse(input: &str) -> Self {
        if input.trim().is_empty() {
            return Self::Empty;
        }
        if let Some(rest) = input.strip_prefix("//") {
            return Self::Say(format!("/{rest}"));
        }
        let Some(command) = input.strip_prefix('/') else {
            return Self::Say(input.to_owned());
        };
        let word = command.split_whitespace().next().unwrap_or_default();
        match word.to_lowercase().as_str() {
            "users" | "who" => Self::Users,
            "quit" | "exit" => Self::Quit,
            "help" | "?" => Self::Help,
            _ => Self::Unknown(format!("/{word}")),
        }
    }
}

/// A chat line's text as shown: without trailing line ends. The original server echoes a
/// `POST` body with its final `\n` and then adds its own, which would show as an empty line.
pub fn chat_text(text: &str) -> &str {
    text.trim_end_matches(['\n', '\r'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_commands_and_messages() {
        assert_eq!(
            Command::parse("hi /users"),
            Command::Say("hi /users".into())
        );
        assert_eq!(Command::parse("/users"), Command::Users);
        assert_eq!(Command::parse("/QUIT now"), Command::Quit);
        assert_eq!(Command::parse("/help"), Command::Help);
        assert_eq!(Command::parse("//users"), Command::Say("/users".into()));
        assert_eq!(
            Command::parse("/nick bob"),
            Command::Unknown("/nick".into())
        );
        assert_eq!(Command::parse("  \t"), Command::Empty);
    }
}

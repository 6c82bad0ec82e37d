//! X: the command line, the same for every server binary.

use std::net::TcpListener;
use std::process::{Command, Output, Stdio};

use chathttp_tests::{Server, conformance};

fn run(rt: chathttp_tests::Runtime, args: &[&str]) -> Output {
    Command::new(rt.binary())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("the server binary runs")
}

fn assert_one_line_error(output: &Output, code: i32, what: &str) {
    assert_eq!(output.status.code(), Some(code), "exit code for {what}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "one line for {what}: {stderr:?}"
    );
}

conformance! {
    fn x_help_lists_every_flag_with_its_default(rt: Runtime) {
        let output = run(rt, &["--help"]);
        assert_eq!(output.status.code(), Some(0));
        let help = String::from_utf8_lossy(&output.stdout);
        for (flag, default) in [
            ("--bind", "127.0.0.1:9994"),
            ("--max-connections", "10000"),
            ("--max-header-bytes", "8192"),
            ("--max-body-bytes", "65536"),
            ("--max-output-bytes", "1048576"),
            ("--idle-timeout", "600"),
            ("--request-timeout", "30"),
        ] {
            let line = help.lines().position(|l| l.trim_start().starts_with(flag));
            let line = line.unwrap_or_else(|| panic!("{flag} is listed"));
            let entry: String = help.lines().skip(line).take(4).collect();
            assert!(entry.contains(&format!("[default: {default}]")), "{flag} shows its default");
        }
    }

    fn x_bad_values_are_one_line_and_exit_2(rt: Runtime) {
        for args in [
            &["--max-connections", "0"][..],
            &["--max-header-bytes", "-1"],
            &["--max-body-bytes", "lots"],
            &["--max-output-bytes", "1.5"],
            &["--idle-timeout", "0"],
            &["--request-timeout", "0.0"],
            &["--idle-timeout", "soon"],
            &["--bind", "127.0.0.1"],
            &["--bind", "example.com:80"],
            &["--bind", "::1:80"],
            &["--no-such-flag"],
        ] {
            assert_one_line_error(&run(rt, args), 2, &format!("{args:?}"));
        }
    }

    fn x_a_config_file_sets_flags_and_an_unknown_key_is_named(rt: Runtime) {
        let dir = std::env::temp_dir();
        let good = dir.join(format!("chathttp-cli-{}-{}.toml", rt.binary_name(), std::process::id()));
        std::fs::write(&good, "max-connections = 1\nhttp = \"127.0.0.1:0\"\n").expect("a file");
        let mut command = Command::new(rt.binary());
        command.args(["--bind", "127.0.0.1:0", "--config"]).arg(&good);
        let server = Server::spawn(command);
        let _first = server.guest();
        let refused = server.connect().read_response();
        assert_eq!(refused.code(), 503, "max-connections = 1 from the file: {refused:?}");
        let _ = server.http_addr();
        std::fs::write(&good, "max-connections = 1\nmax-conections = 2\n").expect("a file");
        let output = run(rt, &["--config", &good.to_string_lossy()]);
        assert_one_line_error(&output, 2, "an unknown key");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("unknown key `max-conections`"), "{stderr}");
        let _ = std::fs::remove_file(&good);
    }

    fn x_a_port_that_cannot_be_bound_is_one_line_and_exit_1(rt: Runtime) {
        let taken = TcpListener::bind("127.0.0.1:0").expect("a free port");
        let addr = taken.local_addr().expect("its address").to_string();
        assert_one_line_error(&run(rt, &["--bind", &addr]), 1, "a port in use");
    }

    fn x_localhost_v6_and_fractional_seconds_are_accepted(rt: Runtime) {
        let mut command = Command::new(rt.binary());
        command.args(["--bind", "localhost:0", "--idle-timeout", "0.25", "--request-timeout", "1.5"]);
        let server = Server::spawn(command);
        assert!(server.addr().ip().is_loopback() && server.addr().is_ipv4(), "localhost is 127.0.0.1");
        server.guest().expect_closed();
        // The binary must do what this machine allows: serve [::1] where it can be bound,
        // or refuse with exit code 1 where it cannot.
        if TcpListener::bind("[::1]:0").is_ok() {
            let mut command = Command::new(rt.binary());
            command.args(["--bind", "[::1]:0"]);
            let server = Server::spawn(command);
            assert_eq!(server.addr().ip().to_string(), "::1", "listening on [::1]:PORT");
            assert_eq!(server.guest().request("GET", "v6", b"").code(), 200);
        } else {
            assert_one_line_error(&run(rt, &["--bind", "[::1]:0"]), 1, "no IPv6 loopback");
        }
    }
}

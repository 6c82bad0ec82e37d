//! S7: one order for everyone, exactly once.

use std::thread;

use chathttp_tests::{Server, conformance, request};

const MEMBERS: usize = 50;
const SENDERS: usize = 10;
const MESSAGES: usize = 200;

conformance! {
    fn s7_fifty_members_ten_senders_one_order_exactly_once(rt: Runtime) {
        let server = Server::start(rt, &[]);
        // Join one by one, so every member has joined before the first message.
        let members: Vec<_> = (0..MEMBERS).map(|i| server.member(&format!("m{i}"))).collect();
        let received: Vec<Vec<String>> = thread::scope(|scope| {
            let readers: Vec<_> = members
                .into_iter()
                .enumerate()
                .map(|(i, mut member)| {
                    if i < SENDERS {
                        let stream = member.stream().try_clone().expect("clone");
                        scope.spawn(move || {
                            let mut batch = Vec::new();
                            for seq in 0..MESSAGES {
                                batch.extend(request("POST", "x", format!("{seq}").as_bytes()));
                            }
                            std::io::Write::write_all(&mut &stream, &batch).expect("send all");
                        });
                    }
                    scope.spawn(move || {
                        let mut chat = Vec::with_capacity(SENDERS * MESSAGES);
                        while chat.len() < SENDERS * MESSAGES {
                            let body = member.read_response().text();
                            if body.starts_with("[ ") {
                                chat.push(body);
                            }
                        }
                        chat
                    })
                })
                .collect();
            readers.into_iter().map(|r| r.join().expect("a reader ends")).collect()
        });
        let reference = &received[0];
        for (i, copy) in received.iter().enumerate() {
            assert!(copy == reference, "member m{i} saw another order than m0");
        }
        for sender in 0..SENDERS {
            let prefix = format!("[ m{sender} ] : ");
            let sequence: Vec<usize> = reference
                .iter()
                .filter_map(|line| line.strip_prefix(&prefix))
                .map(|seq| seq.trim_end().parse().expect("a number"))
                .collect();
            assert!(sequence == (0..MESSAGES).collect::<Vec<_>>(), "m{sender}'s messages: once each, in order");
        }
    }
}

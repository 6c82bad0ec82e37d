//! S7: one order for everyone, exactly once.

use chathttp_tests::{Server, assert_one_order_exactly_once, conformance, exchange_posts};

const MEMBERS: usize = 50;
const SENDERS: usize = 10;
const MESSAGES: usize = 200;

conformance! {
    fn s7_fifty_members_ten_senders_one_order_exactly_once(rt: Runtime) {
        let server = Server::start(rt, &[]);
        // Join one by one, so every member has joined before the first message.
        let members: Vec<_> = (0..MEMBERS).map(|i| server.member(&format!("m{i}"))).collect();
        let received = exchange_posts(members, SENDERS, MESSAGES);
        assert_one_order_exactly_once(&received, SENDERS, MESSAGES, |i| format!("member m{i}"));
    }
}

use super::*;

#[test]
fn unproven_connections_make_room_and_proven_ones_keep_theirs() {
    let connections = Arc::new(Connections {
        max_connections: 3,
        max_unproven: 2,
        state: Mutex::new(ConnectionState::default()),
    });
    let refusals = RefusalLog::default();
    let (a, mut a_closed) = connections.admit(&refusals).unwrap();
    let (b, mut b_closed) = connections.admit(&refusals).unwrap();
    b.prove();
    let (_c, _) = connections.admit(&refusals).unwrap();
    // Two unproven would be one too many: the oldest unproven (a) is told to close.
    let (d, _) = connections.admit(&refusals).unwrap();
    assert!(
        a_closed.try_recv().is_ok(),
        "the oldest unproven was closed"
    );
    assert!(
        b_closed.try_recv().is_err(),
        "the proven one was left alone"
    );
    drop(a);
    d.prove();
    // Two proven and one unproven fill all three slots; a new one pushes out the unproven.
    assert!(connections.admit(&refusals).is_some());
    let (e, _) = connections.admit(&refusals).unwrap();
    e.prove();
    assert!(
        connections.admit(&refusals).is_none(),
        "no slot when all are proven"
    );
    drop(b);
    assert!(
        connections.admit(&refusals).is_some(),
        "a released slot is free again"
    );
}

#[test]
fn constant_time_eq_is_equality() {
    assert!(constant_time_eq(b"abc", b"abc"));
    assert!(!constant_time_eq(b"abc", b"abd"));
    assert!(!constant_time_eq(b"abc", b"ab"));
    assert!(constant_time_eq(b"", b""));
}

#[test]
fn tokens_are_64_hex_digits_and_differ() {
    let a = new_token().unwrap();
    let b = new_token().unwrap();
    assert_eq!(a.expose().len(), 64);
    assert!(a.expose().bytes().all(|c| c.is_ascii_hexdigit()));
    assert_ne!(a.expose(), b.expose());
}

#[test]
fn urls_encode_role_arns_as_one_segment() {
    let addr: SocketAddr = "127.0.0.1:4711".parse().unwrap();
    assert_eq!(
        credentials_url(addr, "prod", "arn:aws:iam::1:role/team/Admin"),
        "http://127.0.0.1:4711/v1/credentials/prod/arn%3Aaws%3Aiam%3A%3A1%3Arole%2Fteam%2FAdmin"
    );
}

#[test]
fn a_role_is_named_by_its_arn_or_its_name() {
    let arn = "arn:aws:iam::111111111111:role/team/Admin";
    assert!(names_role(arn, arn));
    assert!(names_role("Admin", arn));
    assert!(!names_role("ReadOnly", arn));
    assert!(!names_role("team/Admin", arn));
}

#[test]
fn the_port_setting_is_a_port_number() {
    use std::ffi::OsStr;
    assert_eq!(parse_port(None), Ok(0));
    assert_eq!(parse_port(Some(OsStr::new(""))), Ok(0));
    assert_eq!(parse_port(Some(OsStr::new("4711"))), Ok(4711));
    let e = parse_port(Some(OsStr::new("70000"))).unwrap_err();
    assert!(e.contains("SAMLD_ENDPOINT_PORT=70000"), "{e}");
}

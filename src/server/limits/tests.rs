use super::*;
use crate::config::Config;

const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));
/// A fixed time on the buckets' clock: nothing refills during a test.
const NOW: u64 = 10 * SECOND;
const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

fn limiter(limits: &str) -> Limiter {
    let text = format!(
        "[limits]\n{limits}\n[[cluster]]\nname = \"c\"\nnodes = [{{ name = \"a\", url = \"http://127.0.0.1:8086\" }}]\n"
    );
    let config = Config::from_toml_str(&text, "test.toml").unwrap();
    Limiter::new(&config.limits).expect("limits are on")
}

fn sender<'a>(client: IpAddr, user: Option<&'a Claimed>, database: &'a str) -> Sender<'a> {
    Sender {
        client: Some(client),
        user,
        database,
    }
}

fn user(name: &str, password: &str) -> Claimed {
    Claimed::of(Some(name), Some(password), &http::HeaderMap::new()).unwrap()
}

#[test]
fn no_limits_no_limiter() {
    assert!(Limiter::new(&LimitsConfig::default()).is_none());
}

#[test]
fn requests_are_limited_per_client_address() {
    let limiter = limiter("client_requests = \"3/s\"");
    for _ in 0..3 {
        limiter.admit_at(A, Endpoint::Write, NOW).unwrap();
    }
    let refusal = limiter.admit_at(A, Endpoint::Ping, NOW).unwrap_err();
    assert_eq!(refusal.limit, Limit::ClientRequests);
    assert_eq!(refusal.retry_after, 1);
    assert!(refusal
        .message
        .contains("127.0.0.1 may send 3 requests per second"));
    assert!(limiter.admit_at(B, Endpoint::Write, NOW).is_ok());
}

#[test]
fn queries_are_bounded_per_client_while_their_permits_live() {
    let limiter = limiter("client_queries = 2");
    let first = limiter.admit_at(A, Endpoint::Query, NOW).unwrap();
    let second = limiter.admit_at(A, Endpoint::Query, NOW).unwrap();
    assert!(first.is_some() && second.is_some());
    let refusal = limiter.admit_at(A, Endpoint::Query, NOW).unwrap_err();
    assert_eq!(refusal.limit, Limit::ClientQueries);
    // a Prometheus remote read is a query too
    let refusal = limiter.admit_at(A, Endpoint::PromRead, NOW).unwrap_err();
    assert_eq!(refusal.limit, Limit::ClientQueries);
    // writes, and other clients' queries, are not queries of A's
    assert!(limiter.admit_at(A, Endpoint::Write, NOW).unwrap().is_none());
    let other = limiter.admit_at(B, Endpoint::Query, NOW).unwrap();
    drop(first);
    assert!(limiter.admit_at(A, Endpoint::Query, NOW).is_ok());
    drop((second, other));
    let running = limiter
        .client_queries
        .as_ref()
        .unwrap()
        .running
        .lock()
        .unwrap();
    assert!(running.is_empty(), "{running:?}");
}

#[test]
fn a_body_is_taken_from_every_limit_or_from_none() {
    let limiter = limiter(
        "client_bytes = \"1000B/s\"\nuser_bytes = \"1000B/s\"\ndatabase_bytes = { \"db\" = \"500B/s\" }",
    );
    let ann = user("ann", "pw");
    limiter
        .take_bytes_at(sender(A, Some(&ann), "db"), 300, NOW)
        .unwrap();
    // the database's bucket refuses 300 more: client and user keep theirs
    let refusal = limiter
        .take_bytes_at(sender(A, Some(&ann), "db"), 300, NOW)
        .unwrap_err();
    assert_eq!(refusal.limit, Limit::DatabaseBytes);
    assert!(
        refusal.message.contains("(this body: 300 bytes)"),
        "{}",
        refusal.message
    );
    limiter
        .take_bytes_at(sender(A, Some(&ann), "other"), 700, NOW)
        .unwrap();
    // now the client's bucket is empty, and the user's too
    let refusal = limiter
        .take_bytes_at(sender(A, None, "other"), 1, NOW)
        .unwrap_err();
    assert_eq!(refusal.limit, Limit::ClientBytes);
    let refusal = limiter
        .take_bytes_at(sender(B, Some(&ann), "other"), 1, NOW)
        .unwrap_err();
    assert_eq!(refusal.limit, Limit::UserBytes);
    assert!(
        refusal.message.contains("user \"ann\""),
        "{}",
        refusal.message
    );
    // B's bucket was given back what the user's refusal took
    limiter
        .take_bytes_at(sender(B, None, "other"), 1000, NOW)
        .unwrap();
}

#[test]
fn the_first_matching_glob_decides_and_its_databases_share_it() {
    let limiter = limiter("database_bytes = { \"t*\" = \"1000B/s\", \"telemetry*\" = \"10B/s\" }");
    limiter
        .take_bytes_at(sender(A, None, "telemetry_a"), 600, NOW)
        .unwrap();
    let refusal = limiter
        .take_bytes_at(sender(B, None, "tele_b"), 600, NOW)
        .unwrap_err();
    assert!(
        refusal.message.contains("matching \"t*\""),
        "{}",
        refusal.message
    );
    // a database no glob matches is not limited
    limiter
        .take_bytes_at(sender(A, None, "other"), 1 << 30, NOW)
        .unwrap();
}

#[test]
fn a_user_named_without_the_password_has_a_bucket_of_its_own() {
    let limiter = limiter("user_bytes = \"100B/s\"");
    limiter
        .take_bytes_at(sender(A, Some(&user("ann", "spoof")), "db"), 100, NOW)
        .unwrap();
    limiter
        .take_bytes_at(sender(A, Some(&user("ann", "real")), "db"), 100, NOW)
        .unwrap();
}

#[test]
fn empty_bodies_cost_nothing() {
    let limiter = limiter("client_bytes = \"1B/s\"");
    limiter
        .take_bytes_at(sender(A, None, "db"), 1, NOW)
        .unwrap();
    limiter
        .take_bytes_at(sender(A, None, "db"), 0, NOW)
        .unwrap();
}

#[test]
fn a_refusal_says_the_limit_and_when_to_retry() {
    let refusal = refusal(Limit::UserBytes, 2 * SECOND + 1, "user \"x\" may …".into());
    let error = refusal.into_error();
    assert_eq!(error.status(), http::StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        error.to_string(),
        "over limits.user_bytes: user \"x\" may …; retry after 3 s"
    );
    let response = error.into_response();
    assert_eq!(response.headers()[http::header::RETRY_AFTER], "3");
}

use super::*;
use http::header::{HeaderValue, AUTHORIZATION};

#[test]
fn v1_params_are_read_and_rebuilt_for_nodes() {
    let params = WriteParams::parse(
        Some("db=my%20db&rp=week&precision=us&u=bob&p=s%26cret&consistency=all"),
        Api::V1,
    )
    .unwrap();
    assert_eq!(params.db, "my db");
    assert_eq!(params.rp.as_deref(), Some("week"));
    assert_eq!(params.precision, Some("u"));
    assert_eq!(params.consistency, Some(Consistency::All));
    assert_eq!(
        params.node_path(),
        "/write?db=my+db&rp=week&precision=u&u=bob&p=s%26cret"
    );
}

#[test]
fn missing_db_is_a_bad_request_with_influxdbs_message() {
    let err = WriteParams::parse(Some("rp=x"), Api::V1).unwrap_err();
    assert_eq!(err.status(), 400);
    assert_eq!(err.to_string(), "database is required");
}

#[test]
fn v2_bucket_carries_database_and_retention_policy() {
    let params = WriteParams::parse(
        Some("org=ignored&bucket=telegraf/autogen&precision=ns"),
        Api::V2,
    )
    .unwrap();
    assert_eq!(
        (params.db.as_str(), params.rp.as_deref()),
        ("telegraf", Some("autogen"))
    );
    assert_eq!(
        params.node_path(),
        "/write?db=telegraf&rp=autogen&precision=n"
    );
    let err = WriteParams::parse(Some("org=x"), Api::V2).unwrap_err();
    assert_eq!(err.to_string(), "bucket is required");
}

#[test]
fn unknown_precision_is_refused_with_the_valid_ones_listed() {
    let err = WriteParams::parse(Some("db=x&precision=weeks"), Api::V1).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid precision \"weeks\": use n, ns, u, us, ms, s, m or h"
    );
}

#[test]
fn consistency_from_the_client_is_checked() {
    let params = WriteParams::parse(Some("db=x&consistency=any"), Api::V1).unwrap();
    assert_eq!(params.consistency, Some(Consistency::Any));
    let err = WriteParams::parse(Some("db=x&consistency=most"), Api::V1).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid consistency \"most\": use any, one, quorum or all"
    );
}

#[test]
fn consistency_is_read_in_any_case_and_empty_means_the_default() {
    for (given, level) in [("ALL", Consistency::All), ("Quorum", Consistency::Quorum)] {
        let query = format!("db=x&consistency={given}");
        let params = WriteParams::parse(Some(&query), Api::V1).unwrap();
        assert_eq!(params.consistency, Some(level), "{given}");
    }
    for api in [Api::V1, Api::V2] {
        let params = WriteParams::parse(Some("db=x&bucket=x&consistency="), api).unwrap();
        assert_eq!(params.consistency, None);
    }
}

#[test]
fn token_credentials_become_basic_auth_and_others_pass_unchanged() {
    let mut client = HeaderMap::new();
    client.insert(AUTHORIZATION, HeaderValue::from_static("Token bob:secret"));
    client.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    client.insert("x-other", HeaderValue::from_static("dropped"));
    let headers = forwarded_headers(&client);
    assert_eq!(headers[AUTHORIZATION], "Basic Ym9iOnNlY3JldA==");
    assert_eq!(headers[CONTENT_ENCODING], "gzip");
    assert!(!headers.contains_key("x-other"));
    client.insert(AUTHORIZATION, HeaderValue::from_static("Token abcdef"));
    assert_eq!(forwarded_headers(&client)[AUTHORIZATION], "Token abcdef");
}

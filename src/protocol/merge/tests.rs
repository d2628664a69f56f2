use std::cmp::Ordering;

use super::compare::{compare_values, rfc3339_nanos};
use super::*;

/// Merges `answers` (named a, b, c…) to query `q` and returns the body as a
/// string, without its final newline.
fn merged(q: &str, answers: &[&str]) -> String {
    let named: Vec<(String, &[u8])> = answers
        .iter()
        .enumerate()
        .map(|(i, a)| (format!("node{i}"), a.as_bytes()))
        .collect();
    let body = merge_answers(&named, &plans(q)).expect("answers merge");
    let text = String::from_utf8(body).expect("UTF-8");
    text.strip_suffix('\n').expect("final newline").to_string()
}

/// Removes the whitespace of a readable expected answer (spaces inside its
/// strings too: put those in afterwards).
fn compact(json: &str) -> String {
    json.split_whitespace().collect()
}

// --- SHOW statements -----------------------------------------------------------

#[test]
fn show_measurements_are_unioned_deduplicated_and_sorted() {
    let a = r#"{"results":[{"statement_id":0,"series":[{"name":"measurements","columns":["name"],"values":[["cpu"],["mem"]]}]}]}"#;
    let b = r#"{"results":[{"statement_id":0,"series":[{"name":"measurements","columns":["name"],"values":[["disk"],["cpu"],["Net"]]}]}]}"#;
    assert_eq!(
        merged("SHOW MEASUREMENTS", &[a, b]),
        r#"{"results":[{"statement_id":0,"series":[{"name":"measurements","columns":["name"],"values":[["Net"],["cpu"],["disk"],["mem"]]}]}]}"#
    );
}

#[test]
fn show_tag_keys_give_one_series_per_measurement_with_keys_unioned() {
    let a = r#"{"results":[{"statement_id":0,"series":[
        {"name":"cpu","columns":["tagKey"],"values":[["cpu"],["host"]]},
        {"name":"disk","columns":["tagKey"],"values":[["device"],["host"]]}]}]}"#;
    let b = r#"{"results":[{"statement_id":0,"series":[
        {"name":"cpu","columns":["tagKey"],"values":[["host"],["region"]]},
        {"name":"mem","columns":["tagKey"],"values":[["host"]]}]}]}"#;
    assert_eq!(
        merged("SHOW TAG KEYS", &[a, b]),
        compact(
            r#"{"results":[{"statement_id":0,"series":[
            {"name":"cpu","columns":["tagKey"],"values":[["cpu"],["host"],["region"]]},
            {"name":"disk","columns":["tagKey"],"values":[["device"],["host"]]},
            {"name":"mem","columns":["tagKey"],"values":[["host"]]}]}]}"#
        )
    );
}

#[test]
fn show_field_keys_keep_each_key_and_type_pair_once() {
    let a = r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["fieldKey","fieldType"],"values":[["usage_idle","float"],["usage_user","float"]]}]}]}"#;
    let b = r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["fieldKey","fieldType"],"values":[["usage_guest","integer"],["usage_idle","float"]]}]}]}"#;
    assert_eq!(
        merged("SHOW FIELD KEYS FROM cpu", &[a, b]),
        compact(
            r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["fieldKey","fieldType"],
            "values":[["usage_guest","integer"],["usage_idle","float"],["usage_user","float"]]}]}]}"#
        )
    );
}

#[test]
fn show_tag_values_are_sorted_by_key_then_value() {
    let a = r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["key","value"],"values":[["host","b"],["region","eu"]]}]}]}"#;
    let b = r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["key","value"],"values":[["host","a"],["host","b"]]}]}]}"#;
    assert_eq!(
        merged(r#"SHOW TAG VALUES WITH KEY IN ("host","region")"#, &[a, b]),
        r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["key","value"],"values":[["host","a"],["host","b"],["region","eu"]]}]}]}"#
    );
}

#[test]
fn show_databases_from_every_cluster_list_each_database_once() {
    let a = r#"{"results":[{"statement_id":0,"series":[{"name":"databases","columns":["name"],"values":[["_internal"],["telegraf"]]}]}]}"#;
    let b = r#"{"results":[{"statement_id":0,"series":[{"name":"databases","columns":["name"],"values":[["_internal"],["metrics"],["telegraf"]]}]}]}"#;
    assert_eq!(
        merged("SHOW DATABASES", &[a, b]),
        r#"{"results":[{"statement_id":0,"series":[{"name":"databases","columns":["name"],"values":[["_internal"],["metrics"],["telegraf"]]}]}]}"#
    );
}

#[test]
fn show_series_keys_are_unioned() {
    let a = r#"{"results":[{"statement_id":0,"series":[{"columns":["key"],"values":[["cpu,host=a"],["cpu,host=b"]]}]}]}"#;
    let b = r#"{"results":[{"statement_id":0,"series":[{"columns":["key"],"values":[["mem,host=a"],["cpu,host=a"]]}]}]}"#;
    assert_eq!(
        merged("SHOW SERIES", &[a, b]),
        r#"{"results":[{"statement_id":0,"series":[{"columns":["key"],"values":[["cpu,host=a"],["cpu,host=b"],["mem,host=a"]]}]}]}"#
    );
}

#[test]
fn show_retention_policies_with_numbers_and_booleans_dedupe_identical_rows() {
    let rp = r#"{"results":[{"statement_id":0,"series":[{"columns":["name","duration","shardGroupDuration","replicaN","default"],"values":[["autogen","0s","168h0m0s",1,true]]}]}]}"#;
    let other = r#"{"results":[{"statement_id":0,"series":[{"columns":["name","duration","shardGroupDuration","replicaN","default"],"values":[["autogen","0s","168h0m0s",1,true],["week","168h0m0s","24h0m0s",1,false]]}]}]}"#;
    assert_eq!(
        merged("SHOW RETENTION POLICIES ON db", &[rp, other]),
        r#"{"results":[{"statement_id":0,"series":[{"columns":["name","duration","shardGroupDuration","replicaN","default"],"values":[["autogen","0s","168h0m0s",1,true],["week","168h0m0s","24h0m0s",1,false]]}]}]}"#
    );
}

#[test]
fn cardinality_counts_are_added_up() {
    let a = r#"{"results":[{"statement_id":0,"series":[{"columns":["count"],"values":[[4]]}]}]}"#;
    let b = r#"{"results":[{"statement_id":0,"series":[{"columns":["count"],"values":[[3]]}]}]}"#;
    assert_eq!(
        merged("SHOW MEASUREMENT EXACT CARDINALITY", &[a, b]),
        r#"{"results":[{"statement_id":0,"series":[{"columns":["count"],"values":[[7]]}]}]}"#
    );
    let a = r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["count"],"values":[[10]]}]}]}"#;
    let b = r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["count"],"values":[[5]]}]},{"statement_id":1}]}"#;
    let c = r#"{"results":[{"statement_id":0,"series":[{"name":"mem","columns":["count"],"values":[[2]]}]}]}"#;
    assert_eq!(
        merged("SHOW SERIES EXACT CARDINALITY", &[a, b, c]),
        compact(
            r#"{"results":[{"statement_id":0,"series":[
            {"name":"cpu","columns":["count"],"values":[[15]]},
            {"name":"mem","columns":["count"],"values":[[2]]}]},{"statement_id":1}]}"#
        )
    );
}

#[test]
fn show_limit_and_offset_apply_to_the_union() {
    let a = r#"{"results":[{"statement_id":0,"series":[{"name":"measurements","columns":["name"],"values":[["a"],["c"],["e"]]}]}]}"#;
    let b = r#"{"results":[{"statement_id":0,"series":[{"name":"measurements","columns":["name"],"values":[["b"],["d"],["f"]]}]}]}"#;
    assert_eq!(
        merged("SHOW MEASUREMENTS LIMIT 3 OFFSET 2", &[a, b]),
        r#"{"results":[{"statement_id":0,"series":[{"name":"measurements","columns":["name"],"values":[["c"],["d"],["e"]]}]}]}"#
    );
}

#[test]
fn an_offset_past_every_row_leaves_no_series() {
    let a = r#"{"results":[{"statement_id":0,"series":[{"name":"measurements","columns":["name"],"values":[["a"]]}]}]}"#;
    let b = r#"{"results":[{"statement_id":0,"series":[{"name":"measurements","columns":["name"],"values":[["b"]]}]}]}"#;
    assert_eq!(
        merged("SHOW MEASUREMENTS OFFSET 5", &[a, b]),
        r#"{"results":[{"statement_id":0}]}"#
    );
}

#[test]
fn show_tag_keys_slimit_and_limit_apply_to_measurements_and_keys() {
    let a = r#"{"results":[{"statement_id":0,"series":[
        {"name":"cpu","columns":["tagKey"],"values":[["cpu"],["host"]]},
        {"name":"mem","columns":["tagKey"],"values":[["host"],["zone"]]}]}]}"#;
    let b = r#"{"results":[{"statement_id":0,"series":[
        {"name":"disk","columns":["tagKey"],"values":[["device"],["host"],["path"]]}]}]}"#;
    assert_eq!(
        merged("SHOW TAG KEYS LIMIT 1 OFFSET 1 SLIMIT 2 SOFFSET 1", &[a, b]),
        compact(
            r#"{"results":[{"statement_id":0,"series":[
            {"name":"disk","columns":["tagKey"],"values":[["host"]]},
            {"name":"mem","columns":["tagKey"],"values":[["zone"]]}]}]}"#
        )
    );
}

// --- SELECT --------------------------------------------------------------------

#[test]
fn select_series_from_different_clusters_come_in_name_order() {
    let mem = r#"{"results":[{"statement_id":0,"series":[{"name":"mem","columns":["time","used"],"values":[["2024-01-01T00:00:00Z",512]]}]}]}"#;
    let cpu = r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["time","usage"],"values":[["2024-01-01T00:00:00Z",0.64]]}]}]}"#;
    assert_eq!(
        merged("SELECT * FROM cpu, mem", &[mem, cpu]),
        compact(
            r#"{"results":[{"statement_id":0,"series":[
            {"name":"cpu","columns":["time","usage"],"values":[["2024-01-01T00:00:00Z",0.64]]},
            {"name":"mem","columns":["time","used"],"values":[["2024-01-01T00:00:00Z",512]]}]}]}"#
        )
    );
}

#[test]
fn group_by_tag_series_are_interleaved_in_tag_order() {
    let a = r#"{"results":[{"statement_id":0,"series":[
        {"name":"cpu","tags":{"host":"a"},"columns":["time","mean"],"values":[[0,1.5]]},
        {"name":"cpu","tags":{"host":"c"},"columns":["time","mean"],"values":[[0,3]]}]}]}"#;
    let b = r#"{"results":[{"statement_id":0,"series":[
        {"name":"cpu","tags":{"host":"b"},"columns":["time","mean"],"values":[[0,2.25]]}]}]}"#;
    assert_eq!(
        merged("SELECT mean(v) FROM /cpu/ GROUP BY host", &[a, b]),
        compact(
            r#"{"results":[{"statement_id":0,"series":[
            {"name":"cpu","tags":{"host":"a"},"columns":["time","mean"],"values":[[0,1.5]]},
            {"name":"cpu","tags":{"host":"b"},"columns":["time","mean"],"values":[[0,2.25]]},
            {"name":"cpu","tags":{"host":"c"},"columns":["time","mean"],"values":[[0,3]]}]}]}"#
        )
    );
}

#[test]
fn the_same_series_from_two_clusters_is_merged_by_time() {
    let a = r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","tags":{"host":"a"},"columns":["time","v"],
        "values":[["2024-01-01T00:00:00Z",1],["2024-01-01T00:00:02Z",3]]}]}]}"#;
    let b = r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","tags":{"host":"a"},"columns":["time","v"],
        "values":[["2024-01-01T00:00:00.5Z",2],["2024-01-01T00:00:03Z",4]]}]}]}"#;
    assert_eq!(
        merged("SELECT v FROM cpu GROUP BY host", &[a, b]),
        compact(
            r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","tags":{"host":"a"},"columns":["time","v"],
            "values":[["2024-01-01T00:00:00Z",1],["2024-01-01T00:00:00.5Z",2],["2024-01-01T00:00:02Z",3],["2024-01-01T00:00:03Z",4]]}]}]}"#
        )
    );
}

#[test]
fn epoch_times_are_merged_numerically() {
    let a = r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["time","v"],"values":[[9,1],[100,3]]}]}]}"#;
    let b = r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["time","v"],"values":[[10,2],[1000,4]]}]}]}"#;
    assert_eq!(
        merged("SELECT v FROM cpu", &[a, b]),
        r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["time","v"],"values":[[9,1],[10,2],[100,3],[1000,4]]}]}]}"#
    );
}

#[test]
fn order_by_time_desc_reverses_rows_and_series() {
    let a = r#"{"results":[{"statement_id":0,"series":[
        {"name":"cpu","tags":{"host":"c"},"columns":["time","v"],"values":[[30,1],[10,1]]},
        {"name":"cpu","tags":{"host":"a"},"columns":["time","v"],"values":[[20,1]]}]}]}"#;
    let b = r#"{"results":[{"statement_id":0,"series":[
        {"name":"cpu","tags":{"host":"b"},"columns":["time","v"],"values":[[5,2]]},
        {"name":"cpu","tags":{"host":"a"},"columns":["time","v"],"values":[[25,2],[15,2]]}]}]}"#;
    assert_eq!(
        merged(
            "SELECT v FROM cpu GROUP BY host ORDER BY time DESC",
            &[a, b]
        ),
        compact(
            r#"{"results":[{"statement_id":0,"series":[
            {"name":"cpu","tags":{"host":"c"},"columns":["time","v"],"values":[[30,1],[10,1]]},
            {"name":"cpu","tags":{"host":"b"},"columns":["time","v"],"values":[[5,2]]},
            {"name":"cpu","tags":{"host":"a"},"columns":["time","v"],"values":[[25,2],[20,1],[15,2]]}]}]}"#
        )
    );
}

#[test]
fn differing_columns_of_one_series_are_unioned_with_nulls() {
    let a = r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["time","idle","user"],"values":[[1,90,5]]}]}]}"#;
    let b = r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["time","guest","idle"],"values":[[2,1,80]]}]}]}"#;
    assert_eq!(
        merged("SELECT * FROM cpu", &[a, b]),
        r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["time","guest","idle","user"],"values":[[1,null,90,5],[2,1,80,null]]}]}]}"#
    );
}

#[test]
fn select_limit_and_offset_apply_per_series_after_the_merge() {
    let a = r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["time","v"],"values":[[1,1],[3,3],[5,5]]}]}]}"#;
    let b = r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["time","v"],"values":[[2,2],[4,4]]},{"name":"mem","columns":["time","v"],"values":[[1,7]]}]}]}"#;
    assert_eq!(
        merged("SELECT v FROM cpu, mem LIMIT 2 OFFSET 1", &[a, b]),
        r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["time","v"],"values":[[2,2],[3,3]]}]}]}"#
    );
}

#[test]
fn select_slimit_and_soffset_apply_to_the_merged_series() {
    let a = r#"{"results":[{"statement_id":0,"series":[
        {"name":"cpu","tags":{"host":"a"},"columns":["time","v"],"values":[[1,1]]},
        {"name":"cpu","tags":{"host":"c"},"columns":["time","v"],"values":[[1,3]]}]}]}"#;
    let b = r#"{"results":[{"statement_id":0,"series":[
        {"name":"cpu","tags":{"host":"b"},"columns":["time","v"],"values":[[1,2]]}]}]}"#;
    assert_eq!(
        merged(
            "SELECT v FROM cpu GROUP BY host SLIMIT 1 SOFFSET 1",
            &[a, b]
        ),
        r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","tags":{"host":"b"},"columns":["time","v"],"values":[[1,2]]}]}]}"#
    );
}

#[test]
fn numbers_keep_their_integer_or_float_form() {
    let a = r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["time","i","f","s","b"],
        "values":[[1,9223372036854775807,0.1,"x",true],[2,-3,2.5e-7,"",false]]}]}]}"#;
    let b = r#"{"results":[{"statement_id":0}]}"#;
    assert_eq!(
        merged("SELECT * FROM cpu", &[a, b]),
        r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["time","i","f","s","b"],"values":[[1,9223372036854775807,0.1,"x",true],[2,-3,2.5e-7,"",false]]}]}]}"#
    );
}

// --- empty answers, several statements, errors, flags ---------------------------

#[test]
fn an_empty_answer_adds_nothing() {
    let empty = r#"{"results":[{"statement_id":0}]}"#;
    let a = r#"{"results":[{"statement_id":0,"series":[{"name":"measurements","columns":["name"],"values":[["cpu"]]}]}]}"#;
    assert_eq!(merged("SHOW MEASUREMENTS", &[empty, a]), a);
    assert_eq!(merged("SELECT * FROM x", &[empty, empty]), empty);
}

#[test]
fn each_statement_is_merged_with_its_own_plan() {
    let q = "SHOW DATABASES; SELECT v FROM cpu LIMIT 1";
    let a = r#"{"results":[
        {"statement_id":0,"series":[{"name":"databases","columns":["name"],"values":[["b"]]}]},
        {"statement_id":1,"series":[{"name":"cpu","columns":["time","v"],"values":[[2,2]]}]}]}"#;
    let b = r#"{"results":[
        {"statement_id":0,"series":[{"name":"databases","columns":["name"],"values":[["a"],["b"]]}]},
        {"statement_id":1,"series":[{"name":"cpu","columns":["time","v"],"values":[[1,1]]}]}]}"#;
    assert_eq!(
        merged(q, &[a, b]),
        compact(
            r#"{"results":[
            {"statement_id":0,"series":[{"name":"databases","columns":["name"],"values":[["a"],["b"]]}]},
            {"statement_id":1,"series":[{"name":"cpu","columns":["time","v"],"values":[[1,1]]}]}]}"#
        )
    );
}

#[test]
fn a_statement_error_in_any_answer_is_the_merged_statement() {
    let q = "SELECT v FROM cpu; SELECT nope(v) FROM cpu";
    let a = r#"{"results":[
        {"statement_id":0,"series":[{"name":"cpu","columns":["time","v"],"values":[[1,1]]}]},
        {"statement_id":1,"series":[{"name":"cpu","columns":["time","v"],"values":[[1,1]]}]}]}"#;
    let b = r#"{"results":[
        {"statement_id":0,"series":[{"name":"cpu","columns":["time","v"],"values":[[2,2]]}]},
        {"statement_id":1,"error":"undefined function nope()"}]}"#;
    let c = r#"{"results":[{"statement_id":0},{"statement_id":1,"error":"another error"}]}"#;
    assert_eq!(
        merged(q, &[a, b, c]),
        compact(
            r#"{"results":[
            {"statement_id":0,"series":[{"name":"cpu","columns":["time","v"],"values":[[1,1],[2,2]]}]},
            {"statement_id":1,"error":"ERROR"}]}"#
        )
        .replace("ERROR", "undefined function nope()")
    );
}

#[test]
fn a_top_level_error_in_any_answer_is_the_merged_answer() {
    let ok = r#"{"results":[{"statement_id":0}]}"#;
    let bad = r#"{"error":"error parsing query: found EOF, expected FROM at line 1, char 9"}"#;
    assert_eq!(
        merged("SELECT *", &[ok, bad]),
        r#"{"error":"error parsing query: found EOF, expected FROM at line 1, char 9"}"#
    );
}

#[test]
fn partial_flags_and_messages_are_kept() {
    let a = r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["time","v"],"values":[[1,1]],"partial":true}],
        "messages":[{"level":"warning","text":"deprecated"}],"partial":true}]}"#;
    let b = r#"{"results":[{"statement_id":0,"series":[{"name":"mem","columns":["time","v"],"values":[[1,1]]}],
        "messages":[{"level":"warning","text":"deprecated"}]}]}"#;
    assert_eq!(
        merged("SELECT v FROM cpu, mem", &[a, b]),
        compact(
            r#"{"results":[{"statement_id":0,"series":[
            {"name":"cpu","columns":["time","v"],"values":[[1,1]],"partial":true},
            {"name":"mem","columns":["time","v"],"values":[[1,1]]}],
            "messages":[{"level":"warning","text":"deprecated"}],"partial":true}]}"#
        )
    );
}

#[test]
fn results_without_statement_ids_are_matched_by_position() {
    let a =
        r#"{"results":[{"series":[{"name":"databases","columns":["name"],"values":[["a"]]}]},{}]}"#;
    let b =
        r#"{"results":[{"series":[{"name":"databases","columns":["name"],"values":[["b"]]}]},{}]}"#;
    assert_eq!(
        merged("SHOW DATABASES; SHOW DATABASES", &[a, b]),
        r#"{"results":[{"statement_id":0,"series":[{"name":"databases","columns":["name"],"values":[["a"],["b"]]}]},{"statement_id":1}]}"#
    );
}

#[test]
fn null_fields_are_read_as_empty() {
    let a = r#"{"results":[{"statement_id":0,"series":null,"messages":null,"partial":null,"error":null}]}"#;
    assert_eq!(
        merged("SELECT 1", &[a]),
        r#"{"results":[{"statement_id":0}]}"#
    );
}

#[test]
fn a_body_that_is_not_json_names_its_node() {
    let ok: &[u8] = br#"{"results":[{"statement_id":0}]}"#;
    let html: &[u8] = b"<html>502 Bad Gateway</html>";
    let err = merge_answers(&[("n1", ok), ("n2", html)], &[]).unwrap_err();
    assert!(matches!(&err, MergeError::NotJson { node, .. } if node == "n2"));
    assert!(err
        .to_string()
        .starts_with("answer from n2 is not valid JSON: "));
    let chunked: &[u8] = b"{\"results\":[]}\n{\"results\":[]}\n";
    assert!(matches!(
        merge_answers(&[("n3", chunked)], &[]),
        Err(MergeError::NotJson { .. })
    ));
}

#[test]
fn json_that_is_not_a_query_answer_is_refused() {
    let odd: &[u8] = br#"{"results":"nope"}"#;
    let err = merge_answers(&[("n1", odd)], &[]).unwrap_err();
    assert!(matches!(&err, MergeError::NotAnAnswer { node, .. } if node == "n1"));
    let array: &[u8] = b"[1,2]";
    assert!(matches!(
        merge_answers(&[("n1", array)], &[]),
        Err(MergeError::NotAnAnswer { .. })
    ));
}

#[test]
fn nothing_to_merge_is_an_error() {
    let none: [(&str, &[u8]); 0] = [];
    assert!(matches!(
        merge_answers(&none, &[]),
        Err(MergeError::NoAnswers)
    ));
}

#[test]
fn a_single_answer_comes_back_as_influxdb_wrote_it() {
    let a = r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","tags":{"a":"1","b":"2"},"columns":["time","v"],"values":[["2024-01-01T00:00:00Z",1.5]]}]}]}"#;
    assert_eq!(merged("SELECT v FROM cpu GROUP BY *", &[a]), a);
}

// --- plans, limits, rewriting -------------------------------------------------

#[test]
fn plan_picks_the_merge_kind_from_the_statement() {
    assert_eq!(plan("SELECT * FROM cpu").kind, MergeKind::Series);
    assert_eq!(plan("EXPLAIN SELECT * FROM cpu").kind, MergeKind::Series);
    assert_eq!(plan("show measurements").kind, MergeKind::ShowUnion);
    assert_eq!(
        plan("SHOW TAG VALUES WITH KEY = host").kind,
        MergeKind::ShowUnion
    );
    assert_eq!(plan("SHOW SERIES CARDINALITY").kind, MergeKind::Sum);
    assert!(plan("SELECT * FROM cpu ORDER BY time DESC").descending);
    assert!(plan("SELECT * FROM cpu ORDER BY DESC LIMIT 1").descending);
    assert!(!plan("SELECT * FROM cpu ORDER BY time ASC").descending);
    assert!(!plan("SELECT * FROM (SELECT * FROM cpu ORDER BY time DESC)").descending);
    assert_eq!(plans("SHOW DATABASES; SELECT 1").len(), 2);
}

#[test]
fn limits_are_read_from_the_outer_query_only() {
    assert_eq!(
        limits("SELECT * FROM cpu LIMIT 10 OFFSET 5 SLIMIT 2 SOFFSET 1"),
        Limits {
            limit: Some(10),
            offset: Some(5),
            slimit: Some(2),
            soffset: Some(1),
        }
    );
    assert_eq!(
        limits("select * from (select * from cpu limit 3 offset 1) limit 7"),
        Limits {
            limit: Some(7),
            ..Limits::default()
        }
    );
    assert_eq!(limits("SELECT * FROM cpu"), Limits::default());
}

#[test]
fn zero_limits_and_durations_are_not_limits() {
    assert_eq!(
        limits("SELECT * FROM cpu LIMIT 0 OFFSET 0"),
        Limits::default()
    );
    assert_eq!(
        limits("CREATE RETENTION POLICY rp ON db DURATION 1d REPLICATION 1 FUTURE LIMIT 1h"),
        Limits::default()
    );
    assert_eq!(limits("SELECT * FROM cpu LIMIT 'x'"), Limits::default());
}

#[test]
fn limits_in_strings_and_comments_are_ignored() {
    assert_eq!(
        limits("SELECT * FROM cpu WHERE a = 'LIMIT 3' -- LIMIT 4\n"),
        Limits::default()
    );
}

#[test]
fn rewrite_for_fanout_folds_the_offset_into_the_limit() {
    assert_eq!(
        rewrite_for_fanout("SELECT * FROM cpu LIMIT 10 OFFSET 5").as_deref(),
        Some("SELECT * FROM cpu LIMIT 15")
    );
    assert_eq!(
        rewrite_for_fanout("select * from cpu limit 10 offset 5 slimit 2 soffset 3 tz('UTC')")
            .as_deref(),
        Some("select * from cpu limit 15 slimit 5 tz('UTC')")
    );
}

#[test]
fn rewrite_for_fanout_drops_a_lone_offset() {
    assert_eq!(
        rewrite_for_fanout("SHOW MEASUREMENTS OFFSET 5").as_deref(),
        Some("SHOW MEASUREMENTS")
    );
    assert_eq!(
        rewrite_for_fanout("SELECT * FROM cpu LIMIT 0 OFFSET 5").as_deref(),
        Some("SELECT * FROM cpu LIMIT 0")
    );
}

#[test]
fn rewrite_for_fanout_leaves_statements_without_offset_alone() {
    assert_eq!(rewrite_for_fanout("SELECT * FROM cpu LIMIT 10"), None);
    assert_eq!(rewrite_for_fanout("SELECT * FROM cpu OFFSET 0"), None);
    assert_eq!(rewrite_for_fanout("SHOW DATABASES"), None);
    assert_eq!(
        rewrite_for_fanout("SELECT * FROM (SELECT * FROM cpu LIMIT 2 OFFSET 1)"),
        None
    );
}

#[test]
fn rewrite_for_fanout_touches_only_the_outer_query() {
    assert_eq!(
        rewrite_for_fanout("SELECT * FROM (SELECT * FROM cpu LIMIT 2 OFFSET 1) LIMIT 3 OFFSET 4")
            .as_deref(),
        Some("SELECT * FROM (SELECT * FROM cpu LIMIT 2 OFFSET 1) LIMIT 7")
    );
}

#[test]
fn rewrite_for_fanout_keeps_comments_after_the_clause() {
    assert_eq!(
        rewrite_for_fanout("SELECT * FROM cpu LIMIT 1 /* x */ OFFSET 2 -- two\n").as_deref(),
        Some("SELECT * FROM cpu LIMIT 3 -- two\n")
    );
}

#[test]
fn rewrite_for_fanout_saturates_instead_of_overflowing() {
    assert_eq!(
        rewrite_for_fanout("SELECT * FROM cpu LIMIT 9223372036854775807 OFFSET 9").as_deref(),
        Some("SELECT * FROM cpu LIMIT 9223372036854775807")
    );
}

#[test]
fn fanning_out_the_rewrite_and_merging_with_the_original_plan_is_one_servers_answer() {
    let q = "SELECT v FROM cpu LIMIT 2 OFFSET 2";
    // Each node runs the rewritten statement over its own rows.
    let sent = rewrite_for_fanout(q).unwrap();
    assert_eq!(limits(&sent).limit, Some(4));
    let a = r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["time","v"],"values":[[1,1],[3,3],[5,5],[7,7]]}]}]}"#;
    let b = r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["time","v"],"values":[[2,2],[4,4],[6,6],[8,8]]}]}]}"#;
    assert_eq!(
        merged(q, &[a, b]),
        r#"{"results":[{"statement_id":0,"series":[{"name":"cpu","columns":["time","v"],"values":[[3,3],[4,4]]}]}]}"#
    );
}

// --- comparing values -------------------------------------------------------------

#[test]
fn rfc3339_times_compare_by_instant() {
    let t = |s: &str| rfc3339_nanos(s).unwrap();
    assert!(t("2024-01-01T00:00:00Z") < t("2024-01-01T00:00:00.5Z"));
    assert!(t("2024-01-01T00:00:00.25Z") < t("2024-01-01T00:00:00.5Z"));
    assert_eq!(t("2024-01-01T01:00:00+01:00"), t("2024-01-01T00:00:00Z"));
    assert_eq!(t("1970-01-01T00:00:00.000000001Z"), 1);
    assert_eq!(t("1969-12-31T23:59:59Z"), -1_000_000_000);
    assert_eq!(t("2000-03-01T00:00:00Z"), 951_868_800_000_000_000);
    assert_eq!(rfc3339_nanos("yesterday"), None);
    assert_eq!(rfc3339_nanos("2024-01-01T00:00:00"), None);
    assert_eq!(rfc3339_nanos("2024-13-01T00:00:00Z"), None);
    assert_eq!(rfc3339_nanos("2024-01-01T00:00:00.Z"), None);
}

#[test]
fn values_sort_numbers_numerically_and_strings_bytewise() {
    let v = |s: &str| serde_json::from_str::<Value>(s).unwrap();
    assert_eq!(compare_values(&v("9"), &v("10")), Ordering::Less);
    assert_eq!(
        compare_values(&v("-1"), &v("18446744073709551615")),
        Ordering::Less
    );
    assert_eq!(compare_values(&v("1.5"), &v("2")), Ordering::Less);
    assert_eq!(compare_values(&v(r#""B""#), &v(r#""a""#)), Ordering::Less);
    assert_eq!(compare_values(&v("null"), &v("false")), Ordering::Less);
    assert_eq!(compare_values(&v("5"), &v(r#""5""#)), Ordering::Less);
}

#[test]
fn ragged_rows_mixed_types_and_odd_columns_never_panic() {
    let a = r#"{"results":[{"statement_id":0,"series":[
        {"name":"cpu","columns":["time","v","v"],"values":[[],["2024-01-01T00:00:00Z"],[3,{"x":1},[1]],[null,true,"s",4]]},
        {"name":"cpu","columns":["time"],"values":[["bad time"],[1.5]]},
        {"columns":[],"values":[[1,2,3]]}]}]}"#;
    let b = r#"{"results":[{"statement_id":0,"series":[
        {"name":"cpu","columns":["v","time"],"values":[[1],["x","y","z"]]},
        {"columns":["count"],"values":[["n"],[1.5],[18446744073709551615]]}]}]}"#;
    for q in [
        "SELECT * FROM cpu LIMIT 1 OFFSET 1 SLIMIT 1 SOFFSET 1",
        "SELECT * FROM cpu ORDER BY time DESC",
        "SHOW SERIES",
        "SHOW SERIES CARDINALITY",
    ] {
        let body =
            merge_answers(&[("a", a.as_bytes()), ("b", b.as_bytes())], &plans(q)).expect("merges");
        serde_json::from_slice::<Value>(&body).expect("valid JSON");
    }
}

#[test]
fn counts_that_overflow_integers_are_added_as_floats() {
    let a = r#"{"results":[{"statement_id":0,"series":[{"columns":["count"],"values":[[18446744073709551615]]}]}]}"#;
    assert_eq!(
        merged("SHOW SERIES CARDINALITY", &[a, a]),
        r#"{"results":[{"statement_id":0,"series":[{"columns":["count"],"values":[[3.6893488147419103e+19]]}]}]}"#
    );
}

use super::*;

fn name(db: Option<&str>, rp: Option<&str>, m: &str) -> Source {
    Source {
        db: db.map(str::to_string),
        rp: rp.map(str::to_string),
        measurement: MeasurementRef::Name(m.to_string()),
    }
}

fn regex(db: Option<&str>, rp: Option<&str>, re: &str) -> Source {
    Source {
        db: db.map(str::to_string),
        rp: rp.map(str::to_string),
        measurement: MeasurementRef::Regex(re.to_string()),
    }
}

fn m(measurement: &str) -> Source {
    name(None, None, measurement)
}

fn from(statement: &str) -> Vec<Source> {
    sources(statement).from
}

// --- FROM lists ------------------------------------------------------------

#[test]
fn a_bare_measurement_is_a_source_without_db_or_rp() {
    assert_eq!(
        sources("SELECT value FROM cpu WHERE host = 'a'"),
        Sources {
            on: None,
            from: vec![m("cpu")],
            subquery: false,
        }
    );
}

#[test]
fn a_quoted_measurement_is_unquoted() {
    assert_eq!(from(r#"SELECT * FROM "cpu load""#), [m("cpu load")]);
}

#[test]
fn escapes_in_quoted_identifiers_are_unescaped() {
    assert_eq!(
        from(r#"SELECT * FROM "say \"hi\"", "back\\slash", "new\nline""#),
        [m("say \"hi\""), m("back\\slash"), m("new\nline")]
    );
}

#[test]
fn a_three_part_name_is_database_retention_policy_measurement() {
    assert_eq!(
        from(r#"SELECT * FROM "my db"."autogen"."cpu""#),
        [name(Some("my db"), Some("autogen"), "cpu")]
    );
    assert_eq!(
        from("SELECT * FROM telegraf.one_week.mem"),
        [name(Some("telegraf"), Some("one_week"), "mem")]
    );
}

#[test]
fn a_two_part_name_is_retention_policy_and_measurement() {
    assert_eq!(
        from("SELECT * FROM autogen.cpu"),
        [name(None, Some("autogen"), "cpu")]
    );
}

#[test]
fn a_double_dot_names_the_database_with_its_default_retention_policy() {
    assert_eq!(
        from("SELECT * FROM telegraf..cpu"),
        [name(Some("telegraf"), None, "cpu")]
    );
    assert_eq!(
        from(r#"SELECT * FROM "tele graf".."cpu""#),
        [name(Some("tele graf"), None, "cpu")]
    );
}

#[test]
fn a_comma_separated_list_gives_every_measurement_in_order() {
    assert_eq!(
        from("SELECT * FROM cpu, mem ,\"disk\" WHERE time > now() - 1h"),
        [m("cpu"), m("mem"), m("disk")]
    );
}

#[test]
fn a_regex_source_keeps_its_pattern_without_slashes() {
    assert_eq!(
        from("SELECT * FROM /^cpu.*/ LIMIT 1"),
        [regex(None, None, "^cpu.*")]
    );
}

#[test]
fn an_escaped_slash_in_a_regex_is_unescaped_and_other_backslashes_are_kept() {
    assert_eq!(
        from(r"SELECT * FROM /a\/b\d+/"),
        [regex(None, None, r"a/b\d+")]
    );
}

#[test]
fn a_qualified_regex_keeps_its_database_and_retention_policy() {
    assert_eq!(
        from("SELECT * FROM db.rp./^cpu/"),
        [regex(Some("db"), Some("rp"), "^cpu")]
    );
    assert_eq!(
        from("SELECT * FROM db../^cpu/"),
        [regex(Some("db"), None, "^cpu")]
    );
    assert_eq!(
        from("SELECT * FROM rp./^cpu/"),
        [regex(None, Some("rp"), "^cpu")]
    );
}

#[test]
fn names_and_regexes_mix_in_one_list() {
    assert_eq!(
        from("SELECT * FROM cpu, /^disk/, db..mem"),
        [
            m("cpu"),
            regex(None, None, "^disk"),
            name(Some("db"), None, "mem")
        ]
    );
}

#[test]
fn keywords_match_in_any_letter_case() {
    assert_eq!(from("select * from cpu"), [m("cpu")]);
    assert_eq!(from("SeLeCt * FrOm cpu"), [m("cpu")]);
}

#[test]
fn measurement_names_keep_their_letter_case() {
    assert_eq!(from("SELECT * FROM CPU"), [m("CPU")]);
}

#[test]
fn comments_between_tokens_are_skipped() {
    assert_eq!(
        from("SELECT * -- all of it\nFROM /* the usual */ cpu, -- and\n mem"),
        [m("cpu"), m("mem")]
    );
}

#[test]
fn from_inside_strings_regexes_and_quoted_identifiers_is_not_a_keyword() {
    assert_eq!(
        from(r#"SELECT "from x" FROM cpu WHERE a = 'FROM y' AND b =~ /FROM z/"#),
        [m("cpu")]
    );
}

#[test]
fn a_statement_without_from_has_no_sources() {
    assert_eq!(sources("SELECT 1"), Sources::default());
    assert_eq!(sources("SHOW MEASUREMENTS"), Sources::default());
    assert_eq!(sources("SHOW DATABASES"), Sources::default());
}

// --- subqueries, INTO --------------------------------------------------------

#[test]
fn the_sources_of_a_subquery_are_included_and_flagged() {
    assert_eq!(
        sources("SELECT max(m) FROM (SELECT mean(v) AS m FROM cpu GROUP BY time(1m))"),
        Sources {
            on: None,
            from: vec![m("cpu")],
            subquery: true,
        }
    );
}

#[test]
fn nested_subqueries_and_lists_around_them_are_all_read() {
    let s =
        sources("SELECT * FROM (SELECT * FROM (SELECT * FROM a, b), c WHERE x > 1), d GROUP BY *");
    assert_eq!(s.from, [m("a"), m("b"), m("c"), m("d")]);
    assert!(s.subquery);
}

#[test]
fn the_into_target_is_not_a_source() {
    assert_eq!(
        from(r#"SELECT mean(v) INTO "other"."autogen"."cpu_1h" FROM cpu GROUP BY time(1h)"#),
        [m("cpu")]
    );
    assert_eq!(
        from("SELECT * INTO db.rp.:MEASUREMENT FROM /.*/ GROUP BY *"),
        [regex(None, None, ".*")]
    );
}

#[test]
fn explain_reads_from_the_statement_it_explains() {
    assert_eq!(from("EXPLAIN ANALYZE SELECT count(v) FROM cpu"), [m("cpu")]);
}

// --- SHOW, ON, WITH MEASUREMENT ----------------------------------------------

#[test]
fn on_names_the_database_of_a_show_statement() {
    assert_eq!(
        sources("SHOW MEASUREMENTS ON telegraf"),
        Sources {
            on: Some("telegraf".into()),
            ..Sources::default()
        }
    );
    assert_eq!(
        sources(r#"show retention policies on "my db""#)
            .on
            .as_deref(),
        Some("my db")
    );
}

#[test]
fn on_and_from_are_both_read_in_show_tag_keys() {
    assert_eq!(
        sources("SHOW TAG KEYS ON db FROM cpu, /^mem/ WHERE host = 'a' LIMIT 10"),
        Sources {
            on: Some("db".into()),
            from: vec![m("cpu"), regex(None, None, "^mem")],
            subquery: false,
        }
    );
}

#[test]
fn on_a_wildcard_or_a_retention_policy_gives_the_database_part() {
    assert_eq!(sources("SHOW MEASUREMENTS ON *.*").on.as_deref(), Some("*"));
    assert_eq!(
        sources("SHOW MEASUREMENTS ON db.autogen").on.as_deref(),
        Some("db")
    );
}

#[test]
fn with_measurement_in_show_measurements_is_a_from_like_filter() {
    assert_eq!(
        sources("SHOW MEASUREMENTS ON db WITH MEASUREMENT =~ /^cpu/ LIMIT 5"),
        Sources {
            on: Some("db".into()),
            from: vec![regex(None, None, "^cpu")],
            subquery: false,
        }
    );
    assert_eq!(
        from(r#"SHOW MEASUREMENTS WITH MEASUREMENT = "cpu" WHERE host = 'a'"#),
        [m("cpu")]
    );
}

#[test]
fn a_negated_with_measurement_names_no_source() {
    assert!(from("SHOW MEASUREMENTS WITH MEASUREMENT !~ /^cpu/").is_empty());
}

#[test]
fn show_tag_values_with_key_reads_only_its_from_list() {
    assert_eq!(
        from(r#"SHOW TAG VALUES FROM cpu WITH KEY = "host""#),
        [m("cpu")]
    );
}

// --- administrative statements ---------------------------------------------

#[test]
fn delete_and_drop_series_name_their_measurements() {
    assert_eq!(
        from("DELETE FROM cpu WHERE time < '2020-01-01'"),
        [m("cpu")]
    );
    assert_eq!(
        from("DROP SERIES FROM /^tmp/ WHERE host = 'x'"),
        [regex(None, None, "^tmp")]
    );
    assert_eq!(from(r#"DROP MEASUREMENT "old cpu""#), [m("old cpu")]);
}

#[test]
fn revoke_from_names_a_user_and_grant_on_a_database() {
    assert_eq!(
        sources("REVOKE READ ON telegraf FROM alice"),
        Sources {
            on: Some("telegraf".into()),
            ..Sources::default()
        }
    );
    assert!(from("REVOKE ALL PRIVILEGES FROM alice").is_empty());
    assert_eq!(
        sources("GRANT WRITE ON db TO bob").on.as_deref(),
        Some("db")
    );
}

#[test]
fn kill_query_on_names_a_host_not_a_database() {
    assert_eq!(
        sources("KILL QUERY 36 ON \"host:8088\""),
        Sources::default()
    );
}

#[test]
fn a_continuous_query_reads_from_its_select_on_its_database() {
    let s = sources(
        "CREATE CONTINUOUS QUERY cq ON db BEGIN SELECT mean(v) INTO cpu_1h FROM cpu GROUP BY time(1h) END",
    );
    assert_eq!(s.on.as_deref(), Some("db"));
    assert_eq!(s.from, [m("cpu")]);
}

// --- several statements, garbage ---------------------------------------------

#[test]
fn only_the_first_statement_is_read() {
    assert_eq!(from(";; SELECT * FROM a; SELECT * FROM b"), [m("a")]);
}

#[test]
fn incomplete_sources_are_left_out_and_the_rest_is_kept() {
    assert_eq!(from("SELECT * FROM"), []);
    assert_eq!(from("SELECT * FROM db."), []);
    assert_eq!(from("SELECT * FROM cpu, WHERE"), [m("cpu")]);
    assert_eq!(from("SELECT * FROM cpu, db..WHERE"), [m("cpu")]);
    assert_eq!(from("SELECT * FROM .cpu"), []);
}

#[test]
fn too_many_parts_keep_the_last_three() {
    assert_eq!(
        from("SELECT * FROM a.b.c.d"),
        [name(Some("b"), Some("c"), "d")]
    );
}

#[test]
fn unterminated_literals_run_to_the_end_of_the_text() {
    assert_eq!(from(r#"SELECT * FROM "cpu"#), [m("cpu")]);
    assert_eq!(from(r#"SELECT * FROM "cpu\""#), [m("cpu\"")]);
    assert_eq!(from("SELECT * FROM /^cpu"), [regex(None, None, "^cpu")]);
    assert_eq!(from(r"SELECT * FROM /a\/"), [regex(None, None, "a/")]);
}

#[test]
fn unbalanced_parentheses_do_not_lose_the_sources_seen() {
    let s = sources("SELECT * FROM (SELECT * FROM cpu, mem");
    assert_eq!(s.from, [m("cpu"), m("mem")]);
    assert!(s.subquery);
    assert_eq!(from("SELECT * FROM cpu))) , mem"), [m("cpu")]);
    assert_eq!(from(")))SELECT * FROM ((((("), []);
}

#[test]
fn garbage_never_panics() {
    let inputs = [
        "",
        ";",
        "FROM",
        "FROM (",
        "FROM )",
        "FROM ,,,",
        "FROM ....",
        "FROM \"",
        "FROM /",
        "FROM 10m.cpu",
        "ON",
        "SHOW",
        "SHOW MEASUREMENTS WITH MEASUREMENT",
        "SHOW MEASUREMENTS WITH MEASUREMENT =",
        "SHOW MEASUREMENTS WITH MEASUREMENT =~",
        "DROP MEASUREMENT",
        "SELECT * FROM ((((((((((((((((((((((((((((((((((((((((((((((x",
        "SELECT * FROM é.ü./ß/, \u{3000}cpu",
    ];
    for input in inputs {
        let _ = sources(input);
        let _ = show_kind(input);
        for cut in 0..=input.len() {
            if input.is_char_boundary(cut) {
                let _ = sources(&input[..cut]);
            }
        }
    }
}

#[test]
fn deeply_nested_subqueries_are_read_without_recursion() {
    let depth = 10_000;
    let q = format!(
        "{}SELECT * FROM cpu{}",
        "SELECT * FROM (".repeat(depth),
        ")".repeat(depth)
    );
    let s = sources(&q);
    assert_eq!(s.from, [m("cpu")]);
    assert!(s.subquery);
}

// --- show_kind -----------------------------------------------------------------

#[test]
fn show_kind_names_each_show_statement() {
    use ShowKind::*;
    let cases = [
        ("SHOW MEASUREMENTS", Measurements),
        (
            "show measurements on db with measurement =~ /x/",
            Measurements,
        ),
        ("SHOW MEASUREMENT CARDINALITY", MeasurementCardinality),
        (
            "SHOW MEASUREMENT EXACT CARDINALITY ON db",
            MeasurementCardinality,
        ),
        ("SHOW TAG KEYS FROM cpu", TagKeys),
        ("SHOW TAG KEY CARDINALITY", TagKeyCardinality),
        ("SHOW TAG KEY EXACT CARDINALITY", TagKeyCardinality),
        (r#"SHOW TAG VALUES WITH KEY = "host""#, TagValues),
        (
            r#"SHOW TAG VALUES CARDINALITY WITH KEY = "host""#,
            TagValuesCardinality,
        ),
        (
            r#"SHOW TAG VALUES EXACT CARDINALITY WITH KEY = "host""#,
            TagValuesCardinality,
        ),
        ("SHOW FIELD KEYS", FieldKeys),
        ("SHOW FIELD KEY CARDINALITY", FieldKeyCardinality),
        ("SHOW SERIES FROM cpu", Series),
        ("SHOW SERIES CARDINALITY", SeriesCardinality),
        ("SHOW SERIES EXACT CARDINALITY", SeriesCardinality),
        ("SHOW DATABASES", Databases),
        ("SHOW RETENTION POLICIES ON db", RetentionPolicies),
        ("SHOW USERS", Users),
        ("SHOW GRANTS FOR bob", Grants),
        ("SHOW CONTINUOUS QUERIES", ContinuousQueries),
        ("SHOW SHARDS", Shards),
        ("SHOW SHARD GROUPS", ShardGroups),
        ("SHOW SUBSCRIPTIONS", Subscriptions),
        ("SHOW STATS FOR 'shard'", Stats),
        ("SHOW DIAGNOSTICS", Diagnostics),
        ("SHOW QUERIES", Queries),
        ("SHOW", Other),
        ("SHOW TAG", Other),
        ("SHOW MEASUREMENT", Other),
        ("SHOW NONSENSE", Other),
    ];
    for (statement, kind) in cases {
        assert_eq!(show_kind(statement), Some(kind), "{statement}");
        assert_eq!(ShowKind::of(statement), Some(kind), "{statement}");
    }
}

#[test]
fn show_kind_skips_comments_and_leading_semicolons() {
    assert_eq!(
        show_kind("; -- note\n/* x */ show databases"),
        Some(ShowKind::Databases)
    );
}

#[test]
fn show_kind_is_none_for_other_statements() {
    assert_eq!(show_kind("SELECT * FROM cpu"), None);
    assert_eq!(show_kind("CREATE DATABASE x"), None);
    assert_eq!(show_kind("\"SHOW\" DATABASES"), None);
    assert_eq!(show_kind(""), None);
}

#[test]
fn cardinality_and_per_node_kinds_are_told_apart() {
    assert!(ShowKind::SeriesCardinality.is_cardinality());
    assert!(!ShowKind::Series.is_cardinality());
    assert!(ShowKind::Stats.is_per_node());
    assert!(!ShowKind::Measurements.is_per_node());
}

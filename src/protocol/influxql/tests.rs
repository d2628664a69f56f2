use super::StatementKind::{Admin, PerNode, Read, Unknown};
use super::*;

fn kinds(q: &str) -> Vec<StatementKind> {
    parse(q).iter().map(|s| s.kind).collect()
}

/// The invariants the fuzz target checks, for inputs built in tests.
fn assert_invariants(q: &str) {
    let statements = parse(q);
    let mut previous_end = 0;
    for s in &statements {
        assert!(!s.text.is_empty(), "{q:?}");
        assert_eq!(s.text, s.text.trim(), "{q:?}");
        let start = s.text.as_ptr() as usize - q.as_ptr() as usize;
        assert!(start >= previous_end, "{q:?}");
        previous_end = start + s.text.len();
        assert!(previous_end <= q.len(), "{q:?}");
        assert_eq!(classify(s.text), s.kind, "{:?} in {q:?}", s.text);
        assert_eq!(parse(s.text), [*s], "{q:?}");
    }
    let texts: Vec<&str> = statements.iter().map(|s| s.text).collect();
    assert_eq!(split(q), texts, "{q:?}");
}

// --- splitting -------------------------------------------------------------

#[test]
fn semicolon_separates_statements_and_each_is_trimmed() {
    assert_eq!(
        split("  SELECT a FROM m ;\n\tSHOW DATABASES\n"),
        ["SELECT a FROM m", "SHOW DATABASES"]
    );
}

#[test]
fn trailing_and_repeated_semicolons_produce_no_empty_statements() {
    assert_eq!(
        split(";;SELECT 1;; ;\n;SELECT 2;"),
        ["SELECT 1", "SELECT 2"]
    );
}

#[test]
fn empty_or_whitespace_only_query_has_no_statements() {
    assert!(split("").is_empty());
    assert!(split(" \t\r\n ").is_empty());
    assert!(split(";").is_empty());
    assert!(parse("\u{3000} ; \u{a0}").is_empty());
}

#[test]
fn statements_made_only_of_comments_are_dropped() {
    let q = "-- just a note\n; /* block */ ; SELECT 1; -- trailing ; note";
    assert_eq!(split(q), ["SELECT 1"]);
}

#[test]
fn semicolon_inside_double_quoted_identifier_does_not_split() {
    assert_eq!(
        split(r#"SELECT "a;b" FROM "m;n"; SHOW DATABASES"#),
        [r#"SELECT "a;b" FROM "m;n""#, "SHOW DATABASES"]
    );
}

#[test]
fn escaped_double_quote_inside_identifier_does_not_end_it() {
    let q = r#"SELECT "say \"hi;\" now" FROM m; DROP DATABASE d"#;
    assert_eq!(kinds(q), [Read, Admin]);
    assert_eq!(split(q)[0], r#"SELECT "say \"hi;\" now" FROM m"#);
}

#[test]
fn semicolon_inside_single_quoted_string_does_not_split() {
    let q = "SELECT * FROM m WHERE host = 'a;b'; SHOW DATABASES";
    assert_eq!(
        split(q),
        ["SELECT * FROM m WHERE host = 'a;b'", "SHOW DATABASES"]
    );
}

#[test]
fn escaped_quote_and_escaped_backslash_inside_string_are_handled() {
    let q = r"SELECT * FROM m WHERE a = 'it\'s; fine' AND b = 'c:\\'; SHOW USERS";
    assert_eq!(
        split(q),
        [
            r"SELECT * FROM m WHERE a = 'it\'s; fine' AND b = 'c:\\'",
            "SHOW USERS"
        ]
    );
}

#[test]
fn semicolon_inside_regex_does_not_split() {
    let q = "SELECT * FROM m WHERE host =~ /a;b/; SHOW DATABASES";
    assert_eq!(
        split(q),
        ["SELECT * FROM m WHERE host =~ /a;b/", "SHOW DATABASES"]
    );
}

#[test]
fn escaped_slash_inside_regex_does_not_end_it() {
    let q = r"SELECT * FROM m WHERE path =~ /^\/var\/;x/; SHOW DATABASES";
    assert_eq!(kinds(q), [Read, Read]);
    assert_eq!(split(q)[0], r"SELECT * FROM m WHERE path =~ /^\/var\/;x/");
}

#[test]
fn backslash_before_other_characters_in_regex_is_literal_as_in_influxql() {
    // `\\/` is a literal `\` then an escaped `/`: the regex never ends.
    let q = r"SELECT * FROM m WHERE a =~ /x\\/; DROP DATABASE d";
    assert_eq!(kinds(q), [Read]);
    assert_eq!(
        kinds(r"SELECT * FROM /\d+/; DROP DATABASE d"),
        [Read, Admin]
    );
}

#[test]
fn slash_after_identifier_is_division_not_regex() {
    let q = "SELECT a / 2 FROM m; DROP DATABASE d; SELECT b/c FROM m";
    assert_eq!(kinds(q), [Read, Admin, Read]);
}

#[test]
fn slash_between_quoted_identifiers_is_division() {
    let q = r#"SELECT "a"/"b" FROM m; SHOW DATABASES; SELECT 'x'/2 FROM m"#;
    assert_eq!(kinds(q), [Read, Read, Read]);
}

#[test]
fn slash_after_number_or_closing_parenthesis_is_division() {
    let q = "SELECT mean(x) / 10, 10/3, .5/2, 1h/2 FROM m; DROP DATABASE d";
    assert_eq!(kinds(q), [Read, Admin]);
}

#[test]
fn slash_after_keyword_comma_or_parenthesis_starts_a_regex() {
    assert_eq!(split("SELECT * FROM /a;b/"), ["SELECT * FROM /a;b/"]);
    assert_eq!(split("select /u;v/ from m"), ["select /u;v/ from m"]);
    assert_eq!(
        split("SELECT a FROM m GROUP BY /h;/"),
        ["SELECT a FROM m GROUP BY /h;/"]
    );
    assert_eq!(split("SELECT a FROM x, /y;z/"), ["SELECT a FROM x, /y;z/"]);
    assert_eq!(
        split("SELECT a FROM db.rp./c;d/"),
        ["SELECT a FROM db.rp./c;d/"]
    );
}

#[test]
fn slash_after_regex_operator_starts_a_regex() {
    let q = "SELECT a FROM m WHERE h =~ /a;b/ AND x !~ /c;d/";
    assert_eq!(split(q), [q]);
}

#[test]
fn line_comment_hides_semicolons_and_quotes_until_end_of_line() {
    let q = "SELECT a -- it's; \"odd\" /x;\nFROM m; SHOW DATABASES";
    assert_eq!(
        split(q),
        ["SELECT a -- it's; \"odd\" /x;\nFROM m", "SHOW DATABASES"]
    );
}

#[test]
fn block_comment_hides_semicolons_and_quotes() {
    let q = "SELECT a /* ; it's \"x ; */ FROM m; /* ** ; */ SHOW DATABASES";
    assert_eq!(
        split(q),
        [
            "SELECT a /* ; it's \"x ; */ FROM m",
            "/* ** ; */ SHOW DATABASES"
        ]
    );
    assert_eq!(kinds(q), [Read, Read]);
}

#[test]
fn comment_markers_inside_literals_are_literal() {
    let q = r#"SELECT "a--b", "c/*d" FROM m WHERE s = '--;' AND r =~ /--;/; SHOW USERS"#;
    assert_eq!(kinds(q), [Read, Read]);
}

// --- classification --------------------------------------------------------

#[test]
fn keywords_are_recognised_in_any_letter_case() {
    assert_eq!(classify("select * from m"), Read);
    assert_eq!(classify("SeLeCt * FrOm m iNtO x"), Admin);
    assert_eq!(classify("show stats"), PerNode);
    assert_eq!(classify("Drop Database d"), Admin);
    assert_eq!(classify("kill query 12"), PerNode);
    assert_eq!(classify("set password for bob = 'x'"), Admin);
}

#[test]
fn leading_comments_and_whitespace_before_the_keyword_are_skipped() {
    assert_eq!(
        classify("  -- note\n /* a; 'b' */\n\tDROP DATABASE d"),
        Admin
    );
    assert_eq!(classify("/* x */ SHOW /* y */ DIAGNOSTICS"), PerNode);
    assert_eq!(
        kinds("-- c\nSELECT 1; /* c */ CREATE DATABASE d"),
        [Read, Admin]
    );
}

#[test]
fn select_without_into_is_read() {
    assert_eq!(
        classify("SELECT mean(value) FROM cpu WHERE time > now() - 1h"),
        Read
    );
}

#[test]
fn select_into_is_admin() {
    assert_eq!(classify("SELECT * INTO copy FROM m GROUP BY *"), Admin);
    assert_eq!(
        classify(r#"SELECT mean(v) INTO "db"."rp"."m" FROM m"#),
        Admin
    );
}

#[test]
fn into_inside_string_identifier_regex_or_comment_does_not_count() {
    let q = r#"SELECT "into" FROM m WHERE a = 'into' AND b =~ /into/ -- into
        /* INTO */"#;
    assert_eq!(classify(q), Read);
}

#[test]
fn into_is_found_after_literals_that_also_contain_it() {
    assert_eq!(kinds("SELECT 'into' INTO x FROM m"), [Admin]);
    assert_eq!(
        kinds("SELECT 'into' INTO x FROM m; SHOW USERS"),
        [Admin, Read]
    );
    assert_eq!(
        kinds("SELECT \"Into\" FROM m; SELECT a FROM /into/"),
        [Read, Read]
    );
}

#[test]
fn query_without_semicolon_is_one_statement_or_none() {
    assert_eq!(
        parse("  SHOW DATABASES  "),
        [Statement {
            text: "SHOW DATABASES",
            kind: Read
        }]
    );
    assert!(parse("-- just a comment").is_empty());
    assert!(parse("/* unterminated ; comment").is_empty());
    assert_eq!(split("SELECT a FROM m -- c"), ["SELECT a FROM m -- c"]);
}

#[test]
fn word_merely_containing_into_is_not_the_into_keyword() {
    assert_eq!(classify("SELECT into_x, intox FROM m"), Read);
}

#[test]
fn every_show_statement_except_per_node_ones_is_read() {
    let reads = [
        "SHOW DATABASES",
        "SHOW MEASUREMENTS ON db WITH MEASUREMENT =~ /cpu;.*/",
        "SHOW TAG KEYS FROM cpu",
        "SHOW TAG VALUES WITH KEY = \"host\"",
        "SHOW FIELD KEYS FROM /m/",
        "SHOW SERIES FROM cpu WHERE host = 'a'",
        "SHOW RETENTION POLICIES ON db",
        "SHOW USERS",
        "SHOW GRANTS FOR bob",
        "SHOW CONTINUOUS QUERIES",
        "SHOW SHARDS",
        "SHOW SHARD GROUPS",
        "SHOW SUBSCRIPTIONS",
        "SHOW SERIES CARDINALITY",
        "SHOW MEASUREMENT EXACT CARDINALITY",
        "SHOW",
    ];
    for q in reads {
        assert_eq!(classify(q), Read, "{q}");
    }
}

#[test]
fn show_stats_diagnostics_and_queries_are_per_node() {
    for q in [
        "SHOW STATS",
        "SHOW STATS FOR 'indexes'",
        "SHOW DIAGNOSTICS",
        "SHOW QUERIES",
    ] {
        assert_eq!(classify(q), PerNode, "{q}");
    }
}

#[test]
fn kill_query_is_per_node() {
    assert_eq!(classify("KILL QUERY 36 ON \"host:8086\""), PerNode);
}

#[test]
fn writes_to_the_schema_users_or_data_are_admin() {
    let admins = [
        "CREATE DATABASE d",
        "CREATE RETENTION POLICY r ON d DURATION 1d REPLICATION 1",
        "CREATE CONTINUOUS QUERY cq ON d BEGIN SELECT mean(v) INTO x FROM m GROUP BY time(1m) END",
        "CREATE USER bob WITH PASSWORD 'p;w'",
        "DROP DATABASE d",
        "DROP MEASUREMENT m",
        "DROP SERIES FROM /a;b/",
        "ALTER RETENTION POLICY r ON d DEFAULT",
        "GRANT ALL TO bob",
        "REVOKE READ ON d FROM bob",
        "SET PASSWORD FOR bob = 'x'",
        "DELETE FROM m WHERE time < now() - 30d",
    ];
    for q in admins {
        assert_eq!(kinds(q), [Admin], "{q}");
    }
}

#[test]
fn explain_and_explain_analyze_are_read() {
    assert_eq!(classify("EXPLAIN SELECT * FROM m"), Read);
    assert_eq!(classify("explain analyze SELECT * FROM m"), Read);
}

#[test]
fn anything_else_is_unknown() {
    let unknowns = [
        "",
        "-- only a comment",
        "INSERT cpu value=1",
        "KILL foo",
        "KILL",
        "SET x = 1",
        "SET",
        "\"SELECT\" * FROM m",
        "(SELECT 1)",
        "42",
        "SELECTS * FROM m",
        "DROPDATABASE d",
    ];
    for q in unknowns {
        assert_eq!(classify(q), Unknown, "{q:?}");
    }
}

#[test]
fn several_statements_are_classified_independently() {
    let q = "SELECT 1; SHOW STATS; CREATE DATABASE d; BOGUS; SELECT 2 INTO x FROM y; SHOW USERS";
    assert_eq!(kinds(q), [Read, PerNode, Admin, Unknown, Admin, Read]);
}

#[test]
fn classify_looks_only_at_the_first_non_empty_statement() {
    assert_eq!(classify(";; SELECT 1; DROP DATABASE d"), Read);
    assert_eq!(classify("SELECT 1; SELECT * INTO x FROM y"), Read);
}

// --- robustness ---------------------------------------------------------------

#[test]
fn unterminated_literals_and_comments_swallow_the_rest_of_the_query() {
    for q in [
        "SELECT \"a; DROP DATABASE d",
        "SELECT 'a; DROP DATABASE d",
        "SELECT * FROM /a; DROP DATABASE d",
        "SELECT 1 /* ; DROP DATABASE d",
        "SELECT 1 -- ; DROP DATABASE d",
    ] {
        assert_eq!(kinds(q), [Read], "{q}");
        assert_invariants(q);
    }
}

#[test]
fn backslash_at_the_very_end_of_a_literal_does_not_panic() {
    for q in [
        "SELECT '\\",
        "SELECT \"\\",
        "SELECT * FROM /\\",
        "'\\",
        "/\\",
    ] {
        assert_invariants(q);
    }
}

#[test]
fn multi_byte_utf8_in_identifiers_and_strings_is_kept_intact() {
    let q = "SELECT \"température;°C\" FROM météo WHERE ville = 'Zürich;東京' \
             AND s =~ /ü\\/é;/; SHOW TAG VALUES WITH KEY = \"città\"";
    let statements = parse(q);
    assert_eq!(statements.len(), 2);
    assert!(statements[0].text.ends_with("/ü\\/é;/"));
    assert_eq!(statements[1].text, "SHOW TAG VALUES WITH KEY = \"città\"");
    assert_eq!(kinds("SELECT é/2 FROM m; DROP DATABASE d"), [Read, Admin]);
}

#[test]
fn unicode_whitespace_around_statements_is_trimmed() {
    let q = "\u{3000}SELECT 1\u{a0}; \u{2028}DROP DATABASE d\u{3000}";
    assert_eq!(split(q), ["SELECT 1", "DROP DATABASE d"]);
    assert_eq!(kinds(q), [Read, Admin]);
}

#[test]
fn every_prefix_and_suffix_of_tricky_queries_keeps_the_invariants() {
    let queries = [
        r#"SELECT "a\";b" / 2, 'c\'d;\\' FROM /r\/;/ WHERE x =~ /é;/ -- c;'
; /* ;" */ SELECT * INTO "x" FROM m; SHOW STATS;"#,
        "\u{3000}ＳＥＬＥＣＴ;SELECT 'ü\\';/*\u{a0}*/KILL QUERY 1",
    ];
    for q in queries {
        for (i, _) in q.char_indices() {
            assert_invariants(&q[..i]);
            assert_invariants(&q[i..]);
        }
    }
}

// --- lexer --------------------------------------------------------------------

#[test]
fn lexer_yields_significant_tokens_with_their_offsets() {
    use TokenKind::*;
    let q = r#"SELECT "a" / 2 FROM m WHERE h =~ /x/ AND t >= now() - 1h; -- c"#;
    let got: Vec<(TokenKind, &str)> = tokens(q).map(|t| (t.kind, t.text)).collect();
    let want = [
        (Word, "SELECT"),
        (QuotedIdent, "\"a\""),
        (Punct, "/"),
        (Number, "2"),
        (Word, "FROM"),
        (Word, "m"),
        (Word, "WHERE"),
        (Word, "h"),
        (Punct, "=~"),
        (Regex, "/x/"),
        (Word, "AND"),
        (Word, "t"),
        (Punct, ">="),
        (Word, "now"),
        (Punct, "("),
        (Punct, ")"),
        (Punct, "-"),
        (Number, "1h"),
        (Semicolon, ";"),
    ];
    assert_eq!(got, want);
    assert!(tokens(q).all(|t| &q[t.start..t.end()] == t.text));
}

// --- summarize ------------------------------------------------------------------

#[test]
fn statements_of_one_kind_summarize_to_that_kind() {
    assert_eq!(summarize(&parse("SELECT 1; SHOW DATABASES")), Ok(Read));
    assert_eq!(
        summarize(&parse("CREATE DATABASE a; DROP DATABASE b")),
        Ok(Admin)
    );
    assert_eq!(summarize(&parse("SHOW STATS; SHOW QUERIES")), Ok(PerNode));
}

#[test]
fn no_statement_or_any_unknown_statement_summarizes_to_unknown() {
    assert_eq!(summarize(&parse("")), Ok(Unknown));
    assert_eq!(
        summarize(&parse("SELECT 1; BOGUS; DROP DATABASE d")),
        Ok(Unknown)
    );
}

#[test]
fn mixing_reads_and_admin_statements_is_refused_with_a_readable_message() {
    let err = summarize(&parse("SELECT * FROM cpu; CREATE DATABASE foo")).unwrap_err();
    assert_eq!((err.first, err.second), (Read, Admin));
    assert_eq!(
        err.to_string(),
        "mixing read statements (\"SELECT * FROM cpu\") and administrative statements \
         (\"CREATE DATABASE foo\") in one request is not supported; send them separately"
    );
}

#[test]
fn mix_error_quotes_long_statements_on_one_line_cut_to_forty_characters() {
    let q = "SELECT mean(\"value\")\n    FROM \"cpu\" WHERE host =~ /^web-ü[0-9]+$/; DROP SERIES FROM cpu";
    let err = summarize(&parse(q)).unwrap_err();
    assert_eq!(
        err.first_text,
        "SELECT mean(\"value\") FROM \"cpu\" WHERE ho…"
    );
    assert_eq!(err.first_text.chars().count(), 41);
    assert_eq!(err.second_text, "DROP SERIES FROM cpu");
    assert_eq!(err.second, Admin);
}

#[test]
fn reads_with_per_node_statements_go_to_one_node_as_a_read() {
    assert_eq!(summarize(&parse("SELECT 1; SHOW STATS")), Ok(Read));
    let err = summarize(&parse(
        "SHOW QUERIES; KILL QUERY 1; CREATE USER u WITH PASSWORD 'p'",
    ))
    .unwrap_err();
    assert_eq!((err.first, err.second), (PerNode, Admin));
    assert_eq!(err.first_text, "SHOW QUERIES");
}
